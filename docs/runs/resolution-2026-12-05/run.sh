#!/usr/bin/env bash
# Patch strength against resolution on a CPU: the zoo CNN (32 px), the same recipe trained from scratch on the same
# images resized to 64x64, the zoo CNN fine-tuned at 64 px, the zoo ViT (32 px) and the zoo ViT carried to 64 px
# with 8-px tokens, the zoo ResNet (32 px) and the zoo ResNet fine-tuned at 64 px, attacked at equal area fractions
# (2.4%, 4.8%, 9.8%) with the same budget for every model. Run from the repository root with the GTSRB data in
# $PATCHSCOPE_DATA; about 5 h on 2 CPU cores (training 1 h 45 min of it).
# The attack budget is smaller than the zoo patches' (200 steps, batch 64, 2 candidates; per-sign patches on the
# first 64 test Stop images, 50 steps from the universal patch).
set -euo pipefail
D=docs/runs/resolution-2026-12-05
P=".venv/bin/patchscope --store $D/runs.db"
# 1. the zoo CNN's recipe (15 epochs, lr 0.05, EMA 0.999) from scratch at 64 px; its card records the recipe
[ -f $D/models/gtsrb-cnn-64.safetensors ] || $P train --arch cnn --arch-kwargs '{"width": 24}' \
  --data gtsrb:train@64 --eval-data gtsrb:test@64 --epochs 15 --name gtsrb-cnn-64 --out $D/models --device cpu --json
# 2. the zoo CNN fine-tuned at 64 px (2 epochs): a network that keeps the 32-px model's features
[ -f $D/models/gtsrb-cnn-64ft.safetensors ] || $P train --init gtsrb-cnn --data gtsrb:train@64 \
  --eval-data gtsrb:test@64 --epochs 2 --lr 0.01 --ema-decay 0.99 --name gtsrb-cnn-64ft --out $D/models --device cpu --json
# 3. the zoo ViT at 64 px with 8-px tokens (the same 8x8 grid): its weights with the token embedding spread over
#    8x8 (vit_tokens_64.py, exact on pixel-repeated images), then fine-tuned 1 epoch at 64 px
[ -f $D/models/gtsrb-vit-64init.safetensors ] || .venv/bin/python $D/vit_tokens_64.py $D/models/gtsrb-vit-64init.safetensors
[ -f $D/models/gtsrb-vit-64ft.safetensors ] || $P train --init $D/models/gtsrb-vit-64init.safetensors \
  --data gtsrb:train@64 --eval-data gtsrb:test@64 --epochs 1 --lr 0.0001 --ema-decay 0.99 --name gtsrb-vit-64ft \
  --out $D/models --device cpu --json
# 4. the zoo ResNet fine-tuned at 64 px (2 epochs, as the CNN in step 2)
[ -f $D/models/gtsrb-resnet-64ft.safetensors ] || $P train --init gtsrb-resnet --data gtsrb:train@64 \
  --eval-data gtsrb:test@64 --epochs 2 --lr 0.01 --ema-decay 0.99 --name gtsrb-resnet-64ft --out $D/models --device cpu --json
# 5. the study (tools/resolution_study.sh: universal and per-sign patches, their success over the 33-condition
#    grid, explain, transfer; tools/resolution_table.py: resolution.md and resolution.png)
P="$P" PY=.venv/bin/python DEVICE=cpu STEPS=200 BATCH=64 CANDIDATES=2 PER_STEPS=50 PER_LIMIT=64 VIEWS=8 \
  bash tools/resolution_study.sh $D/study gtsrb-cnn $D/models/gtsrb-cnn-64.safetensors \
  $D/models/gtsrb-cnn-64ft.safetensors gtsrb-vit $D/models/gtsrb-vit-64ft.safetensors
#    the ResNets with the same budget, their transfer matrix in a file of its own
P="$P" PY=.venv/bin/python DEVICE=cpu STEPS=200 BATCH=64 CANDIDATES=2 PER_STEPS=50 PER_LIMIT=64 VIEWS=8 \
  TRANSFER=$D/study/transfer-resnet.json bash tools/resolution_study.sh $D/study gtsrb-resnet \
  $D/models/gtsrb-resnet-64ft.safetensors
# 6. the control: a patch of uniform noise with each universal patch's geometry, through explain
.venv/bin/python $D/noise_control.py $D/study | tee $D/study/noise_control.md
