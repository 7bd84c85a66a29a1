#!/usr/bin/env bash
# ViT at <= 5%: a 4x12 bar (4.69%, 3 tokens) on the 4-px token grid against the same bar 2 px off it.
cd "$(dirname "$0")/../../.."; mkdir -p runs/vitalign
M=${M:-gtsrb-vit}
run() {  # name shape location
  out=runs/vitalign/$1
  [ -f $out/metrics.json ] && return
  OMP_NUM_THREADS=${T:-1} .venv/bin/patchscope attack --model $M --data gtsrb:train --source stop --target yield --size 0.047 --shape $2 \
    --loss sigmoid --batch-size 64 --seed 0 --location $3 --restarts 2 --out $out > $out.log 2>&1
  python3 -c "import json;m=json.load(open('$out/metrics.json'));print('$1', m['seconds'], m['location'], m['patch_side'], round(m['patch_area'],4), 'train', round(m['train_targeted_success'],4))"
}
run v-aligned-12-12 rect:1:3 12,12     # columns 16-19, rows 12-23: three whole tokens
run v-off-10-10 rect:1:3 10,10         # columns 14-17, rows 10-21: the same bar across six tokens
run h-aligned-12-8 rect:3:1 12,8       # rows 16-19, columns 8-19
run h-off-10-10 rect:3:1 10,10         # rows 14-17, columns 10-21
