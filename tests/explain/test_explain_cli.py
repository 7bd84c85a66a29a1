"""`patchscope explain` end to end (a patch from `patchscope attack`), and `explain_patch` on a ViT."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from patchscope.attacks import Patch
from patchscope.errors import PatchscopeError
from patchscope.explain import explain_patch, save_explanation
from patchscope.models import Classifier
from tests.conftest import run_cli

FIGURES = ("attention.png", "propagation.png", "anomaly.png")


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> Path:
    out = tmp_path_factory.mktemp("attack") / "patch"
    r = run_cli(
        "attack",
        "--model",
        str(tiny_model_path),
        "--data",
        "demo",
        "--steps",
        "3",
        "--batch-size",
        "8",
        "--limit",
        "16",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def _check_layers(rows: list[dict], names: list[str]) -> None:
    assert [r["name"] for r in rows] == names
    for r in rows:
        assert set(r) >= {"name", "adversarial_share", "natural_ratio", "max_z", "adversarial_signal"}
        assert (
            r["adversarial_share"] > 0
            and r["adversarial_signal"] > 0
            and r["natural_ratio"] > 0
            and math.isfinite(r["max_z"])
        )


def test_explain_cli_writes_figures_and_json(tmp_path: Path, tiny_model_path: Path, attacked: Path):
    out = tmp_path / "explain"
    r = run_cli(
        "explain",
        "--model",
        str(tiny_model_path),
        "--patch",
        str(attacked),
        "--data",
        "demo",
        "--source",
        "stop",
        "--index",
        "2",
        "--limit",
        "16",
        "--out",
        str(out),
        "--json",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    printed = json.loads(r.stdout)
    saved = json.loads((out / "explain.json").read_text())
    assert printed["layers"] == saved["layers"] and saved["images"] == 16 and saved["source"] == "stop"
    _check_layers(saved["layers"], ["stage0", "stage1", "stage2"])
    _check_layers(saved["single"]["layers"], ["stage0", "stage1", "stage2"])
    assert saved["single"]["index"] == 2 and len(saved["single"]["before"]) == len(saved["single"]["after"]) == 5
    assert [r["grid"] for r in saved["layers"]] == [[16, 16], [8, 8], [4, 4]]
    patch = Patch.load(attacked)
    assert saved["footprint"]["location"] == list(patch.location) and saved["footprint"]["pixels"] == patch.side**2
    for name in FIGURES:
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.width >= 400 and im.height >= 300


def test_explain_cli_table_and_bad_input(tmp_path: Path, tiny_model_path: Path, attacked: Path):
    common = ["explain", "--model", str(tiny_model_path), "--patch", str(attacked), "--data", "demo", "--limit", "16"]
    r = run_cli(*common, "--index", "16", "--out", str(tmp_path / "bad"))
    assert r.returncode == 2 and "--index 16" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
    big = Patch(torch.rand(3, 7, 7), torch.ones(7, 7), "on-object", (4, 4), 64)
    big.save(tmp_path / "big")
    r = run_cli(*common, "--patch", str(tmp_path / "big"), "--out", str(tmp_path / "bad"))
    assert r.returncode == 2 and "64px" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli(*common, "--out", str(tmp_path / "table"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "stage2" in r.stdout and all((tmp_path / "table" / f).exists() for f in (*FIGURES, "explain.json"))


@pytest.mark.parametrize("method", ["auto", "rollout"])
def test_explain_patch_on_a_vit(tmp_path: Path, tiny_vit: Classifier, stops: torch.Tensor, patch: Patch, method: str):
    result = explain_patch(tiny_vit, stops, torch.full((len(stops),), 14), patch, 1, method)  # type: ignore[arg-type]
    _check_layers(result.layers, ["block0", "block1"])
    assert all(r["grid"] == [8, 8] and r["footprint_cells"] == 4 for r in result.layers)
    assert result.heatmap["method"] == ("rollout" if method == "rollout" else "gradcam")
    assert not any((tmp_path / f).exists() for f in FIGURES)  # computing writes nothing
    assert save_explanation(result, tmp_path) == [tmp_path / f for f in FIGURES]
    assert all((tmp_path / f).exists() for f in FIGURES)
    with pytest.raises(PatchscopeError):
        explain_patch(tiny_vit, stops, torch.full((len(stops),), 14), patch, len(stops))
