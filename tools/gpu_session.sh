#!/usr/bin/env bash
# GPU work of one session in two device calls, made back to back so that the second finds the first's unpacked data.
#
#   bash tools/gpu_session.sh bench OUTDIR   # benchmarks on the idle GPU (bench/run_all.sh cuda); unpacks train-b and test
#   bash tools/gpu_session.sh train OUTDIR   # unpacks train-a, joins it to train-b, trains the ViT candidates
#   bash tools/gpu_session.sh data OUTDIR    # unpacks train-b and test only (the first call of the resolution study)
#   bash tools/gpu_session.sh resolution OUTDIR  # unpacks train-a, joins, trains the 64-px models of RES_JOBS
#                                                # with the zoo's recipes, then tools/resolution_study.sh
#
# One call carries at most 64 MiB: the whole training set (63 MB of mosaics) does not fit with anything else, so
# the first call carries the test set and half the training set, the second the other half. Untrack the large
# folders for the two calls and carry what each stage needs (tools/gpu_prepare.sh does both and undoes it).
#   bench carries: .dev/d1 (unpack_gtsrb32.py, labels, test and train-b mosaics), .dev/whl (kornia as a tar.xz, the
#                  ART wheel), patchscope/models/zoo/gtsrb-{cnn,resnet,vit}.{safetensors,json}
#   train carries: .dev/d2 (unpack_gtsrb32.py, labels, train-a mosaic), .dev/whl, the ViT and ResNet of the zoo
#   data carries: .dev/d1, .dev/whl; resolution carries: .dev/d2, .dev/whl, patchscope/models/zoo/gtsrb-resnet.*
#   (the 32-px ResNet row); both run with TOTAL set to what the session has left
# Each stage writes at most 8 files to OUTDIR (the device tool's limit).
set -u
STAGE=${1:?usage: tools/gpu_session.sh bench|train OUTDIR}; OUT=${2:?usage: tools/gpu_session.sh bench|train OUTDIR}
TOTAL=${TOTAL:-400}   # seconds for the whole stage; training stops early enough to evaluate and copy back
PY=${PY:-python3}
mkdir -p "$OUT" .data .dev/out .dev/cal
LOG="$OUT/log.txt"
log() { echo "[$(date +%T) +${SECONDS}s] $*" | tee -a "$LOG"; }
left() { echo $(( TOTAL - SECONDS )); }
export PATCHSCOPE_DATA=$PWD/.data PYTHONUNBUFFERED=1

