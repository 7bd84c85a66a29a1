"""What one row of an attack's step costs in host memory, against the estimate the attack sizes its passes by.

    python bench/step_memory.py                                   # the zoo at 32 px, ResNet-50 and ViT-B/16 at 224
    python bench/step_memory.py --cases tv:resnet50:random@224 --json

A step renders each row (pastes the patch, views the image), classifies it and backpropagates to the patch; the
attack fits as many rows in a pass as the memory budget holds at ``step_row_bytes`` each:
``bytes_per_image(model) * BACKWARD_FACTOR + RENDER_COPIES * image bytes``. For each case this runs one step of
the universal attack (one candidate, all rows in one pass) at two row counts, each in a fresh process, and prints
the growth of the peak resident memory (``ru_maxrss`` above the resident size before the step) per added row:

* a model case (``NAME@SIZE``, on-object): the step's cost a row, and that over ``bytes_per_image`` (the model's
  factor, rendering included);
* ``render@SIZE`` (on-object and sticker): the same step on a model that only averages the image, which measures
  the rendering alone, in float32 copies of the image.

The estimate must stay above every measured cost; ``estimate / measured`` says by how much.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, os, resource, sys, torch
torch.set_num_threads(2)
os.environ["PATCHSCOPE_BATCH_BUDGET_MB"] = "1000000"  # every row in one pass
from patchscope.attacks import AttackConfig
from patchscope.attacks.scoring import step_row_bytes
from patchscope.attacks.universal import PatchAttack
from patchscope.models.batching import bytes_per_image
name, size, placement, rows = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
class Mean(torch.nn.Module):
    def forward(self, x):
        m = x.mean((2, 3))
        return torch.cat([m, -m], 1)
if name == "render":
    net = Mean()
else:
    from patchscope.models import create_model
    net = create_model(name, "cpu")
x, y = torch.rand(16, 3, size, size), torch.zeros(16, dtype=torch.long)
def step(batch):
    cfg = AttackConfig(size=0.05, target=1, steps=1, batch_size=batch, candidates=1, placement=placement)
    PatchAttack(net, cfg, progress=False)(x, y)
step(1)  # the one-off costs (allocator pools, kernels) before the measurement
before = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
step(rows)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"grew": peak - before, "bytes_per_image": bytes_per_image(net, size),
                  "estimate": step_row_bytes(net, size)}))
"""

MB = 1e6
#: the model cases: a model name and its image size
DEFAULT_CASES = ["gtsrb-cnn@32", "gtsrb-resnet@32", "gtsrb-vit@32", "tv:resnet50:random@224", "tv:vit_b_16:random@224"]


def rows_for(name: str, size: int) -> tuple[int, int]:
    """Two row counts far enough apart for the slope, small enough for a CPU."""
    if name == "render" or size <= 64:
        return (64, 576) if size <= 64 else (32, 160)
    return (2, 6)


def run(name: str, size: int, placement: str, rows: int) -> dict[str, float]:
    argv = [sys.executable, "-c", CHILD, name, str(size), placement, str(rows)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(name: str, size: int, placement: str) -> dict[str, object]:
    low, high = rows_for(name, size)
    a, b = run(name, size, placement, low), run(name, size, placement, high)
    per_row = (b["grew"] - a["grew"]) / (high - low)
    row: dict[str, object] = {"case": name, "size": size, "placement": placement, "rows": [low, high]}
    row |= {"measured_mb_per_row": per_row / MB, "estimate_mb_per_row": b["estimate"] / MB}
    if name == "render":
        row["image_copies"] = per_row / (3 * size * size * 4)
    else:
        row |= {"bytes_per_image_mb": b["bytes_per_image"] / MB, "factor": per_row / b["bytes_per_image"]}
    row["estimate_over_measured"] = b["estimate"] / per_row
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help="NAME@SIZE model cases")
    ap.add_argument("--render", type=int, nargs="*", default=[224], help="image sizes of the render-only cases")
    ap.add_argument("--json", action="store_true", help="one JSON object per row")
    args = ap.parse_args()
    cases = [(c.rsplit("@", 1)[0], int(c.rsplit("@", 1)[1]), "on-object") for c in args.cases]
    cases += [("render", s, p) for s in args.render for p in ("on-object", "sticker")]
    for name, size, placement in cases:
        row = measure(name, size, placement)
        if args.json:
            print(json.dumps(row), flush=True)
            continue
        extra = (
            f"{row['image_copies']:5.1f} image copies"
            if name == "render"
            else f"bytes_per_image {row['bytes_per_image_mb']:7.2f} MB  factor {row['factor']:4.2f}"
        )
        print(
            f"{name:>22}@{size:<3} {placement:>9}: {row['measured_mb_per_row']:7.2f} MB a row  {extra}  "
            f"estimate {row['estimate_mb_per_row']:7.2f} MB ({row['estimate_over_measured']:.2f}x)",
            flush=True,
        )


if __name__ == "__main__":
    main()
