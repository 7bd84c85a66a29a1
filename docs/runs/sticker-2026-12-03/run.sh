#!/usr/bin/env bash
# Sticker A90: the earlier curves stopped at 12-14% of the image, where stickers (a random place, rotation and
# scale on every image) reached at most 16-18%. The same curve command at larger areas, each zoo model:
# made on the 780 training Stop images, measured on the 270 test Stop images x 33 default conditions.
set -euo pipefail
D=docs/runs/sticker-2026-12-03
for m in gtsrb-cnn gtsrb-resnet gtsrb-vit; do
  [ -f $D/$m/curve.json ] || .venv/bin/patchscope curve --model $m --sizes 0.15,0.2,0.25,0.3,0.4 --steps 150 --candidates 2 \
      --placements sticker --loss sigmoid --data gtsrb:train --eval-data gtsrb:test --out $D/$m > $D/$m.log 2>&1
done
