"""RP2-style mask search (Eykholt et al. 2018): learn *where* on the sign a patch's pixels go, then keep the
best cells. A soft mask (one logit per CELL x CELL block of the 32x32 sign) and full-sign pixels are optimised
together through the on-object camera EOT with the sigmoid loss, under a Lagrangian area penalty that drives
the mask's mean to AREA; the AREA * 1024 / CELL^2 cells with the largest mask values are written as a PNG for
`patchscope attack --shape MASK.png`.

With MODE "ste" the forward pass uses the hard top-k mask itself (straight-through gradients to the
logits), so the pixels are optimised for the binary mask that is kept; the probe then scores the patch it
made on the 270 test Stop images over the default grid.

usage: learn_mask.py MODEL AREA CELL STEPS OUT.png [BATCH] [SEED] [MODE: soft | ste]
"""
import json, sys, time
import torch
from PIL import Image
from patchscope.attacks.eot import ViewRanges, sample_view, view
from patchscope.attacks.losses import attack_loss
from patchscope.attacks.patch import Patch
from patchscope.attacks.scoring import classify
from patchscope.data import load_data
from patchscope.eval.patch_metrics import patch_success
from patchscope.models import create_model
from patchscope.models.fold import fold_batchnorm

torch.set_num_threads(2)
name, area, cell, steps, out = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
bs = int(sys.argv[6]) if len(sys.argv) > 6 else 256
seed = int(sys.argv[7]) if len(sys.argv) > 7 else 0
mode = sys.argv[8] if len(sys.argv) > 8 else "soft"
model = fold_batchnorm(create_model(name)).eval()
for p in model.parameters():
    p.requires_grad_(False)
tr = load_data("gtsrb:train").of_class("stop")
x_all, y_all = tr.float_images(), tr.labels
g = torch.Generator().manual_seed(seed)
n = 32 // cell
k = max(1, round(area * 1024 / cell**2))  # cells kept
logit = torch.zeros(n, n, requires_grad=True)
pix = torch.rand(3, 32, 32, generator=g).requires_grad_()
opt = torch.optim.Adam([{"params": [pix], "lr": 0.1}, {"params": [logit], "lr": 0.05}])
lam, t0 = 0.1, time.time()
for step in range(steps):
    idx = torch.randint(len(x_all), (bs,), generator=g)
    views = sample_view(bs, ViewRanges(), 32, 32, "on-object", (0, 0), g)
    soft = torch.sigmoid(logit)
    if mode == "ste":  # forward: the k best cells; backward: as if soft
        hard = torch.zeros_like(soft).flatten()
        hard[soft.flatten().topk(k).indices] = 1
        soft = hard.view_as(soft) + soft - soft.detach()
    m = soft.repeat_interleave(cell, 0).repeat_interleave(cell, 1)
    x = x_all[idx] * (1 - m) + pix * m
    logits = classify(model, view(x, views), "fp32")
    fool = attack_loss(logits, y_all[idx], 13, "sigmoid", 0.0).mean()
    loss = fool + (lam * m.mean() if mode == "soft" else 0)
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        pix.clamp_(0, 1)
        lam *= 1.03 if m.mean() > area else 1 / 1.03  # dual ascent on the area budget
    if step % 50 == 0 or step == steps - 1:
        win = (logits.argmax(1) == 13).float().mean()
        print(f"step {step} fool {fool.item():.3f} win {win.item():.3f} area {m.mean().item():.3f} lam {lam:.3f} {time.time() - t0:.0f}s", flush=True)
keep = torch.zeros(n * n)
keep[torch.sigmoid(logit).flatten().topk(k).indices] = 1
mask = keep.view(n, n).repeat_interleave(cell, 0).repeat_interleave(cell, 1)
Image.fromarray((mask.numpy() * 255).astype("uint8"), "L").save(out)
te = load_data("gtsrb:test").of_class("stop")
res = patch_success(model, te.float_images(), te.labels, Patch(pix.detach().clamp(0, 1), mask, "on-object", (0, 0), 32), 13)
print("test", res.targeted_success, flush=True)
json.dump({"test_targeted": res.targeted_success, "mode": mode, "model": name, "area": area, "cell": cell, "steps": steps, "batch": bs, "seed": seed, "cells": k, "fill": float(mask.mean()), "seconds": round(time.time() - t0, 1)}, open(out + ".json", "w"))
print("fill", float(mask.mean()), "pixels", int(mask.sum()))
print("\n".join("".join("#" if v else "." for v in row) for row in mask[::cell, ::cell].int().tolist()))
