"""The error contract, third pass: the last found ways to break it, each reproduced as a user meets it (a
half-downloaded GTSRB, a patch file's metadata beyond ASCII, torch's download line, an image of a layout Pillow
cannot draw, the fit data's option, a file too large for the file system, an initial model changed under a resumed
training run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

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


# -- a half-downloaded GTSRB -------------------------------------------------------------------------------------------
def _frame(c: int) -> Image.Image:
    img = np.zeros((36, 40, 3), np.uint8)
    img[5:31, 6:34] = (c * 5, 100, 200)  # the sign inside its ROI; black margin outside
    return Image.fromarray(img)


HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"


def _torchvision_gtsrb(root: Path, split: str) -> Path:
    """torchvision's on-disk GTSRB layout of ``split`` in miniature (one 40x36 frame a class, the ROI and label
    sheets), as its download leaves it; returns the ``gtsrb`` folder."""
    base = root / "gtsrb"
    if split == "train":
        for c in range(43):
            folder = base / "GTSRB" / "Training" / f"{c:05d}"
            folder.mkdir(parents=True)
            _frame(c).save(folder / "00007_00001.ppm")
            (folder / f"GT-{c:05d}.csv").write_text(f"{HEADER}00007_00001.ppm;40;36;6;5;34;31;{c}\n")
    else:
        images = base / "GTSRB" / "Final_Test" / "Images"
        images.mkdir(parents=True)
        for c in range(43):
            _frame(c).save(images / f"{c:05d}.ppm")
        rows = "".join(f"{c:05d}.ppm;40;36;6;5;34;31;{c}\n" for c in range(43))
        (base / "GT-final_test.csv").write_text(HEADER + rows)
    return base


def _cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


TRAIN = "GTSRB/Training"
DAMAGE: dict[str, tuple[str, Callable[[Path], None], tuple[str, ...]]] = {
    "a class folder missing": ("train", lambda b: shutil.rmtree(b / TRAIN / "00005"), ("Training/00005",)),
    "a class folder empty": ("train", lambda b: (b / TRAIN / "00012" / "00007_00001.ppm").unlink(), ("00012/*.ppm",)),
    "a frame cut short": ("train", lambda b: _cut(b / TRAIN / "00005" / "00007_00001.ppm", 30), ("00007_00001.ppm",)),
    "an ROI sheet missing": ("train", lambda b: (b / TRAIN / "00042" / "GT-00042.csv").unlink(), ("GT-00042.csv",)),
    "an ROI sheet cut short": ("train", lambda b: _cut(b / TRAIN / "00001" / "GT-00001.csv", 80), ("GT-00001.csv",)),
    "the test labels missing": ("test", lambda b: (b / "GT-final_test.csv").unlink(), ("GT-final_test.csv",)),
    "the test labels cut short": ("test", lambda b: _cut(b / "GT-final_test.csv", 200), ("GT-final_test.csv",)),
    "test images missing": (
        "test",
        lambda b: [(b / "GTSRB/Final_Test/Images" / f"{c:05d}.ppm").unlink() for c in range(3, 9)],
        ("00003.ppm", "and 3 more"),
    ),
}


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """torchvision's GTSRB download, replaced by a note of each attempt (a test never reaches the network)."""
    import torchvision.datasets.gtsrb as tv

    tried: list[str] = []
    monkeypatch.setattr(tv, "download_and_extract_archive", lambda url, *a, **k: tried.append(url))
    return tried


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_half_downloaded_gtsrb_names_its_folder_and_what_is_missing(
    damage: str, tmp_path: Path, no_download: list[str]
) -> None:
    split, spoil, needles = DAMAGE[damage]
    base = _torchvision_gtsrb(tmp_path, split)
    spoil(base)
    args = ["evaluate", "--data", f"gtsrb:{split}", "--data-root", str(tmp_path), "--json"]
    _error(args, f"gtsrb:{split}", str(base), "incomplete", *needles, "download again")
    assert no_download == []  # the folder was there: torchvision took it as downloaded, we checked it
    assert not (tmp_path / f"gtsrb32-{split}.npz").exists()  # no cache of a part of the data


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_whole_gtsrb_download_reads(split: str, tmp_path: Path, no_download: list[str]) -> None:
    _torchvision_gtsrb(tmp_path, split)
    got = _ok(["evaluate", "--data", f"gtsrb:{split}", "--data-root", str(tmp_path), "--json"])
    assert got["models"]["gtsrb-cnn"]["clean_images"] == 43 and no_download == []


