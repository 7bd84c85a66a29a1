"""The error contract, second pass: each case is one found way to break it (a signal in the first second, a silently
wrong number, NaN in JSON, a collision inside --out found after the work, a file-system edge, a model card checked
late, data as it comes, stray output, a bad run-store row, an error not naming its option)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from patchscope.data import load_data
from tests.cli._contract import assert_contract, invoke
from tests.conftest import messages

ZOO_PATCH = "zoo:gtsrb-cnn/stop-yield"


def _error(args: list[str], *needles: str) -> str:
    """Run ``args``: exit 2, one line holding every needle (case-insensitive); returns the line."""
    r = invoke(*args)
    assert_contract(r, tuple(args))
    assert r.code == 2, (args, r.code, r.out[:300], r.err)
    line = r.err_lines[-1]
    for needle in needles:
        assert needle.lower() in line.lower(), (args, line)
    return line


def _ok(args: list[str]) -> dict:
    r = invoke(*args)
    assert_contract(r, tuple(args))
    assert r.code == 0, (args, r.err)
    return json.loads(r.out)


@pytest.fixture(scope="module")
def signs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[np.ndarray, int]]]:
    """The first 16 demo images as (H, W, 3) uint8 arrays with their labels, and a folder for trees made of them."""
    d = load_data("demo").head(16)
    return tmp_path_factory.mktemp("signs"), [(x.permute(1, 2, 0).numpy(), int(y)) for x, y in zip(d.images, d.labels)]


def _tree(root: Path, images: list[tuple[np.ndarray, int]], save) -> Path:
    for i, (a, y) in enumerate(images):
        (root / str(y)).mkdir(parents=True, exist_ok=True)
        save(a, root / str(y) / f"{i}.png")
    return root


# -- 2. silently wrong results ----------------------------------------------------------------------------------------
def test_16_bit_pngs_read_as_their_8_bit_twins(signs) -> None:
    """16-bit greyscale PNGs were read as pure white (accuracy 0 against the 8-bit copy's)."""
    root, images = signs
    grey8 = _tree(root / "g8", images, lambda a, p: Image.fromarray(a[..., 0]).save(p))
    grey16 = _tree(root / "g16", images, lambda a, p: Image.fromarray(a[..., 0].astype(np.uint16) * 257).save(p))
    assert Image.open(next(grey16.rglob("*.png"))).mode.startswith("I")  # the case this is about: a 16-bit mode
    eight, sixteen = (_ok(["evaluate", "--data", f"folder:{t}", "--json"]) for t in (grey8, grey16))
    assert eight["models"]["gtsrb-cnn"]["clean_accuracy"] == sixteen["models"]["gtsrb-cnn"]["clean_accuracy"]
    assert eight["models"]["gtsrb-cnn"]["clean_accuracy"] > 0


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGBA", "CMYK", "YCbCr", "I", "I;16", "F", "RGB"])
def test_images_of_every_mode_read_close_to_their_rgb(mode: str, signs) -> None:
    """Every Pillow mode a file may hold is read as the RGB it shows (within the mode's loss), never white."""
    from patchscope.data.images import read_rgb8

    root, images = signs
    a = images[0][0]
    rgb = Image.fromarray(a)
    if mode in ("I", "I;16"):
        img = Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257)
        img = img if mode == "I;16" else img.convert("I")
    elif mode == "F":
        img = Image.fromarray(np.asarray(rgb.convert("L")).astype(np.float32) / 255)
    else:
        img = rgb.convert(mode)
    ext = {"F": "tif", "CMYK": "tif", "I": "tif", "YCbCr": "jpg"}.get(mode, "png")
    path = root / f"mode-{mode.replace(';', '_')}.{ext}"
    img.save(path)
    got = np.asarray(read_rgb8(path)).astype(float)
    want = np.asarray(rgb.convert("L" if mode in ("L", "LA", "I", "I;16", "F", "1") else "RGB")).astype(float)
    want = want[..., None] if want.ndim == 2 else want
    tolerance = 130 if mode == "1" else 40 if mode in ("P", "CMYK", "YCbCr") else 3
    assert np.abs(got - want).mean() < tolerance, (mode, np.abs(got - want).mean())


