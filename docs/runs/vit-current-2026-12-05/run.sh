#!/usr/bin/env bash
# The ViT-dependent rows of findings (b) and (d) measured on the bundled gtsrb-vit (98.55%): transfer of the ViT's
# zoo patches (remade on it) and of the ResNet's, and the layer-by-layer propagation of the ViT's 4.69% bar.
# Run from the repository root with the GTSRB data in $PATCHSCOPE_DATA; a few minutes on 2 CPU cores.
set -euo pipefail
D=docs/runs/vit-current-2026-12-05
P=".venv/bin/patchscope --store $D/runs.db"
$P transfer --patches zoo:gtsrb-vit/stop-yield,zoo:gtsrb-vit/stop-yield-small,zoo:gtsrb-resnet/stop-yield \
  --models gtsrb-vit,gtsrb-cnn,gtsrb-resnet --data gtsrb:test --source stop --target yield --device cpu --json \
  >$D/transfer.json
$P explain --model gtsrb-vit --patch zoo:gtsrb-vit/stop-yield-small --data gtsrb:test --source stop --limit 64 \
  --device cpu --out $D/explain-bar --json >/dev/null
