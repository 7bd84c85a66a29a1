#!/usr/bin/env bash
# 1-px refinement around the CLI's chosen place (9, 9) for the CNN's 7x14 bar; chosen by training success only.
cd "$(dirname "$0")/../../.."
mkdir -p runs/place1
for loc in 8,8 8,9 8,10 9,8 9,10 10,8 10,9 10,10; do
  out=runs/place1/r${loc/,/-}
  [ -f $out/metrics.json ] && continue
  OMP_NUM_THREADS=1 .venv/bin/patchscope attack --model gtsrb-cnn --data gtsrb:train --source stop --target yield --size 0.1 \
    --shape rect:1:2 --loss sigmoid --batch-size 256 --precision bf16 --seed 0 --location $loc --out $out > $out.log 2>&1
  python3 -c "import json;m=json.load(open('$out/metrics.json'));print('$loc', m['seconds'], m['location'], round(m['train_targeted_success'],4))"
done
