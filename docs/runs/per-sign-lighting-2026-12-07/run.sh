#!/usr/bin/env bash
# Each bundled patch on its own model, measured on the 270 test Stop images with its own colours (the uniform grid)
# and under each sign's own lighting, fitted against the typical training Stop sign, over the 33 default viewing
# conditions (the first of them: the sign as it is). DATA_ROOT or PATCHSCOPE_DATA: the folder holding gtsrb32.npz.
set -eu
cd "$(dirname "$0")"
PS=${PS:-../../../.venv/bin/patchscope}
ROOT=${DATA_ROOT:-${PATCHSCOPE_DATA:-../../../.data}}
# PATCHES="MODEL/NAME ...": those only, in that order (default: every bundled patch)
for p in ${PATCHES:-$($PS zoo --json | python3 -c "import json,sys; print(' '.join(r['name'] for r in json.load(sys.stdin)['patches']))")}; do
  m=${p%%/*}
  out=$(echo "$p" | tr / _)
  f="$out.json"
  [ -s "$f" ] && continue
  $PS evaluate --models "$m" --patch "zoo:$p" --data gtsrb:test --data-root "$ROOT" \
    --per-sign-lighting --lighting-data gtsrb:train --json >"$f.tmp"
  mv "$f.tmp" "$f"
done
