#!/usr/bin/env bash
# On-object area curves of the ResNet and the ViT with the command of the CNN's sigmoid curve
# (docs/runs/curve-2026-11-29-cnn-sigmoid/), carried on to 16% so that the ResNet's A90 falls inside the range.
set -euo pipefail
D=docs/runs/curve-2026-12-03-sigmoid
for m in gtsrb-resnet gtsrb-vit; do
  [ -f $D/$m/curve.json ] || .venv/bin/patchscope curve --model $m --sizes 0.04,0.06,0.08,0.1,0.12,0.14,0.16 --steps 150 \
      --candidates 2 --placements on-object --loss sigmoid --data gtsrb:train --eval-data gtsrb:test --out $D/$m > $D/$m.log 2>&1
done
