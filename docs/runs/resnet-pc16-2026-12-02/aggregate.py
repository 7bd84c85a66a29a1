"""Sum the per-chunk `certify --json` outputs (certify/*.json) into one row per patch size (counts, not means of rates).

python3 docs/runs/resnet-pc16-2026-12-02/aggregate.py > docs/runs/resnet-pc16-2026-12-02/certify-full-test.json
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
rows = {}
for px in (5, 7):
    parts = [json.loads(p.read_text()) for p in sorted((HERE / "certify").glob(f"{px}px-test-*.json"))]
    n = sum(p["images"] for p in parts)
    count = {
        k: sum(round(p[k] * p["images"]) for p in parts)
        for k in ("clean_accuracy", "defended_accuracy", "certified_accuracy")
    }
    rows[f"{px}x{px}"] = {
        "chunks": len(parts),
        "images": n,
        **{k: round(v / n, 4) for k, v in count.items()},
        "counts": count,
        "forward_passes_per_image": round(sum(p["forward_passes_per_image"] * p["images"] for p in parts) / n, 1),
        "seconds": round(sum(p["seconds"] for p in parts), 1),
        "patch_size": parts[0]["patch_size"],
        "precision": parts[0]["precision"],
        "k": parts[0]["k"],
    }
json.dump(
    {
        "model": "gtsrb-resnet-pc16",
        "defense": "patchcleanser",
        "data": "gtsrb:test in 13 consecutive chunks (test-00 .. test-12)",
        "rows": rows,
    },
    sys.stdout,
    indent=2,
)
print()
