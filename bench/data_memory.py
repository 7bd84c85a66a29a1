"""Peak host memory of one pass over an ImageFolder tree: streamed batches against loading it whole.

    python bench/data_memory.py                       # N = 1000 and 2000 images, 224 px, streamed and loaded
    python bench/data_memory.py --n 500 --modes stream --workers 0 --json
    python bench/data_memory.py --n 10000 20000 --modes evaluate certify   # the commands themselves

Writes a synthetic tree of N random 224x224 JPEGs (two class folders, ``stop`` and ``yield``) to a
temporary folder, then, for each N and mode, runs one pass in a fresh Python process and prints its
peak resident memory (``ru_maxrss``):

* ``baseline``: the imports and the folder scan, no image read: the fixed cost both modes pay;
* ``stream``: ``open_folder(...).iter_batches(batch)`` with ResNet-50's preparation (resize 256,
  centre crop 224), summing the batches so every image is decoded and converted to float;
* ``load``: ``load_data("folder:...")`` with the same preparation, the whole set as one uint8
  tensor, then the same batched pass over it.

* ``evaluate`` / ``certify``: the commands as a user runs them (``patchscope evaluate --models CARD --data
  folder:ROOT`` and ``patchscope certify --model CARD --defense ds-column --data folder:ROOT``) on a model
  card with ResNet-50's preparation and a tiny random-weight ViT (224 px, 32-px tokens, one block), so that
  the data path, not the network, is what is measured; derandomized smoothing keeps certification within
  reach of a CPU (32 passes an image).

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


COMMAND = r"""
import json, resource, sys
sys.argv = ["patchscope", *sys.argv[1:]]
from patchscope.cli import main
try:
    main()
except SystemExit as e:
    assert not e.code, e.code
print(json.dumps({"images": -1, "main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "workers_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def make_card(folder: Path) -> Path:
    """A tiny random-weight ViT at 224 px with ResNet-50's preparation and the GTSRB classes (``stop``, ``yield``)."""
    import torch

    from patchscope.data import gtsrb_classes
    from patchscope.models import build_net, save_checkpoint

    torch.manual_seed(0)
    card = {"classes": list(gtsrb_classes()), "input_size": 224, "mean": [0.485, 0.456, 0.406]}
    card |= {"std": [0.229, 0.224, 0.225], "preprocess": {"resize": 256, "crop": 224, "interpolation": "bilinear"}}
    card |= {"arch": "tv:VisionTransformer", "arch_kwargs": {"image_size": 224, "patch_size": 32, "num_layers": 1}}
    card["arch_kwargs"] |= {"num_heads": 1, "hidden_dim": 16, "mlp_dim": 32}
    net = build_net(card["arch"], len(card["classes"]), card["arch_kwargs"])
    path = folder / "tiny-vit.safetensors"
    save_checkpoint(net, card, path, half=False)
    return path


def command_args(mode: str, root: Path, card: Path | str, batch: int) -> list[str]:
    """The command line of an ``evaluate`` or ``certify`` row (runs recorded beside the tree, CPU, JSON); ``batch``
    0 leaves ``--batch-size`` out: the default a user gets."""
    sized = ["--batch-size", str(batch)] if batch else []
    common = ["--data", f"folder:{root}", *sized, "--device", "cpu", "--json"]
    if mode == "evaluate":
        return ["--store", str(root.parent / "runs.db"), "evaluate", "--models", str(card), *common]
    return ["--store", str(root.parent / "runs.db"), "certify", "--model", str(card), "--defense", "ds-column", *common]


def make_tree(root: Path, n: int, side: int = 224, classes: tuple[str, str] = ("stop", "yield")) -> None:
    """``n`` random ``side`` x ``side`` JPEGs split over two class folders (blocky noise: realistic file sizes)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = rng.integers(0, 255, (side // 8, side // 8, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((side, side), Image.BILINEAR)
        img.save(root / classes[i % 2] / f"{i:06d}.jpg", quality=90)


def measure(root: Path, mode: str, batch: int, workers: int, card: Path | str | None = None) -> dict[str, float]:
    if card is not None:
        argv = [sys.executable, "-c", COMMAND, *command_args(mode, root, card, batch)]
    else:
        argv = [sys.executable, "-c", CHILD, str(root), mode, str(batch), str(workers)]
    out = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=True,
    )
    *result, last = out.stdout.strip().splitlines()
    row = json.loads(last)
    if card is not None:  # the images the command counted, from its own JSON
        found = json.loads("\n".join(result))
        row["images"] = found["images"] if "images" in found else next(iter(found["models"].values()))["clean_images"]
    return row


COMMANDS = ("evaluate", "certify")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1000, 2000], help="image counts (default 1000 2000)")
    ap.add_argument(
        "--modes",
        nargs="+",
        default=["baseline", "stream", "load"],
        choices=["baseline", "stream", "load", "evaluate", "certify"],
    )
    ap.add_argument("--batch-size", type=int, default=64, help="0: the commands' own default")
    ap.add_argument(
        "--model",
        default=None,
        help="the commands' model (e.g. tv:resnet50:random; its folders are ImageNet classes), "
        "default a tiny random ViT with ResNet-50's preparation",
    )
    ap.add_argument("--workers", type=int, default=1, help="loader worker processes for the streamed pass")
    ap.add_argument("--json", action="store_true", help="one JSON object per row")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="patchscope-bench-") as tmp:
        card: Path | str | None = args.model
        if card is None and {"evaluate", "certify"} & set(args.modes):
            card = make_card(Path(tmp))
        classes = ("tench", "goldfish") if args.model else ("stop", "yield")
        for n in sorted(args.n):
            root = Path(tmp) / f"n{n}"
            make_tree(root, n, classes=classes)
            for mode in args.modes:
                row = {
                    "n": n,
                    "mode": mode,
                    "batch_size": args.batch_size,
                    "workers": {"stream": args.workers}.get(mode, "auto" if mode != "baseline" else "-"),
                    **measure(root, mode, args.batch_size, args.workers, card if mode in COMMANDS else None),
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
