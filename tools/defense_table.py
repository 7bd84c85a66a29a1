"""Render the JSONs of tools/defense_table.sh as one markdown table: python tools/defense_table.py DIR.

Whether a defense is attacked through BPDA comes from the defense registry, not from the JSONs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from patchscope.defenses import defense_spec


def pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def main(folder: Path) -> None:
    print(
        "| model | defense | clean | defended clean | zoo patch, bare | zoo "
        "patch, defended | adaptive patch, defended | adaptive steps | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    results = sorted(
        (json.loads(f.read_text()) for f in folder.glob("*.json")), key=lambda r: (r["model"], r["defense"])
    )
    for r in results:
        a = r["adaptive"]
        print(
            f"| {r['model']} | {r['defense']}{' (BPDA)' if defense_spec(r['defense']).meta['bpda'] else ''} "
            f"| {pct(r['clean_accuracy'])} | {pct(r['defended_clean_accuracy'])} | "
            f"{pct(r['patch']['undefended']['targeted_success'])} | "
            f"{pct(r['patch']['defended']['targeted_success'])} | "
            f"{pct(a['defended']['targeted_success'])} | {a['steps']} | {a['seconds']} |"
        )
    if results:
        r = results[0]
        print(
            "\nTargeted (Stop -> Yield) success over the default viewing "
            f"grid; {r['images']} test images for clean accuracy, "
            f"{r['source_images']} Stop test images for the patches."
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