def test_evaluate_skip_bad_with_no_readable_image_is_refused(signs) -> None:
    """Every image bad, or --limit 1 whose one image is bad: no accuracy over 0 images."""
    root, images = signs
    bad = root / "allbad" / "14"
    bad.mkdir(parents=True)
    (bad / "a.png").write_bytes(b"not an image")
    _error(["evaluate", "--data", f"folder:{bad.parent}", "--skip-bad", "--json"], "--skip-bad", "unreadable")
    mixed = _tree(root / "onebad", images[:3], lambda a, p: Image.fromarray(a).save(p))
    first = sorted(mixed.rglob("*.png"))[0]
    first.write_bytes(b"not an image")
    args = ["evaluate", "--data", f"folder:{mixed}", "--skip-bad", "--json"]
    _error([*args, "--limit", "1"], "--skip-bad")
    assert _ok([*args, "--limit", "3"])["skipped_images"] == 1  # some read: a result, the bad one counted


def test_a_streamed_npz_checks_its_labels_as_a_small_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from patchscope.data import stream

    np.savez(tmp_path / "neg.npz", x=np.zeros((4, 32, 32, 3), np.uint8), y=np.array([0, 1, 2, -1]))
    args = ["evaluate", "--data", f"npz:{tmp_path / 'neg.npz'}", "--json"]
    small = _error(args, "labels must be in")
    monkeypatch.setattr(stream.open_npz_stream, "__defaults__", (None, 0))  # stream every npz
    assert _error(args, "labels must be in") == small


def test_certify_refuses_a_model_of_other_classes(tmp_path: Path) -> None:
    """A 1,000-class model on the 43-class demo set: refused as evaluate refuses it."""
    from patchscope.models import Classifier, save_checkpoint
    from patchscope.models.archs import cnn

    classes = [f"c{i}" for i in range(1000)]
    model = Classifier(cnn(num_classes=1000, width=4, hidden=8), classes)
    card = {"arch": "cnn", "arch_kwargs": {"width": 4, "hidden": 8}, "classes": classes, "input_size": 32}
    save_checkpoint(model.net, card, tmp_path / "wide.safetensors")
    for command in (["evaluate"], ["certify", "--defense", "patchcleanser"]):
        args = [*command, "--data", "demo", "--limit", "2", "--json"]
        _error([*args, "--model" if command[0] == "certify" else "--models", str(tmp_path / "wide.safetensors")], "43")


# -- 3. NaN in --json -------------------------------------------------------------------------------------------------
def test_train_without_validation_images_writes_null_not_nan(signs, tmp_path: Path) -> None:
    root, images = signs
    tree = _tree(root / "trunc", images[:6], lambda a, p: Image.fromarray(a).save(p.with_suffix(".jpg"), quality=90))
    for f in tree.rglob("*.jpg"):
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # truncated JPEGs
    Image.fromarray(images[7][0]).save(next(tree.iterdir()) / "good.png")  # one readable image: nothing to validate
    store = tmp_path / "runs.db"
    args = ["--store", str(store), "train", "--arch", "cnn", "--data", f"folder:{tree}", "--skip-bad", "--epochs", "1"]
    out = _ok([*args, "--out", str(tmp_path / "m"), "--json"])
    assert out["val_accuracy"] is None and out["skipped_images"] == 6
    card = (tmp_path / "m" / "gtsrb-cnn.json").read_text()
    assert "NaN" not in card and json.loads(card)["val_accuracy"] is None
    for listing in (["runs", "list", "--json"], ["runs", "show", "1", "--json"]):
        r = invoke("--store", str(store), *listing)
        assert_contract(r, tuple(listing))
        assert r.code == 0 and "NaN" not in r.out


