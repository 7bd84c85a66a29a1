#!/usr/bin/env bash
# Run every benchmark once on DEVICE and keep the JSON under bench/results/DEVICE-DATE/.
#   PATCHSCOPE_DATA=... bash bench/run_all.sh [cpu|cuda] [THREADS]
# Knobs (environment): CERT_IMAGES (256), CERT_DATA (demo), CERT224_IMAGES (16 on cuda, 0 on cpu: 0 skips the 224-px certification),
# VS_ART_STEPS (300), SCALING_ARGS (extra options of bench/scaling.py), ATTACK_ARGS (extra options of
# bench/attack_step.py), BENCH_TIMEOUT (seconds per benchmark, default none).
# bench/RESULTS.md quotes these files; the ratios inside one file come from one run.
# A benchmark that fails is reported and the others still run; the exit status is then 1.
set -uo pipefail
cd "$(dirname "$0")/.."
DEV=${1:-cpu}; THREADS=${2:-2}
PY=${PY:-.venv/bin/python}
OUT=${BENCH_OUT:-bench/results/$DEV-$(date +%Y%m%d)}
mkdir -p "$OUT"
export OMP_NUM_THREADS=$THREADS
status=0
LIMIT=(); [ -n "${BENCH_TIMEOUT:-}" ] && LIMIT=(timeout "$BENCH_TIMEOUT")
run() {
  local name=$1; shift; echo "== $name: $*"
  local t0=$SECONDS
  "${LIMIT[@]}" "$PY" "$@" --device "$DEV" --json > "$OUT/$name.json" || { echo "!! $name failed"; status=1; }
  echo "   $name: $((SECONDS - t0)) s"
}
{ nproc; lscpu | grep -m1 "Model name" || true; command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name --format=csv,noheader || true; "$PY" -c "import torch; print('torch', torch.__version__)"; } > "$OUT/machine.txt"
BF16=(); [[ $DEV == cuda* ]] && BF16=(--bf16)
CHUNK=(); [[ $DEV == cuda* ]] && CHUNK=(--batch-size 16384)
# shellcheck disable=SC2086
run attack_step bench/attack_step.py --models gtsrb-cnn,gtsrb-resnet,gtsrb-vit --batch-size 256 ${ATTACK_ARGS:-}
run certify bench/certify.py --model gtsrb-cnn --images "${CERT_IMAGES:-256}" --data "${CERT_DATA:-demo}" "${BF16[@]}" "${CHUNK[@]}"
# shellcheck disable=SC2086
run scaling bench/scaling.py --threads "$THREADS" ${SCALING_ARGS:-}
C224=${CERT224_IMAGES:-0}; [[ $DEV == cuda* ]] && C224=${CERT224_IMAGES:-16}
if [ "$C224" -gt 0 ]; then
  B224=64; [[ $DEV == cuda* ]] && B224=512
  for m in resnet50 vit_b_16; do
    run "certify224_$m" bench/certify.py --model "tv:$m:random" --data random --images "$C224" --patch-area 0.02 \
      --batch-size "$B224" --loop-images "$C224" --project 50000 --no-ds "${BF16[@]}"
  done
fi
run vs_art bench/vs_art.py --batch-size 256 --steps "${VS_ART_STEPS:-300}" --threads "$THREADS"
echo "wrote $OUT"
exit $status
