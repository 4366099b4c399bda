#!/usr/bin/env bash
# Install the Debian packages denselab needs when they are missing and apt is usable.
# Usage: scripts/system-packages.sh dataset   (Fashion-MNIST's IDX files)
#        scripts/system-packages.sh browser   (headless Chromium for the browser tests)
set -euo pipefail

need_dataset() {
  # A user's own copy (DENSELAB_DATA) or Debian's package are both fine.
  if [ -n "${DENSELAB_DATA:-}" ] || [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    return 1
  fi
  return 0
}

need_browser() { ! command -v chromium >/dev/null 2>&1; }

apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get is not available: install $* yourself (or set DENSELAB_DATA to a folder with Fashion-MNIST's IDX files)" >&2
    return 1
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "installing $* needs root: run 'apt-get install $*' as root" >&2
      return 1
    fi
  fi
  echo "installing Debian packages: $*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
}

for what in "$@"; do
  case "$what" in
    dataset) if need_dataset; then apt_install dataset-fashion-mnist; fi ;;
    browser) if need_browser; then apt_install chromium; fi ;;
    *) echo "unknown system package group: $what" >&2; exit 2 ;;
  esac
done
