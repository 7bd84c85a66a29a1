"""Control for the max z-scores of the resolution study: a patch of uniform noise in the place of each universal patch.

For every model folder of the study and every size, writes STUDY/MODEL/noise-S/patch.safetensors (the universal
patch's mask, place and image size; pixels drawn uniformly in [0,1] with seed 0), runs ``patchscope explain`` on it
into STUDY/MODEL/noise-explain-S/, then prints one table: first-layer and any-layer max z, adversarial against noise.

    .venv/bin/python docs/runs/resolution-2026-12-05/noise_control.py docs/runs/resolution-2026-12-05/study
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import torch

from patchscope.attacks.patch import Patch


def noise_patch(universal: Path, out: Path) -> None:
    """The universal patch's geometry with uniform noise as its pixels."""
    patch = Patch.load(universal)
    pixels = torch.rand(patch.pixels.shape, generator=torch.Generator().manual_seed(0))
    out.mkdir(parents=True, exist_ok=True)
    replace(patch, pixels=pixels, meta={"control": "uniform noise", "geometry_of": str(universal)}).save(out)


def explain(study: Path, model_dir: Path, size: str) -> dict:
    """explain.json of the noise patch of ``size`` (run once; read back afterwards)."""
    out = model_dir / f"noise-explain-{size}"
    if not (out / "explain.json").is_file():
        noise_patch(model_dir / f"universal-{size}", model_dir / f"noise-{size}")
        head = json.loads((model_dir / "model.json").read_text())
        cmd = [sys.executable, "-m", "patchscope", "--store", str(study.parent / "runs.db"), "explain"]
        cmd += ["--patch", str(model_dir / f"noise-{size}"), "--model", head["model"]]
        cmd += ["--data", f"gtsrb:test@{head['input_size']}", "--source", "stop", "--out", str(out)]
        subprocess.run([*cmd, "--device", "cpu", "--json"], check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "explain.json").read_text())


def main(study: Path) -> None:
    head = "| model | px | area | first-layer max z: patch / noise | any layer: patch / noise |"
    print(head + " share, first layer: patch / noise |")
    print("|---|---|---|---|---|---|")
    for model_dir in sorted(p.parent for p in study.glob("*/model.json")):
        head = json.loads((model_dir / "model.json").read_text())
        for adv_file in sorted(model_dir.glob("explain-*/explain.json")):
            size = adv_file.parent.name.removeprefix("explain-")
            adv, noise = json.loads(adv_file.read_text())["layers"], explain(study, model_dir, size)["layers"]
            print(
                f"| {model_dir.name} | {head['input_size']} | {100 * float(size):.1f}% "
                f"| {adv[0]['max_z']:.1f} / {noise[0]['max_z']:.1f} "
                f"| {max(x['max_z'] for x in adv):.1f} / {max(x['max_z'] for x in noise):.1f} "
                f"| {adv[0]['adversarial_share']:.3f} / {noise[0]['adversarial_share']:.3f} |"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
