#!/usr/bin/env bash
# Build the patch zoo: pre-optimised patches for the zoo models, loadable as --patch zoo:MODEL/NAME.
#   PATCHSCOPE_DATA=... bash tools/make_patch_zoo.sh [MODELS] [STEPS]
# MODELS: comma-separated zoo names, or NAME=CHECKPOINT to make NAME's patches on a checkpoint.
# Env: PS (the patchscope command), DEVICE (cpu|cuda), ZOO_DIR (default patchscope/attacks/zoo),
# PATCHES (a comma-separated subset of stop-yield,stop-speed60,stop-untargeted).
# Patches are made on gtsrb:train Stop images and measured on gtsrb:test (evaluate.json beside each).
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=${1:-gtsrb-cnn,gtsrb-resnet,gtsrb-vit}
STEPS=${2:-300}
PS=${PS:-.venv/bin/patchscope}
DEVICE=${DEVICE:-cpu}
ZOO_DIR=${ZOO_DIR:-patchscope/attacks/zoo}
PATCHES=${PATCHES:-stop-yield,stop-speed60,stop-untargeted}
PY=${PY:-python3}
for entry in ${MODELS//,/ }; do
  model=${entry%%=*}; spec=${entry#*=}
  for item in "stop-yield:yield" "stop-speed60:speed limit (60km/h)" "stop-untargeted:"; do
    name=${item%%:*}; target=${item#*:}
    [[ ",$PATCHES," == *",$name,"* ]] || continue
    dir=$ZOO_DIR/$model/$name
    $PS attack --model "$spec" --data gtsrb:train --source stop --target "$target" --size 0.1 --placement on-object \
      --steps "$STEPS" --batch-size 64 --seed 0 --device "$DEVICE" --out "$dir" >/dev/null
    $PS evaluate --patch "$dir" --models "$spec" --data gtsrb:test --source stop ${target:+--target "$target"} --device "$DEVICE" --json > "$dir/evaluate.json"
    rm -f "$dir/checkpoint.pt"
    echo "$model/$name: $($PY -c "import json,sys; m=json.load(open(sys.argv[1]))['models'][sys.argv[2]]; print({k: m[k] for k in ('targeted_success','untargeted_success','patch_area')})" "$dir/evaluate.json" "$spec")"
  done
done
