#!/usr/bin/env bash
# Reproduce the GPU tables on a CUDA machine.
#
#   PATCHSCOPE_DATA=DIR bash tools/gpu_reproduce.sh bench OUT       # every benchmark on the GPU (bench/run_all.sh cuda):
#                                                                   # the GPU tables of bench/RESULTS.md
#   PATCHSCOPE_DATA=DIR bash tools/gpu_reproduce.sh train OUT       # the ViT candidates of the zoo, trained side by side
#   PATCHSCOPE_DATA=DIR bash tools/gpu_reproduce.sh resolution OUT  # the 64-px ResNet and ViT from scratch with the zoo's
#                                                                   # recipes, then tools/resolution_study.sh on them
#
# DIR holds gtsrb32.npz, the full GTSRB at 32 px (`python3 unpack_gtsrb32.py DIR/gtsrb32.npz` from the packed data set,
# or `patchscope` downloads and crops it through torchvision on first use). Models, logs and results go to OUT.
# Knobs (environment): PY (python3), TOTAL (seconds for the stage, default none), RES_ONLY="NAME ..." (train only
# those resolution jobs), and bench/run_all.sh's own (CERT_IMAGES, CERT224_IMAGES, VS_ART_STEPS, BENCH_TIMEOUT).
set -u
STAGE=${1:?usage: tools/gpu_reproduce.sh bench|train|resolution OUT}
OUT=${2:?usage: tools/gpu_reproduce.sh bench|train|resolution OUT}
PY=${PY:-python3}
: "${PATCHSCOPE_DATA:?set PATCHSCOPE_DATA to the folder that holds gtsrb32.npz}"
export PATCHSCOPE_DATA PYTHONUNBUFFERED=1
mkdir -p "$OUT"
LOG="$OUT/log.txt"
log() { echo "[$(date +%T) +${SECONDS}s] $*" | tee -a "$LOG"; }
LIMIT=(); [ -n "${TOTAL:-}" ] && LIMIT=(timeout "$TOTAL")
log "stage $STAGE: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1); $(nproc) cores;" \
  "$($PY -c 'import torch; print("torch", torch.__version__)' 2>&1 | tail -1)"

train() {  # NAME ARCH EPOCHS PX OPTIONS...: one zoo recipe on the GPU, its card and weights in OUT, its summary last
  local name=$1 arch=$2 ep=$3 px=$4; shift 4
  "${LIMIT[@]}" $PY -m patchscope train --arch "$arch" --data "gtsrb:train@$px" --eval-data "gtsrb:test@$px" \
    --epochs "$ep" --name "$name" --out "$OUT" --device cuda --json "$@" >"$OUT/$name.log" 2>&1
}

stage_bench() {
  BENCH_OUT=$OUT/bench PY=$PY CERT_IMAGES=${CERT_IMAGES:-12630} CERT_DATA=gtsrb:test \
    CERT224_IMAGES=${CERT224_IMAGES:-16} SCALING_ARGS="--cases size,vit --sizes 224" \
    "${LIMIT[@]}" bash bench/run_all.sh cuda 16 >>"$LOG" 2>&1
  log "run_all exit $?"
}

# The zoo's ViT candidates, NAME|ARCH|EPOCHS|options, trained side by side; chosen before they ran: the one with the
# best validation accuracy (ties: the earlier) is the zoo's candidate, and each test accuracy is read once, at the end.
VIT='{"dim":192,"depth":7,"heads":3}'
ZOO=patchscope/models/zoo
JOBS=(
  "gtsrb-vit-ft|vit|40|--init $ZOO/gtsrb-vit.safetensors --teacher $ZOO/gtsrb-resnet.safetensors --lr 3e-4"
  "gtsrb-vit-kd|vit|300|--arch-kwargs $VIT --teacher $ZOO/gtsrb-resnet.safetensors --batch-size 256"
  "gtsrb-vit-scratch|vit|300|--arch-kwargs $VIT --batch-size 256"
)

stage_train() {
  local pids=() j name arch ep opts
  for j in "${JOBS[@]}"; do
    IFS='|' read -r name arch ep opts <<<"$j"; read -r -a opt_arr <<<"$opts"
    train "$name" "$arch" "$ep" 32 "${opt_arr[@]}" & pids+=($!)
  done
  wait "${pids[@]}"
  for j in "${JOBS[@]}"; do IFS='|' read -r name _ <<<"$j"; log "$name: $(tail -n 1 "$OUT/$name.log")"; done
}

# The resolution study's from-scratch models, NAME|ARCH|EPOCHS|PX|options: the zoo's ResNet recipe at 64 px and the
# zoo's ViT at 64 px with 8-px tokens (the same 8x8 grid); the 128-px CNN is the zoo's CNN recipe at 128 px.
RES_JOBS=(
  "gtsrb-resnet-64|resnet|45|64|--arch-kwargs {\"widths\":[32,64,128,256]} --lr 0.05"
  "gtsrb-vit-64|vit|35|64|--arch-kwargs {\"image_size\":64,\"patch\":8}"
  "gtsrb-cnn-128|cnn|30|128|"
)
res_wanted() { [ -z "${RES_ONLY:-}" ] || [[ " $RES_ONLY " == *" $1 "* ]]; }

stage_resolution() {
  local pids=() j name arch ep px opts models=()
  for j in "${RES_JOBS[@]}"; do
    IFS='|' read -r name arch ep px opts <<<"$j"; res_wanted "$name" || continue
    read -r -a opt_arr <<<"$opts"
    train "$name" "$arch" "$ep" "$px" "${opt_arr[@]}" & pids+=($!)
  done
  wait "${pids[@]}"
  for j in "${RES_JOBS[@]}"; do
    IFS='|' read -r name _ <<<"$j"; res_wanted "$name" || continue
    log "$name: $(tail -n 1 "$OUT/$name.log")"
    [ -f "$OUT/$name.safetensors" ] && models+=("$OUT/$name.safetensors")
  done
  [ ${#models[@]} -gt 0 ] || { log "no model to study"; exit 1; }
  # the budget of the study's CPU rows, so that the rows compare (tools/resolution_study.sh)
  export STEPS=${STEPS:-200} BATCH=${BATCH:-64} CANDIDATES=${CANDIDATES:-2} PER_STEPS=${PER_STEPS:-50}
  export PER_LIMIT=${PER_LIMIT:-64} VIEWS=${VIEWS:-8}
  P="$PY -m patchscope" PY=$PY DEVICE=cuda "${LIMIT[@]}" bash tools/resolution_study.sh "$OUT/study" gtsrb-resnet \
    "${models[@]}" >>"$LOG" 2>&1
  log "study exit $?"
}

case $STAGE in
  bench) stage_bench ;;
  train) stage_train ;;
  resolution) stage_resolution ;;
  *) echo "unknown stage $STAGE: bench, train or resolution" >&2; exit 2 ;;
esac
