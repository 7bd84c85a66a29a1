#!/usr/bin/env bash
# The CNN's bars at <= 5% of the image (two starts per candidate place), judged by training success only.
cd "$(dirname "$0")/../../.."
mkdir -p runs/cnn-bar5
for spec in "rect:1:2 0.049" "rect:1:3 0.047"; do
  set -- $spec; out=runs/cnn-bar5/${1//:/-}-$2
  OMP_NUM_THREADS=1 .venv/bin/patchscope attack --model gtsrb-cnn --data gtsrb:train --source stop --target yield --size $2 \
    --shape $1 --loss sigmoid --batch-size 256 --precision bf16 --seed 0 --restarts 2 --out $out
done
