"""The robustness study: one row per model, self-consistent numbers, a figure, a report and a stored run."""

from __future__ import annotations

import json
import sqlite3

import pytest

from patchscope.recipe import AttackRecipe
from patchscope.workflows.study import RobustnessStudy, StudyResult, StudySettings, study_table
from tests.conftest import run_cli

TINY = StudySettings(
    sizes=(0.05, 0.1),
    recipe=AttackRecipe(steps=2, batch_size=16, candidates=1),
    conditions=2,
    certify_images=8,
    explain_images=8,
)


@pytest.fixture(scope="module")
def results(tiny_model, demo):
    return RobustnessStudy({"a": tiny_model, "b": tiny_model}, demo, TINY)()


def test_every_model_gets_every_measurement(results):
    assert isinstance(results, StudyResult) and set(results.patches) == {"a", "b"}
    assert "patches" not in results.as_dict() and results.as_dict()["models"] == results.models
    for row in results.models.values():
        assert set(row["white_box"]) == {"sticker@0.05", "on-object@0.05", "sticker@0.1", "on-object@0.1"}
        for v in [
            *row["white_box"].values(),
            row["clean_accuracy"],
            row["certified_accuracy"],
            row["transfer_in"],
            row["transfer_out"],
        ]:
            assert 0.0 <= v <= 1.0
        assert (
            row["certified_accuracy"] <= row["clean_accuracy"] + 0.5
        )  # a sample of 8 can sit above the mean, never far
    assert len(study_table(results)["rows"]) == 2


def test_transfer_diagonal_is_the_white_box_number_of_the_same_patch(results):
    for name, row in results.models.items():
        assert results.transfer[name][name] == pytest.approx(row["white_box"]["on-object@0.1"])
    # the same network under two names: transfer in and out are its own patch's success on itself
    assert results.models["a"]["transfer_out"] == pytest.approx(results.transfer["a"]["b"])


def test_patches_are_made_and_measured_on_the_two_halves_of_the_source_images(tiny_model, demo):
    study = RobustnessStudy({"a": tiny_model}, demo, TINY)
    stop = demo.of_class(14)
    assert len(study.make) + len(study.test) == len(stop) and abs(len(study.make) - len(study.test)) <= 1
    assert (study.make.labels == 14).all() and (study.test.labels == 14).all()


def test_cli_writes_json_figure_report_patches_and_a_run(tmp_path, tiny_model_path, _private_run_store):
    out = tmp_path / "study"
    r = run_cli(
        "study",
        "robustness",
        "--models",
        str(tiny_model_path),
        "--data",
        "demo",
        "--sizes",
        "0.05",
        "--steps",
        "1",
        "--candidates",
        "1",
        "--conditions",
        "1",
        "--certify-images",
        "4",
        "--out",
        str(out),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert (out / "study.png").stat().st_size > 0 and (out / "report.html").exists()
    assert json.loads((out / "study.json").read_text())["models"] == res["models"]
    assert len(list((out / "patches").rglob("patch.safetensors"))) == 2
    rows = sqlite3.connect(_private_run_store).execute("select status from runs where kind='study'").fetchall()
    assert ("done",) in rows


@pytest.mark.parametrize(
    "args, words",
    [
        (["--sizes", "big"], "--sizes"),
        (["--sizes", "1.5"], "fraction"),
        (["--conditions", "0"], "--conditions"),
        (["--source", "stpo"], "stop"),
    ],
)
def test_bad_study_options_get_one_line(tmp_path, tiny_model_path, args, words):
    r = run_cli(
        "study", "robustness", "--models", str(tiny_model_path), "--data", "demo", "--out", str(tmp_path / "s"), *args
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and words in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "s").exists()
