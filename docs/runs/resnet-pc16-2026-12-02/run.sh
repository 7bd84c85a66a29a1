#!/usr/bin/env bash
# gtsrb-resnet-pc16: gtsrb-resnet fine-tuned 5 epochs with certification-aware mask training (worst of 16
# PatchCleanser mask pairs per image), on the 2-core CPU in bf16; then PatchCleanser (k=6, --bf16, near-ties
# redone in fp32) on the full test set, in 13 consecutive chunks so that a stopped run keeps what it finished.
set -e
cd "$(dirname "$0")/../../.."
OUT=runs/resnet-pc16; mkdir -p $OUT/chunks docs/runs/resnet-pc16-2026-12-02/certify
.venv/bin/patchscope train --init gtsrb-resnet --data gtsrb:train --epochs 5 --lr 0.01 --ema-decay 0.998 \
  --mask-training 0.024,0.048 --mask-tries 16 --precision bf16 --threads 2 \
  --eval-data gtsrb:test --out $OUT --name gtsrb-resnet-pc16 > $OUT/train.log 2>&1
.venv/bin/python - <<'PY'
import numpy as np, os
d = np.load(os.path.expanduser(os.environ.get("PATCHSCOPE_DATA", "~/.patchscope/data")) + "/gtsrb32.npz")
x, y = d["x_test"], d["y_test"]
b = np.linspace(0, len(x), 14).round().astype(int)
for i, (lo, hi) in enumerate(zip(b[:-1], b[1:])):
    np.savez(f"runs/resnet-pc16/chunks/test-{i:02d}.npz", x_test=x[lo:hi], y_test=y[lo:hi])
PY
for spec in "0.024 5" "0.048 7"; do
  set -- $spec
  ( for f in $OUT/chunks/test-*.npz; do
      c=$(basename $f .npz)
      OMP_NUM_THREADS=1 .venv/bin/patchscope certify --model $OUT/gtsrb-resnet-pc16.safetensors --defense patchcleanser \
        --patch-size $1 --data npz:$f --bf16 --json > docs/runs/resnet-pc16-2026-12-02/certify/${2}px-$c.json
    done ) &
done
wait
python3 docs/runs/resnet-pc16-2026-12-02/aggregate.py > docs/runs/resnet-pc16-2026-12-02/certify-full-test.json
