#!/usr/bin/env bash
# The defense x model table for the empirical defenses: each model's own zoo patch (Stop -> Yield) through
# every defense, and an adaptive attacker that optimises a new patch through the defense (BPDA where needed),
# on the first LIMIT test images and at most LIMIT Stop test images over the default viewing grid.
#
#   PATCHSCOPE_DATA=... [ATTACK_LOSS=ce] bash tools/defense_table.sh OUTDIR [MODELS] [STEPS] [LIMIT]
#
# Every registered defense unless DEFENSES lists some. One JSON per cell (patchscope defend --json), skipped when already there (rerun to resume), then table.md.
# The adaptive patch is optimised on the same Stop images it is graded on: a white-box upper bound.
set -u
OUT=${1:?usage: tools/defense_table.sh OUTDIR [MODELS] [STEPS] [LIMIT]}
MODELS=${2:-gtsrb-cnn,gtsrb-cnn-at}; STEPS=${3:-100}; LIMIT=${4:-100}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
for m in ${MODELS//,/ }; do
  for d in ${DEFENSES:-$($PY -c 'from patchscope.defenses import list_defenses; print(*list_defenses())')}; do
    f="$OUT/$m-$d.json"
    [ -s "$f" ] && continue
    start=$SECONDS
    if $PY -m patchscope defend --model "$m" --defense "$d" --patch "zoo:$m/stop-yield" --data gtsrb:test --adaptive \
        --steps "$STEPS" --attack-batch-size 32 --attack-loss "${ATTACK_LOSS:-sigmoid}" --limit "$LIMIT" --json >"$f.part" 2>"$OUT/$m-$d.err"; then
      mv "$f.part" "$f"; echo "$m $d: $((SECONDS - start)) s"
    else
      rm -f "$f.part"; echo "$m $d: failed ($(tail -n 1 "$OUT/$m-$d.err"))"
    fi
  done
done
$PY tools/defense_table.py "$OUT" >"$OUT/table.md" && cat "$OUT/table.md"
