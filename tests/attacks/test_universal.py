from __future__ import annotations

import functools
import shutil
import sys
from pathlib import Path

import pytest
import torch

from patchscope.attacks import AttackConfig, AttackInterrupted, Patch, PatchAttack
from patchscope.errors import PatchscopeError
from patchscope.eval import patch_success
from tests.conftest import forward_rows, run_cli


def _stop_images(demo, n=64):
    stop = demo.of_class("stop").head(n)
    return stop.float_images(), stop.labels


class RedDetector(torch.nn.Module):
    """Class 1 when the image is redder than green on average (by enough), else class 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        diff = (x[:, 0] - x[:, 1]).mean((1, 2))
        return torch.stack([torch.ones_like(diff), 20 * diff], 1)


@pytest.mark.parametrize("placement,loss", [("on-object", "ce"), ("sticker", "ce"), ("on-object", "sigmoid")])
def test_the_attack_finds_the_patch_a_known_model_wants(placement, loss):
    x, y = torch.full((32, 3, 32, 32), 0.5), torch.zeros(32, dtype=torch.long)
    cfg = AttackConfig(size=0.15, target=1, steps=60, batch_size=16, candidates=2, placement=placement, loss=loss)
    patch = PatchAttack(RedDetector(), cfg, progress=False)(x, y)
    assert patch.pixels[0].mean() > 0.9 and patch.pixels[1].mean() < 0.1  # red up, green down
    random = Patch(torch.rand_like(patch.pixels), patch.mask, patch.placement, patch.location, 32)
    grid = [{}, {"rotation": 10.0}, {"yaw": -10.0, "brightness": 0.8}]
    assert patch_success(RedDetector(), x, y, patch, 1, grid).targeted_success == 1.0
    assert patch_success(RedDetector(), x, y, random, 1, grid).targeted_success == 0.0
    assert patch.pixels.min() >= 0 and patch.pixels.max() <= 1


def test_optimised_patch_raises_the_target_on_a_trained_model(demo, tiny_model):
    x, y = _stop_images(demo)
    cfg = AttackConfig(size=0.15, target=13, steps=40, batch_size=32, candidates=2)
    patch = PatchAttack(tiny_model, cfg, progress=False)(x, y)
    random = Patch(torch.rand_like(patch.pixels), patch.mask, patch.placement, patch.location, 32)
    grid = [{}, {"rotation": 10.0}, {"yaw": -10.0, "brightness": 0.8}]
    won = patch_success(tiny_model, x, y, patch, 13, grid)
    base = patch_success(tiny_model, x, y, random, 13, grid)
    assert won.target_confidence > base.target_confidence
    assert patch.location is not None and 0 <= min(patch.location) and max(patch.location) <= 32 - patch.side


@pytest.mark.parametrize("placement,optimizer", [("on-object", "adam"), ("sticker", "sign")])
def test_interrupt_then_resume_gives_the_same_patch(tmp_path: Path, demo, tiny_model, placement, optimizer):
    x, y = _stop_images(demo, 32)
    cfg = AttackConfig(
        size=0.05, target=13, steps=12, batch_size=8, candidates=3, placement=placement, optimizer=optimizer, lr=0.05
    )
    whole = PatchAttack(tiny_model, cfg, progress=False)(x, y)

    ckpt = tmp_path / "ck.pt"
    first = PatchAttack(tiny_model, cfg, checkpoint=ckpt, checkpoint_every=0, progress=False)
    original = first._lr

    def lr_then_stop(step: int) -> float:  # stop after step 5 (inside the candidate search)
        first._stop = step >= 2
        return original(step)

    first._lr = lr_then_stop
    with pytest.raises(AttackInterrupted):
        first(x, y)
    assert ckpt.exists()
    resumed = PatchAttack(tiny_model, cfg, checkpoint=ckpt, resume=True, progress=False)(x, y)
    assert torch.equal(resumed.pixels, whole.pixels) and resumed.location == whole.location


def test_same_seed_same_patch_other_seed_other_patch(demo, tiny_model):
    x, y = _stop_images(demo, 16)
    cfg = dict(size=0.05, target=13, steps=5, batch_size=8, candidates=1)
    a = PatchAttack(tiny_model, AttackConfig(**cfg, seed=1), progress=False)(x, y)
    b = PatchAttack(tiny_model, AttackConfig(**cfg, seed=1), progress=False)(x, y)
    c = PatchAttack(tiny_model, AttackConfig(**cfg, seed=2), progress=False)(x, y)
    assert torch.equal(a.pixels, b.pixels) and not torch.equal(a.pixels, c.pixels)


@pytest.mark.parametrize("placement", ["on-object", "sticker"])
def test_the_attack_steps_make_no_host_syncs(placement):
    """No .item()/float()/bool() on tensors and no data-dependent shapes inside a step (on a GPU each one
    stalls the queue): only the progress read every 10 steps and the final location may read values."""
    from torch.utils._python_dispatch import TorchDispatchMode

    reads: list[str] = []

    class Reads(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in (
                torch.ops.aten._local_scalar_dense,
                torch.ops.aten.nonzero,
                torch.ops.aten.masked_select,
            ):
                reads.append(str(func))
            return func(*args, **(kwargs or {}))

    x, y = torch.rand(16, 3, 32, 32), torch.zeros(16, dtype=torch.long)
    cfg = AttackConfig(
        size=0.05,
        target=1,
        steps=30,
        batch_size=8,
        candidates=1,
        location=(4, 4),
        optimizer="sign",
        placement=placement,
    )
    with Reads():
        PatchAttack(RedDetector(), cfg, progress=False)(x, y)
    assert reads == []


def _score_runs(model, scorers, n: int, placement: str = "on-object", ranges=None, seed: int = 0):  # type: ignore[no-untyped-def]
    """One 7x7 patch on ``n`` sampled views of random images, scored by each of ``scorers`` (``score_views``-like):
    a (loss, hits, patch gradient) triple per scorer, for comparing ways of scoring the same step."""
    from patchscope.attacks import ViewRanges, sample_view
    from patchscope.attacks.eot import on_object_plan

    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 43, (n,), generator=g)
    views = sample_view(n, ranges or ViewRanges(), 32, 7, placement, None, g)
    mask = torch.ones(7, 7)
    plan = on_object_plan(mask, views.location, 32, 32) if placement == "on-object" else None
    pix = torch.rand(1, 3, 7, 7, generator=g)
    out = []
    for score in scorers:
        p = pix.clone().requires_grad_()
        loss, hits = score(model, x, y, p.repeat_interleave(n, 0), mask, plan, views, 1, 13, "ce", 5.0, n)
        loss.sum().backward()
        out.append((loss.detach(), hits, p.grad))
    return out


@pytest.mark.skipif(
    not any(shutil.which(c) for c in ("cc", "gcc", "clang")), reason="torch.compile on a CPU needs a C compiler"
)
def test_the_compiled_step_scores_as_the_eager_one_and_the_cli_runs_it(
    tiny_model, tiny_model_path: Path, tmp_path: Path
):
    """``compile=True`` puts the render+model+loss step through torch.compile: same losses, successes and patch
    gradient as eager up to float rounding; ``attack --compile`` runs it (the same shapes: one compilation,
    which the CLI's process finds in inductor's on-disk cache) and records it in its config."""
    import json

    from patchscope.attacks.universal import _compiled_score, score_views

    (l1, h1, g1), (l2, h2, g2) = _score_runs(tiny_model, (score_views, _compiled_score("cpu")), 8)
    assert torch.allclose(l1, l2, atol=1e-5) and torch.equal(h1, h2) and torch.allclose(g1, g2, atol=1e-5, rtol=1e-4)
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
        "--candidates",
        "1",
        "--location",
        "4,4",
        "--size",
        "0.05",
        "--compile",
        "--out",
        str(tmp_path / "a"),
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "a" / "config.json").read_text())["compile"] is True


def test_bf16_precision_scores_near_fp32_and_the_cli_runs_it(tiny_model, tiny_model_path: Path, tmp_path: Path):
    """``precision="bf16"`` runs the model under bf16 autocast (channels-last on a CPU): the same successes,
    losses within bf16 rounding, a patch gradient pointing the same way; ``attack --precision bf16`` runs it
    and records it; an unknown precision is one clear line."""
    import json

    from patchscope.attacks.universal import score_views

    (l1, h1, g1), (l2, h2, g2) = _score_runs(
        tiny_model, (score_views, functools.partial(score_views, precision="bf16")), 64
    )
    assert l2.dtype == torch.float32 and torch.allclose(l1, l2, rtol=0.03)
    assert (h1 - h2).abs().max() <= 2  # an image on the decision boundary may flip under bf16 rounding
    assert torch.nn.functional.cosine_similarity(g1.flatten(), g2.flatten(), dim=0) > 0.9
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
        "--candidates",
        "1",
        "--size",
        "0.05",
        "--precision",
        "bf16",
        "--out",
        str(tmp_path / "a"),
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "a" / "config.json").read_text())["precision"] == "bf16"
    r = run_cli(
        "attack",
        "--model",
        str(tiny_model_path),
        "--data",
        "demo",
        "--steps",
        "3",
        "--precision",
        "fp8",
        "--out",
        str(tmp_path / "b"),
    )
    assert (
        r.returncode == 2
        and "--precision" in r.stderr
        and "fp8" in r.stderr
        and "Traceback" not in r.stderr
        and not (tmp_path / "b" / "patch.png").exists()
    )


def test_a_still_view_skips_the_camera_with_the_same_scores(tiny_model):
    """With ranges that change nothing (``NO_CHANGE``: stickers alone), ``score_views(still=True)`` skips the
    camera and light stages and scores as the full render does, up to float rounding."""
    from patchscope.attacks import NO_CHANGE
    from patchscope.attacks.universal import score_views

    scorers = (score_views, functools.partial(score_views, still=True))
    (l1, h1, g1), (l2, h2, g2) = _score_runs(tiny_model, scorers, 16, placement="sticker", ranges=NO_CHANGE, seed=1)
    assert torch.allclose(l1, l2, atol=1e-5) and torch.equal(h1, h2) and torch.allclose(g1, g2, atol=1e-5, rtol=1e-3)


def test_bad_attack_settings_are_clear():
    with pytest.raises(PatchscopeError):
        AttackConfig(placement="floating")
    with pytest.raises(PatchscopeError):
        AttackConfig(steps=0)
    with pytest.raises(PatchscopeError, match="kappa"):
        AttackConfig(loss="margin", kappa=-1.0)


def test_torchrun_with_two_cpu_ranks_equals_one_process(tmp_path: Path, tiny_model_path: Path, tiny_model):
    """Two ranks, each passing its share through the model 3 rows at a time, make the patch one process makes."""
    common = [
        "attack",
        "--model",
        str(tiny_model_path),
        "--data",
        "demo",
        "--steps",
        "6",
        "--batch-size",
        "8",
        "--candidates",
        "2",
        "--limit",
        "32",
        "--size",
        "0.05",
    ]
    single = run_cli(*common, "--out", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr
    import os
    import subprocess

    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29517",
            "-m",
            "patchscope",
            *common,
            "--out",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PATCHSCOPE_BATCH_BUDGET_MB": _budget_for_rows(tiny_model, 3.5)},
    )
    assert two.returncode == 0, two.stderr[-2000:]
    p1, p2 = Patch.load(tmp_path / "one"), Patch.load(tmp_path / "two")
    assert p1.location == p2.location
    assert torch.allclose(p1.pixels, p2.pixels, atol=1e-4)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        "config.json",
        "metrics.json",
        "patch.png",
        "patch.safetensors",
    ]


@pytest.mark.parametrize("location,candidates,restarts", [((3, 4), 5, 3), (None, 2, 3)])
def test_restarts_start_several_patches_at_each_place_and_keep_one(
    monkeypatch, demo, tiny_model, location, candidates, restarts
):
    x, y = _stop_images(demo, 16)
    seen = {}
    choose = PatchAttack._choose

    def spy(self, images, labels, patches, mask, locs, side, g):
        seen["patches"], seen["locs"] = patches.clone(), locs.clone()
        return choose(self, images, labels, patches, mask, locs, side, g)

    monkeypatch.setattr(PatchAttack, "_choose", spy)
    cfg = AttackConfig(
        size=0.05, target=13, steps=6, batch_size=8, candidates=candidates, restarts=restarts, location=location
    )
    patch = PatchAttack(tiny_model, cfg, progress=False)(x, y)
    places = 1 if location else candidates
    locs, patches = seen["locs"], seen["patches"]
    assert len(locs) == len(patches) == places * restarts  # every start of every place took part in the search
    assert torch.equal(locs.view(places, restarts, 2), locs.view(places, restarts, 2)[:, :1].expand(-1, restarts, -1))
    assert len({tuple(p) for p in locs.view(places, restarts, 2)[:, 0].tolist()}) == places
    assert all(not torch.equal(patches[i], patches[i + 1]) for i in range(len(patches) - 1))  # distinct starts
    assert tuple(patch.location) in {tuple(int(v) for v in row) for row in locs.tolist()}
    assert location is None or tuple(patch.location) == location
    with pytest.raises(PatchscopeError, match="^restarts must be"):
        AttackConfig(restarts=0)


def _budget_for_rows(model: torch.nn.Module, rows: float) -> str:
    """PATCHSCOPE_BATCH_BUDGET_MB for ``rows`` rows per pass of an attack's step on ``model`` at 32 px."""
    from patchscope.attacks.scoring import step_row_bytes

    return str(step_row_bytes(model, 32) * rows / 2**20)


