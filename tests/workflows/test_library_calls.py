"""The library calls behind `attack`, `evaluate` and `defend`: typed results that agree with the lower-level ones."""

from __future__ import annotations

import json

import pytest
import torch

from patchscope.attacks import AttackConfig, Patch
from patchscope.errors import PatchscopeError
from patchscope.eval import DEFAULT_GRID, patch_success
from patchscope.eval.patch_metrics import PatchMeasurement, measure_patch
from patchscope.workflows.attack import AttackImages, AttackResult, run_attack
from patchscope.workflows.defend import DefenseResult, defend_patch


@pytest.fixture(scope="module")
def patch():
    pixels = torch.rand(3, 7, 7, generator=torch.Generator().manual_seed(0))
    return Patch(pixels, torch.ones(7, 7), "on-object", (12, 12), 32, {"source": "stop", "target": "yield"})


def test_measure_patch_is_patch_success_on_the_source_images(tiny_model, demo, patch):
    m = measure_patch(tiny_model, demo, patch, conditions="none")
    stop = demo.of_class("stop")
    raw = patch_success(tiny_model, stop.float_images(), stop.labels, patch, 13, [{}])
    assert isinstance(m, PatchMeasurement) and (m.source, m.target, m.images) == (
        demo.classes[14],
        demo.classes[13],
        len(stop),
    )
    assert m.targeted_success == raw.targeted_success and m.source_clean_accuracy == raw.clean_accuracy
    assert "conditions" not in m.as_dict(conditions=False) and len(m.as_dict()["conditions"]) == 1
    with pytest.raises(PatchscopeError) as e:
        measure_patch(tiny_model, demo, patch, conditions="sideways")
    assert e.value.params == ("conditions",)


def test_run_attack_measures_on_its_own_images_and_saves_a_run_folder(tiny_model, demo, tmp_path):
    images = AttackImages.select(demo, "stop", "yield", limit=8)
    result = run_attack(
        tiny_model,
        images,
        AttackConfig(size=0.05, steps=2, batch_size=8, candidates=1),
        progress=False,
        meta={"model": "tiny"},
    )
    assert isinstance(result, AttackResult) and result.images == 8 and not result.per_image
    check = patch_success(
        tiny_model, images.images.float_images(), images.images.labels, result.patch, images.target, DEFAULT_GRID
    )
    assert (
        result.targeted_success == check.targeted_success
        and result.patch.meta["model"] == "tiny"
        and result.patch.meta["target"] == demo.classes[13]
    )
    summary = result.save(tmp_path / "run", {"seed": 0})
    assert summary["train_targeted_success"] == result.targeted_success and "history" not in summary
    assert (
        json.loads((tmp_path / "run" / "metrics.json").read_text())["attack_images"] == 8
        and Patch.load(tmp_path / "run").side == result.patch.side
    )
    with pytest.raises(PatchscopeError, match="holds no images"):
        AttackImages.select(demo.subset(torch.arange(0)), "stop", None)  # head(0) is refused: limit >= 1


def test_defend_patch_with_an_adaptive_attacker(tiny_model, demo, patch):
    r = defend_patch(
        tiny_model,
        demo,
        patch,
        "bits",
        options={"bits": 3},
        conditions="none",
        limit=8,
        adaptive=True,
        steps=2,
        attack_batch_size=4,
    )
    assert isinstance(r, DefenseResult) and r.options == {"bits": 3} and r.images == 8 and r.source_images == 8
    assert (
        r.adaptive is not None
        and r.adaptive.bpda
        and r.adaptive.patch.side == patch.side
        and r.adaptive.patch.location == patch.location
    )
    flat = r.as_dict()
    assert flat["adaptive"]["bpda"] is True and set(flat["patch"]) == {"undefended", "defended"}
    assert (
        r.undefended.targeted_success
        == measure_patch(tiny_model, demo.of_class("stop").head(8), patch, conditions="none").targeted_success
    )