def test_one_json_encoder_writes_null_for_every_non_finite_number(tmp_path: Path) -> None:
    from patchscope.io import dumps, write_json

    obj = {"a": float("nan"), "b": [float("inf"), 1.0], "c": np.float32("nan"), "d": torch.tensor([float("-inf")])}
    text = dumps(obj, default=lambda o: o.tolist())
    assert json.loads(text) == {"a": None, "b": [None, 1.0], "c": None, "d": [None]}
    write_json(tmp_path / "x.json", {"v": float("nan")})
    assert json.loads((tmp_path / "x.json").read_text()) == {"v": None}


def test_attack_resume_refuses_a_model_whose_weights_were_replaced(tmp_path: Path, tiny_model_path: Path) -> None:
    """The checkpoint records the weights, not only the model's name."""
    from patchscope.models import create_model, save_checkpoint
    from tests.cli.test_error_contract import interrupted_attack

    weights = tmp_path / "m.safetensors"
    weights.write_bytes(tiny_model_path.read_bytes())
    weights.with_suffix(".json").write_text(tiny_model_path.with_suffix(".json").read_text())
    interrupted_attack(str(weights), tmp_path / "run", 4, 4, 1)
    model = create_model(str(weights))
    with torch.no_grad():
        for p in model.net.parameters():
            p.add_(0.01)
    save_checkpoint(model.net, json.loads(weights.with_suffix(".json").read_text()), weights)
    args = ["attack", "--model", str(weights), "--data", "demo", "--steps", "4", "--limit", "4", "--batch-size", "4"]
    args += ["--candidates", "1", "--checkpoint-every", "1", "--resume", "--out", str(tmp_path / "run")]
    _error(args, "--resume", "weights")
    assert not (tmp_path / "run" / "patch.safetensors").exists()


def test_a_report_from_another_working_folder_still_embeds_the_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = str(tmp_path / "runs.db")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    _ok(["--store", store, "attack", "--data", "demo", "--limit", "2", "--steps", "2", "--out", "rel", "--json"])
    monkeypatch.chdir(tmp_path / "b")
    r = invoke("--store", store, "report", "--runs", "1", "--out", "rep")
    assert_contract(r)
    html = next((tmp_path / "b" / "rep").glob("*.html")).read_text()
    assert html.count("<img") >= 1 and not r.err_lines
    # a store written before paths were absolute: the report says which figures it cannot find
    import sqlite3

    with sqlite3.connect(store) as conn:
        conn.execute("UPDATE runs SET artifacts = ? WHERE id = 1", (json.dumps({"patch": "rel"}),))
    r = invoke("--store", store, "report", "--runs", "1", "--out", "rep2")
    assert r.code == 0 and any("rel" in line and "figures" in line for line in r.err_lines), r.err


# -- 1. signals in the first second or two ----------------------------------------------------------------------------
def signal_run(args: list[str], sig: signal.Signals, delays: list[float], tmp_path: Path) -> tuple[int, str, str]:
    """``python -m patchscope ARGS`` sent ``sig`` after each of ``delays`` seconds: (status, stdout, stderr)."""
    env = {**os.environ, "PATCHSCOPE_STORE": str(tmp_path / "runs.db")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "patchscope", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    for delay in delays:
        time.sleep(delay)
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def assert_interrupted(status: int, out: str, err: str, sig: signal.Signals) -> None:
    assert status in (128 + sig, 0), (status, err[-2000:])  # 0: the command finished before the signal came
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in messages(err) if not line.startswith("> ")]  # demo's stage lines: its narration
    if status:
        assert len(lines) == 1 and lines[0].startswith("patchscope: ") and sig.name in lines[0], err
        assert out == ""


CERTIFY = ["certify", "--defense", "patchcleanser", "--data", "demo", "--limit", "100"]