@pytest.mark.parametrize("placement", ["on-object", "sticker"])
def test_a_small_memory_budget_splits_each_step_into_passes_with_the_same_patch(
    monkeypatch, demo, tiny_model, placement
):
    """The batch decides the patch; the memory budget only how many of its rows go through the model at once: at a
    budget of 1, 2 or 7 rows a pass (uneven passes, candidates split), every step still sees batch_size rows of
    every candidate and the patch is the one a single pass makes."""
    x, y = _stop_images(demo, 16)
    cfg = AttackConfig(size=0.05, target=13, steps=4, batch_size=8, candidates=2, placement=placement, loss="ce")
    whole = PatchAttack(tiny_model, cfg, progress=False)(x, y)
    for rows in (1, 2, 7):
        monkeypatch.setenv("PATCHSCOPE_BATCH_BUDGET_MB", _budget_for_rows(tiny_model, rows + 0.5))
        with forward_rows(tiny_model) as seen:
            patch = PatchAttack(tiny_model, cfg, progress=False)(x, y)
        measuring, *passes = seen  # the first pass measures what an image costs (two blank images)
        assert measuring == 2 and max(passes) <= rows
        # step 0: 2 candidates x 8 rows; the choice between them: as many; steps 1-3: the kept one's 8 rows
        assert sum(passes) == 2 * 8 + 2 * 8 + 3 * 8
        assert patch.location == whole.location
        assert torch.allclose(patch.pixels, whole.pixels, atol=1e-5)


def test_a_printer_shows_the_model_the_patch_as_printed():
    """An identity printer changes nothing, bit for bit; a printer that washes colours out gives another patch."""
    from patchscope.attacks import AttackConfig, PatchAttack
    from patchscope.attacks.losses import printable_colours
    from patchscope.attacks.printer import fit_printer
    from patchscope.models.archs import cnn
    from patchscope.models.wrapper import Classifier

    torch.manual_seed(0)
    model = Classifier(cnn(num_classes=3, width=4), ["a", "b", "c"]).eval()
    x, y = torch.rand(8, 3, 32, 32), torch.zeros(8, dtype=torch.long)
    colours = printable_colours()

    def made(printer):
        cfg = AttackConfig(size=0.1, target=1, steps=4, batch_size=4, candidates=1, nps_weight=0.1, printer=printer)
        return PatchAttack(model, cfg, progress=False)(x, y).pixels

    plain = made(None)
    assert torch.equal(made(fit_printer(colours, colours)), plain)
    assert not torch.equal(made(fit_printer(colours, colours * 0.3 + 0.35)), plain)
