"""Place sweep: fixed on-object location, short attacks, scored on train Stop (selection) and test Stop (report)."""

import json
import sys
import time

import torch

from patchscope.attacks import AttackConfig, PatchAttack
from patchscope.attacks.patch import patch_side
from patchscope.data import load_data
from patchscope.eval.patch_metrics import patch_success
from patchscope.models import create_model

torch.set_num_threads(2)
model_name, shape, size, steps, stride = (
    sys.argv[1],
    sys.argv[2],
    float(sys.argv[3]),
    int(sys.argv[4]),
    int(sys.argv[5]),
)
out = sys.argv[6]
model = create_model(model_name)
tr = load_data("gtsrb:train").of_class("stop")
te = load_data("gtsrb:test").of_class("stop")
xtr, ytr, xte, yte = tr.float_images(), tr.labels, te.float_images(), te.labels
g = torch.Generator().manual_seed(1)
sel = torch.randperm(len(xtr), generator=g)[:200]
cfg0 = AttackConfig(size=size, shape=shape, target=13, steps=steps, precision="bf16")
from patchscope.attacks.patch import shape_mask

side = patch_side(size, 32, shape)
m = shape_mask(shape, side)
rows = m.any(1).nonzero()
cols = m.any(0).nonzero()
h = int(rows.max() - rows.min() + 1)
w = int(cols.max() - cols.min() + 1)
print("side", side, "h", h, "w", w, "area", float(m.float().mean()) * side * side / 1024, flush=True)
res = []
for top in range(0, 32 - side + 1, stride):
    for left in range(0, 32 - side + 1, stride):
        t0 = time.time()
        cfg = AttackConfig(**{**cfg0.as_dict(), "location": (top, left), "ranges": cfg0.ranges})
        p = PatchAttack(model, cfg, progress=False)(xtr, ytr)
        s_tr = patch_success(model, xtr[sel], ytr[sel], p, 13).targeted_success
        s_te = patch_success(model, xte, yte, p, 13).targeted_success
        res.append({"top": top, "left": left, "train": s_tr, "test": s_te, "s": time.time() - t0})
        print(res[-1], flush=True)
        json.dump(res, open(out, "w"), indent=1)
