"""How the universal patch attack's step time grows with batch size and image size, against the floor.

    python bench/scaling.py --device cpu --threads 2            # a few minutes (ViT-B/16 takes half)
    python bench/scaling.py --device cuda --json > scaling.json
    python bench/scaling.py --threads 1 --batches 8 --sizes 64 --size-batch 1 --reps 1   # smoke, under a minute

Defaults: batches 32-256 (cuda: up to 2048), batch 4 for the size and ViT cases (cuda: 64), 5 timed
steps per measurement (cuda: 20). Every case is overridable; ``--cases`` picks the groups.

Three groups of cases, run in this order and each in increasing size:

* ``batch``: the zoo model ``gtsrb-cnn`` (32 px) at growing batch sizes (``--batches``);
* ``size``: torchvision ResNet-50 with random weights at growing image sizes (``--sizes``), one batch
  size for all (``--size-batch``), so only the image size changes;
* ``vit``: torchvision ViT-B/16 with random weights (``--vit-sizes``, 224 px by default).

Each row times one step of the attack (full on-object EOT, a 5% patch) against the floor: one bare
forward and backward pass of the same model on the same batch (``floor_ms`` and ``attack_ms`` from
``bench/attack_step.py``; read its docstring for what each covers). The ratio is what the attack
adds on top of the model. A throwaway attack on a tiny model runs first, so the process's one-time
costs do not land in the first case (they made its step time negative).

A model runs at a size other than its own when its network accepts it (ResNets pool adaptively);
a torchvision network that fixes its size (ViT) is rebuilt for that size with random weights
(``build_net(arch, classes, {"image_size": size})``), which does not change the timing.

Peak memory per image, for the floor and for the attack step separately (``floor_mb_per_image``,
``attack_mb_per_image``), the peak above what the process held before that measurement (the model's
weights, earlier cases' leftovers), divided by the batch; the attack's figure leaves out the fixed
pool of 512 images that ``attack_ms`` keeps on the device (``pool_mb`` in the row):

* cuda: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, less
  ``memory_allocated()`` then.
* cpu: the process's peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) after the measurement,
  less its RSS just before (``/proc/self/statm``, after ``malloc_trim``). A rough upper bound: it
  counts whatever the allocator and oneDNN keep (allocator caches, JIT kernels, fragmentation), and
  since ``ru_maxrss`` never goes down, a measurement that stays below an earlier peak cannot be
  seen at all: it reads ``null`` (``-`` in the table). The cases therefore run in increasing size
  order; a lone case per process (``--cases``, one size) gives the cleanest figure.

Timings on a CPU shared with other work are noisy; use ``--threads`` and an idle machine. Run by
hand; never part of the unit suite.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attack_step import attack_ms, floor_ms  # noqa: E402

from patchscope.models import create_model  # noqa: E402
from patchscope.models.registry import build_net  # noqa: E402
from patchscope.models.wrapper import Classifier  # noqa: E402

POOL = 512  # images attack_ms keeps on the device
MB = 2**20


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def model_at(name: str, size: int | None, device: str) -> Classifier:
    """``create_model(name)`` made to run at ``size`` px.

    The default size is the model's own; a fixed-size torchvision net is rebuilt, with random weights.
    """
    model = create_model(name, device)
    if size is not None and size != model.input_size:
        try:
            with torch.no_grad():
                model(torch.rand(1, 3, size, size, device=device))
        except (AssertionError, RuntimeError, ValueError) as e:
            arch = model.card.get("arch", "")
            if not arch.startswith("tv:"):
                raise SystemExit(f"{name} does not run at {size}px ({str(e).splitlines()[0]})") from None
            try:
                net = build_net(arch, len(model.classes), {"image_size": size})
            except Exception as e2:  # noqa: BLE001  any failure here means: not at this size
                raise SystemExit(
                    f"{name} does not run at {size}px ({str(e).splitlines()[0]}; rebuilding: {str(e2).splitlines()[0]})"
                ) from None
            model = (
                Classifier(
                    net,
                    model.classes,
                    size,
                    model.mean.flatten().tolist(),
                    model.std.flatten().tolist(),
                    f"{name}@{size}",
                    model.card,
                )
                .to(device)
                .eval()
            )
        else:
            model.input_size = size  # the net accepts it (adaptive pooling)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def warm_up(device: str) -> None:
    """One throwaway attack on a tiny model: the process's one-time costs (seconds on a CPU) would
    otherwise land in the first case's short run and make its step time come out negative."""
    from patchscope.models.archs import cnn

    tiny = Classifier(cnn(num_classes=2, width=4), ["a", "b"], 32).to(device).eval()
    attack_ms(tiny, 2, 32, device, 1, "on-object")


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _rss_mb() -> float | None:
    """The process's resident memory now (Linux), after handing freed heap back to the system."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB
    except (OSError, ValueError, IndexError):
        return None


class _CpuPeak:
    """Peak RSS above the RSS at entry, when the block raised the process's peak (else None)."""

    def __enter__(self) -> _CpuPeak:
        self.now, self.peak0, self.mb = _rss_mb(), _maxrss_mb(), None
        return self

    def __exit__(self, *exc: object) -> None:
        peak = _maxrss_mb()
        if self.now is not None and peak > self.peak0:
            self.mb = peak - self.now


