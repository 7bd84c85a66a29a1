"""How much of the per-sign drop is the lighting model's: the same measurement with three lighting models for
`zoo:gtsrb-cnn/stop-yield` on the 270 test Stop images x 33 views: gain and offset (the one evaluate uses), gain
only (brightness per channel, m / m0, no offset, contrast kept), and the gain and offset clamped to a mild range."""

import os
import sys

import torch

from patchscope.attacks import load_patch
from patchscope.data import data_for
from patchscope.eval import DEFAULT_GRID, estimate_lighting, lighting_reference, patch_success
from patchscope.eval.lighting import SignLighting, sign_region
from patchscope.models import create_model

root = os.environ.get("DATA_ROOT", os.environ.get("PATCHSCOPE_DATA", "../../../.data"))
model, patch = create_model("gtsrb-cnn", "cpu"), load_patch("zoo:gtsrb-cnn/stop-yield")
test = data_for("gtsrb:test", model, root).of_class("stop").load()
train = data_for("gtsrb:train", model, root).of_class("stop").load()
x, y = test.float_images(), test.labels
ref = lighting_reference(train.float_images())
affine = estimate_lighting(x, ref)
mean = x[:, :, sign_region(32)].mean(-1)
models = {
    "own colours": None,
    "gain and offset": affine,
    "gain only (m / m0)": SignLighting(mean / ref.mean, torch.zeros_like(mean)),
    "gain in 0.7..1.3, offset in -0.1..0.1": SignLighting(affine.gain.clamp(0.7, 1.3), affine.offset.clamp(-0.1, 0.1)),
}
print("| lighting model | targeted, 33 views | as is |", file=sys.stdout)
print("|---|---|---|")
for name, lit in models.items():
    r = patch_success(model, x, y, patch, 13, DEFAULT_GRID, lighting=lit)
    print(f"| {name} | {r.targeted_success:.1%} | {r.conditions[0]['targeted_success']:.1%} |")
