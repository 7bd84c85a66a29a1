#!/usr/bin/env bash
# Does the zoo recipe's occlusion augmentation (two grey squares of 6-13 px at p 0.5) explain why 10% patches
# fall short of 95% on gtsrb-cnn? The same recipe without it (`--augment occlude_p=0`), then the CNN's best
# attacks on it, measured as before: 270 test Stop images x the 33 default viewing conditions.
set -euo pipefail
D=docs/runs/occlusion-2026-12-03
M=.dev/noocc/gtsrb-cnn-noocc.safetensors
P=.venv/bin/patchscope
# 1. the model (2 CPU threads, bf16 autocast; not bundled: the card is copied here)
[ -f $M ] || $P train --arch cnn --arch-kwargs '{"width": 24}' --epochs 15 --augment occlude_p=0 --precision bf16 \
    --name gtsrb-cnn-noocc --out .dev/noocc --eval-data gtsrb:test --threads 2 > .dev/noocc/train.log 2>&1
cp .dev/noocc/gtsrb-cnn-noocc.json $D/card.json
# 2. the recipes of docs/runs/loss-2026-11-29 (sigmoid loss, batch 256, bf16, 300 steps, 5 candidate places, seed 0)
atk() { out=$D/$1; shift; [ -f $out/evaluate.json ] && return
  $P attack --model $M --data gtsrb:train --source stop --target yield --placement on-object --loss sigmoid \
     --batch-size 256 --precision bf16 --steps 300 --seed 0 --out $out "$@" > $out.log 2>&1
  $P evaluate --patch $out --models $M --data gtsrb:test --source stop --target yield --json > $out/evaluate.json; }
atk bar-10 --size 0.1 --shape rect:1:2
atk square-10 --size 0.1
atk square-5 --size 0.05
atk bar-5 --size 0.05 --shape rect:1:2
# 3. the area curve, the command of docs/runs/curve-2026-11-29-cnn-sigmoid
[ -f $D/curve/curve.json ] || $P curve --model $M --sizes 0.02,0.03,0.04,0.06,0.08,0.1,0.12 --steps 150 --candidates 2 \
    --placements on-object --loss sigmoid --data gtsrb:train --eval-data gtsrb:test --out $D/curve > $D/curve.log 2>&1
