#!/usr/bin/env bash
# Run every benchmark once on DEVICE and keep the JSON under bench/results/DEVICE-DATE/.
#   PATCHSCOPE_DATA=... [CERT_IMAGES=256] bash bench/run_all.sh [cpu|cuda] [THREADS]
# bench/RESULTS.md quotes these files; the ratios inside one file come from one run.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=${1:-cpu}; THREADS=${2:-2}
PY=${PY:-.venv/bin/python}
OUT=bench/results/$DEV-$(date +%Y%m%d)
mkdir -p "$OUT"
export OMP_NUM_THREADS=$THREADS
run() { local name=$1; shift; echo "== $name: $*"; "$PY" "$@" --device "$DEV" --json > "$OUT/$name.json"; }
run attack_step bench/attack_step.py --models gtsrb-cnn,gtsrb-resnet,gtsrb-vit --batch-size 256
run certify bench/certify.py --model gtsrb-cnn --images "${CERT_IMAGES:-256}"
run vs_art bench/vs_art.py --batch-size 256 --steps 300 --threads "$THREADS"
run scaling bench/scaling.py --threads "$THREADS"
{ nproc; lscpu | grep -m1 "Model name" || true; command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name --format=csv,noheader || true; } > "$OUT/machine.txt"
echo "wrote $OUT"
