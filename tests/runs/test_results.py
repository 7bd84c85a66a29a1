"""Every kind of run the commands record shows its results in `runs list`, `runs show` and the report."""

from __future__ import annotations

import ast
import html
import re
from pathlib import Path
from typing import Any

import pytest

import patchscope
from patchscope.cli.runs import list_runs, show_run
from patchscope.runs.report import runs_report
from patchscope.runs.results import HEADLINE, headline, result_rows, setting_rows
from patchscope.runs.store import RunStore

#: per kind, metrics shaped as the command logs them, and one result a person must see (name, text)
METRICS: dict[str, tuple[dict[str, Any], tuple[str, str]]] = {
    "train": (
        {"weights": "m.safetensors", "val_accuracy": 0.9712, "accuracy": {"gtsrb:test": 0.95}},
        ("val accuracy", "97.1%"),
    ),
    "attack": (
        {"out": "runs/a", "attack_images": 16, "patch_area": 0.0977, "train_targeted_success": 0.4759},
        ("train targeted success", "47.6%"),
    ),
    "evaluate": (
        {"models": {"gtsrb-cnn": {"clean_accuracy": 0.9937, "clean_images": 1110, "targeted_success": 0.4321}}},
        ("gtsrb-cnn targeted success", "43.2%"),
    ),
    "curve": ({"on-object": {"a90": 0.087, "points": [[0.0625, 0.5], [0.0977, 0.95]]}}, ("on-object a90", "8.7%")),
    "explain": ({"images": 8, "clean_accuracy": 1.0, "patched_accuracy": 0.125}, ("patched accuracy", "12.5%")),
    "defend": (
        {"patch.undefended.targeted_success": 0.7621, "patch.defended.targeted_success": 0.0015, "images": 20},
        ("patch defended targeted success", "0.1%"),
    ),
    "certify": ({"images": 2, "certified_accuracy": 0.625, "patch_size": 0.024}, ("certified accuracy", "62.5%")),
    "bench": (
        {"1.0%": {"robust_accuracy": 0.6875, "clean_accuracy": 1.0}, "flags": 0, "profile": "quick"},
        ("1.0% robust accuracy", "68.8%"),
    ),
    "study": (
        {"gtsrb-cnn.clean_accuracy": 0.99, "gtsrb-cnn.white_box.on-object@0.05": 0.312},
        ("gtsrb-cnn white box on-object@0.05", "31.2%"),
    ),
    "demo": (
        {"targeted_success": 0.4, "patch_area": 0.0791, "certified": {"5px": 0.75}, "transfer_success": {"b": 0.0}},
        ("targeted success", "40.0%"),
    ),
}
CONFIG = {"model": "gtsrb-cnn", "target": "tench", "target_id": 0, "limit": None, "compile": False, "size": 0.05}


def recorded_kinds() -> set[str]:
    """The kinds the commands record: every ``recorded("KIND", ...)`` in patchscope/cli."""
    kinds = set()
    for path in (Path(patchscope.__file__).parent / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "recorded" and node.args:
                kinds.add(ast.literal_eval(node.args[0]))
    return kinds


def test_every_recorded_kind_has_a_case_and_a_headline():
    assert recorded_kinds() == set(METRICS) == set(HEADLINE)


def _plain(text: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(text))


@pytest.mark.parametrize("kind", sorted(METRICS))
def test_a_run_shows_its_results_everywhere(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    metrics, (name, text) = METRICS[kind]
    store = RunStore(tmp_path / "runs.db")
    run_id = store.start(kind, CONFIG)
    store.finish(run_id, metrics)
    assert (name, text) in result_rows(kind, metrics)
    assert headline(kind, metrics).startswith(f"{name} {text}")  # the main result comes first

    monkeypatch.setenv("COLUMNS", "400")
    list_runs(kind=None, status=None, limit=20, as_json=False, store=store.path)
    listed = capsys.readouterr().out
    assert f"{name} {text}" in _plain(listed)

    show_run(str(run_id), as_json=False, store=store.path)
    shown = _plain(capsys.readouterr().out)
    assert f"{name} {text}" in shown and "tench (0)" in shown and "target id" not in shown

    page = _plain(runs_report([store.get(run_id)], tmp_path / "report").read_text())
    assert f"<td>{name}</td><td>{text}</td>" in page.replace("> <", "><")
    for repr_text in ("None", "False", "True"):
        assert f"<td>{repr_text}</td>" not in page  # settings read as a person writes them, never as Python
    assert "<td>setting: target</td><td>tench (0)</td>" in page.replace("> <", "><")


def test_settings_read_as_a_person_writes_them():
    assert setting_rows(CONFIG) == [
        ("model", "gtsrb-cnn"),
        ("target", "tench (0)"),
        ("limit", "-"),
        ("compile", "no"),
        ("size", "5.0%"),
    ]


def test_a_run_without_results_says_so(tmp_path: Path):
    store = RunStore(tmp_path / "runs.db")
    run_id = store.start("attack", CONFIG)
    store.fail(run_id, "diverged")
    assert headline("attack", {}) == "-"
    assert "no results recorded" in runs_report([store.get(run_id)], tmp_path / "report").read_text()
