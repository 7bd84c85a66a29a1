"""The findings table from the evaluate JSON files here: each zoo patch on its own model, success with the patch's
own colours (the uniform grid) and under each sign's own lighting, over the 33 views and on the sign as it is."""

import json
import sys
from pathlib import Path

here = Path(__file__).parent
print(
    "| patch (on its own model) | metric | uniform, 33 views | per-sign light, 33 views | change | uniform, as is | per-sign light, as is |"
)
print("|---|---|---|---|---|---|---|")
rows = []
for f in sorted(here.glob("*.json")):
    data = json.loads(f.read_text())
    for r in data["models"].values():
        lit = r["per_sign_lighting"]
        key = "targeted_success" if r["targeted_success"] is not None else "untargeted_success"
        first, first_lit = r["conditions"][0], lit["conditions"][0]  # the no-change view
        name = f.stem.replace("_", "/", 1)
        rows.append((name, key, r[key], lit[key], first[key], first_lit[key], lit))
for name, key, u, p, u0, p0, _ in rows:
    metric = "targeted" if key.startswith("targeted") else "untargeted"
    print(f"| `{name}` | {metric} | {u:.1%} | {p:.1%} | {100 * (p - u):+.1f} | {u0:.1%} | {p0:.1%} |")
gains = rows[0][6]
print(
    f"\ngains (mean over channels) of the 270 signs: p10 {gains['gain_p10']:.2f}, median {gains['gain_median']:.2f}, "
    f"p90 {gains['gain_p90']:.2f}; mean offset {gains['offset_mean']:+.3f}",
    file=sys.stderr,
)
