"""Time per step of the universal patch attack with full EOT against the model's bare forward+backward.

    python bench/attack_step.py --models gtsrb-cnn,gtsrb-resnet,gtsrb-vit --batch-size 256 --device cpu --json

The floor is one forward and backward pass of the same model on the same batch (input gradients,
frozen weights): everything the attack adds on top (sampling views, warping and pasting the patch,
blur, noise, bookkeeping) shows as the ratio. Run by hand; never part of the unit suite.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from patchscope.attacks import AttackConfig, PatchAttack, ViewRanges
from patchscope.attacks.scoring import classify
from patchscope.models import create_model


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def floor_ms(model: torch.nn.Module, batch: int, size: int, device: str, reps: int, precision: str = "fp32") -> float:
    x = torch.rand(batch, 3, size, size, device=device)
    y = torch.randint(0, 2, (batch,), device=device)
    for i in range(reps + 3):
        if i == 3:
            _sync(device)
            t = time.perf_counter()
        xi = x.clone().requires_grad_()
        torch.nn.functional.cross_entropy(classify(model, xi, precision), y).backward()
    _sync(device)
    return (time.perf_counter() - t) / reps * 1e3


def attack_ms(
    model: torch.nn.Module,
    batch: int,
    size: int,
    device: str,
    reps: int,
    placement: str,
    compile: bool = False,
    precision: str = "fp32",
) -> float:
    images = torch.rand(512, 3, size, size, device=device)
    labels = torch.zeros(512, dtype=torch.long, device=device)
    ranges = ViewRanges(jpeg=None)

    def run(steps: int) -> float:
        cfg = AttackConfig(
            size=0.05,
            target=1,
            steps=steps,
            batch_size=batch,
            candidates=1,
            placement=placement,
            location=(4, 4),
            ranges=ranges,
            compile=compile,
            precision=precision,
        )
        _sync(device)
        t = time.perf_counter()
        PatchAttack(model, cfg, device, progress=False)(images, labels)
        _sync(device)
        return time.perf_counter() - t

    # warm-up: kernel choice, allocator, first-call costs, compilation (without it the first model's short run was
    # the slow one)
    run(3)
    short, long = run(3), run(3 + reps)
    return (long - short) / reps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="gtsrb-cnn,gtsrb-resnet,gtsrb-vit")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--placement", default="on-object")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--compile",
        action="store_true",
        help="also time the step with AttackConfig(compile=True) (CUDA graphs on a GPU)",
    )
    ap.add_argument(
        "--bf16",
        action="store_true",
        help="also time the step with AttackConfig(precision='bf16'), and the model's own bf16 forward+backward",
    )
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = []
    for name in a.models.split(","):
        model = create_model(name, a.device)
        for p in model.parameters():
            p.requires_grad_(False)
        size = model.input_size
        f = floor_ms(model, a.batch_size, size, a.device, a.reps)
        s = attack_ms(model, a.batch_size, size, a.device, a.reps, a.placement)
        row = {
            "model": name,
            "batch": a.batch_size,
            "floor_ms": round(f, 2),
            "attack_step_ms": round(s, 2),
            "ratio": round(s / f, 3),
            "images_per_s": round(a.batch_size / s * 1e3, 1),
        }
        if a.compile:
            t0 = time.perf_counter()
            c = attack_ms(model, a.batch_size, size, a.device, a.reps, a.placement, compile=True)
            row.update(
                compiled_step_ms=round(c, 2),
                compiled_ratio=round(c / f, 3),
                compiled_images_per_s=round(a.batch_size / c * 1e3, 1),
                compile_and_time_s=round(time.perf_counter() - t0, 1),
            )
        if a.bf16:
            fb, sb = (
                floor_ms(model, a.batch_size, size, a.device, a.reps, "bf16"),
                attack_ms(model, a.batch_size, size, a.device, a.reps, a.placement, precision="bf16"),
            )
            row.update(
                bf16_floor_ms=round(fb, 2),
                bf16_step_ms=round(sb, 2),
                bf16_ratio_to_fp32_floor=round(sb / f, 3),
                bf16_ratio_to_bf16_floor=round(sb / fb, 3),
                bf16_images_per_s=round(a.batch_size / sb * 1e3, 1),
            )
        rows.append(row)
        if not a.json:
            print(
                f"{name:16s} floor {f:8.2f} ms  attack step {s:8.2f} ms  ratio {s / f:5.2f}  "
                f"{a.batch_size / s * 1e3:8.0f} img/s"
                + (
                    f"  compiled {row['compiled_step_ms']:8.2f} ms  ratio {row['compiled_ratio']:5.2f}"
                    if a.compile
                    else ""
                )
                + (
                    f"  bf16 step {row['bf16_step_ms']:8.2f} ms (bf16 floor {row['bf16_floor_ms']:8.2f})  "
                    f"ratio to fp32 floor {row['bf16_ratio_to_fp32_floor']:5.2f}"
                    if a.bf16
                    else ""
                )
            )
    if a.json:
        print(json.dumps({"device": a.device, "placement": a.placement, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
