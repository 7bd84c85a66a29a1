"""What the commands print: at 80 columns, a table or summary whose lines all fit and whose model, patch and run
names are whole; with ``--json``, strict JSON (no NaN).

Each command runs once per form in this process (through :func:`patchscope.cli.main`), on a 24-image data set and
the tiny model saved under a long name, in a short temporary folder so that the paths it prints fit too.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from patchscope.attacks import list_patches
from patchscope.defenses import list_certifiers, list_defenses
from patchscope.models import list_models
from tests.cli._contract import Result, invoke

MODEL = "tiny-cnn-with-a-longer-name.safetensors"
ZOO = "gtsrb-cnn,gtsrb-resnet-pc16"  # the longest zoo name
ZOO_PATCHES = "zoo:gtsrb-cnn/stop-yield,zoo:gtsrb-resnet-pc16/stop-yield"
DATA = "npz:small.npz"

# name -> (arguments, names the human output must show whole)
COMMANDS: dict[str, tuple[list[str], list[str]]] = {
    "zoo": (["zoo"], [*list_models(), *list_patches()]),
    "defenses": (["defenses"], [*list_defenses(), *list_certifiers()]),
    "evaluate": (["evaluate", "--models", f"gtsrb-cnn,{MODEL}", "--data", DATA, "--limit", "8"], ["gtsrb-cnn", MODEL]),
    "evaluate --patch": (
        ["evaluate", "--models", MODEL, "--data", DATA, "--patch", "zoo:gtsrb-cnn/stop-yield", "--source", "stop"],
        [MODEL],
    ),
    "attack": (
        ["attack", "--model", MODEL, "--data", DATA, "--steps", "2", "--batch-size", "4", "--candidates", "1"]
        + ["--limit", "4", "--checkpoint-every", "0", "--out", "attack"],
        [MODEL, "attack"],
    ),
    "transfer": (
        ["transfer", "--patches", ZOO_PATCHES, "--models", f"gtsrb-cnn,{MODEL}", "--data", DATA, "--limit", "2"],
        [*ZOO_PATCHES.split(","), "gtsrb-cnn", MODEL],
    ),
    "curve": (
        ["curve", "--model", MODEL, "--data", DATA, "--eval-data", DATA, "--sizes", "0.05", "--steps", "1"]
        + ["--placements", "sticker,on-object", "--batch-size", "4", "--candidates", "1", "--limit", "2"]
        + ["--out", "curve"],
        [MODEL],
    ),
    "explain": (
        ["explain", "--patch", "zoo:gtsrb-cnn/stop-yield", "--model", MODEL, "--data", DATA, "--limit", "2"]
        + ["--out", "explain"],
        ["explain.json", "explain"],
    ),
    "defend": (
        ["defend", "--defense", "jpeg", "--patch", "zoo:gtsrb-cnn/stop-yield", "--model", MODEL, "--data", DATA]
        + ["--limit", "4", "--conditions", "none"],
        [MODEL, "zoo:gtsrb-cnn/stop-yield"],
    ),
    "certify": (["certify", "--defense", "ds-column", "--model", MODEL, "--data", DATA, "--limit", "2"], [MODEL]),
    "train": (
        ["train", "--arch", "cnn", "--data", DATA, "--epochs", "1", "--batch-size", "16", "--out", "models"]
        + ["--arch-kwargs", '{"width": 4, "hidden": 8}', "--name", "a-freshly-trained-tiny-cnn"],
        ["models/a-freshly-trained-tiny-cnn.safetensors"],
    ),
    "study": (
        ["study", "robustness", "--models", MODEL, "--data", DATA, "--sizes", "0.05", "--steps", "1"]
        + ["--batch-size", "4", "--candidates", "1", "--conditions", "1", "--certify-images", "2", "--out", "study"],
        [MODEL],
    ),
    "runs list": (["runs", "list", "--store", "listed.db"], [MODEL, *ZOO.split(","), "evaluate", "attack"]),
    "runs show": (["runs", "show", "2", "--store", "listed.db"], [MODEL, "git commit", "patch.path"]),
    "runs compare": (["runs", "compare", "1", "2", "--store", "listed.db"], [MODEL, *ZOO.split(",")]),
    "report": (["report", "--runs", "1,2", "--out", "report", "--store", "listed.db"], ["report.html"]),
}


@pytest.fixture(scope="module")
def folder(tiny_model_path: Path) -> Iterator[Path]:
    """A short working folder: the tiny model under a long name, 24 demo images, and a run store of two runs."""
    from patchscope.data import load_data
    from patchscope.runs.store import RunStore

    d = Path(tempfile.mkdtemp(prefix="ps-"))
    shutil.copy(tiny_model_path, d / MODEL)
    shutil.copy(tiny_model_path.with_suffix(".json"), (d / MODEL).with_suffix(".json"))
    demo = load_data("demo")
    pick = torch.cat([(demo.labels == c).nonzero().flatten()[:8] for c in (14, 13, 1)])
    np.savez(d / "small.npz", x=demo.images[pick].numpy(), y=demo.labels[pick].numpy())
    store = RunStore(d / "listed.db")
    evaluated = store.start("evaluate", {"models": [*ZOO.split(","), MODEL], "data": DATA})
    store.finish(evaluated, {"models": {m: {"clean_accuracy": 0.5} for m in [*ZOO.split(","), MODEL]}})
    attacked = store.start("attack", {"model": MODEL, "seed": 0, "steps": 2})
    store.finish(attacked, {"attack_images": 4, "train_targeted_success": 0.25}, {"patch.path": "attack/patch.png"})
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _run(folder: Path, monkeypatch: pytest.MonkeyPatch, columns: int, *args: str) -> Result:
    monkeypatch.chdir(folder)
    monkeypatch.setenv("COLUMNS", str(columns))
    r = invoke(*args) if "--store" in args else invoke("--store", str(folder / "runs.db"), *args)
    assert r.code == 0, f"patchscope {' '.join(args)}: exit {r.code}\n{r.err[-2000:]}"
    return r


def _strict_json(text: str) -> object:
    def refuse(token: str) -> float:
        raise ValueError(f"{token} in JSON output")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_table_fits_80_columns_with_names_whole_and_json_is_strict(
    command: str, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, names = COMMANDS[command]
    table = _run(folder, monkeypatch, 80, *args)
    lines = table.out.splitlines()
    assert lines, f"{command} printed nothing"
    too_long = [line for line in lines if len(line) > 80]
    assert not too_long, f"{command}: {len(too_long)} lines over 80 columns:\n" + "\n".join(too_long)
    for name in names:
        assert name in table.out, f"{command}: {name!r} is not whole in\n{table.out}"
    assert not table.out.lstrip().startswith(("{", "[")), f"{command} printed JSON without --json"
    if command.startswith("runs") or command == "report":
        assert "…" not in table.out
    printed = _strict_json(_run(folder, monkeypatch, 80, *args, "--json").out)
    assert isinstance(printed, (dict, list)) and printed


def test_a_wide_terminal_shows_every_column_and_a_narrow_one_says_what_it_left_out(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from patchscope.runs.store import RunStore

    store = RunStore(folder / "short.db")
    store.finish(store.start("attack", {"model": "gtsrb-cnn", "seed": 3}), {"success": 0.5})
    wide = _run(folder, monkeypatch, 200, "runs", "list", "--store", "short.db").out
    assert "started" in wide.splitlines()[1] and "not shown" not in wide
    narrow = _run(folder, monkeypatch, 44, "runs", "list", "--store", "short.db").out
    assert "not shown at this width: started" in narrow and "gtsrb-cnn" in narrow
    assert max(map(len, narrow.splitlines())) <= 44 < max(map(len, wide.splitlines())) <= 200


def test_a_table_too_wide_for_any_column_layout_prints_each_row_as_a_block(capsys, monkeypatch) -> None:
    from patchscope.cli.output import print_table

    monkeypatch.setenv("COLUMNS", "40")
    names = [f"model-{i}-with-a-long-name" for i in range(4)]
    print_table(["patch", *names], [["zoo:x/stop-yield", "10.0%", "20.0%", "30.0%", "40.0%"]])
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 40 and all(name in out for name in names)
    monkeypatch.setenv("COLUMNS", "30")
    print_table(["key", "value"], [["weights", "models/tiny-cnn.safetensors"]])
    out = capsys.readouterr().out
    assert [line.rstrip() for line in out.splitlines()] == ["weights", "  models/tiny-cnn.safetensors"]


def test_cells_are_text_not_markup(capsys, monkeypatch) -> None:
    from patchscope.cli.output import print_table

    monkeypatch.setenv("COLUMNS", "80")
    print_table(["model"], [["runs/[bold]x[/bold]:smile:"]])
    assert "runs/[bold]x[/bold]:smile:" in capsys.readouterr().out