@pytest.mark.parametrize(
    "args,sig,delays",
    [
        (CERTIFY, signal.SIGINT, [0.25]),  # while the command line itself is importing (after the interpreter started)
        (CERTIFY, signal.SIGINT, [0.5]),  # while torch is importing
        (CERTIFY, signal.SIGTERM, [1.0]),
        (["demo", "--out", "{tmp}/demo"], signal.SIGTERM, [2.0]),
        (CERTIFY, signal.SIGINT, [3.0, 0.05]),  # a second Ctrl-C while the first is handled
        (CERTIFY, signal.SIGINT, [3.0, 0.3, 0.02]),
    ],
)
def test_a_signal_at_any_moment_exits_128_plus_it_with_one_line(
    args: list[str], sig: signal.Signals, delays: list[float], tmp_path: Path
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert_interrupted(*signal_run(args, sig, delays, tmp_path), sig)


def test_leaving_torchrun_with_a_half_imported_torch_is_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clean-up after a signal in torch's import: a half-initialised ``torch.distributed`` is left alone."""
    import types

    from patchscope.cli import _leave_torchrun

    monkeypatch.setitem(sys.modules, "torch.distributed", types.ModuleType("torch.distributed"))
    _leave_torchrun()  # no AttributeError: partially initialized module


# -- 4. collisions inside --out, found before the work ----------------------------------------------------------------
@pytest.mark.parametrize(
    "args,inside",
    [
        (["explain", "--patch", ZOO_PATCH, "--data", "demo", "--limit", "2"], "explain.json"),
        (["explain", "--patch", ZOO_PATCH, "--data", "demo", "--limit", "2"], "attention.png"),
        (["attack", "--data", "demo", "--limit", "2", "--steps", "2"], "patch.safetensors"),
        (["attack", "--data", "demo", "--limit", "2", "--steps", "2"], "metrics.json"),
        (
            ["defend", "--defense", "median", "--patch", ZOO_PATCH, "--data", "demo", "--limit", "2"],
            "patch.safetensors",
        ),
        (["curve", "--data", "demo", "--eval-data", "demo", "--steps", "2", "--limit", "2"], "area.png"),
        (["report", "--runs", "1"], "report.html"),
        (["demo"], "results.json"),
    ],
)
def test_a_folder_where_a_command_writes_a_file_is_refused_before_the_work(
    args: list[str], inside: str, tmp_path: Path
) -> None:
    (tmp_path / "out" / inside).mkdir(parents=True)
    _error([*args, "--out", str(tmp_path / "out")], "--out", inside)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [inside]  # nothing else was written


def test_train_refuses_eval_data_of_other_classes_before_training(tmp_path: Path, signs) -> None:
    root, images = signs
    other = _tree(root / "zzz-tree", images[:1], lambda a, p: Image.fromarray(a).save(p))
    (other / str(images[0][1])).rename(other / "zzz")
    args = ["train", "--arch", "cnn", "--data", "demo", "--eval-data", f"folder:{other}", "--epochs", "1"]
    _error([*args, "--out", str(tmp_path / "m")], "--eval-data", "zzz")
    assert not (tmp_path / "m").exists()


# -- 5. file-system edges ---------------------------------------------------------------------------------------------
LONG = "a" * 300


@pytest.mark.parametrize(
    "args,option",
    [
        (["attack", "--data", "demo", "--limit", "2", "--steps", "2", "--out", "{tmp}/" + LONG], "--out"),
        (["--store", "{tmp}/" + LONG + "/runs.db", "runs", "list"], "--store"),
        (["runs", "list", "--store", "{tmp}/" + LONG + ".db"], "--store"),
        (["evaluate", "--data", "folder:{tmp}/" + LONG], "--data"),
        (["evaluate", "--data", "npz:{tmp}/" + LONG + ".npz"], "--data"),
        (["evaluate", "--data", "demo", "--limit", "2", "--patch", "{tmp}/" + LONG], "--patch"),
        (["evaluate", "--data", "demo", "--limit", "2", "--models", "{tmp}/" + LONG + ".safetensors"], "--models"),
    ],
)
def test_a_name_too_long_is_one_line_naming_the_option(args: list[str], option: str, tmp_path: Path) -> None:
    _error([a.replace("{tmp}", str(tmp_path)) for a in args], option)


@pytest.mark.parametrize("kind", ["dangling", "loop"])
def test_an_out_that_is_a_broken_link_is_refused(kind: str, tmp_path: Path) -> None:
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "nowhere" if kind == "dangling" else link)
    _error(["attack", "--data", "demo", "--limit", "2", "--steps", "2", "--out", str(link)], "--out", "link")


