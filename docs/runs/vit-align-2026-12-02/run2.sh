#!/usr/bin/env bash
# Two more upright pairs: on the grid, and the same bar moved 2 px (down and right) off it.
cd "$(dirname "$0")/../../.."; mkdir -p runs/vitalign
M=gtsrb-vit
run() {
  out=runs/vitalign/$1
  [ -f $out/metrics.json ] && return
  OMP_NUM_THREADS=1 .venv/bin/patchscope attack --model $M --data gtsrb:train --source stop --target yield --size 0.047 --shape $2 \
    --loss sigmoid --batch-size 64 --seed 0 --location $3 --restarts 2 --out $out > $out.log 2>&1
  python3 -c "import json;m=json.load(open('$out/metrics.json'));print('$1', m['seconds'], m['location'], round(m['train_targeted_success'],4))"
}
case $1 in
  a) run v-aligned-8-12 rect:1:3 8,12; run v-off-10-14 rect:1:3 10,14 ;;
  b) run v-aligned-12-8 rect:1:3 12,8; run v-off-14-10 rect:1:3 14,10 ;;
esac
