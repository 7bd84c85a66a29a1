#!/usr/bin/env bash
# One GPU session of device time, end to end: zoo training, test accuracy, full-test-set certification, benchmarks.
#
#   bash tools/gpu_session.sh OUTDIR [TRAIN_SECONDS]
#
# Expects in .dev/ (git-ignored, carried to the GPU machine): gtsrb32-train-a.webp, gtsrb32-test.webp,
# gtsrb32-labels.npz, gtsrb_classes.csv, unpack_gtsrb32.py (from ../shared/data) and whl/ (wheels the
# machine lacks: kornia, ART). Trains on half the training frames (train-a; each half covers every
# track), because the full training set does not fit in one call's 64 MiB with the test set.
#
# Every model trains with a fixed number of epochs, stored in its card: a one-epoch run of every
# job side by side first measures each job's epoch time under the same contention, and the epochs
# are then chosen to fit TRAIN_SECONDS. Results land in OUTDIR as a few tar files and a log.
set -u
OUT=${1:?usage: tools/gpu_session.sh OUTDIR [TRAIN_SECONDS]}; BUDGET=${2:-180}
TOTAL=${TOTAL:-560}          # seconds for the whole session; benchmarks get what certification leaves after TOTAL-BENCH
BENCH=${BENCH:-180}
PY=${PY:-python3}; DEV=${DEVICE:-cuda}
mkdir -p "$OUT" .data .dev/out .dev/cal .dev/cert
LOG="$OUT/log.txt"
log() { echo "[$(date +%T)] $*" | tee -a "$LOG"; }
export PATCHSCOPE_DATA=$PWD/.data PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2

if compgen -G ".dev/whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .dev/whl/*.whl >>"$LOG" 2>&1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
$PY -c "import kornia_rs" 2>/dev/null || export PYTHONPATH=$PYTHONPATH:$PWD/.dev/stub
PS="$PY -m patchscope"

# --- data: train-a for training; gtsrb32.npz = train-a + the full test set (benchmarks' gtsrb:train is the half)
if [ ! -f .data/gtsrb32.npz ]; then
  $PY .dev/unpack_gtsrb32.py .data/gtsrb32-a.npz --split train-a >>"$LOG" 2>&1
  $PY .dev/unpack_gtsrb32.py .data/test.npz --split test >>"$LOG" 2>&1
  $PY -c "import numpy as np; a=dict(np.load('.data/gtsrb32-a.npz')); a.update(np.load('.data/test.npz')); np.savez('.data/gtsrb32.npz', **a)"
fi
log "data: $(ls -la .data | tr '\n' ' ')"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >>"$LOG" 2>&1
TRAIN=${TRAIN:-npz:.data/gtsrb32-a.npz:train}
LIMIT=(); [ -n "${CERT_LIMIT:-}" ] && LIMIT=(--limit "$CERT_LIMIT")   # rehearsals on a CPU

# --- the jobs: NAME|ARCH|MAX_EPOCHS|extra options
JOBS=(
  "gtsrb-resnet|resnet|80|--arch-kwargs '{\"widths\":[16,32,64,128]}'"
  "gtsrb-resnet-w32|resnet|80|--arch-kwargs '{\"widths\":[32,64,128,256]}'"
  "gtsrb-vit|vit|300|--arch-kwargs '{\"dim\":192,\"depth\":7,\"heads\":3}'"
  "gtsrb-vit-ssl|vit|300|--arch-kwargs '{\"dim\":192,\"depth\":7,\"heads\":3}' --ssl mae"
  "gtsrb-cnn-pc|cnn|100|--arch-kwargs '{\"width\":24}' --mask-training 0.024,0.048"
  "gtsrb-resnet-pc|resnet|80|--arch-kwargs '{\"widths\":[16,32,64,128]}' --mask-training 0.024,0.048"
)
if [ -n "${ONLY_JOBS:-}" ]; then  # e.g. ONLY_JOBS=gtsrb-vit,gtsrb-resnet-w32: a second, shorter session
  keep=(); for j in "${JOBS[@]}"; do [[ ",$ONLY_JOBS," == *",${j%%|*},"* ]] && keep+=("$j"); done; JOBS=("${keep[@]}")
fi
run_job() {  # name arch epochs outdir extra... ; MAE jobs pretrain for half the fine-tuning epochs
  local name=$1 arch=$2 ep=$3 dir=$4; shift 4
  local ssl=()
  [[ " $* " == *" --ssl "* ]] && ssl=(--ssl-epochs $(( ep / 2 > 0 ? ep / 2 : 1 )))
  $PS train --arch "$arch" --data "$TRAIN" --epochs "$ep" --name "$name" --out "$dir" --device "$DEV" "${ssl[@]}" "$@"
}
split_job() { IFS='|' read -r NAME ARCH MAXEP EXTRA <<<"$1"; eval "EXTRA_ARR=($EXTRA)"; }