def test_a_full_disk_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while a result is written: one line, exit 2, nothing half-written (atomic writes)."""
    import errno

    from patchscope import io as pio

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "out" / "x.tmp"))

    monkeypatch.setattr(pio.Path, "write_text", full)
    line = _error(["attack", "--data", "demo", "--limit", "2", "--steps", "2", "--out", str(tmp_path / "out")])
    assert "--out" in line and "no space left" in line.lower()
    assert not list((tmp_path / "out").glob("*.json"))


def test_stdout_on_a_full_device_is_one_line() -> None:
    proc = subprocess.run(
        f"{sys.executable} -m patchscope zoo --json > /dev/full", shell=True, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert messages(proc.stderr) == ["patchscope: error: stdout: No space left on device"]


# -- 9. the run store: one bad row is reported and skipped ------------------------------------------------------------
@pytest.mark.parametrize(
    "column,value",
    [("config", "{not json"), ("metrics", "[1, 2]"), ("started", "yesterday"), ("ended", "13/45/2020")],
)
def test_a_damaged_store_row_is_reported_and_skipped(column: str, value: str, tmp_path: Path) -> None:
    import sqlite3

    store = str(tmp_path / "runs.db")
    for _ in range(2):
        _ok(["--store", store, "evaluate", "--data", "demo", "--limit", "2", "--json"])
    with sqlite3.connect(store) as conn:
        conn.execute(f"UPDATE runs SET {column} = ? WHERE id = 1", (value,))
    r = invoke("--store", store, "runs", "list", "--json")
    assert_contract(r)
    assert r.code == 0 and [run["id"] for run in json.loads(r.out)["runs"]] == [2]
    assert len(r.err_lines) == 1 and "run 1" in r.err_lines[0] and column in r.err_lines[0], r.err
    _error(["--store", store, "runs", "show", "1"], "run 1", "damaged")
    _error(["--store", store, "report", "--runs", "1", "--out", str(tmp_path / "rep")], "run 1", "damaged")
    assert _ok(["--store", store, "runs", "show", "2", "--json"])["id"] == 2


# -- 10. errors name the option ---------------------------------------------------------------------------------------
def test_run_store_limits_and_ids_name_what_the_user_gave(tmp_path: Path) -> None:
    store = str(tmp_path / "runs.db")
    _ok(["--store", store, "evaluate", "--data", "demo", "--limit", "2", "--json"])
    assert len(_ok(["--store", store, "runs", "list", "--limit", str(10**20), "--json"])["runs"]) == 1
    line = _error(["--store", store, "runs", "show", "0"], "run id")
    assert "--run" not in line


# -- 6. model cards checked completely when read ----------------------------------------------------------------------
CARDS = {
    "resize-text": {"preprocess": {"resize": "ab"}},
    "resize-one": {"preprocess": {"resize": [1]}},
    "resize-huge": {"preprocess": {"resize": 10**8}},
    "resize-nan": {"preprocess": {"resize": float("nan")}},
    "crop-text": {"preprocess": {"resize": 36, "crop": "x"}},
    "interp": {"preprocess": {"resize": 36, "interpolation": 3}},
    "wnids-int": {"wnids": 5},
    "wnids-short": {"wnids": ["n01"]},
}


@pytest.fixture(scope="module")
def cards(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> Path:
    d = tmp_path_factory.mktemp("cards")
    card = json.loads(tiny_model_path.with_suffix(".json").read_text())
    for tag, change in CARDS.items():
        (d / f"{tag}.safetensors").write_bytes(tiny_model_path.read_bytes())
        (d / f"{tag}.json").write_text(json.dumps({**card, **change}))  # NaN written as NaN: what a user may write
    (d / "deep.safetensors").write_bytes(tiny_model_path.read_bytes())
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (d / "folder.safetensors").write_bytes(tiny_model_path.read_bytes())
    (d / "folder.json").mkdir()
    (d / "weights-folder").mkdir()
    return d


@pytest.mark.parametrize("tag", [*CARDS, "deep", "folder"])
@pytest.mark.parametrize("data", ["demo", "folder"])
def test_a_bad_card_is_refused_whatever_the_data(tag: str, data: str, cards: Path, signs) -> None:
    root, images = signs
    tree = root / "card-tree"
    if not tree.exists():
        _tree(tree, images[:2], lambda a, p: Image.fromarray(a).save(p))
    spec = "demo" if data == "demo" else f"folder:{tree}"
    _error(["evaluate", "--models", str(cards / f"{tag}.safetensors"), "--data", spec, "--limit", "2"], tag)


def test_torchvision_weights_that_are_a_folder_or_nothing_are_refused(cards: Path) -> None:
    _error(["evaluate", "--models", f"tv:resnet18:{cards / 'weights-folder'}", "--data", "demo"], "folder")
    _error(["evaluate", "--models", "tv:resnet18:", "--data", "demo"], "tv:resnet18:", "random")


def test_a_deeply_nested_class_map_is_one_line(tmp_path: Path, signs) -> None:
    root, images = signs
    tree = _tree(root / "map-tree", images[:2], lambda a, p: Image.fromarray(a).save(p))
    (tmp_path / "map.json").write_text("{" + '"a":{' * 100_000 + "}" * 100_001)
    _error(["evaluate", "--data", f"folder:{tree}", "--class-map", str(tmp_path / "map.json")], "--class-map")


# -- 7. data and images as they come ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["²", "--14", "١٤"])
def test_names_that_only_look_numeric_are_names(name: str, tmp_path: Path, signs) -> None:
    base = ["--data", "demo", "--limit", "2"]
    _error(["attack", *base, "--steps", "2", "--source", name, "--out", str(tmp_path / "a")], "unknown class")
    _error(["attack", *base, "--steps", "2", "--target", name, "--out", str(tmp_path / "b")], "unknown class")
    _error(["evaluate", *base, "--patch", ZOO_PATCH, "--source", name], "unknown class")
    root, images = signs
    tree = _tree(tmp_path / "tree", images[:2], lambda a, p: Image.fromarray(a).save(p))
    (tree / str(images[0][1])).rename(tree / name)
    r = invoke("evaluate", "--data", f"folder:{tree}", "--json")
    assert_contract(r)
    (tmp_path / "map.json").write_text(json.dumps({name: name}))
    r = invoke("evaluate", "--data", f"folder:{tree}", "--class-map", str(tmp_path / "map.json"), "--json")
    assert_contract(r)
    assert r.code == 2


def test_a_packed_gtsrb_without_labels_is_one_line(tmp_path: Path) -> None:
    x = np.zeros((2, 32, 32, 3), np.uint8)
    np.savez(tmp_path / "gtsrb32.npz", x_test=x, x_train=x, y_train=np.zeros(2, np.uint8))
    _error(["evaluate", "--data", "gtsrb:test", "--data-root", str(tmp_path)], "--data-root", "y_test")


def _huge_png(path: Path, side: int) -> None:
    """A PNG header declaring ``side`` x ``side`` pixels (the pixels themselves never written)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")
    )


