"""The resolution study's path end to end: a model trained on ``demo@64`` is a 64-px model, and a patch of the same
area fraction has twice the side there (2.4%, 4.8%, 9.8%: 5, 7, 10 px at 32 px; 10, 14, 20 px at 64 px)."""

from __future__ import annotations

import json

import pytest

from patchscope.attacks import patch_side
from tests.conftest import run_cli


@pytest.mark.parametrize("area", [0.024, 0.048, 0.098])
def test_equal_area_fractions_are_equal_at_32_64_and_128_px(area):
    sides = [patch_side(area, px) for px in (32, 64, 128)]
    assert sides[1] == 2 * sides[0] and sides[2] == 4 * sides[0]


def test_a_model_trained_at_64_px_is_attacked_at_64_px(tmp_path):
    train = ["train", "--arch", "cnn", "--arch-kwargs", '{"width": 4}', "--data", "demo@64", "--epochs", "1"]
    r = run_cli(*train, "--name", "cnn64", "--out", str(tmp_path), "--device", "cpu", "--json")
    assert r.returncode == 0, r.stderr
    card = json.loads((tmp_path / "cnn64.json").read_text())
    assert card["input_size"] == 64 and card["data"] == "demo@64"
    attack = ["attack", "--model", str(tmp_path / "cnn64.safetensors"), "--data", "demo@64", "--size", "0.048"]
    r = run_cli(
        *attack,
        "--steps",
        "1",
        "--batch-size",
        "8",
        "--candidates",
        "1",
        "--limit",
        "8",
        "--out",
        str(tmp_path / "p"),
        "--device",
        "cpu",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["patch_side"] == 14 and summary["patch_area"] == pytest.approx(14 * 14 / 64**2)


def test_transfer_across_resolutions_resizes_images_and_patch_per_model(tmp_path, tiny_model_path):
    r = run_cli("train", "--arch", "cnn", "--arch-kwargs", '{"width": 4}', "--data", "demo@64", "--epochs", "1",
                "--name", "cnn64", "--out", str(tmp_path), "--device", "cpu", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    big = str(tmp_path / "cnn64.safetensors")
    for order in ([str(tiny_model_path), big], [big, str(tiny_model_path)]):  # a 32-px patch on 32 and 64 px models
        t = run_cli("transfer", "--patches", "zoo:gtsrb-cnn/stop-yield", "--models", ",".join(order), "--data", "demo",
                    "--limit", "4", "--device", "cpu", "--json")  # fmt: skip
        assert t.returncode == 0, t.stderr
        row = json.loads(t.stdout)["matrix"]["zoo:gtsrb-cnn/stop-yield"]
        assert set(row) == set(order) and all(0 <= v <= 1 for v in row.values())
