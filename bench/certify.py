"""Certification throughput: PatchCleanser and derandomized smoothing, batched, against a per-mask-pair loop.

    python bench/certify.py --model gtsrb-cnn --images 256 --device cpu --json
    python bench/certify.py --model tv:resnet50:random --data random --images 32 --patch-area 0.02 \
        --batch-size 512 --device cuda

``--data random`` certifies uniform random images labelled with the model's own clean predictions (for
models with random weights at any size: the timing of the full map does not depend on the pixels; the
decision map's does, so its rows there say little about a trained model). ``--project N`` adds the time
the full map and the decision map would take for N images at the measured rate (ImageNet's validation
set: 50,000). The per-pair loop runs on the first ``--loop-images`` images only (it is slow) and its
speed-up is against the full map's rate.

The baseline has the shape of PatchCleanser's official code: one forward pass per mask pair on a
batch of 16 images, with a host copy per pair. The decision map (`pc_decision_map`) evaluates only the
entries a decision reads. Every variant must give identical certification (and robust-inference) decisions.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from patchscope.data import load_data
from patchscope.defenses import (
    ablation_set,
    ds_certify,
    ds_delta,
    ds_prediction_map,
    mask_set,
    pair_masks,
    pc_certify,
    pc_decision_map,
    pc_infer,
    pc_prediction_map,
)
from patchscope.models import create_model


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.inference_mode()
def loop_prediction_map(
    model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor, batch: int = 16
) -> torch.Tensor:
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


class Variant(torch.nn.Module):
    """``model`` run another way: channels-last input, autocast to ``dtype`` (None: none), or both (fp32 logits out)."""

    def __init__(self, model: torch.nn.Module, channels_last: bool, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.model, self.channels_last, self.dtype = model, channels_last, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, self.dtype or torch.float16, enabled=self.dtype is not None):
            return self.model(x).float()


class Rows(dict):
    """The result rows; in text mode each row is printed as soon as it is measured (a run cut short keeps them)."""

    def __init__(self, echo: bool) -> None:
        super().__init__()
        self.echo = echo

    def __setitem__(self, key: str, value: dict) -> None:
        super().__setitem__(key, value)
        if self.echo:
            print(
                f"{key:34s} "
                + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items()),
                flush=True,
            )


def variant_rows(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    masks: torch.Tensor,
    batch: int,
    device: str,
    pm: torch.Tensor,
    cert: torch.Tensor,
    rows: dict[str, dict[str, float]],
) -> None:
    """Other ways to run the same prediction map, each against the fp32 batched one, into ``rows``: speed and
    whether every certification decision (and how many of the predictions) stay the same."""
    if device.startswith("cuda"):
        model = model.to(memory_format=torch.channels_last)  # weights too (no effect on a contiguous input)
    variants = {
        "fp32_channels_last": Variant(model, True, None),
        "fp16_autocast": Variant(model, True, torch.float16),
        "fp32_compiled": torch.compile(model, dynamic=False),
        "fp16_compiled": torch.compile(Variant(model, True, torch.float16), dynamic=False),
    }
    for name, m in variants.items():
        try:
            t0 = time.perf_counter()
            pc_prediction_map(
                m, x[: batch // len(pair_masks(masks)[0]) + 1], masks, batch
            )  # warm-up and compile, full and last-chunk shapes
            warm = time.perf_counter() - t0
            _sync(device)
            t = time.perf_counter()
            pmv, _ = pc_prediction_map(m, x, masks, batch)
            cv = pc_certify(pmv, y)
            _sync(device)
            dt = time.perf_counter() - t
            rows[f"patchcleanser_{name}"] = {
                "images_per_s": len(x) / dt,
                "certified": float(cv.float().mean()),
                "identical_decisions": bool(torch.equal(cv, cert)),
                "identical_predictions": float((pmv == pm).float().mean()),
                "warmup_s": warm,
            }
        except Exception as e:  # noqa: BLE001  a variant that cannot run here is reported, the others go on
            rows[f"patchcleanser_{name}"] = {"error": f"{e.__class__.__name__}: {str(e)[:200]}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gtsrb-cnn")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--data", default="demo", help="images to certify (any --data of patchscope)")
    ap.add_argument("--side", type=int, default=5, help="patch side in pixels")
    ap.add_argument(
        "--patch-area", type=float, default=None, help="patch area as a fraction of the image (overrides --side)"
    )
    ap.add_argument("--loop-images", type=int, default=256, help="images for the per-pair loop baseline")
    ap.add_argument("--project", type=int, default=0, help="also project the time to certify this many images")
    ap.add_argument("--no-ds", action="store_true", help="skip derandomized smoothing")
    ap.add_argument("--k", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-loop", action="store_true")
    ap.add_argument(
        "--bf16",
        action="store_true",
        help="also time PatchCleanser under bfloat16 autocast (near-ties redone in fp32, and unchecked) "
        "and compare decisions",
    )
    ap.add_argument(
        "--variants",
        action="store_true",
        help="also time channels-last, float16 and torch.compile versions and compare decisions",
    )
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    model = create_model(a.model, a.device)
    size = int(model.input_size)
    if a.data == "random":
        x = torch.rand(a.images, 3, size, size, generator=torch.Generator().manual_seed(0)).to(a.device)
        with torch.inference_mode():
            y = torch.cat([model(c).argmax(1) for c in x.split(64)])
    else:
        data = load_data(a.data).head(a.images)
        x, y = data.float_images(a.device), data.labels.to(a.device)
    side = max(1, round(size * a.patch_area**0.5)) if a.patch_area else a.side
    masks = mask_set(size, side, a.k, a.device)
    rows = Rows(echo=not a.json)

    pc_prediction_map(model, x[:8], masks, a.batch_size)  # warm-up: kernel choice, allocator
    _sync(a.device)
    t = time.perf_counter()
    pm, passes = pc_prediction_map(model, x, masks, a.batch_size)
    cert = pc_certify(pm, y)
    _sync(a.device)
    dt = time.perf_counter() - t
    rows["patchcleanser_batched"] = {
        "images_per_s": len(x) / dt,
        "passes_per_image": passes,
        "certified": float(cert.float().mean()),
    }
    robust = pc_infer(pm, len(model.classes))
    for bf16 in (False, True) if a.bf16 else (False,):
        tag = "_bf16" if bf16 else ""
        pc_decision_map(model, x[:8], y[:8], masks, a.batch_size, bf16=bf16)
        _sync(a.device)
        t = time.perf_counter()
        dm, total = pc_decision_map(model, x, y, masks, a.batch_size, bf16=bf16, num_classes=len(model.classes))
        cd, rd = pc_certify(dm, y), pc_infer(dm, len(model.classes))
        _sync(a.device)
        dd = time.perf_counter() - t
        rows[f"patchcleanser_decision_map{tag}"] = {
            "images_per_s": len(x) / dd,
            "passes_per_image": total / len(x),
            "certified": float(cd.float().mean()),
            "identical_decisions": bool(torch.equal(cd, cert) and torch.equal(rd, robust)),
            "speedup_vs_full_map": dt / dd,
        }
        if not bf16:
            continue
        for name, m, check in (
            ("batched_bf16", model, True),
            ("batched_bf16_unchecked", Variant(model, True, torch.bfloat16), False),
        ):
            pc_prediction_map(m, x[:8], masks, a.batch_size, bf16=check)
            _sync(a.device)
            t = time.perf_counter()
            pm16, _ = pc_prediction_map(m, x, masks, a.batch_size, bf16=check)
            cert16 = pc_certify(pm16, y)
            _sync(a.device)
            d16 = time.perf_counter() - t
            rows[f"patchcleanser_{name}"] = {
                "images_per_s": len(x) / d16,
                "passes_per_image": passes,
                "certified": float(cert16.float().mean()),
                "identical_decisions": bool(
                    torch.equal(cert16, cert) and torch.equal(pc_infer(pm16, len(model.classes)), robust)
                ),
                "identical_predictions": float((pm16 == pm).float().mean()),
            }
    if a.variants:
        variant_rows(model, x, y, masks, a.batch_size, a.device, pm, cert, rows)
    if not a.skip_loop:
        n = min(a.loop_images, len(x))
        loop_prediction_map(model, x[:2], masks[:2])  # warm-up
        _sync(a.device)
        t = time.perf_counter()
        pm_loop = loop_prediction_map(model, x[:n], masks)
        _sync(a.device)
        dl = time.perf_counter() - t
        same = bool(torch.equal(pc_certify(pm_loop.to(a.device), y[:n]), cert[:n]))
        rows["patchcleanser_loop16"] = {
            "images": n,
            "images_per_s": n / dl,
            "passes_per_image": passes,
            "identical_decisions": same,
            "speedup": (len(x) / dt) / (n / dl),
        }
    if a.project:
        for key in [k for k in rows if k.startswith("patchcleanser") and "images_per_s" in rows[k]]:
            rows[key]["projected_hours"] = a.project / rows[key]["images_per_s"] / 3600
    for mode, band in () if a.no_ds else (("column", 4), ("block", 12)):
        kept = ablation_set(size, band, mode, a.device)
        _sync(a.device)
        t = time.perf_counter()
        counts, n = ds_prediction_map(model, x, kept, a.batch_size)
        c = ds_certify(counts, y, ds_delta(side, band, mode))
        _sync(a.device)
        rows[f"ds_{mode}"] = {
            "images_per_s": len(x) / (time.perf_counter() - t),
            "passes_per_image": n,
            "certified": float(c.float().mean()),
        }
    if a.json:
        gpu = torch.cuda.get_device_name() if a.device.startswith("cuda") else None
        print(
            json.dumps(
                {
                    "model": a.model,
                    "device": a.device,
                    "gpu": gpu,
                    "image_size": size,
                    "images": len(x),
                    "side": side,
                    "k": a.k,
                    "masks": len(masks),
                    "rows": rows,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
