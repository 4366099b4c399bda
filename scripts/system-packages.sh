#!/usr/bin/env bash
# Install the Debian packages denselab needs when they are missing and apt is usable.
# Usage: scripts/system-packages.sh dataset   (Fashion-MNIST's IDX files)
#        scripts/system-packages.sh browser   (headless Chromium for the browser tests)
#        scripts/system-packages.sh c-runtime (C compilers and QEMU for the C runtime's checks)
set -euo pipefail

need_dataset() {
  # When DENSELAB_DATA is set, denselab reads every dataset from it (a root folder with
  # one folder per dataset) and never from Debian's package, so installing that would
  # not help: its fashion-mnist/ folder must exist.
  if [ -n "${DENSELAB_DATA:-}" ]; then
    if [ ! -d "$DENSELAB_DATA/fashion-mnist" ]; then
      echo "error: DENSELAB_DATA is set but $DENSELAB_DATA/fashion-mnist/ does not exist; put Fashion-MNIST's four IDX files there or unset DENSELAB_DATA" >&2
      exit 2
    fi
    return 1
  fi
  [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]
}

need_browser() { ! command -v chromium >/dev/null 2>&1; }

# The packages of the C runtime's checks that are missing: the host's C compiler, the ARM
# cross-compiler, newlib's semihosting library for it (rdimon.specs), and QEMU's ARM boards.
missing_c_runtime() {
  command -v cc >/dev/null 2>&1 || echo gcc
  command -v arm-none-eabi-gcc >/dev/null 2>&1 || echo gcc-arm-none-eabi
  [ -f /usr/lib/arm-none-eabi/newlib/rdimon.specs ] || echo libnewlib-arm-none-eabi
  command -v qemu-system-arm >/dev/null 2>&1 || echo qemu-system-arm
}

apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get is not available: install $* yourself (or put Fashion-MNIST's IDX files in $DENSELAB_DATA/fashion-mnist/)" >&2
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
    c-runtime)
      missing=$(missing_c_runtime | tr '\n' ' ')
      if [ -n "${missing// /}" ]; then apt_install $missing; fi ;;
    *) echo "unknown system package group: $what" >&2; exit 2 ;;
  esac
done
