"""Peak host memory of one pass over an ImageFolder tree: streamed batches against loading it whole.

    python bench/data_memory.py                       # N = 1000 and 2000 images, 224 px, streamed and loaded
    python bench/data_memory.py --n 500 --modes stream --workers 0 --json

Writes a synthetic tree of N random 224x224 JPEGs (two class folders, ``stop`` and ``yield``) to a
temporary folder, then, for each N and mode, runs one pass in a fresh Python process and prints its
peak resident memory (``ru_maxrss``):

* ``baseline``: the imports and the folder scan, no image read: the fixed cost both modes pay;
* ``stream``: ``open_folder(...).iter_batches(batch)`` with ResNet-50's preparation (resize 256,
  centre crop 224), summing the batches so every image is decoded and converted to float;
* ``load``: ``load_data("folder:...")`` with the same preparation, the whole set as one uint8
  tensor, then the same batched pass over it.

``main_mb`` is the main process's peak; ``workers_mb`` the largest peak among its child processes
(``RUSAGE_CHILDREN``, after they exit): the loader's workers, and any process forked while the
libraries load, which counts the parent's size at the fork (hence a figure for ``baseline`` too). The streamed
pass should not grow with N: its memory is the batch times the loader's prefetch, not the data set; the loaded
one grows by
N x 3 x 224 x 224 bytes (147 KiB an image).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, torch
from patchscope.data import Preprocess, gtsrb_classes, load_data, open_folder
root, mode, batch, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(1)
prep = Preprocess(256, 224, "bilinear")
if mode == "baseline":
    data = open_folder(root, gtsrb_classes(), prep)
    batches = iter(())
elif mode == "stream":
    data = open_folder(root, gtsrb_classes(), prep)
    batches = data.iter_batches(batch, workers=workers)
else:
    data = load_data("folder:" + root, classes=gtsrb_classes(), preprocess=prep)
    batches = data.iter_batches(batch)
total, seen = 0.0, 0
for x, y in batches:
    total += float(x.sum()); seen += len(y)
print(json.dumps({"images": seen, "main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "workers_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def make_tree(root: Path, n: int, side: int = 224) -> None:
    """``n`` random ``side`` x ``side`` JPEGs split over two class folders (blocky noise: realistic file sizes)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("stop", "yield"):
        (root / cls).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = rng.integers(0, 255, (side // 8, side // 8, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((side, side), Image.BILINEAR)
        img.save(root / ("stop" if i % 2 else "yield") / f"{i:06d}.jpg", quality=90)


def measure(root: Path, mode: str, batch: int, workers: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), mode, str(batch), str(workers)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1000, 2000], help="image counts (default 1000 2000)")
    ap.add_argument(
        "--modes", nargs="+", default=["baseline", "stream", "load"], choices=["baseline", "stream", "load"]
    )
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=1, help="loader worker processes for the streamed pass")
    ap.add_argument("--json", action="store_true", help="one JSON object per row")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="patchscope-bench-") as tmp:
        for n in sorted(args.n):
            root = Path(tmp) / f"n{n}"
            make_tree(root, n)
            for mode in args.modes:
                row = {
                    "n": n,
                    "mode": mode,
                    "batch_size": args.batch_size,
                    "workers": {"stream": args.workers, "load": "auto"}.get(mode, "-"),
                    **measure(root, mode, args.batch_size, args.workers),
                }
                rows.append(row)
                print(
                    json.dumps(row)
                    if args.json
                    else f"N={n:>6} {mode:>8}: main {row['main_mb']:7.0f} MB  workers {row['workers_mb']:6.0f} MB"
                    f"  ({row['images']} images)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
