#!/usr/bin/env bash
# Install the Debian packages denselab needs when they are missing and apt is usable.
# Usage: scripts/system-packages.sh dataset   (Fashion-MNIST's IDX files)
#        scripts/system-packages.sh browser   (headless Chromium for the browser tests)
#        scripts/system-packages.sh c-runtime (C compilers and QEMU for the C runtime's checks)
#        scripts/system-packages.sh arduino   (the AVR compiler, simavr and the Arduino AVR core)
# What apt prints goes to build/setup-logs/apt-GROUP.log; the terminal gets one line a group
# (scripts/step.sh), or the log's end when apt fails.
set -euo pipefail
. "$(dirname "$0")/step.sh"

# An error message on stderr, folded to 80 columns.
say() { echo "$*" | fold -s -w 80 | sed 's/ *$//' >&2; }

need_dataset() {
  # When DENSELAB_DATA is set, denselab reads every dataset from it (a root folder with
  # one folder per dataset) and never from Debian's package, so installing that would
  # not help: its fashion-mnist/ folder must exist.
  if [ -n "${DENSELAB_DATA:-}" ]; then
    if [ ! -d "$DENSELAB_DATA/fashion-mnist" ]; then
      say "error: DENSELAB_DATA is set but $DENSELAB_DATA/fashion-mnist/ does not exist; put Fashion-MNIST's four IDX files there or unset DENSELAB_DATA"
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

# The packages of the Arduino Uno's checks that are missing: avr-gcc with avr-libc, the
# simavr emulator, and Debian's Arduino AVR core with arduino-builder (which needs ctags).
missing_arduino() {
  command -v avr-gcc >/dev/null 2>&1 || echo gcc-avr
  [ -f /usr/lib/avr/include/avr/pgmspace.h ] || echo avr-libc
  command -v simavr >/dev/null 2>&1 || echo simavr
  [ -f /usr/share/arduino/hardware/arduino/avr/boards.txt ] || echo arduino-core-avr
  command -v arduino-builder >/dev/null 2>&1 || echo arduino-builder
  command -v arduino-ctags >/dev/null 2>&1 || echo arduino-ctags
}

# apt-get update, then apt-get install of the packages; the sudo prefix comes first.
apt_update_install() {
  local sudo=$1
  shift
  echo "\$ ${sudo:+$sudo }apt-get update -qq"
  $sudo apt-get update -qq || return
  echo "\$ ${sudo:+$sudo }apt-get install -y -qq $*"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# apt_install GROUP PACKAGE...
apt_install() {
  local group=$1
  shift
  if ! command -v apt-get >/dev/null 2>&1; then
    if [ "$group" = dataset ]; then
      say "apt-get is not available: install $* yourself (or put Fashion-MNIST's IDX files in \$DENSELAB_DATA/fashion-mnist/ and set DENSELAB_DATA)"
    else
      say "apt-get is not available: install $* yourself"
    fi
    return 1
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      say "installing $* needs root: run 'apt-get install $*' as root"
      return 1
    fi
  fi
  run_step "apt-$group" "installing Debian packages: $*" apt_update_install "$sudo" "$@"
}

for what in "$@"; do
  case "$what" in
    dataset) if need_dataset; then apt_install dataset dataset-fashion-mnist; fi ;;
    browser) if need_browser; then apt_install browser chromium; fi ;;
    c-runtime)
      missing=$(missing_c_runtime | tr '\n' ' ')
      if [ -n "${missing// /}" ]; then apt_install c-runtime $missing; fi ;;
    arduino)
      missing=$(missing_arduino | tr '\n' ' ')
      if [ -n "${missing// /}" ]; then apt_install arduino $missing; fi ;;
    *) say "unknown system package group: $what"; exit 2 ;;
  esac
done
