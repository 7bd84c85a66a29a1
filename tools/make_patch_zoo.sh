#!/usr/bin/env bash
# Build the patch zoo: pre-optimised patches for the zoo models, loadable as --patch zoo:MODEL/NAME.
#   PATCHSCOPE_DATA=... bash tools/make_patch_zoo.sh [MODELS] [STEPS]
# Patches are made on gtsrb:train Stop images and measured on gtsrb:test (evaluate.json beside each).
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=${1:-gtsrb-cnn,gtsrb-resnet,gtsrb-vit}
STEPS=${2:-300}
PS=${PS:-.venv/bin/patchscope}
for model in ${MODELS//,/ }; do
  for spec in "stop-yield:yield" "stop-speed60:speed limit (60km/h)" "stop-untargeted:"; do
    name=${spec%%:*}; target=${spec#*:}
    dir=patchscope/attacks/zoo/$model/$name
    targs=(--target "$target"); [ -z "$target" ] && targs=(--target "")
    $PS attack --model "$model" --data gtsrb:train --source stop "${targs[@]}" --size 0.1 --placement on-object \
      --steps "$STEPS" --batch-size 64 --seed 0 --out "$dir" >/dev/null
    $PS evaluate --patch "$dir" --models "$model" --data gtsrb:test --source stop ${target:+--target "$target"} --json > "$dir/evaluate.json"
    rm -f "$dir/checkpoint.pt"
    echo "$model/$name: $(python3 -c "import json,sys; m=json.load(open('$dir/evaluate.json'))['models']['$model']; print({k: m[k] for k in ('targeted_success','untargeted_success','patch_area')})")"
  done
done