# -- a patch file's metadata beyond ASCII ------------------------------------------------------------------------------
def _patch_with(folder: Path, **meta: str) -> Path:
    """The zoo patch written again with ``meta`` merged into its metadata, kept as UTF-8 (not escaped)."""
    from patchscope.attacks import load_patch

    p = load_patch(ZOO_PATCH)
    folder.mkdir(parents=True)
    header = {
        "placement": p.placement,
        "location": json.dumps(p.location),
        "image_size": str(p.image_size),
        "meta": json.dumps({**p.meta, **meta}, ensure_ascii=False),
    }
    tensors = {"pixels": p.pixels.float().contiguous(), "mask": p.mask.float().contiguous()}
    save_file(tensors, str(folder / "patch.safetensors"), metadata=header)
    assert "²".encode() in (folder / "patch.safetensors").read_bytes()[:4096]  # the case: raw UTF-8 in the header
    return folder


def test_a_patch_whose_metadata_holds_a_non_ascii_character_loads(tmp_path: Path) -> None:
    patch = _patch_with(tmp_path / "p", note="area 5 px²", data="gtsrb:train²")
    got = _ok(["evaluate", "--data", "demo", "--limit", "40", "--patch", str(patch), "--json"])
    assert got["models"]["gtsrb-cnn"]["untargeted_success"] > 0.5
    line = _error(["evaluate", "--data", "demo", "--patch", str(_patch_with(tmp_path / "q", source="²"))], "'²'")
    assert "unknown class" in line  # a superscript two is no class id, and no UnicodeError either


def test_non_ascii_names_under_an_ascii_locale_are_recorded_and_reported(tmp_path: Path) -> None:
    """Under an ASCII locale a UTF-8 argument reaches Python as surrogate escapes: the run store and the report still
    take it (SQLite and the page hold it as the UTF-8 it is)."""
    patch = _patch_with(tmp_path / "p²", note="area 5 px²")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    store = ["--store", str(tmp_path / "runs.db")]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "patchscope", *store, *args], capture_output=True, env=env, text=True
        )

    made = run("evaluate", "--data", "demo", "--limit", "40", "--patch", str(patch), "--json")
    assert made.returncode == 0 and messages(made.stderr) == [], made.stderr
    assert json.loads(made.stdout)["models"]["gtsrb-cnn"]["untargeted_success"] > 0.5
    shown = run("report", "--last", "1", "--out", str(tmp_path / "report"))
    assert shown.returncode == 0 and messages(shown.stderr) == [], shown.stderr
    assert "p²" in (tmp_path / "report" / "report.html").read_text(encoding="utf-8")