def test_an_image_too_large_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    _huge_png(tmp_path / "huge.png", 20000)
    args = ["attack", "--data", "demo", "--limit", "2", "--steps", "2", "--out", str(tmp_path / "o")]
    _error([*args, "--shape", str(tmp_path / "huge.png")], "--shape", "limit")
    (tmp_path / "tree" / "14").mkdir(parents=True)
    _huge_png(tmp_path / "tree" / "14" / "huge.png", 20000)
    _error(["evaluate", "--data", f"folder:{tmp_path / 'tree'}"], "huge.png")


def test_a_kappa_past_float_range_is_refused() -> None:
    _error(
        ["attack", "--data", "demo", "--limit", "2", "--steps", "2", "--loss", "margin", "--kappa", "1e308"], "--kappa"
    )


# -- 8. stray output --------------------------------------------------------------------------------------------------
def test_an_image_name_with_a_newline_stays_on_one_line(tmp_path: Path) -> None:
    (tmp_path / "14").mkdir()
    (tmp_path / "14" / "bad\nname.png").write_bytes(b"not an image")
    line = _error(["evaluate", "--data", f"folder:{tmp_path}"], "bad\\nname.png")
    assert "--skip-bad" in line


def test_a_large_image_reads_without_a_warning(tmp_path: Path) -> None:
    """Over Pillow's warning threshold, under the limit: read in silence."""
    (tmp_path / "14").mkdir()
    Image.new("L", (10000, 9000)).save(tmp_path / "14" / "big.png")
    r = invoke("evaluate", "--data", f"folder:{tmp_path}", "--json")
    assert_contract(r)
    assert r.code == 0 and r.err_lines == [], r.err


