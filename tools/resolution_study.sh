#!/usr/bin/env bash
# Does a patch's strength follow its share of the image or its pixel count? The same Stop->Yield attacks at equal
# area fractions on models trained at 32, 64 and 128 px, then one table and one figure.
#
#   bash tools/resolution_study.sh OUT MODEL...     # e.g. OUT gtsrb-cnn models/gtsrb-cnn-64.safetensors
#
# For each model (its resolution R is its card's input_size) and each area fraction in SIZES:
#   universal-S/  one on-object patch made on MAKE@R (the Stop images), measured on TEST@R over the default
#                 33-condition viewing grid (evaluate.json)
#   per-sign-S/   one patch per TEST@R Stop image, warm-started from the universal patch, each measured on its
#                 own image over the grid (metrics.json)
#   explain-S/    the universal patch's share of activation energy and max z-score per layer (explain.json)
# and TRANSFER (default OUT/transfer.json): every listed model's middle-size universal patch measured on every
# listed model; run the script once per group of models with its own TRANSFER file (transfer-NAME.json) to keep a
# matrix per group.
# then python tools/resolution_table.py OUT writes OUT/resolution.md and OUT/resolution.png.
# 2.4%, 4.8% and 9.8% are 5x5, 7x7 and 10x10 px at 32 px and exactly the same fractions at 64 and 128 px.
# Every setting below is the same at every resolution; LIMIT (images), PER_LIMIT (images given per-sign patches) and
# the step counts shrink it for a smoke run or a CPU; PER_SIGN=0 leaves the per-sign patches out (a rerun adds them).
set -euo pipefail
OUT=${1:?usage: tools/resolution_study.sh OUT MODEL...}; shift
[ $# -gt 0 ] || { echo "usage: tools/resolution_study.sh OUT MODEL..." >&2; exit 2; }
P=${P:-patchscope}
MAKE=${MAKE:-gtsrb:train}; TEST=${TEST:-gtsrb:test}; SIZES=${SIZES:-0.024 0.048 0.098}
STEPS=${STEPS:-300}; BATCH=${BATCH:-256}; CANDIDATES=${CANDIDATES:-5}
PER_STEPS=${PER_STEPS:-150}; VIEWS=${VIEWS:-8}; DEVICE=${DEVICE:-auto}; LIMIT=${LIMIT:-}; PER_LIMIT=${PER_LIMIT:-$LIMIT}
lim() { [ -n "$LIMIT" ] && echo "--limit $LIMIT"; true; }
per_lim() { [ -n "$PER_LIMIT" ] && echo "--limit $PER_LIMIT"; true; }
common="--source stop --target yield --device $DEVICE --json"
mkdir -p "$OUT"
for M in "$@"; do
  read -r R ARCH < <(${PY:-python3} -c "import sys; from patchscope.models import create_model
m = create_model(sys.argv[1]); print(m.input_size, m.card.get('arch', 'unknown'))" "$M")
  D="$OUT/$(basename "${M%.safetensors}")"
  mkdir -p "$D"
  echo "$M: $R px" >&2
  printf '{"model": "%s", "input_size": %s, "arch": "%s"}\n' "$M" "$R" "$ARCH" >"$D/model.json"
  $P evaluate --models "$M" --data "$TEST@$R" --device "$DEVICE" --json >"$D/clean.json"
  for S in $SIZES; do
    U="$D/universal-$S"
    [ -f "$U/evaluate.json" ] || {
      $P attack --model "$M" --data "$MAKE@$R" --placement on-object --size "$S" --steps "$STEPS" \
        --batch-size "$BATCH" --candidates "$CANDIDATES" --seed 0 --out "$U" $(lim) $common >"$U.log"
      $P evaluate --patch "$U" --models "$M" --data "$TEST@$R" $common >"$U/evaluate.json.part"
      mv "$U/evaluate.json.part" "$U/evaluate.json"
    }
    [ "${PER_SIGN:-1}" = 0 ] || [ -f "$D/per-sign-$S/metrics.json" ] || $P attack --model "$M" --data "$TEST@$R" \
      --per-image --init "$U" --steps "$PER_STEPS" --lr 0.05 --views "$VIEWS" --seed 0 --out "$D/per-sign-$S" \
      $(per_lim) $common >"$D/per-sign-$S.log"
    [ -f "$D/explain-$S/explain.json" ] || $P explain --patch "$U" --model "$M" --data "$TEST@$R" --source stop \
      --out "$D/explain-$S" --device "$DEVICE" $(lim) --json >/dev/null
    echo "$M: $S done" >&2
  done
done
# transfer: every model's middle-size universal patch on every model (each at its own resolution; a patch made at
# another resolution is resized with the images, keeping its share of the image)
MID=$(echo $SIZES | tr ' ' '\n' | sort -g | awk '{v[NR]=$0} END {print v[int(NR/2)+1]}')
PATCHES=$(for M in "$@"; do printf '%s,' "$OUT/$(basename "${M%.safetensors}")/universal-$MID"; done)
MODELS=$(IFS=,; echo "$*")
TRANSFER=${TRANSFER:-$OUT/transfer.json}
$P transfer --patches "${PATCHES%,}" --models "$MODELS" --data "$TEST" $(lim) $common >"$TRANSFER.part"
mv "$TRANSFER.part" "$TRANSFER"
${PY:-python3} "$(dirname "$0")/resolution_table.py" "$OUT"
