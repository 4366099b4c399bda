#!/usr/bin/env bash
# One line on the terminal per set-up step; the step's whole output (apt, pip) in a log file.
# Usage: scripts/step.sh NAME DESCRIPTION COMMAND [ARG...]
#   Runs COMMAND with stdin from /dev/null and stdout and stderr in build/setup-logs/NAME.log,
#   and prints "DESCRIPTION ... done in N s" (folded to fit 80 columns). When COMMAND fails it
#   prints "... failed after N s", then on stderr "error: WHAT failed (exit status N)" (WHAT is
#   DESCRIPTION up to its first colon), the log's last 15 lines and the log's path, and exits
#   with COMMAND's status. scripts/system-packages.sh sources this file for run_step.

SETUP_LOGS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build/setup-logs"
SETUP_WIDTH=80
SETUP_TAIL=15
# Room kept on DESCRIPTION's last line for " ... failed after 9999 s".
SETUP_SUFFIX=24

# Prints DESCRIPTION, without a newline, folded at spaces so that the suffix still fits.
step_start() {
  local line="" word first=1 words
  read -ra words <<<"$1"
  for word in "${words[@]}"; do
    if [ -n "$line" ] && [ $((${#line} + 1 + ${#word})) -gt $((SETUP_WIDTH - SETUP_SUFFIX)) ]; then
      if [ "$first" = 1 ]; then printf '%s\n' "$line"; else printf '  %s\n' "$line"; fi
      line=$word first=0
    else
      line=${line:+$line }$word
    fi
  done
  if [ "$first" = 1 ]; then printf '%s ... ' "$line"; else printf '  %s ... ' "$line"; fi
}

run_step() {
  local name=$1 description=$2 status=0 start=$SECONDS
  shift 2
  local log="$SETUP_LOGS/$name.log"
  local shown=${log#"$PWD/"}
  mkdir -p "$SETUP_LOGS"
  step_start "$description"
  # The command heads its log, unless it is a shell function (which may print its own).
  {
    if [ "$(type -t "$1")" != function ]; then printf '$ %s\n' "$*"; fi
    "$@"
  } >"$log" 2>&1 </dev/null || status=$?
  if [ "$status" -eq 0 ]; then
    printf 'done in %d s\n' $((SECONDS - start))
    return 0
  fi
  printf 'failed after %d s\n' $((SECONDS - start))
  {
    printf 'error: %s failed (exit status %d); its log ends with:\n' \
      "${description%%:*}" "$status" | fold -s -w "$SETUP_WIDTH" | sed 's/ *$//'
    # Progress lines separated by carriage returns are lines too; long lines are folded.
    tr '\r' '\n' <"$log" | fold -s -w $((SETUP_WIDTH - 4)) | tail -n "$SETUP_TAIL" |
      sed 's/ *$//; s/^/    /'
    printf 'the whole log: %s\n' "$shown"
  } >&2
  return "$status"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -uo pipefail
  if [ $# -lt 3 ]; then
    echo "usage: scripts/step.sh NAME DESCRIPTION COMMAND [ARG...]" >&2
    exit 2
  fi
  run_step "$@"
fi
