#!/usr/bin/env bash
# Findings measured again on the bundled gtsrb-vit (98.55%): transfer of the ViT's zoo patches (remade on it) and
# of the ResNet's, the layer-by-layer propagation of the ViT's 4.69% bar, and per-sign patches from that bar.
# Run from the repository root with the GTSRB data in $PATCHSCOPE_DATA; about 40 min on 2 CPU cores.
set -euo pipefail
D=docs/runs/vit-current-2026-12-05
P=".venv/bin/patchscope --store $D/runs.db"
[ -f $D/transfer.json ] || $P transfer \
  --patches zoo:gtsrb-vit/stop-yield,zoo:gtsrb-vit/stop-yield-small,zoo:gtsrb-resnet/stop-yield \
  --models gtsrb-vit,gtsrb-cnn,gtsrb-resnet --data gtsrb:test --source stop --target yield --device cpu --json \
  >$D/transfer.json
[ -f $D/explain-bar/explain.json ] || $P explain --model gtsrb-vit --patch zoo:gtsrb-vit/stop-yield-small \
  --data gtsrb:test --source stop --limit 64 --device cpu --out $D/explain-bar --json >/dev/null
# per-sign patches from the ViT's 4.69% bar, with the recipe of docs/runs/per-image-2026-12-02 (about 30 min)
[ -f $D/vit-bar-per-sign/metrics.json ] || $P attack --model gtsrb-vit --data gtsrb:test --source stop --target yield \
  --per-image --loss sigmoid --views 8 --batch-size 2160 --init zoo:gtsrb-vit/stop-yield-small --steps 150 --lr 0.05 \
  --device cpu --out $D/vit-bar-per-sign --json >/dev/null
