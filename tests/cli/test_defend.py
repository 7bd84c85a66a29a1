"""`patchscope defend` and `patchscope certify` on the tiny model and 16 demo images."""

from __future__ import annotations

import json

import pytest
import torch

from patchscope.attacks import Patch
from patchscope.defenses import mask_positions
from patchscope.models.precision import bf16_native
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def patch_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("patch")
    pixels = torch.rand(3, 7, 7, generator=torch.Generator().manual_seed(0))
    Patch(
        pixels,
        torch.ones(7, 7),
        "on-object",
        (12, 12),
        32,
        {"source": "stop", "target": "yield", "config": {"size": 0.05, "shape": "square"}},
    ).save(d)
    return d


def _json(proc):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _one_line_error(proc, needle):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert needle in lines[0].lower(), lines[0]


def test_certify_patchcleanser(tiny_model_path):
    out = _json(
        run_cli(
            "certify",
            "--model",
            str(tiny_model_path),
            "--defense",
            "patchcleanser",
            "--patch-size",
            "0.05",
            "--data",
            "demo",
            "--limit",
            "16",
            "--option",
            "k=3",
            "--json",
        )
    )
    _, side, _ = mask_positions(32, out["patch_side"], 3)
    assert out["images"] == 16 and out["patch_side"] == 7 and out["mask_side"] == side
    assert out["full_map_passes"] == out["masks"] * (out["masks"] + 1) // 2
    assert (
        out["masks"] <= out["forward_passes_per_image"] <= out["full_map_passes"]
    )  # only the entries a decision reads
    for key in ("clean_accuracy", "defended_accuracy", "certified_accuracy"):
        assert 0 <= out[key] <= 1
    assert out["certified_accuracy"] <= out["defended_accuracy"]  # certified implies the robust prediction is right
    assert (
        out["images_per_second"] > 0 and out["precision"] == "fp32" and out["batch_size"] == 256
    )  # the CPU's default chunk


def test_certify_bf16_is_opt_in_and_reported(tiny_model_path):
    proc = run_cli(
        "certify",
        "--model",
        str(tiny_model_path),
        "--defense",
        "patchcleanser",
        "--data",
        "demo",
        "--limit",
        "4",
        "--option",
        "k=2",
        "--bf16",
        "--json",
    )
    out = _json(proc)
    assert (
        out["precision"] == "bf16"
        and out["images"] == 4
        and 0 <= out["certified_accuracy"] <= out["defended_accuracy"] <= 1
    )
    assert ("bf16 is emulated" in proc.stderr) == (
        not bf16_native("cpu")
    )  # warned exactly where the CPU lacks bf16 units


@pytest.mark.parametrize(("defense", "band", "passes"), [("ds-column", "4", 32)])
def test_certify_derandomized_smoothing(tiny_model_path, defense, band, passes):
    out = _json(
        run_cli(
            "certify",
            "--model",
            str(tiny_model_path),
            "--defense",
            defense,
            "--option",
            f"band={band}",
            "--data",
            "demo",
            "--limit",
            "16",
            "--json",
        )
    )
    assert out["forward_passes_per_image"] == passes and out["delta"] == 7 + 4 - 1
    assert out["certified_accuracy"] <= out["defended_accuracy"] <= 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--defense", "nope"), "unknown --defense"),
        (("--defense", "patchcleanser", "--patch-size", "0"), "patch-size"),
        (("--defense", "patchcleanser", "--patch-size", "1.5"), "patch-size"),
        (("--defense", "patchcleanser", "--batch-size", "0"), "batch-size"),
    ],
)
def test_certify_rejects_bad_input_in_one_line(tiny_model_path, args, needle):
    _one_line_error(
        run_cli("certify", "--model", str(tiny_model_path), "--data", "demo", "--limit", "4", *args), needle
    )


def test_defend_reports_clean_accuracy_and_patch_success_through_the_defense(tiny_model_path, patch_dir):
    out = _json(
        run_cli(
            "defend",
            "--model",
            str(tiny_model_path),
            "--defense",
            "median",
            "--patch",
            str(patch_dir),
            "--data",
            "demo",
            "--source",
            "stop",
            "--target",
            "yield",
            "--conditions",
            "none",
            "--limit",
            "16",
            "--json",
        )
    )
    assert out["images"] == 16 and out["source_images"] == 16
    assert 0 <= out["defended_clean_accuracy"] <= 1 and 0 <= out["clean_accuracy"] <= 1
    for side in ("undefended", "defended"):
        m = out["patch"][side]
        assert 0 <= m["targeted_success"] <= m["untargeted_success"] + 1e-9 <= 1 + 1e-9 and m["target"] == "yield"
    assert "adaptive" not in out


