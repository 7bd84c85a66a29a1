#!/usr/bin/env bash
# Make the working tree small enough for the device calls of tools/gpu_session.sh, and undo it afterwards.
#   bash tools/gpu_prepare.sh on     # untrack (for the calls only) the folders the GPU stages do not need
#   bash tools/gpu_prepare.sh off    # track them again
# The carried folders (.dev/d1, .dev/d2, .dev/whl) are made by hand: see tools/gpu_session.sh.
set -eu
cd "$(dirname "$0")/.."
BIG="docs patchscope/models/zoo patchscope/data/demo patchscope/attacks/zoo bench/results"
case ${1:-} in
  on)
    cp .git/info/exclude .git/info/exclude.before-gpu 2>/dev/null || : >.git/info/exclude.before-gpu
    for f in $BIG; do git rm -r -q --cached "$f"; echo "/$f/" >>.git/info/exclude; done
    echo "/.dev/" >>.git/info/exclude
    git status --porcelain | grep -v '^D ' || true ;;
  off)
    mv .git/info/exclude.before-gpu .git/info/exclude
    git reset -q -- $BIG ;;
  *) echo "usage: tools/gpu_prepare.sh on|off" >&2; exit 2 ;;
esac
