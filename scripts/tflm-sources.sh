#!/usr/bin/env bash
# Makes TensorFlow Lite Micro's two source trees, tflite-micro/ (reference kernels) and
# tflite-micro-cmsis-nn/ (Arm's CMSIS-NN kernels), exactly as ../shared/third_party/PROVENANCE.md
# says they were made, then prints the line that points denselab at them.
# Usage: scripts/tflm-sources.sh [DIR]
#   DIR defaults to $XDG_CACHE_HOME/denselab/tflm-trees, else /var/tmp/denselab-tflm-trees-UID.
#   Needs network access to GitHub, git, make, curl and unzip (TFLM's Makefile downloads
#   CMSIS-NN, flatbuffers, gemmlowp, ruy and kissfft), and python3 with numpy and Pillow (the
#   Makefile runs a script at parse time). What git and the Makefile print goes to
#   DIR/tflm-sources.log.
#   Trees already in DIR are replaced, but only once both new ones are made.
set -euo pipefail

REPOSITORY=https://github.com/tensorflow/tflite-micro
COMMIT=90b983c2b3f1480642e040bbd2ddb37b998f3424 # 2026-08-20, the commit PROVENANCE.md names
# TARGET_TOOLCHAIN_ROOT=/usr/bin/ has the Makefile use Debian's arm-none-eabi-gcc instead of downloading Arm's.
OPTIONS="TARGET=cortex_m_generic TARGET_ARCH=cortex-m4+fp TOOLCHAIN=gcc TARGET_TOOLCHAIN_ROOT=/usr/bin/"

# A failure is one line on stderr, naming what failed and what to do.
die() {
  echo "error: $*" >&2
  exit 1
}

if [ -n "${XDG_CACHE_HOME:-}" ]; then default="$XDG_CACHE_HOME/denselab/tflm-trees"; else
  default="/var/tmp/denselab-tflm-trees-$(id -u)"
fi
dir=${1:-$default}

for program in git make curl unzip python3; do
  command -v "$program" >/dev/null 2>&1 || die "$program not found: install it, then run scripts/tflm-sources.sh again"
done
[ -x /usr/bin/arm-none-eabi-gcc ] ||
  die "/usr/bin/arm-none-eabi-gcc not found, which the make options name: install Debian's gcc-arm-none-eabi"
python3 -c "import numpy, PIL" 2>/dev/null ||
  die "python3 lacks numpy or Pillow, which TFLM's Makefile needs: install python3-numpy and python3-pil"

mkdir -p "$dir" || die "cannot make $dir: choose another folder (scripts/tflm-sources.sh DIR)"
dir=$(cd "$dir" && pwd)
# All the work happens in a folder beside the trees; an interrupted run leaves no half tree in DIR.
work=$(mktemp -d "$dir/.tflm-sources.XXXXXX") || die "cannot write in $dir: choose another folder"
trap 'rm -rf "$work"' EXIT
log="$dir/tflm-sources.log"
: >"$log"

echo "cloning $REPOSITORY at ${COMMIT:0:12} (log: $log)" >&2
git clone -q "$REPOSITORY" "$work/clone" >>"$log" 2>&1 ||
  die "cloning $REPOSITORY failed (no network access to GitHub?); see $log"
git -C "$work/clone" -c advice.detachedHead=false checkout -q "$COMMIT" >>"$log" 2>&1 ||
  die "commit $COMMIT is not in $REPOSITORY; see $log"

make_tree() {
  local name=$1 options=$2
  echo "making $name (TFLM's Makefile downloads its dependencies)" >&2
  (cd "$work/clone" && python3 tensorflow/lite/micro/tools/project_generation/create_tflm_tree.py \
    --makefile_options="$options" "$work/$name") >>"$log" 2>&1 ||
    die "create_tflm_tree.py failed making $name; see $log"
}
make_tree tflite-micro "$OPTIONS"
make_tree tflite-micro-cmsis-nn "$OPTIONS OPTIMIZED_KERNEL_DIR=cmsis_nn"

for name in tflite-micro tflite-micro-cmsis-nn; do
  rm -rf "${dir:?}/$name" || die "cannot replace $dir/$name: remove it, then run scripts/tflm-sources.sh again"
  mv "$work/$name" "$dir/$name" || die "cannot move $name into $dir: remove $dir/$name, then run again"
done
printf 'export DENSELAB_TFLM_TREES=%q\n' "$dir"