class _CudaPeak:
    """``max_memory_allocated`` above what was allocated at entry."""

    def __enter__(self) -> _CudaPeak:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        self.base, self.mb = torch.cuda.memory_allocated(), None
        torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc: object) -> None:
        torch.cuda.synchronize()
        self.mb = (torch.cuda.max_memory_allocated() - self.base) / MB


def run_case(
    group: str, name: str, size: int | None, batch: int, device: str, reps: int, placement: str
) -> dict[str, Any]:
    model = model_at(name, size, device)
    size = model.input_size
    pool_mb = POOL * (3 * size * size * 4 + 8) / MB
    peak = _CudaPeak if device.startswith("cuda") else _CpuPeak
    with peak() as fm:
        f = floor_ms(model, batch, size, device, reps)
    with peak() as am:
        s = attack_ms(model, batch, size, device, reps, placement)
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return {
        "group": group,
        "model": name,
        "size": size,
        "batch": batch,
        "floor_ms": round(f, 2),
        "attack_step_ms": round(s, 2),
        "ratio": round(s / f, 3),
        "images_per_s": round(batch / s * 1e3, 1),
        "floor_mb_per_image": None if fm.mb is None else round(fm.mb / batch, 3),
        "attack_mb_per_image": None if am.mb is None else round(max(am.mb - pool_mb, 0.0) / batch, 3),
        "pool_mb": round(pool_mb, 1),
    }


def _fmt(v: Any, width: int, digits: int = 2) -> str:
    if v is None:
        return "-".rjust(width)
    return f"{v:{width}.{digits}f}" if isinstance(v, float) else str(v).rjust(width)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    ap.add_argument("--cases", default="batch,size,vit", help="groups to run, of batch,size,vit")
    ap.add_argument("--batch-model", default="gtsrb-cnn")
    ap.add_argument(
        "--batches", default=None, help="batch group's batch sizes (default 32,64,128,256; on cuda up to 2048)"
    )
    ap.add_argument("--size-model", default="tv:resnet50:random")
    ap.add_argument("--sizes", default="64,128,224", help="size group's image sizes in px")
    ap.add_argument("--vit-model", default="tv:vit_b_16:random")
    ap.add_argument("--vit-sizes", default="224")
    ap.add_argument(
        "--size-batch", type=int, default=None, help="batch of the size and vit groups (default 4 on cpu, 64 on cuda)"
    )
    ap.add_argument("--reps", type=int, default=None, help="timed steps per measurement (default 5 on cpu, 20 on cuda)")
    ap.add_argument("--placement", default="on-object")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    cuda = a.device.startswith("cuda")
    if a.threads:
        torch.set_num_threads(a.threads)
    batches = _ints(a.batches) if a.batches else ([32, 64, 128, 256, 512, 1024, 2048] if cuda else [32, 64, 128, 256])
    size_batch = a.size_batch or (64 if cuda else 4)
    reps = a.reps or (20 if cuda else 5)
    groups = [g.strip() for g in a.cases.split(",") if g.strip()]
    unknown = set(groups) - {"batch", "size", "vit"}
    if unknown:
        raise SystemExit(f"--cases: unknown group(s) {', '.join(sorted(unknown))}; known are batch,size,vit")
    cases: list[tuple[str, str, int | None, int]] = []
    if "batch" in groups:
        cases += [("batch", a.batch_model, None, b) for b in sorted(batches)]
    if "size" in groups:
        cases += [("size", a.size_model, s, size_batch) for s in sorted(_ints(a.sizes))]
    if "vit" in groups:
        cases += [("vit", a.vit_model, s, size_batch) for s in sorted(_ints(a.vit_sizes))]

    header = (
        f"{'group':6s} {'model':22s} {'px':>4s} {'batch':>5s} {'floor ms':>9s} {'step ms':>9s} {'ratio':>6s} "
        f"{'img/s':>8s} {'floor MB/img':>12s} {'step MB/img':>11s}"
    )
    if not a.json:
        memory = "cuda max_memory_allocated" if cuda else "peak RSS growth, rough"
        print(
            f"device {a.device}, threads {torch.get_num_threads()}, reps {reps}, placement {a.placement}, "
            f"5% patch; MB/img: {memory}"
        )
        print(header)
    warm_up(a.device)
    rows = []
    for group, name, size, batch in cases:
        row = run_case(group, name, size, batch, a.device, reps, a.placement)
        rows.append(row)
        if row["attack_step_ms"] <= 0 or row["ratio"] < 0.5:
            print(
                f"warning: {name} {row['size']}px batch {batch}: the step time is implausible (noise); raise --reps",
                file=sys.stderr,
            )
        if not a.json:
            print(
                f"{group:6s} {name:22s} {row['size']:4d} {batch:5d} {_fmt(row['floor_ms'], 9)} "
                f"{_fmt(row['attack_step_ms'], 9)} {_fmt(row['ratio'], 6)} {_fmt(row['images_per_s'], 8, 1)} "
                f"{_fmt(row['floor_mb_per_image'], 12, 3)} {_fmt(row['attack_mb_per_image'], 11, 3)}",
                flush=True,
            )
    if a.json:
        device_name = torch.cuda.get_device_name() if cuda else "cpu"
        print(
            json.dumps(
                {
                    "device": a.device,
                    "device_name": device_name,
                    "threads": torch.get_num_threads(),
                    "reps": reps,
                    "placement": a.placement,
                    "patch_fraction": 0.05,
                    "memory": "cuda_max_memory_allocated" if cuda else "cpu_peak_rss_growth",
                    "rows": rows,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
