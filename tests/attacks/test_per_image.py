from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from patchscope.attacks import NO_CHANGE, AttackConfig, PatchAttack, PerImageAttack, PerImagePatches
from patchscope.errors import PatchscopeError
from patchscope.eval import patch_success
from tests.conftest import forward_rows, run_cli


class BalanceDetector(torch.nn.Module):
    """Class 1 when the image's mean red and green are within 0.05 of each other, else class 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gap = (x[:, 0] - x[:, 1]).mean((1, 2)).abs()
        return torch.stack([torch.zeros_like(gap), 2 - 40 * gap], 1)


def _red_and_green(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Half reddish, half greenish flat images: a 14% patch can balance either, but not both with one patch."""
    x = torch.full((n, 3, 32, 32), 0.5)
    x[: n // 2, 0], x[: n // 2, 1] = 0.57, 0.43
    x[n // 2 :, 0], x[n // 2 :, 1] = 0.43, 0.57
    return x, torch.zeros(n, dtype=torch.long)


def test_per_image_patches_win_where_no_universal_patch_can():
    x, y = _red_and_green()
    cfg = AttackConfig(size=0.15, target=1, steps=60, batch_size=64, candidates=2, ranges=NO_CHANGE, loss="sigmoid")
    own = PerImageAttack(BalanceDetector(), cfg, views=2, progress=False)(x, y)
    one = PatchAttack(BalanceDetector(), cfg, progress=False)(x, y)
    assert patch_success(BalanceDetector(), x, y, own, 1, [{}]).targeted_success == 1.0
    assert patch_success(BalanceDetector(), x, y, one, 1, [{}]).targeted_success <= 0.5
    red, green = (
        own.pixels[:4, 0].mean() - own.pixels[:4, 1].mean(),
        own.pixels[4:, 0].mean() - own.pixels[4:, 1].mean(),
    )
    assert red < -0.5 and green > 0.5  # each patch pulls its own image towards balance
    assert own.pixels.min() >= 0 and own.pixels.max() <= 1


class _StopsAfter(PerImageAttack):
    """The per-image attack, asked to stop once ``steps_allowed`` steps are done."""

    steps_allowed = 0

    def stopped(self) -> bool:
        self.asked = getattr(self, "asked", 0) + 1
        return self.asked > self.steps_allowed


def test_a_stopped_attack_keeps_the_patches_it_made_so_far():
    x, y = _red_and_green(4)
    cfg = AttackConfig(size=0.15, target=1, steps=500, batch_size=64, candidates=1, ranges=NO_CHANGE, location=(4, 4))
    made = {}
    for allowed in (0, 3, 3):
        attack = type("Stops", (_StopsAfter,), {"steps_allowed": allowed})(
            BalanceDetector(), cfg, views=2, progress=False
        )
        made.setdefault(allowed, []).append(attack(x, y))
        assert [h["step"] for h in attack.history] == ([0] if allowed else [])
    assert torch.equal(made[3][0].pixels, made[3][1].pixels)  # the same steps, the same patches
    assert not torch.allclose(made[3][0].pixels, made[0][0].pixels)  # three steps moved them from their start
    assert made[3][0].location.tolist() == [[4.0, 4.0]] * 4 and float(made[3][0].pixels.max()) <= 1


def test_each_patch_depends_on_its_own_image_only(tiny_model, demo):
    """Same seed, one image swapped for another: every other image keeps its patch and place."""
    stop = demo.of_class("stop").head(7)
    x, y = stop.float_images(), stop.labels
    cfg = AttackConfig(size=0.05, target=13, steps=8, batch_size=40, candidates=3, lr=0.05)
    a = PerImageAttack(tiny_model, cfg, views=3, progress=False)(x, y)
    x2 = x.clone()
    x2[3] = demo.of_class("yield").float_images()[0]
    b = PerImageAttack(tiny_model, cfg, views=3, progress=False)(x2, y)
    keep = torch.arange(7) != 3
    assert torch.allclose(a.pixels[keep], b.pixels[keep], atol=1e-4) and torch.equal(a.location[keep], b.location[keep])
    assert not torch.allclose(a.pixels[3], b.pixels[3], atol=1e-3)
    free = 32 - a.side
    assert a.location.min() >= 0 and a.location.max() <= free


def test_saved_patches_load_back_and_go_only_on_their_images(tmp_path: Path, tiny_model, demo):
    stop = demo.of_class("stop").head(6)
    x, y = stop.float_images(), stop.labels
    cfg = AttackConfig(size=0.05, target=13, steps=3, batch_size=16, candidates=2, placement="sticker", restarts=2)
    p = PerImageAttack(tiny_model, cfg, views=2, progress=False)(x, y)
    assert p.location is None and p.pixels.shape == (6, 3, p.side, p.side)
    p.images_hash = stop.data_hash()
    p.save(tmp_path)
    q = PerImagePatches.load(tmp_path)
    assert torch.equal(p.pixels, q.pixels) and q.images_hash == stop.data_hash() and q.placement == "sticker"
    assert (tmp_path / "patches.png").exists()
    assert patch_success(tiny_model, x, y, q, 13, [{}]) == patch_success(tiny_model, x, y, p, 13, [{}])
    with pytest.raises(PatchscopeError, match="per-image patches for 5 images"):
        patch_success(tiny_model, x[:5], y[:5], q, 13, [{}])
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(PatchscopeError, match="not a patchscope per-image"):
        PerImagePatches.load(tmp_path / "bad.safetensors")
    with pytest.raises(
        PatchscopeError, match="^views must be"
    ):  # the library names its parameter; the CLI says --views
        PerImageAttack(tiny_model, cfg, views=0)


def test_attack_per_image_cli_writes_patches_that_evaluate_measures_alike(tmp_path: Path, tiny_model_path: Path):
    out = tmp_path / "own"
    r = run_cli(
        "attack",
        "--model",
        str(tiny_model_path),
        "--data",
        "demo",
        "--per-image",
        "--limit",
        "12",
        "--steps",
        "4",
        "--views",
        "2",
        "--candidates",
        "2",
        "--size",
        "0.05",
        "--batch-size",
        "32",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "metrics.json",
        "patches.png",
        "patches.safetensors",
    ]
    made = json.loads((out / "metrics.json").read_text())
    assert made["attack_images"] == 12 and json.loads((out / "config.json").read_text())["per_image"] is True
    r = run_cli("evaluate", "--models", str(tiny_model_path), "--data", "demo", "--patch", str(out), "--json")
    assert r.returncode == 0, r.stderr
    measured = json.loads(r.stdout)["models"][str(tiny_model_path)]
    assert measured["images"] == 12 and measured["targeted_success"] == pytest.approx(
        made["targeted_success"], abs=1e-6
    )
    for args, words in [
        (
            ["evaluate", "--models", str(tiny_model_path), "--data", "demo", "--patch", str(out), "--source", "yield"],
            "made for other images",
        ),
        (
            ["defend", "--model", str(tiny_model_path), "--data", "demo", "--patch", str(out), "--defense", "jpeg"],
            "evaluate only",
        ),
        (
            [
                "attack",
                "--model",
                str(tiny_model_path),
                "--data",
                "demo",
                "--per-image",
                "--resume",
                "--steps",
                "1",
                "--out",
                str(tmp_path / "r"),
            ],
            "--resume",
        ),
        (
            [
                "attack",
                "--model",
                str(tiny_model_path),
                "--data",
                "demo",
                "--per-image",
                "--tv",
                "0.1",
                "--steps",
                "1",
                "--out",
                str(tmp_path / "t"),
            ],
            "--tv",
        ),
        (
            [
                "attack",
                "--model",
                str(tiny_model_path),
                "--data",
                "demo",
                "--init",
                "zoo:gtsrb-cnn/stop-yield",
                "--steps",
                "1",
                "--out",
                str(tmp_path / "i"),
            ],
            "add --per-image",
        ),
        (
            [
                "attack",
                "--model",
                str(tiny_model_path),
                "--data",
                "demo",
                "--per-image",
                "--init",
                str(out),
                "--steps",
                "1",
                "--out",
                str(tmp_path / "j"),
            ],
            "evaluate only",
        ),
    ]:
        bad = run_cli(*args)
        assert bad.returncode == 2 and words in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    assert not any((tmp_path / d).exists() for d in "rtij")


def test_a_universal_start_at_zero_learning_rate_is_the_universal_patch(tiny_model, demo):
    """``start=``: every image's patch begins as the universal patch, at its place; with lr 0 they stay it,
    so they score exactly as the universal patch does, image by image and view by view."""
    stop = demo.of_class("stop").head(10)
    x, y = stop.float_images(), stop.labels
    uni = PatchAttack(
        tiny_model,
        AttackConfig(size=0.08, shape="rect:1:2", target=13, steps=5, batch_size=16, candidates=2),
        progress=False,
    )(x, y)
    cfg = AttackConfig(target=13, steps=3, batch_size=64, lr=0.0, loss="sigmoid")
    own = PerImageAttack(tiny_model, cfg, views=2, progress=False, start=uni)(x, y)
    assert torch.equal(own.mask, uni.mask) and torch.equal(own.pixels, uni.pixels.expand_as(own.pixels))
    assert own.location.tolist() == [list(uni.location)] * 10
    grid = [{}, {"rotation": 10.0, "brightness": 0.8}]
    assert patch_success(tiny_model, x, y, own, 13, grid) == patch_success(tiny_model, x, y, uni, 13, grid)
    moved = PerImageAttack(
        tiny_model, AttackConfig(target=13, steps=3, batch_size=64, lr=0.05), views=2, progress=False, start=uni
    )(x, y)
    assert not torch.equal(moved.pixels, own.pixels) and moved.location.tolist() == own.location.tolist()
    with pytest.raises(PatchscopeError, match="^start: a on-object patch cannot start sticker"):
        PerImageAttack(tiny_model, AttackConfig(placement="sticker"), start=uni)


def test_attack_per_image_from_a_universal_patch_records_its_shape_size_and_place(
    tmp_path: Path, tiny_model_path: Path
):
    from patchscope.attacks import load_patch

    start = load_patch("zoo:gtsrb-cnn/stop-yield")
    out = tmp_path / "warm"
    r = run_cli(
        "attack",
        "--model",
        str(tiny_model_path),
        "--data",
        "demo",
        "--per-image",
        "--init",
        "zoo:gtsrb-cnn/stop-yield",
        "--limit",
        "3",
        "--steps",
        "1",
        "--views",
        "1",
        "--size",
        "0.02",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    config = json.loads((out / "config.json").read_text())
    made = PerImagePatches.load(out)
    assert config["size"] == pytest.approx(start.area_fraction) == pytest.approx(made.area_fraction)
    assert (
        config["location"] == list(start.location)
        and config["shape"].startswith("from --init")
        and config["init"] == "zoo:gtsrb-cnn/stop-yield"
    )


def test_per_image_passes_hold_at_most_the_batch_and_what_the_budget_holds(monkeypatch, tiny_model, demo):
    """``batch_size`` caps the rows of a pass, and so does the memory budget where it holds fewer: the same patches."""
    from patchscope.attacks.scoring import step_row_bytes

    stop = demo.of_class("stop").head(4)
    x, y = stop.float_images(), stop.labels
    cfg = AttackConfig(size=0.05, target=13, steps=3, batch_size=16, candidates=2, lr=0.05, loss="ce")
    found = {}
    for budget_rows in (None, 5):
        if budget_rows is not None:
            per_row = step_row_bytes(tiny_model, 32)
            monkeypatch.setenv("PATCHSCOPE_BATCH_BUDGET_MB", str(per_row * (budget_rows + 0.5) / 2**20))
        with forward_rows(tiny_model) as passes:
            found[budget_rows] = PerImageAttack(tiny_model, cfg, views=3, progress=False)(x, y)
        assert max(passes[1:]) == (budget_rows or cfg.batch_size)  # after the pass measuring an image's cost
    assert torch.equal(found[None].location, found[5].location)
    assert torch.allclose(found[None].pixels, found[5].pixels, atol=1e-5)
