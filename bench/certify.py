"""Certification throughput: PatchCleanser and derandomized smoothing, batched, against a per-mask-pair loop.

    python bench/certify.py --model gtsrb-cnn --images 256 --device cpu --json

The baseline has the shape of PatchCleanser's official code: one forward pass per mask pair on a
batch of 16 images, with a host copy per pair. Both must give identical certification decisions.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from patchscope.data import load_data
from patchscope.defenses import ablation_set, ds_certify, ds_delta, ds_prediction_map, mask_set, pair_masks, pc_certify, pc_prediction_map
from patchscope.models import create_model


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.inference_mode()
def loop_prediction_map(model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """The straightforward version: for each batch of 16 images, one forward pass per mask pair."""
    union, i, j = pair_masks(masks)
    k = len(masks)
    out = torch.empty(len(images), k, k, dtype=torch.long)
    for start in range(0, len(images), batch):
        x = images[start : start + batch]
        for p in range(len(union)):
            pred = model(torch.where(union[p][None, None], torch.tensor(0.5, device=x.device), x)).argmax(1).cpu()
            out[start : start + batch, i[p], j[p]] = pred
            out[start : start + batch, j[p], i[p]] = pred
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gtsrb-cnn")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--data", default="demo", help="images to certify (any --data of patchscope)")
    ap.add_argument("--side", type=int, default=5, help="patch side in pixels")
    ap.add_argument("--k", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-loop", action="store_true")
    ap.add_argument("--bf16", action="store_true", help="also time PatchCleanser under bfloat16 autocast and compare decisions")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    model = create_model(a.model, a.device)
    data = load_data(a.data).head(a.images)
    x, y = data.float_images(a.device), data.labels.to(a.device)
    masks = mask_set(32, a.side, a.k, a.device)
    rows: dict[str, dict[str, float]] = {}

    pc_prediction_map(model, x[:8], masks, a.batch_size)  # warm-up: kernel choice, allocator
    _sync(a.device)
    t = time.perf_counter()
    pm, passes = pc_prediction_map(model, x, masks, a.batch_size)
    cert = pc_certify(pm, y)
    _sync(a.device)
    dt = time.perf_counter() - t
    rows["patchcleanser_batched"] = {"images_per_s": len(x) / dt, "passes_per_image": passes, "certified": float(cert.float().mean())}
    if a.bf16:
        pc_prediction_map(model, x[:8], masks, a.batch_size, bf16=True)
        _sync(a.device)
        t = time.perf_counter()
        pm16, _ = pc_prediction_map(model, x, masks, a.batch_size, bf16=True)
        cert16 = pc_certify(pm16, y)
        _sync(a.device)
        d16 = time.perf_counter() - t
        rows["patchcleanser_batched_bf16"] = {
            "images_per_s": len(x) / d16, "passes_per_image": passes, "certified": float(cert16.float().mean()),
            "identical_decisions": bool(torch.equal(cert16, cert)), "identical_predictions": float((pm16 == pm).float().mean()),
        }
    if not a.skip_loop:
        t = time.perf_counter()
        pm_loop = loop_prediction_map(model, x, masks)
        _sync(a.device)
        dl = time.perf_counter() - t
        same = bool(torch.equal(pc_certify(pm_loop.to(a.device), y), cert))
        rows["patchcleanser_loop16"] = {"images_per_s": len(x) / dl, "passes_per_image": passes, "identical_decisions": same, "speedup": dl / dt}
    for mode, band in (("column", 4), ("block", 12)):
        kept = ablation_set(32, band, mode, a.device)
        _sync(a.device)
        t = time.perf_counter()
        counts, n = ds_prediction_map(model, x, kept, a.batch_size)
        c = ds_certify(counts, y, ds_delta(a.side, band, mode))
        _sync(a.device)
        rows[f"ds_{mode}"] = {"images_per_s": len(x) / (time.perf_counter() - t), "passes_per_image": n, "certified": float(c.float().mean())}
    if a.json:
        print(json.dumps({"model": a.model, "device": a.device, "images": len(x), "side": a.side, "rows": rows}, indent=2))
    else:
        for k, v in rows.items():
            print(f"{k:24s} " + "  ".join(f"{kk} {vv:.3g}" if isinstance(vv, float) else f"{kk} {vv}" for kk, vv in v.items()))


if __name__ == "__main__":
    main()
