#!/usr/bin/env bash
# Per-image patches on the 270 test Stop images (each patch made on, and measured on, its own image over the
# default 33-condition grid): the strongest attacker this project has, against the best universal patches.
set -euo pipefail
D=docs/runs/per-image-2026-12-02
L=docs/runs/loss-2026-11-29
ps() { .venv/bin/patchscope attack --data gtsrb:test --source stop --target yield --per-image --loss sigmoid --views 8 --batch-size 2160 "$@"; }
# 1. from random starts: the CNN's 7x14 bar (9.57%) at the universal bar's place (9,9), 300 steps, lr 0.3
[ -f $D/cnn-bar/metrics.json ] || ps --model gtsrb-cnn --shape rect:1:2 --size 0.0957 --location 9,9 --candidates 1 --steps 300 --out $D/cnn-bar > $D/cnn-bar.log 2>&1
# 2. from the best universal patches (same shape, size and place), refined per image at a lower learning rate
ps --model gtsrb-cnn --init $L/cnn-rect-1-2-sigmoid-bs256 --steps 200 --lr 0.05 --out $D/cnn-bar-init > $D/cnn-bar-init.log 2>&1
ps --model gtsrb-resnet --init $L/resnet-square-sigmoid-bs256 --steps 150 --lr 0.05 --out $D/resnet-sq10-init > $D/resnet-sq10-init.log 2>&1
ps --model gtsrb-cnn --init $L/cnn-square5-sigmoid-bs256 --steps 200 --lr 0.1 --out $D/cnn-sq7-init > $D/cnn-sq7-init.log 2>&1
# 3. the ViT's 4.7% bar on its token grid (54.5% universal), refined per image (2026-12-03)
ps --model gtsrb-vit --init zoo:gtsrb-vit/stop-yield-small --steps 150 --lr 0.05 --out $D/vit-bar-small-init > $D/vit-bar-small-init.log 2>&1
# 4. the same without EOT (a still picture), and the image-by-image comparison
.venv/bin/python $D/still.py $D/vit-still > $D/vit-still.log 2>&1
.venv/bin/python $D/analyse.py gtsrb-cnn $L/cnn-rect-1-2-sigmoid-bs256 $D/cnn-bar $D/cnn-bar-init > $D/analyse-cnn-bar.txt
.venv/bin/python $D/analyse.py gtsrb-resnet $L/resnet-square-sigmoid-bs256 $D/resnet-sq10-init > $D/analyse-resnet.txt
.venv/bin/python $D/analyse.py gtsrb-cnn $L/cnn-square5-sigmoid-bs256 $D/cnn-sq7-init > $D/analyse-cnn-sq7.txt
.venv/bin/python $D/analyse.py gtsrb-vit zoo:gtsrb-vit/stop-yield-small $D/vit-bar-small-init > $D/analyse-vit-small.txt
