"""Bad input anywhere on the command line: one clear line on stderr, exit 2, no traceback, nothing written."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import run_cli


def _assert_clean_error(proc, needle: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert needle.lower() in lines[0].lower(), lines[0]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "notimg").mkdir()
    (d / "notimg" / "stop").mkdir()  # a class of the model: the folder is matched, then its image fails to read
    (d / "notimg" / "stop" / "x.png").write_text("hello")
    (d / "nomatch" / "bicycles").mkdir(parents=True)
    Image.new("RGB", (40, 40)).save(d / "nomatch" / "bicycles" / "a.png")
    np.savez(d / "empty.npz", x_test=np.zeros((0, 32, 32, 3), np.uint8), y_test=np.zeros((0,), np.uint8))
    np.savez(d / "gray.npz", x_test=np.zeros((2, 32, 32), np.uint8), y_test=np.zeros((2,), np.uint8))
    with (d / "evil.pt").open("wb") as fh:
        pickle.dump({"w": Path("x")}, fh)
    (d / "evil.json").write_text('{"arch": "cnn", "classes": ["a"], "input_size": 32}')
    return d


def test_bad_inputs_give_one_line_and_exit_2(tmp_path: Path, tiny_model_path: Path, bad_files: Path):
    out = tmp_path / "out"
    m = str(tiny_model_path)
    cases = [
        (["evaluate", "--models", "gtsrb-nope", "--data", "demo"], "unknown model"),
        (["evaluate", "--models", m, "--data", f"npz:{tmp_path / 'missing.npz'}"], "no such file"),
        (["evaluate", "--models", m, "--data", f"folder:{bad_files / 'notimg'}"], "cannot read image"),
        (["evaluate", "--models", m, "--data", f"folder:{bad_files / 'nomatch'}"], "matches no class of the model"),
        (["evaluate", "--models", m, "--data", "demo", "--class-map", str(bad_files / "x.json")], "--class-map"),
        (["evaluate", "--models", m, "--data", f"npz:{bad_files / 'empty.npz'}"], "no images"),
        (["evaluate", "--models", m, "--data", f"npz:{bad_files / 'gray.npz'}"], "uint8"),
        (["evaluate", "--models", str(bad_files / "evil.pt"), "--data", "demo"], "refused"),
        (["evaluate", "--models", m, "--data", "demo", "--device", "cuda"], "cuda"),
        (["attack", "--model", m, "--data", "demo", "--source", "stpo", "--out", str(out)], "did you mean"),
        (
            ["attack", "--model", m, "--data", "demo", "--size", "1.5", "--steps", "1", "--out", str(out)],
            "0 < size < 1",
        ),
        (["attack", "--model", m, "--data", "demo", "--size", "0", "--steps", "1", "--out", str(out)], "0 < size < 1"),
        (
            ["attack", "--model", m, "--data", "demo", "--placement", "floating", "--steps", "1", "--out", str(out)],
            "placement",
        ),
        (
            ["attack", "--model", m, "--data", "demo", "--shape", "rect:0:2", "--steps", "1", "--out", str(out)],
            "rect:W:H",
        ),
        (["evaluate", "--models", m, "--data", "demo", "--patch", str(tmp_path / "nopatch")], "no patch.safetensors"),
        (["train", "--arch", "transformer9000", "--out", str(out)], "unknown --arch"),
        (["evaluate", "--models", m, "--data", "imagenet"], "unknown data"),
        (["attack", "--model", m, "--data", "demo", "--bogus-option"], "no such option"),
    ]
    for args, needle in cases:
        _assert_clean_error(run_cli(*args), needle)
    assert not out.exists()  # nothing half-written by any failed command


def test_a_model_that_outputs_nan_is_a_clear_error(tmp_path: Path, tiny_model_path: Path):

    from safetensors.torch import load_file, save_file

    state = load_file(str(tiny_model_path))
    key = next(k for k in state if k.endswith("weight") and state[k].ndim == 4)
    state[key] = torch.full_like(state[key], float("nan"))
    bad = tmp_path / "nan.safetensors"
    save_file(state, str(bad))
    (tmp_path / "nan.json").write_text(tiny_model_path.with_suffix(".json").read_text())
    _assert_clean_error(run_cli("evaluate", "--models", str(bad), "--data", "demo", "--limit", "8"), "nan or inf")
    _assert_clean_error(
        run_cli(
            "attack",
            "--model",
            str(bad),
            "--data",
            "demo",
            "--limit",
            "8",
            "--steps",
            "2",
            "--out",
            str(tmp_path / "o"),
        ),
        "nan or inf",
    )
    assert not (tmp_path / "o" / "patch.safetensors").exists()


def test_a_safetensors_header_that_lies_about_sizes_is_refused(tmp_path: Path, tiny_model_path: Path):
    import json
    import struct

    raw = tiny_model_path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    name = next(k for k in header if k != "__metadata__")
    begin, end = header[name]["data_offsets"]
    header[name]["data_offsets"] = [begin, end + 10**9]  # claims far more bytes than the file has
    blob = json.dumps(header).encode()
    lying = tmp_path / "lying.safetensors"
    lying.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n :])
    (tmp_path / "lying.json").write_text(tiny_model_path.with_suffix(".json").read_text())
    _assert_clean_error(
        run_cli("evaluate", "--models", str(lying), "--data", "demo", "--limit", "4"), "not a valid safetensors"
    )