# kornia and ART are not on the GPU machine: kornia travels as a tar.xz of the package, kornia_rs (image file I/O,
# which patchscope never calls) as a stand-in module.
if ! $PY -c "import kornia" 2>/dev/null; then
  mkdir -p /tmp/site/kornia_rs && tar -xJf .dev/whl/kornia.tar.xz -C /tmp/site
  [ -f /tmp/site/kornia_rs/__init__.py ] || { echo '"""Stand-in: patchscope never reads image files through kornia."""' >/tmp/site/kornia_rs/__init__.py; : >/tmp/site/kornia_rs/io.py; }
  compgen -G ".dev/whl/*.whl" >/dev/null && $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .dev/whl/*.whl >>"$LOG" 2>&1
fi
export PYTHONPATH=/tmp/site:$PWD
log "stage $STAGE: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1); $(nproc) cores; $($PY -c 'import torch, kornia; print("torch", torch.__version__, "kornia", kornia.__version__)' 2>&1 | tail -1)"

join_npz() {  # OUT.npz FROM... : the training halves interleaved into the official order, plus the test set
  $PY - "$@" <<'PYEOF'
import sys
import numpy as np
out, parts = sys.argv[1], [dict(np.load(p)) for p in sys.argv[2:]]
halves = [p for p in parts if "x_train" in p]
labels = np.load(".dev/labels.npz")
arrays = {k: p[k] for p in parts for k in ("x_test", "y_test") if k in p}
if len(halves) == 2:
    a, b = sorted(halves, key=lambda h: -len(h["y_train"]))  # train-a holds images 0, 2, 4, ... (one more when odd)
    x = np.empty((len(a["x_train"]) + len(b["x_train"]), 32, 32, 3), np.uint8)
    x[0::2], x[1::2] = a["x_train"], b["x_train"]
    arrays.update(x_train=x, y_train=labels["y_train"], train_track=labels["train_track"])
else:
    arrays.update(x_train=halves[0]["x_train"], y_train=halves[0]["y_train"], train_track=halves[0]["train_track"])
np.savez(out, **arrays)
print(out, {k: v.shape for k, v in arrays.items()})
PYEOF
}

unpack_first_half() {  # test and train-b, from .dev/d1
  cp .dev/d1/gtsrb32-labels.npz .dev/labels.npz
  $PY .dev/d1/unpack_gtsrb32.py .data/test.npz --split test >>"$LOG" 2>&1
  $PY .dev/d1/unpack_gtsrb32.py .data/b.npz --split train-b >>"$LOG" 2>&1
}

stage_bench() {
  unpack_first_half
  join_npz .data/gtsrb32.npz .data/b.npz .data/test.npz >>"$LOG" 2>&1  # gtsrb:train is train-b in this call (vs_art's pool)
  log "data: $(ls -la .data | tail -n +4 | awk '{print $5, $9}' | tr '\n' ' ')"
  BENCH_OUT=.dev/bench PY=$PY CERT_IMAGES=12630 CERT_DATA=gtsrb:test CERT224_IMAGES=${CERT224_IMAGES:-16} VS_ART_STEPS=${VS_ART_STEPS:-30} \
    SCALING_ARGS="--cases size,vit --sizes 224" BENCH_TIMEOUT=${BENCH_TIMEOUT:-150} \
    timeout $(( $(left) - 10 )) bash bench/run_all.sh cuda 16 >>"$LOG" 2>&1
  log "run_all exit $?"
  tar -cf "$OUT/bench.tar" -C .dev bench
  log "wrote bench.tar"
}

# Training candidates, NAME|ARCH|MAX_EPOCHS|options, side by side on the GPU. Chosen before they ran: the one with the
# best validation accuracy (ties: the earlier in this list) is the candidate for the zoo; every candidate's test
# accuracy is read once, at the end of its run, and reported.
VIT='{"dim":192,"depth":7,"heads":3}'
JOBS=(
  "gtsrb-vit-ft|vit|40|--init patchscope/models/zoo/gtsrb-vit.safetensors --teacher patchscope/models/zoo/gtsrb-resnet.safetensors --lr 3e-4"
  "gtsrb-vit-kd|vit|300|--arch-kwargs $VIT --teacher patchscope/models/zoo/gtsrb-resnet.safetensors --batch-size 256"
  "gtsrb-vit-scratch|vit|300|--arch-kwargs $VIT --batch-size 256"
)
split_job() { IFS='|' read -r NAME ARCH MAXEP EXTRA <<<"$1"; read -r -a EXTRA_ARR <<<"$EXTRA"; }
run_job() {  # name arch epochs outdir extra...; stopped 15 s before TOTAL; prints the JSON summary last
  local name=$1 arch=$2 ep=$3 dir=$4; shift 4
  timeout $(( $(left) - 15 )) $PY -m patchscope train --arch "$arch" --data gtsrb:train --epochs "$ep" --name "$name" --out "$dir" --device cuda --json "$@"
}

stage_train() {
  if [ ! -f .data/b.npz ] || [ ! -f .data/test.npz ]; then
    log "no train-b/test from the bench call (the machine was not kept): training on train-a alone"
    HALF=1
  fi
  cp .dev/d2/gtsrb32-labels.npz .dev/labels.npz
  $PY .dev/d2/unpack_gtsrb32.py .data/a.npz --split train-a >>"$LOG" 2>&1
  if [ -z "${HALF:-}" ]; then join_npz .data/gtsrb32.npz .data/a.npz .data/b.npz .data/test.npz >>"$LOG" 2>&1
  else join_npz .data/gtsrb32.npz .data/a.npz >>"$LOG" 2>&1; fi  # no test set then: evaluated afterwards
  log "data: $(tail -n 1 "$LOG")"
  local eval_opt=(--eval-data gtsrb:test); [ -n "${HALF:-}" ] && eval_opt=()
  log "calibration: one epoch of every job side by side"
  local pids=() j
  for j in "${JOBS[@]}"; do split_job "$j"; run_job "$NAME" "$ARCH" 1 .dev/cal "${EXTRA_ARR[@]}" >".dev/cal/$NAME.log" 2>&1 & pids+=($!); done
  wait "${pids[@]}"
  local budget=$(( $(left) - ${RESERVE:-45} ))
  log "training budget: ${budget}s"
  declare -A EPOCHS
  for j in "${JOBS[@]}"; do
    split_job "$j"
    EPOCHS[$NAME]=$($PY -c "
import json, sys
try: s = json.load(open('.dev/cal/$NAME.json'))['train_seconds']
except (OSError, KeyError, ValueError): print(0); sys.exit()
print(max(1, min($MAXEP, int($budget / max(s, 1e-3)))))")
    log "$NAME: calibration $(tail -c 200 .dev/cal/$NAME.log | tr '\n' ' ') -> ${EPOCHS[$NAME]} epochs"
  done
  pids=()
  for j in "${JOBS[@]}"; do
    split_job "$j"
    [ "${EPOCHS[$NAME]}" -gt 0 ] || continue
    run_job "$NAME" "$ARCH" "${EPOCHS[$NAME]}" .dev/out "${EXTRA_ARR[@]}" "${eval_opt[@]}" >".dev/out/$NAME.log" 2>&1 & pids+=($!)
  done
  wait "${pids[@]}"
  for j in "${JOBS[@]}"; do
    split_job "$j"
    log "$NAME: $(tail -n 1 ".dev/out/$NAME.log")"
    [ -f ".dev/out/$NAME.safetensors" ] && cp ".dev/out/$NAME.safetensors" ".dev/out/$NAME.json" "$OUT/"
  done
  (cd .dev && tar -cf - out/*.log cal/*.log) >"$OUT/train-logs.tar" 2>>"$LOG"
  log "done"
}

# The resolution study's models not yet trained (the CNN at 64 px and the ViT carried to 64 px are in
# docs/runs/resolution-2026-12-05/): the zoo's ResNet recipe at 64 px and the zoo's ViT from scratch at 64 px with
# 8-px tokens (the same 8x8 grid), NAME|ARCH|EPOCHS|PX|options, trained side by side; a job that does not finish
# within the budget is left out. The 128-px models (the same lines with 128 and a 16-px token) come after these.
# Projected H200 training times from the 32-px runs (ResNet 171 s for 45 epochs, ViT ~300 s for 35 epochs beside
# two others): the ViT at 64 px about 5 min, the ResNet at 64 px about 11 min (4x the pixels). RES_ONLY="NAME ..."
# trains only those jobs, e.g. RES_ONLY=gtsrb-vit-64 when the session has less than about 15 min of device time.
RES_RESNET='--arch-kwargs {"widths":[32,64,128,256]} --lr 0.05'
RES_VIT='--arch-kwargs {"image_size":64,"patch":8}'
RES_JOBS=(
  "gtsrb-resnet-64|resnet|45|64|$RES_RESNET"
  "gtsrb-vit-64|vit|35|64|$RES_VIT"
)

res_wanted() { [ -z "${RES_ONLY:-}" ] || [[ " $RES_ONLY " == *" $1 "* ]]; }

stage_data() {
  unpack_first_half
  log "data: $(ls -la .data | tail -n +4 | awk '{print $5, $9}' | tr '\n' ' ')"
}

stage_resolution() {
  [ -f .data/b.npz ] && [ -f .data/test.npz ] || { log "no train-b/test from the data call: run it first"; exit 2; }
  cp .dev/d2/gtsrb32-labels.npz .dev/labels.npz
  $PY .dev/d2/unpack_gtsrb32.py .data/a.npz --split train-a >>"$LOG" 2>&1
  join_npz .data/gtsrb32.npz .data/a.npz .data/b.npz .data/test.npz >>"$LOG" 2>&1
  local budget=$(( $(left) - ${RESERVE:-240} )) pids=() j name arch ep px opts
  log "training budget: ${budget}s"
  for j in "${RES_JOBS[@]}"; do
    IFS='|' read -r name arch ep px opts <<<"$j"
    res_wanted "$name" || continue
    read -r -a opt_arr <<<"$opts"
    timeout $(( budget - SECONDS > 30 ? budget - SECONDS : 30 )) $PY -m patchscope train --arch "$arch" \
      --data "gtsrb:train@$px" --eval-data "gtsrb:test@$px" --epochs "$ep" --name "$name" --out .dev/out \
      --device cuda --json "${opt_arr[@]}" >".dev/out/$name.log" 2>&1 & pids+=($!)
  done
  wait "${pids[@]}"
  local models=()
  for j in "${RES_JOBS[@]}"; do
    IFS='|' read -r name _ <<<"$j"
    res_wanted "$name" || continue
    log "$name: $(tail -n 1 ".dev/out/$name.log")"
    [ -f ".dev/out/$name.safetensors" ] && { cp ".dev/out/$name.safetensors" ".dev/out/$name.json" "$OUT/"; models+=(".dev/out/$name.safetensors"); }
  done
  [ -f patchscope/models/zoo/gtsrb-resnet.safetensors ] && models=(gtsrb-resnet "${models[@]}")
  [ ${#models[@]} -gt 0 ] || { log "no model to study"; exit 1; }
  log "study: ${models[*]}"
  # the budget of the CPU study of the CNNs and ViTs, so that the rows compare (tools/resolution_study.sh)
  export STEPS=${STEPS:-200} BATCH=${BATCH:-64} CANDIDATES=${CANDIDATES:-2} PER_STEPS=${PER_STEPS:-50}
  export PER_LIMIT=${PER_LIMIT:-64} VIEWS=${VIEWS:-8}
  P="$PY -m patchscope" PY=$PY DEVICE=cuda timeout $(( $(left) - 20 )) bash tools/resolution_study.sh .dev/res "${models[@]}" >>"$LOG" 2>&1
  log "study exit $?"
  tar -cf "$OUT/resolution.tar" -C .dev res out/*.log 2>>"$LOG"
  log "done"
}

case $STAGE in
  bench) stage_bench ;;
  train) stage_train ;;
  data) stage_data ;;
  resolution) stage_resolution ;;
  *) echo "unknown stage $STAGE: bench, train, data or resolution" >&2; exit 2 ;;
esac
