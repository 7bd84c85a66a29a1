#!/usr/bin/env bash
# Run every benchmark once on DEVICE and keep the JSON under bench/results/DEVICE-DATE/.
#   PATCHSCOPE_DATA=... [CERT_IMAGES=256] [CERT_DATA=demo] [VS_ART_STEPS=300] bash bench/run_all.sh [cpu|cuda] [THREADS]
# bench/RESULTS.md quotes these files; the ratios inside one file come from one run.
# A benchmark that fails is reported and the others still run; the exit status is then 1.
set -uo pipefail
cd "$(dirname "$0")/.."
DEV=${1:-cpu}; THREADS=${2:-2}
PY=${PY:-.venv/bin/python}
OUT=bench/results/$DEV-$(date +%Y%m%d)
mkdir -p "$OUT"
export OMP_NUM_THREADS=$THREADS
status=0
run() { local name=$1; shift; echo "== $name: $*"; "$PY" "$@" --device "$DEV" --json > "$OUT/$name.json" || { echo "!! $name failed"; status=1; }; }
{ nproc; lscpu | grep -m1 "Model name" || true; command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name --format=csv,noheader || true; } > "$OUT/machine.txt"
BF16=(); [[ $DEV == cuda* ]] && BF16=(--bf16)
run attack_step bench/attack_step.py --models gtsrb-cnn,gtsrb-resnet,gtsrb-vit --batch-size 256
run certify bench/certify.py --model gtsrb-cnn --images "${CERT_IMAGES:-256}" --data "${CERT_DATA:-demo}" "${BF16[@]}"
run vs_art bench/vs_art.py --batch-size 256 --steps "${VS_ART_STEPS:-300}" --threads "$THREADS"
run scaling bench/scaling.py --threads "$THREADS"
echo "wrote $OUT"
exit $status
