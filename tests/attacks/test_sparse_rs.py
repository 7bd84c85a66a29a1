"""The sparse-rs attack: only the patch changes, no gradient is ever taken, the budget holds, a seed repeats, and it
wins where the decision hangs on a region a patch can cover, also when the gradient is zero everywhere."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from patchscope.attacks import AttackConfig, PerImagePatches, attack_loss, create_attack, load_patch
from patchscope.errors import PatchscopeError
from tests.conftest import run_cli

SIZE = 16  # px images
REGION = (slice(6, 10), slice(9, 13))  # the 4x4 region the hand-built model looks at


class NoBackward(torch.autograd.Function):
    """The identity, whose backward pass fails: a gradient taken through it would raise."""

    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        raise AssertionError("a backward pass ran")


class RedRegion(nn.Module):
    """Class 0 scores 1; class 1 scores 12 x how red the region is (red minus the mean of green and blue); class 2
    scores 0. ``rounded``: the scores are rounded to integers, so the gradient is zero everywhere. ``guarded``: a
    backward pass through the model raises."""

    def __init__(self, rounded: bool = False, guarded: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(12.0))
        self.rounded, self.guarded = rounded, guarded
        self.seen: list[torch.Tensor] = []  # every queried batch
        self.grad_enabled: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        self.grad_enabled.append(torch.is_grad_enabled())
        if self.guarded:
            x = NoBackward.apply(x)
        r = x[:, :, REGION[0], REGION[1]]
        red = (r[:, 0] - (r[:, 1] + r[:, 2]) / 2).mean((1, 2))
        score = self.weight * red
        if self.rounded:
            score = torch.round(score)
        return torch.stack([torch.ones_like(score), score, torch.zeros_like(score)], 1)


def _images(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    x = 0.2 + 0.3 * torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))  # dull: class 0
    return x, torch.zeros(n, dtype=torch.long)


def _attack(model: nn.Module, queries: int = 300, seed: int = 0, **config: object) -> object:
    cfg = AttackConfig(**{"size": 0.1, "target": 1, "seed": seed, "batch_size": 64, **config})  # a 5 px patch
    return create_attack("sparse-rs", model, cfg, queries=queries, progress=False)


def _pasted(images: torch.Tensor, out: PerImagePatches) -> torch.Tensor:
    """The images with their patches, pasted by hand."""
    x, s = images.clone(), out.side
    assert out.location is not None
    for i, (top, left) in enumerate(out.location.long().tolist()):
        x[i, :, top : top + s, left : left + s] = out.pixels[i]
    return x


def _success(model: nn.Module, images: torch.Tensor, out: PerImagePatches) -> float:
    with torch.no_grad():
        return float((model(_pasted(images, out)).argmax(1) == 1).float().mean())


def test_only_the_patch_changes_in_every_query_and_in_the_result():
    x, y = _images(8)
    model = RedRegion()
    out = _attack(model, queries=60)(x, y)
    side = out.side
    for batch in model.seen:  # each queried row differs from its own image inside one side x side square at most
        differs = (batch[:, None] != x[None]).any(2)  # (rows, images, H, W)
        own = differs.flatten(2).sum(2).argmin(1)
        for row, i in enumerate(own.tolist()):
            where = differs[row, i].nonzero()
            if len(where):
                assert int(where[:, 0].max() - where[:, 0].min()) < side
                assert int(where[:, 1].max() - where[:, 1].min()) < side
    pasted = _pasted(x, out)
    box = torch.zeros_like(pasted, dtype=torch.bool)
    for i, (top, left) in enumerate(out.location.long().tolist()):
        box[i, :, top : top + side, left : left + side] = True
    assert torch.equal(pasted[~box], x[~box])
    assert float(out.pixels.min()) >= 0 and float(out.pixels.max()) <= 1


def test_no_gradient_is_ever_taken():
    x, y = _images(8)
    model = RedRegion()
    _attack(model, queries=40)(x, y)
    assert model.grad_enabled and not any(model.grad_enabled)  # every query ran under no_grad
    assert model.weight.grad is None and model.weight.requires_grad  # and the model is as it was


def test_the_query_budget_holds_and_every_query_is_counted():
    x, y = _images(6)
    never = RedRegion()
    with torch.no_grad():
        never.weight.fill_(0.0)  # class 1 can never win: every image spends the whole budget
    attack = _attack(never, queries=25)
    out = attack(x, y)
    assert attack.queries_used.tolist() == [25] * 6 == out.meta["queries"]
    assert sum(len(b) for b in never.seen) == 150
    by_steps = create_attack("sparse-rs", never, AttackConfig(size=0.1, target=1, steps=7), progress=False)
    by_steps(x, y)
    assert by_steps.queries_used.tolist() == [7] * 6  # without queries, the config's steps are the budget

    model = RedRegion()
    attack = _attack(model, queries=200)
    out = attack(x, y)
    used = attack.queries_used
    assert bool((used >= 1).all() and (used <= 200).all())
    assert sum(len(b) for b in model.seen) == int(used.sum())  # an image stops being queried once it is won
    won = model(_pasted(x, out)).argmax(1) == 1
    assert bool((used[won.logical_not()] == 200).all())


def test_the_same_seed_gives_the_same_patches_and_another_seed_others():
    x, y = _images(6)
    a, b = (_attack(RedRegion(), queries=50)(x, y) for _ in range(2))
    c = _attack(RedRegion(), queries=50, seed=1)(x, y)
    assert torch.equal(a.pixels, b.pixels) and torch.equal(a.location, b.location) and a.meta == b.meta
    assert not (torch.equal(a.pixels, c.pixels) and torch.equal(a.location, c.location))


def test_it_wins_where_the_decision_hangs_on_a_region_it_can_cover():
    x, y = _images()
    model = RedRegion()
    assert (
        _success(model, x, PerImagePatches(torch.zeros(16, 3, 5, 5), torch.ones(5, 5), location=torch.zeros(16, 2)))
        == 0
    )
    out = _attack(model)(x, y)
    assert _success(model, x, out) >= 0.8


def test_it_wins_where_the_gradient_is_zero_everywhere():
    x, y = _images()
    probe = x.clone().requires_grad_()
    attack_loss(RedRegion(rounded=True, guarded=False)(probe), y, 1, "ce").sum().backward()
    assert probe.grad is not None and not probe.grad.any()  # a gradient attack gets no signal through the rounding
    model = RedRegion(rounded=True)
    out = _attack(model)(x, y)
    assert _success(model, x, out) >= 0.8


def test_it_refuses_sticker_placement_and_the_universal_attack_s_settings():
    with pytest.raises(PatchscopeError, match="placement must be on-object"):
        _attack(RedRegion(), placement="sticker")
    with pytest.raises(PatchscopeError, match="tv_weight, nps_weight, printer and compile"):
        _attack(RedRegion(), tv_weight=0.1)


def test_attack_cli_runs_sparse_rs_with_its_options_and_writes_per_image_patches(tmp_path, tiny_model_path):
    out = tmp_path / "sr"
    common = ("attack", "--model", str(tiny_model_path), "--data", "demo", "--limit", "3", "--attack", "sparse-rs")
    r = run_cli(*common, "--option", "queries=6", "--batch-size", "8", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "metrics.json",
        "patches.png",
        "patches.safetensors",
    ]
    config, summary = json.loads((out / "config.json").read_text()), json.loads(r.stdout)
    assert config["attack"] == "sparse-rs" and config["options"] == {"queries": 6} and config["per_image"] is True
    assert summary["attack_images"] == 3 and summary["per_image"] is True
    patches = load_patch(out, per_image=True)
    assert isinstance(patches, PerImagePatches) and all(q <= 6 for q in patches.meta["queries"])
    for args, says in (
        (("--option", "querys=6"), "--option querys: attack 'sparse-rs' has no such option"),
        (("--option", "queries=-1"), "--option queries"),
        (("--per-image",), "--per-image is --attack per-image"),
        (("--resume",), "--attack sparse-rs runs in one process and has no checkpoints"),
    ):
        bad = run_cli(*common, *args, "--out", str(tmp_path / "bad"))
        assert bad.returncode == 2 and says in bad.stderr and "Traceback" not in bad.stderr, (args, bad.stderr)
