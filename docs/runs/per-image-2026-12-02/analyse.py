"""Which test Stop images resist: each universal patch against its per-image refinement, image by image.

    .venv/bin/python docs/runs/per-image-2026-12-02/analyse.py gtsrb-cnn docs/runs/loss-2026-11-29/cnn-rect-1-2-sigmoid-bs256 docs/runs/per-image-2026-12-02/cnn-bar-init

Prints, for each patch, the mean targeted success over the default 33-condition grid, the share of images won
in every condition and in none, its three worst viewing conditions, and the mean of the per-image best of all patches given (what an attacker who
kept whichever patch did better on each image would reach).
"""

from __future__ import annotations

import sys

import torch

from patchscope.attacks import load_patch
from patchscope.data import load_data
from patchscope.eval import DEFAULT_GRID, condition_label, patch_success
from patchscope.models import create_model

model_name, *folders = sys.argv[1:]
model = create_model(model_name)
stop = load_data("gtsrb:test").of_class(14)
x, y = stop.float_images(), stop.labels
rates = []
for f in folders:
    patch = load_patch(f, per_image=True)
    out = patch_success(model, x, y, patch, 13, DEFAULT_GRID, by_image=True)
    r = torch.tensor(out.image_success)
    rates.append(r)
    print(
        f"{f}: mean {r.mean():.1%}, won in all 33 conditions {(r == 1).float().mean():.1%}, in none {(r == 0).float().mean():.1%}"
    )
    still = next(c for c in out.conditions if condition_label(c) == "no change")
    print(f"  seen as it is (no change): {still['targeted_success']:.1%}")
    worst = sorted(out.conditions, key=lambda c: c["targeted_success"])[:3]
    print("  worst conditions: " + "; ".join(f"{condition_label(c)} {c['targeted_success']:.1%}" for c in worst))
best = torch.stack(rates).amax(0)
print(
    f"best of the {len(folders)} per image: mean {best.mean():.1%}, won in all {(best == 1).float().mean():.1%}, in none {(best == 0).float().mean():.1%}"
)
