#!/usr/bin/env bash
# The folder holding TensorFlow Lite Micro's two source trees, which the firmware tests build
# against and are never skipped for want of: $DENSELAB_TFLM_TREES when set, else
# ../shared/third_party beside the repository (where CI lays them out) or beside the one it was
# cloned from, made absolute.
# Usage: scripts/tflm-trees.sh                   prints the folder
#        scripts/tflm-trees.sh COMMAND [ARG...]  runs COMMAND with DENSELAB_TFLM_TREES set to it
# When the folder lacks either tree it prints one line saying how to get them, and exits with 2.
set -euo pipefail

repository=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
trees=${DENSELAB_TFLM_TREES:-$repository/../shared/third_party}
# A clone made elsewhere (CI clones into a scratch folder) finds them beside the repository it
# was cloned from, when that is a folder on this machine.
origin=$(git -C "$repository" config --get remote.origin.url 2>/dev/null || true)
if [ -z "${DENSELAB_TFLM_TREES:-}" ] && [ ! -d "$trees" ] && [ -d "$origin/../shared/third_party" ]; then
  trees=$origin/../shared/third_party
fi
for name in tflite-micro tflite-micro-cmsis-nn; do
  if [ ! -d "$trees/$name" ]; then
    if [ -n "${DENSELAB_TFLM_TREES:-}" ]; then where="DENSELAB_TFLM_TREES=$trees"; else
      where="DENSELAB_TFLM_TREES is unset and ../shared/third_party"
    fi
    echo "error: TensorFlow Lite Micro's sources are missing ($where has no $name/): make them with" \
      "scripts/tflm-sources.sh DIR, then export DENSELAB_TFLM_TREES=DIR" >&2
    exit 2
  fi
done
trees=$(cd "$trees" && pwd)
if [ $# -eq 0 ]; then
  echo "$trees"
else
  DENSELAB_TFLM_TREES=$trees exec "$@"
fi