@pytest.mark.parametrize("defense", ["bits", "clip"])
def test_defend_adaptive_optimises_a_new_patch_through_the_defense(tiny_model_path, patch_dir, tmp_path, defense):
    out = _json(
        run_cli(
            "defend",
            "--model",
            str(tiny_model_path),
            "--defense",
            defense,
            "--patch",
            str(patch_dir),
            "--data",
            "demo",
            "--conditions",
            "none",
            "--limit",
            "16",
            "--adaptive",
            "--steps",
            "3",
            "--attack-batch-size",
            "8",
            "--out",
            str(tmp_path / "new"),
            "--json",
        )
    )
    assert out["adaptive"]["bpda"] == (defense == "bits")
    new = Patch.load(tmp_path / "new")
    old = Patch.load(patch_dir)
    assert new.side == old.side and new.location == old.location and new.placement == old.placement
    assert not torch.equal(new.pixels, old.pixels)
    for side in ("undefended", "defended"):
        assert 0 <= out["adaptive"][side]["untargeted_success"] <= 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--defense", "nope"), "unknown --defense"),
        (("--defense", "median", "--option", "bits=3"), "--option bits"),
        (("--defense", "median", "--option", "nope=1"), "--option nope"),
        (("--defense", "median", "--option", "kernel=x"), "--option kernel='x'"),
        (("--defense", "median", "--option", "kernel=4"), "--option kernel"),
    ],
)
def test_defend_rejects_bad_input_in_one_line(tiny_model_path, patch_dir, args, needle):
    _one_line_error(
        run_cli(
            "defend",
            "--model",
            str(tiny_model_path),
            "--patch",
            str(patch_dir),
            "--data",
            "demo",
            "--limit",
            "4",
            *args,
        ),
        needle,
    )


def test_defend_takes_the_defense_options_as_typed_key_values(tmp_path, tiny_model_path, patch_dir):
    from patchscope.runs.store import RunStore

    store = tmp_path / "runs.db"
    args = ["--model", str(tiny_model_path), "--patch", str(patch_dir), "--data", "demo", "--limit", "4"]
    r = run_cli(
        "defend", "--defense", "jpeg", "--option", "quality=75", *args, "--conditions", "none", "--json",
        env={"PATCHSCOPE_STORE": str(store)},
    )  # fmt: skip
    assert _json(r)["defense"] == "jpeg"
    (run,) = RunStore(store).runs()
    assert run.config["options"] == {"quality": 75.0} and isinstance(run.config["options"]["quality"], float)
    for bad in ("nope=1", "quality=high", "quality=0"):
        proc = run_cli("defend", "--defense", "jpeg", "--option", bad, *args)
        _one_line_error(proc, "--option")
        assert ("its options: quality" in proc.stderr) == bad.startswith("nope")  # an unknown key lists the valid ones


def test_defend_certify_and_explain_runs_are_stored(tmp_path, tiny_model_path, patch_dir):
    from patchscope.runs.store import RunStore

    store = tmp_path / "runs.db"
    env = {"PATCHSCOPE_STORE": str(store)}
    _json(
        run_cli(
            "defend",
            "--model",
            str(tiny_model_path),
            "--defense",
            "blur",
            "--patch",
            str(patch_dir),
            "--data",
            "demo",
            "--limit",
            "8",
            "--conditions",
            "none",
            "--json",
            env=env,
        )
    )
    cert = _json(
        run_cli(
            "certify",
            "--model",
            str(tiny_model_path),
            "--defense",
            "ds-column",
            "--data",
            "demo",
            "--limit",
            "8",
            "--json",
            env=env,
        )
    )
    r = run_cli(
        "explain",
        "--model",
        str(tiny_model_path),
        "--patch",
        str(patch_dir),
        "--data",
        "demo",
        "--limit",
        "8",
        "--out",
        str(tmp_path / "ex"),
        "--json",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    runs = {run.kind: run for run in RunStore(store).runs()}
    assert set(runs) == {"defend", "certify", "explain"} and all(run.status == "done" for run in runs.values())
    assert runs["certify"].metrics["certified_accuracy"] == cert["certified_accuracy"]
    assert runs["defend"].metrics["patch.defended.targeted_success"] is not None
    assert runs["explain"].artifacts["out"] == str(tmp_path / "ex")


def test_the_adaptive_attack_keeps_a_drawn_shape_and_squares_a_lost_mask_file():
    import torch

    from patchscope.attacks import Patch, shape_mask
    from patchscope.workflows.defend import adaptive_config as _adaptive_config

    bar = Patch(
        torch.rand(3, 14, 14),
        shape_mask("rect:1:2", 14),
        "on-object",
        (9, 9),
        32,
        {"config": {"shape": "rect:1:2", "size": 0.1}},
    )
    cfg = _adaptive_config(bar, 13, steps=3, batch_size=8, seed=0)
    assert (cfg.shape, cfg.size, cfg.location) == ("rect:1:2", 0.1, (9, 9))
    gone = Patch(
        torch.rand(3, 10, 10),
        torch.ones(10, 10),
        "on-object",
        (9, 9),
        32,
        {"config": {"shape": "/nowhere/mask.png", "size": 0.1}},
    )
    assert _adaptive_config(gone, 13, steps=3, batch_size=8, seed=0).shape == "square"