# -- torch's "Downloading:" line ---------------------------------------------------------------------------------------
TV = "mobilenet_v3_small"


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """An empty torch hub cache (``TORCH_HOME``) and a download that writes random weights of the model where torch
    asks (the real ``load_state_dict_from_url`` runs around it, with its ``Downloading:`` line); returns the URLs."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    fetched: list[str] = []

    def download(url: str, dst: str, *args: object, **kwargs: object) -> None:
        fetched.append(url)
        torch.manual_seed(0)
        torch.save(torchvision.models.get_model(TV, weights=None).state_dict(), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    return fetched


@pytest.fixture
def street_signs(tmp_path: Path) -> str:
    """A folder of two 224-px photos labelled by an ImageNet class's WordNet id (street sign)."""
    folder = tmp_path / "photos" / "n06794110"
    folder.mkdir(parents=True)
    for k in range(2):
        Image.fromarray(np.random.default_rng(k).integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(
            folder / f"{k}.png"
        )
    return f"folder:{tmp_path / 'photos'}"


def test_a_weights_download_keeps_stdout_json_and_stderr_quiet(fake_hub: list[str], street_signs: str) -> None:
    args = ["evaluate", "--models", f"tv:{TV}", "--data", street_signs, "--batch-size", "2", "--json"]
    r = invoke(*args)
    assert_contract(r, tuple(args))
    assert r.code == 0 and len(fake_hub) == 1, r.err  # the download path ran
    assert "Downloading" not in r.out + r.err and r.err_lines == []
    assert json.loads(r.out)["models"][f"tv:{TV}"]["clean_images"] == 2  # stdout is the JSON alone
    assert len(list(Path(os.environ["TORCH_HOME"]).rglob("*.pth"))) == 1  # kept in torch's cache: not fetched again
    assert _ok(args) and len(fake_hub) == 1


def test_a_failed_weights_download_is_one_line(
    fake_hub: list[str], street_signs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from urllib.error import URLError

    def offline(url: str, *args: object, **kwargs: object) -> None:
        raise URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    args = ["evaluate", "--models", f"tv:{TV}", "--data", street_signs, "--json"]
    r = invoke(*args)
    assert r.out == "" and "Downloading" not in r.err
    _error(args, f"tv:{TV}", "could not be fetched", f"tv:{TV}:random")


# -- a TIFF of a layout Pillow cannot draw -----------------------------------------------------------------------------
def _tiff(path: Path, samples: int, side: int = 8) -> None:
    """An uncompressed 8-bit little-endian TIFF with ``samples`` samples per pixel and no extra-samples tag (Pillow
    reads 1, 3 and 4; not 2 without the tag, not 5 or more)."""
    import struct

    pixels = np.random.default_rng(samples).integers(0, 255, (side, side, samples), dtype=np.uint8).tobytes()
    count = 10
    ifd_at = 8 + len(pixels)
    after = ifd_at + 2 + 12 * count + 4  # the bits-per-sample list, past the directory, when it does not fit a tag
    bits = after if samples > 2 else struct.unpack("<I", struct.pack("<HH", 8, 8 if samples == 2 else 0))[0]
    short, long_ = 3, 4
    tags = [
        (256, short, 1, side),  # width
        (257, short, 1, side),  # height
        (258, short, samples, bits),  # bits per sample
        (259, short, 1, 1),  # no compression
        (262, short, 1, 1 if samples < 3 else 2),  # grey or RGB
        (273, long_, 1, 8),  # the strip's offset
        (277, short, 1, samples),  # samples per pixel
        (278, short, 1, side),  # rows per strip
        (279, long_, 1, len(pixels)),  # the strip's bytes
        (284, short, 1, 1),  # chunky
    ]
    ifd = struct.pack("<H", count)
    for tag, kind, n, value in tags:
        fits = kind == short and n == 1
        ifd += struct.pack("<HHIHH", tag, kind, n, value, 0) if fits else struct.pack("<HHII", tag, kind, n, value)
    tail = struct.pack(f"<{samples}H", *[8] * samples) if samples > 2 else b""
    path.write_bytes(b"II*\x00" + struct.pack("<I", ifd_at) + pixels + ifd + struct.pack("<I", 0) + tail)


@pytest.mark.parametrize("samples", [2, 5, 7])
@pytest.mark.parametrize("command", ["evaluate", "attack"])
def test_a_tiff_with_an_unsupported_samples_per_pixel_names_the_file(
    samples: int, command: str, tmp_path: Path
) -> None:
    folder = tmp_path / "signs" / "14"
    folder.mkdir(parents=True)
    for k in range(3):
        Image.fromarray(np.full((32, 32, 3), 60 * k, np.uint8)).save(folder / f"{k}.png")
    _tiff(folder / "odd.tif", samples)
    with pytest.raises(OSError):  # the case: Pillow cannot read it
        Image.open(folder / "odd.tif").load()
    args = ["--data", f"folder:{tmp_path / 'signs'}", "--json"]
    if command == "attack":
        args = ["--source", "stop", "--target", "yield", "--steps", "1", "--candidates", "1", *args]
        args += ["--out", str(tmp_path / "o")]
    _error([command, *args], "odd.tif", "--skip-bad")
    assert not (tmp_path / "o").exists()
    r = invoke(command, *args, "--skip-bad")
    assert_contract(r, (command, *args))
    assert r.code == 0 and r.err_lines == [], r.err
    assert json.loads(r.out)["skipped_images"] == 1


def test_pillows_own_note_on_a_tiff_past_its_limit_stays_off_stderr(tmp_path: Path) -> None:
    """Pillow logs "More samples per pixel than can be decoded" before it refuses such a file: a skipped image is
    silent (a process of its own: pytest would take the log record)."""
    (tmp_path / "14").mkdir()
    Image.fromarray(np.full((32, 32, 3), 60, np.uint8)).save(tmp_path / "14" / "sign.png")
    _tiff(tmp_path / "14" / "odd.tif", 7)
    proc = subprocess.run(
        [sys.executable, "-m", "patchscope", "evaluate", "--data", f"folder:{tmp_path}", "--skip-bad", "--json"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and messages(proc.stderr) == [], proc.stderr
    assert json.loads(proc.stdout)["skipped_images"] == 1


# -- the fit data's option ---------------------------------------------------------------------------------------------
@pytest.fixture
def odd_data(tmp_path: Path) -> Path:
    """Data sets wrong each its own way: an unreadable image, a folder of no class of the model, negative labels."""
    (tmp_path / "unreadable" / "14").mkdir(parents=True)
    (tmp_path / "unreadable" / "14" / "x.png").write_bytes(b"not an image")
    (tmp_path / "strangers" / "cats").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "strangers" / "cats" / "a.png")
    np.savez(tmp_path / "neg.npz", x=np.zeros((4, 32, 32, 3), np.uint8), y=np.array([0, 1, 2, -1]))
    return tmp_path


ODD = ["demo@4", "folder:{d}/unreadable", "folder:{d}/strangers", "npz:{d}/neg.npz", "", "gtsrb:nope"]


@pytest.mark.parametrize("spec", ODD)
def test_errors_about_the_fit_data_name_fit_data(spec: str, odd_data: Path) -> None:
    spec = spec.format(d=odd_data)
    args = ["defend", "--defense", "clip", "--patch", ZOO_PATCH, "--data", "demo", "--limit", "8"]
    line = _error([*args, "--fit-data", spec])
    assert line.startswith("patchscope: error: --fit-data"), line
    assert "--data " not in line and "--data:" not in line, line  # not the measured data, which is fine


@pytest.mark.parametrize("spec", ODD[:4])
def test_errors_about_a_curves_eval_data_name_eval_data(spec: str, odd_data: Path, tmp_path: Path) -> None:
    args = ["curve", "--data", "demo", "--steps", "2", "--limit", "2", "--out", str(tmp_path / "o")]
    line = _error([*args, "--eval-data", spec.format(d=odd_data)])
    assert line.startswith("patchscope: error: --eval-data"), line


# -- a file too large for the file system ------------------------------------------------------------------------------
@pytest.mark.parametrize("hit", ["patch.safetensors", "config.json"])
def test_a_file_too_large_is_one_line_and_leaves_no_part_of_the_run(
    hit: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EFBIG (errno 27: past the file-size limit, ``ulimit -f``, or FAT32's 4 GiB) part way through writing one of a
    run's files: one line naming that file (not its hidden stand-in), exit 2, and none of the run's files kept."""
    import errno

    import patchscope.attacks.patch as patch_module
    from patchscope import io as pio

    def too_large(path: object) -> None:
        Path(str(path)).write_bytes(b"\0" * 100)  # the part that was written before the limit
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(path))

    if hit == "patch.safetensors":
        monkeypatch.setattr(patch_module, "save_file", lambda tensors, path, metadata=None: too_large(path))
    else:
        write_text = pio.Path.write_text
        monkeypatch.setattr(
            pio.Path,
            "write_text",
            lambda self, text, **kw: (
                too_large(self) if self.name.startswith(".config") else write_text(self, text, **kw)
            ),
        )
    out = tmp_path / "out"
    line = _error(["attack", "--data", "demo", "--limit", "2", "--steps", "2", "--out", str(out)], "--out", hit)
    assert "file too large" in line.lower() and "nothing half-written" in line and ".tmp" not in line, line
    assert not out.exists() or sorted(p.name for p in out.rglob("*") if p.name != "checkpoint.pt") == []


# -- an initial model changed under a resumed training run -------------------------------------------------------------
def test_resuming_a_fine_tune_whose_initial_weights_changed_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint of ``train --init MODEL`` records the initial weights' fingerprint, not only MODEL's name: a
    resume after those weights changed (the file retrained in place) would mix two runs, and is refused."""
    import signal

    from safetensors.torch import load_file

    from patchscope.errors import Interrupted
    from patchscope.models.resume import TrainCheckpoint

    small = ["--data", "demo", "--batch-size", "64", "--device", "cpu", "--out", str(tmp_path)]
    _ok(
        ["train", "--arch", "cnn", "--arch-kwargs", '{"width": 4}', "--epochs", "1", "--name", "base", *small, "--json"]
    )
    base = tmp_path / "base.safetensors"
    tune = ["train", "--init", str(base), "--epochs", "2", "--name", "tuned", *small]
    save = TrainCheckpoint.save

    def save_then_stop(self, *args, **kwargs) -> None:
        save(self, *args, **kwargs)
        raise Interrupted("", int(signal.SIGINT))

    with monkeypatch.context() as m:
        m.setattr(TrainCheckpoint, "save", save_then_stop)
        stopped = invoke(*tune)
    assert stopped.code == 130 and "checkpoint saved" in stopped.err, stopped.err
    kept = base.read_bytes()
    weights = load_file(str(base))
    first = next(k for k, v in weights.items() if v.is_floating_point())
    weights[first] = weights[first] + 0.01  # the initial model trained a little more, under the same name
    save_file(weights, str(base))
    line = _error([*tune, "--resume"], "--resume", "init_weights")
    assert "start afresh" in line
    base.write_bytes(kept)  # the weights it started from: the run goes on
    assert _ok([*tune, "--resume", "--json"])["weights"] == str(tmp_path / "tuned.safetensors")
    assert not (tmp_path / "tuned.ckpt").exists()


def test_a_store_row_whose_models_are_not_names_is_reported_and_skipped(tmp_path: Path) -> None:
    """Found by the fuzzer: a row whose models column holds ``[1]`` took ``runs list`` down with a TypeError."""
    import sqlite3

    store = str(tmp_path / "runs.db")
    for _ in range(2):
        _ok(["--store", store, "evaluate", "--data", "demo", "--limit", "2", "--json"])
    with sqlite3.connect(store) as conn:
        conn.execute("UPDATE runs SET models = ? WHERE id = 1", ("[1]",))
    for args in (["runs", "list"], ["runs", "list", "--json"], ["runs", "show", "1"]):
        r = invoke("--store", store, *args)
        assert_contract(r, tuple(args))
    listed = json.loads(invoke("--store", store, "runs", "list", "--json").out)["runs"]
    assert [run["id"] for run in listed] == [2]
