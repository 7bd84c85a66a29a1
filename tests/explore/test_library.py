"""What the page shows comes from the library: a look at a scene (the zoo's patch flips the bundled Stop sign,
the layer shares are zero where the patch changes nothing), PatchCleanser's verdict equal to the full prediction
map's, and an optimisation that reports progress, stops when asked keeping its patch, and is saved as a run."""

from __future__ import annotations

import json

import torch

from patchscope.defenses.patchcleanser import mask_set, pc_certify, pc_infer, pc_prediction_map
from patchscope.explore import (
    Camera,
    OptimiseSettings,
    Placement,
    blank_patch,
    certify_scene,
    look,
    optimise_here,
    render_scene,
    save_run,
    upright_patch,
)
from patchscope.explore.verdict import certify_view, defend_view
from patchscope.runs.store import RunStore
from tests.cli._contract import invoke
from tests.explore.conftest import STOP, YIELD


def test_the_small_vit_patch_turns_the_stop_sign_into_yield_only_where_it_was_made_to_sit(vit, stop_image, small_patch):
    home = look(vit, render_scene(stop_image, small_patch, Placement.of(small_patch, 32), Camera()))
    assert home.clean_top[0].id == STOP and home.patched_top[0].id == YIELD and home.flipped
    assert home.heatmap == "rollout" and home.clean_heat.shape == (32, 32) and float(home.patched_heat.max()) == 1.0
    probs = [g.prob for g in home.patched_top]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    corner = look(vit, render_scene(stop_image, small_patch, Placement(27, 27), Camera()))
    assert corner.patched_top[0].id == STOP and not corner.flipped
    assert all(layer.share is not None and layer.share > 0 for layer in home.layers)


def test_a_patch_out_of_view_moves_no_layer(tiny_model, stop_image):
    seen = look(tiny_model, render_scene(stop_image, blank_patch(32), Placement(-50, -50), Camera()))
    assert seen.heatmap == "gradcam" and not seen.flipped
    assert [layer.share for layer in seen.layers] == [0.0] * len(seen.layers)


def test_the_verdict_is_the_full_prediction_maps(tiny_model, stop_image, small_patch):
    for placement in (Placement.of(small_patch, 32), Placement(8, 24, 1.5, 30)):
        scene = render_scene(stop_image, small_patch, placement, Camera(yaw=10))
        side = scene.box_side()
        v = certify_scene(tiny_model, scene, STOP, k=4)
        full, _ = pc_prediction_map(tiny_model, torch.cat([scene.clean, scene.patched]), mask_set(32, side, 4))
        assert v.patch_side == side and v.masks == 16
        assert v.certified == bool(pc_certify(full[:1], torch.tensor([STOP]))[0])
        assert v.defended == int(pc_infer(full[1:], 43)[0])
        assert (v.broken_by is None) == v.certified
        if v.deciding is not None:  # the deciding mask's whole row agrees with its own answer
            assert v.case == "one mask"


def test_certify_and_defend_each_read_only_what_they_need(tiny_model, stop_image):
    view = stop_image[None]
    cert, defended = certify_view(tiny_model, view, STOP, 5, k=3), defend_view(tiny_model, view, 5, k=3)
    assert defended.passes <= 9 + 9 * 8 and cert.passes <= 9 * 10 // 2 + 9  # never more than the map's entries
    assert defended.answer == int(pc_infer(pc_prediction_map(tiny_model, view, mask_set(32, 5, 3))[0], 43)[0])


def test_an_optimisation_reports_progress_and_stops_when_asked_keeping_its_patch(tiny_model, stop_image):
    start = upright_patch(blank_patch(32), Placement(16.3, 12.0, 0.8), 32)
    assert start.location == (12, 8) and start.side == 8 and start.placement == "on-object"
    seen, before = [], [p.clone() for p in tiny_model.parameters()]
    out = optimise_here(
        tiny_model,
        stop_image,
        STOP,
        start,
        OptimiseSettings(target=YIELD, steps=50, views=2),
        on_progress=seen.append,
        stop=lambda: len(seen) >= 2,
    )
    assert out.stopped and out.steps == 11 and [p.step for p in seen] == [1, 11]
    assert out.patch.location == (12, 8) and out.patch.side == 8
    assert not torch.equal(out.patch.pixels, start.pixels) and 0 <= float(out.patch.pixels.min())
    assert 0 <= (out.targeted_success or 0) <= out.untargeted_success <= 1
    assert all(torch.equal(a, b) for a, b in zip(before, tiny_model.parameters()))


def test_a_saved_optimisation_is_an_attack_run_with_its_folder(tiny_model, stop_image, tmp_path):
    start = upright_patch(blank_patch(32), Placement(16, 16), 32)
    out = optimise_here(tiny_model, stop_image, STOP, start, OptimiseSettings(target=YIELD, steps=2, views=2))
    store = RunStore(tmp_path / "runs.db")
    facts = {"model": "m.safetensors", "source": "stop", "target": "yield", "image": "data:3"}
    saved = save_run(out, store, tmp_path / "explore", facts, data="demo")
    run = store.get(saved.id)
    assert run.kind == "attack" and run.status == "done" and run.config["command"] == "explore"
    assert run.metrics["patch_side"] == 10 and run.artifacts["patch"].endswith("patch.safetensors")
    assert sorted(p.name for p in saved.folder.iterdir()) == [
        "config.json",
        "metrics.json",
        "patch.png",
        "patch.safetensors",
    ]
    assert json.loads((saved.folder / "config.json").read_text())["target"] == "yield"
    assert saved.commands[0] == f"patchscope explore --model m.safetensors --data demo --patch {saved.folder}"
    assert saved.commands[1].startswith("patchscope evaluate --models m.safetensors --data demo --patch ")
    listed = invoke("--store", str(store.path), "runs", "list", "--json")
    assert listed.code == 0 and [(r["id"], r["kind"]) for r in json.loads(listed.out)["runs"]] == [(saved.id, "attack")]
