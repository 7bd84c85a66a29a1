"""Learn a patch's *shape* under a pixel budget, on-object, with the attack's own EOT and loss.

A box of BOX x BOX pixels at (TOP, LEFT) on the sign holds patch pixels and a mask logit per pixel. Each step
the forward pass uses the hard mask (the PIXELS largest logits, so the area is always exactly the budget) and
the backward pass the sigmoid of the logits (straight-through). The camera, light and loss are those of
`patchscope attack` (`ViewRanges()`, `--loss sigmoid`). Writes mask.png (BOX x BOX, white = patch) for
`patchscope attack --shape mask.png`, and mask.json. ``--smooth SIGMA`` blurs the logits before both, so
the mask grows in blobs rather than scattered pixels (a sticker one could cut out).

    python learn_mask.py --model gtsrb-cnn --pixels 98 --out cnn-98
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from kornia.filters import gaussian_blur2d
from PIL import Image

from patchscope.attacks.eot import ViewRanges, sample_view, view
from patchscope.attacks.losses import attack_loss
from patchscope.data import load_data
from patchscope.models import create_model


def components(mask: torch.Tensor) -> int:
    """Number of 4-connected blobs in a binary mask."""
    seen, count = torch.zeros_like(mask, dtype=torch.bool), 0
    for r, c in mask.nonzero().tolist():
        if seen[r, c]:
            continue
        count, stack = count + 1, [(r, c)]
        while stack:
            i, j = stack.pop()
            if 0 <= i < mask.shape[0] and 0 <= j < mask.shape[1] and mask[i, j] and not seen[i, j]:
                seen[i, j] = True
                stack += [(i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)]
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gtsrb-cnn")
    ap.add_argument("--box", type=int, default=20)
    ap.add_argument("--top", type=int, default=6)
    ap.add_argument("--left", type=int, default=6)
    ap.add_argument("--pixels", type=int, default=98)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smooth", type=float, default=0.0, help="Gaussian sigma (px) on the logits; 0 = off")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    data = load_data("gtsrb:train")
    stop = data.of_class("stop")
    x_all, source, target = stop.images.float().div(255), 14, 13
    model = create_model(a.model).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(a.seed)
    b, t, l = a.box, a.top, a.left
    pix = torch.rand(3, b, b, generator=g).requires_grad_()
    logit = (0.01 * torch.randn(b, b, generator=g)).requires_grad_()
    opt = torch.optim.Adam([{"params": [pix], "lr": 0.1}, {"params": [logit], "lr": 0.05}])
    ranges = ViewRanges()

    def field(z: torch.Tensor) -> torch.Tensor:
        if not a.smooth:
            return z
        k = 2 * round(2 * a.smooth) + 1
        return gaussian_blur2d(z[None, None], (k, k), (a.smooth, a.smooth), border_type="replicate")[0, 0] * 10

    def hard(z: torch.Tensor) -> torch.Tensor:
        m = torch.zeros(b * b)
        m[z.flatten().topk(a.pixels).indices] = 1.0
        return m.view(b, b)

    def render(x: torch.Tensor, m: torch.Tensor, views) -> torch.Tensor:
        out = x.clone()
        out[:, :, t : t + b, l : l + b] = x[:, :, t : t + b, l : l + b] * (1 - m) + pix * m
        return view(out, views)

    history = []
    for step in range(a.steps):
        idx = torch.randint(len(x_all), (a.batch_size,), generator=g)
        views = sample_view(a.batch_size, ranges, 32, b, "on-object", (t, l), g)
        z = field(logit)
        soft = torch.sigmoid(z)
        m = hard(z.detach()) + soft - soft.detach()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(render(x_all[idx], m, views)).float()
        loss = attack_loss(logits, torch.full((a.batch_size,), source), target, "sigmoid").mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            pix.clamp_(0, 1)
        if step % 20 == 0 or step == a.steps - 1:
            rate = float((logits.argmax(1) == target).float().mean())
            history.append({"step": step, "loss": float(loss), "batch_success": rate})
            print(f"step {step} loss {float(loss):.3f} success {rate:.3f}", flush=True)
    mask = hard(field(logit).detach())
    with torch.no_grad():  # the learned pixels with the final hard mask, 8 views of each training Stop image
        hits = 0
        for _ in range(8):
            views = sample_view(len(x_all), ranges, 32, b, "on-object", (t, l), g)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                hits += int((model(render(x_all, mask, views)).argmax(1) == target).sum())
    a.out.mkdir(parents=True, exist_ok=True)
    Image.fromarray((mask * 255).byte().numpy(), mode="L").save(a.out / "mask.png")
    rows, cols = mask.nonzero().unbind(1)
    summary = {
        "model": a.model,
        "box": b,
        "top": t,
        "left": l,
        "pixels": a.pixels,
        "area": a.pixels / 1024,
        "steps": a.steps,
        "batch_size": a.batch_size,
        "seed": a.seed,
        "smooth": a.smooth,
        "components": components(mask),
        "train_success_8_views": hits / (8 * len(x_all)),
        "bounding_box": [int(rows.min()) + t, int(cols.min()) + l, int(rows.max()) + t, int(cols.max()) + l],
        "history": history,
    }
    (a.out / "mask.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}))


if __name__ == "__main__":
    main()