log "calibration: one epoch of every job side by side"
for j in "${JOBS[@]}"; do split_job "$j"; run_job "$NAME" "$ARCH" 1 .dev/cal "${EXTRA_ARR[@]}" >".dev/cal/$NAME.log" 2>&1 & done
wait
declare -A EPOCHS
for j in "${JOBS[@]}"; do
  split_job "$j"
  EPOCHS[$NAME]=$($PY - "$NAME" "$MAXEP" "$BUDGET" <<'EOF'
import json, sys
name, cap, budget = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    card = json.load(open(f".dev/cal/{name}.json"))
except OSError:
    print(0); raise SystemExit
per_epoch = card["train_seconds"] + card.get("pretraining", {}).get("seconds", 0) * 0.5
print(max(1, min(cap, int(budget / max(per_epoch, 1e-3)))))
EOF
)
  log "$NAME: calibration $(tail -c 300 .dev/cal/$NAME.log | tr '\n' ' ') -> ${EPOCHS[$NAME]} epochs"
done

log "training"
for j in "${JOBS[@]}"; do
  split_job "$j"
  [ "${EPOCHS[$NAME]}" -gt 0 ] || continue
  run_job "$NAME" "$ARCH" "${EPOCHS[$NAME]}" .dev/out "${EXTRA_ARR[@]}" --eval-data gtsrb:test >".dev/out/$NAME.log" 2>&1 &
done
wait
for j in "${JOBS[@]}"; do split_job "$j"; log "$NAME: $(tail -n 1 .dev/out/$NAME.log)"; done
tar -cf "$OUT/models-cnn.tar" -C .dev --exclude 'out/gtsrb-vit*' out
tar -cf "$OUT/models-vit.tar" -C .dev --exclude 'out/gtsrb-[cr]*' out
log "wrote models-*.tar"
[ "${TRAIN_ONLY:-0}" = 1 ] && exit 0

# --- certification on the full test set (PatchCleanser k=6), 5x5 px (2.4%) and 7x7 px (4.8%)
certify() {  # model size tag [extra]; skipped once the benchmarks' share of TOTAL is reached
  local m=$1 s=$2 tag=$3; shift 3
  local left=$(( TOTAL - BENCH - SECONDS ))
  [ "$left" -gt 10 ] || { log "certify $tag: skipped (time)"; return; }
  timeout "$left" $PS certify --model "$m" --defense patchcleanser --patch-size "$s" --data gtsrb:test --device "$DEV" --batch-size 16384 --json "${LIMIT[@]}" "$@" >".dev/cert/$tag.json" 2>".dev/cert/$tag.err"
  log "certify $tag: $(tr -d '\n ' <.dev/cert/$tag.json | head -c 400) $(tail -c 200 .dev/cert/$tag.err)"
}
for m in gtsrb-cnn-pc gtsrb-resnet-pc; do
  [ -f ".dev/out/$m.safetensors" ] || continue
  certify ".dev/out/$m.safetensors" 0.024 "$m-5px" --bf16
  certify ".dev/out/$m.safetensors" 0.048 "$m-7px" --bf16
done
certify gtsrb-cnn 0.024 gtsrb-cnn-5px --bf16 --limit 2000
[ -f .dev/out/gtsrb-cnn-pc.safetensors ] && certify .dev/out/gtsrb-cnn-pc.safetensors 0.024 gtsrb-cnn-pc-5px-fp32 --limit 2000
for m in gtsrb-resnet gtsrb-vit; do
  [ -f ".dev/out/$m.safetensors" ] && certify ".dev/out/$m.safetensors" 0.024 "$m-5px" --bf16 --limit 2000
done
tar -cf "$OUT/certify.tar" -C .dev cert
log "wrote certify.tar"

# --- benchmarks (bench/run_all.sh with the GPU's settings), each bounded
log "benchmarks"
PY=$PY CERT_IMAGES=${CERT_IMAGES:-1024} CERT_DATA=gtsrb:test VS_ART_STEPS=${VS_ART_STEPS:-50} timeout $(( TOTAL - SECONDS > 20 ? TOTAL - SECONDS : 20 )) bash bench/run_all.sh "$DEV" 8 >>"$LOG" 2>&1
tar -cf "$OUT/bench.tar" bench/results
log "done"