def test_matplotlib_notes_stay_off_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "readonly"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "readonly" / ".mpl"))
    (tmp_path / "readonly").mkdir(mode=0o500)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "patchscope",
            "attack",
            "--data",
            "demo",
            "--limit",
            "2",
            "--steps",
            "2",
            "--out",
            str(tmp_path / "o"),
            "--json",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PATCHSCOPE_STORE": str(tmp_path / "r.db")},
    )
    assert proc.returncode == 0 and messages(proc.stderr) == [], proc.stderr


@pytest.mark.parametrize(
    "args,option",
    [
        (["curve", "--data", "demo", "--eval-data", "gtsrb:nope", "--steps", "2", "--limit", "2"], "--eval-data"),
        (["train", "--arch", "cnn", "--data", "demo", "--eval-data", "gtsrb:nope", "--epochs", "1"], "--eval-data"),
        (["evaluate", "--data", "gtsrb:nope"], "--data"),
    ],
)
def test_unknown_data_names_the_option_it_came_from(args: list[str], option: str, tmp_path: Path) -> None:
    line = _error([*args, "--out", str(tmp_path / "o")] if args[0] != "evaluate" else args, "gtsrb:nope")
    assert line.startswith(f"patchscope: error: {option}"), line


def test_a_patch_for_another_size_names_patch(tmp_path: Path) -> None:
    from patchscope.attacks import load_patch

    load_patch(ZOO_PATCH).resized(64).save(tmp_path / "p64")
    _error(["evaluate", "--data", "demo", "--limit", "2", "--patch", str(tmp_path / "p64")], "--patch", "64px")


@pytest.mark.parametrize("location", ["[true, 0]", "[1.5, 2]", "[-1, 0]", '"x"', "[1]"])
def test_a_patch_location_that_is_not_two_pixels_is_refused(location: str, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    meta = {"placement": "on-object", "location": location, "image_size": "32", "meta": "{}"}
    (tmp_path / "p").mkdir()
    save_file(
        {"pixels": torch.rand(3, 5, 5), "mask": torch.ones(5, 5)},
        str(tmp_path / "p" / "patch.safetensors"),
        metadata=meta,
    )
    _error(["evaluate", "--data", "demo", "--limit", "2", "--patch", str(tmp_path / "p")], "--patch", "location")


def test_location_with_a_sticker_is_refused(tmp_path: Path) -> None:
    args = ["attack", "--data", "demo", "--limit", "2", "--steps", "2", "--placement", "sticker", "--location", "1,2"]
    _error([*args, "--out", str(tmp_path / "o")], "--location", "--placement")
