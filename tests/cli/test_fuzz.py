"""Fuzz every command with values drawn from each option's type and its edges, and bad files made on the fly.

The property (the command line's error contract): exit 0 with strict JSON (no NaN) where JSON is printed, or exit 2
with exactly one line on stderr; never a traceback; a command that fails leaves no ``--out`` folder behind.

CI runs a few hundred small cases (profile ``ci``); ``PATCHSCOPE_FUZZ=long`` (``make fuzz``) runs many more.
Each case runs in this process through :func:`patchscope.cli.main` on a 24-image data set and a tiny model.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from tests.cli._contract import assert_contract, invoke

settings.register_profile(
    "ci", max_examples=20, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("PATCHSCOPE_FUZZ_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
settings.load_profile("long" if os.environ.get("PATCHSCOPE_FUZZ") == "long" else "ci")

# -- value pools, by option type --------------------------------------------------------------------------------------
INTS = ["-1", "0", "1", "2", "3", "-2147483648", "9223372036854775808", "1000000000000", "nan", "", "x", "1.5", "1e3"]
FLOATS = ["nan", "inf", "-inf", "-1", "0", "1", "0.5", "0.05", "0.1", "1e308", "-0.0", "1e-320", "", "x", "2", "1e-9"]
TEXT = ["", " ", ",", "x", "stop", "yield", "14", "-1", "99", "nan", "../x", "a" * 300, "zoo:", "é", ",,", "stop,yield"]
TEXT += ["²", "--14", "\u0661\u0664", "a\nb", "1e20"]  # names that only look numeric; a newline
DATA = [
    "{d}",
    "npz:{f}/l999.npz",
    "npz:{f}/lnan.npz",
    "npz:{f}/lneg.npz",
    "npz:{f}/nolabels.npz",
    "npz:{f}/gray.npz",
    "npz:{f}/empty.npz",
    "npz:{f}/missing.npz",
    "npz:{f}/afile",
    "folder:{f}/notimg",
    "folder:{f}/missing",
    "folder:{f}/afile",
    "gtsrb:nope",
    "",
    "x",
    "npz:",
    "folder:",
    "folder:{f}/modes",  # images of every mode and bit depth
    "folder:{f}/allbad",
    "folder:{f}/numeric",  # a class folder named like a number that is not one
    "folder:{f}/huge",  # an image past the pixel limit
    "folder:{f}/" + "a" * 300,
    "npz:{f}/" + "a" * 300 + ".npz",
]
MODELS = [
    "{m}",
    *(
        f"{{f}}/{c}.safetensors"
        for c in ("huge", "negsize", "strsize", "meanstr", "mean1", "akbogus", "akneg", "akstr", "badjson", "nocard")
    ),
    "{f}/missing.safetensors",
    "{f}/evil.pt",
    "{f}",
    "gtsrb-nope",
    "",
    ",",
    "tv:nope",
    "timm:nope",
    "{m},{m}",
    *(f"{{f}}/card-{c}.safetensors" for c in ("resize", "resize1", "crop", "interp", "wnids", "deep", "folder")),
    "tv:resnet18:",
    "tv:resnet18:{f}",
    "{f}/" + "a" * 300 + ".safetensors",
]
PATCHES = [
    "{p}",
    "{f}/pnan",
    "{f}/pflat",
    "{f}/pwide",
    "{f}/pzero",
    "{f}/pempty",
    "{f}/pbig",
    "{f}/ploc",
    "{f}/pmeta",
    "{f}/missing",
    "{f}/afile",
    "{f}/notpatch.safetensors",
    "zoo:nope",
    "zoo:",
    "",
    "zoo:gtsrb-cnn/stop-yield",
    "{f}/" + "a" * 300,
]
OUTS = ["{o}", "{f}/afile", "{f}/afile/sub", "{o}/deep/er", "", "{ro}/x"]
OUTS += ["{f}/dangling", "{f}/loop", "{f}/collide", "{o}/" + "a" * 300]  # links to nothing; folders where files go

POOLS = {"int": INTS, "float": FLOATS, "text": TEXT, "data": DATA, "model": MODELS, "patch": PATCHES, "out": OUTS}
#: options whose values are kept small: a large k costs minutes of masked passes per image, not an error
SMALL = {"k": ["1", "2", "0", "-1", "x", "1.5"]}


def option_values(kind: str) -> list[str]:
    """``--option`` values: every option of every registered entry of ``kind`` with each value of its type's pool,
    and malformed ones."""
    from patchscope.cli.common import registry

    reg = registry(kind)
    pools = {"int": INTS, "float": FLOATS, "bool": ["true", "no", "2", ""]}
    options = {o.name: o.type for name in reg.list() for o in reg.spec(name).options}
    pairs = {f"{k}={v}" for k, kind_ in options.items() for v in SMALL.get(k, pools.get(kind_, TEXT))}
    return [*sorted(pairs), "nope=1", "=1", "x", ""]


# -- commands: cheap base arguments and the options to fuzz (name -> pool or explicit choices) -------------------------
COMMANDS: dict[str, tuple[list[str], dict[str, str | list[str]]]] = {
    "evaluate": (
        [
            "evaluate",
            "--models",
            "{m}",
            "--data",
            "{d}",
            "--limit",
            "4",
            "--patch",
            "{p}",
            "--source",
            "stop",
            "--conditions",
            "none",
        ],
        {
            "--models": "model",
            "--data": "data",
            "--patch": "patch",
            "--source": "text",
            "--target": "text",
            "--limit": "int",
            "--batch-size": "int",
            "--conditions": ["default", "none", "sweep", "", "x"],
            "--device": ["cpu", "cuda", "tpu", ""],
            "--per-sign-lighting": "flag",
            "--lighting-data": "data",
        },
    ),
    "attack": (
        [
            "attack",
            "--model",
            "{m}",
            "--data",
            "{d}",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--candidates",
            "1",
            "--limit",
            "4",
            "--out",
            "{o}",
            "--checkpoint-every",
            "0",
            "--json",
        ],
        {
            "--model": "model",
            "--data": "data",
            "--source": "text",
            "--target": "text",
            "--size": "float",
            "--shape": ["square", "circle", "rect:1:2", "rect:0:1", "rect:x", "", "{f}/afile", "{f}/blank.png"],
            "--placement": ["sticker", "on-object", "", "x"],
            "--location": ["0,0", "25,25", "40,40", "-1,0", "1", "a,b", "", "1,2,3"],
            "--steps": "int",
            "--batch-size": "int",
            "--candidates": "int",
            "--restarts": "int",
            "--lr": "float",
            "--loss": ["ce", "margin", "sigmoid", "", "x"],
            "--kappa": "float",
            "--optimizer": ["adam", "sign", "x"],
            "--tv": "float",
            "--nps": "float",
            "--seed": "int",
            "--out": "out",
            "--limit": "int",
            "--precision": ["fp32", "bf16", "fp8"],
            "--views": "int",
            "--checkpoint-every": "int",
            "--per-image": ["--per-image"],
            "--resume": ["--resume"],
            "--init": "patch",
        },
    ),
    "transfer": (
        ["transfer", "--patches", "{p}", "--models", "{m}", "--data", "{d}", "--limit", "4"],
        {
            "--patches": "patch",
            "--models": "model",
            "--data": "data",
            "--source": "text",
            "--target": "text",
            "--limit": "int",
        },
    ),
    "curve": (
        [
            "curve",
            "--model",
            "{m}",
            "--data",
            "{d}",
            "--eval-data",
            "{d}",
            "--sizes",
            "0.05",
            "--placements",
            "sticker",
            "--steps",
            "1",
            "--batch-size",
            "4",
            "--candidates",
            "1",
            "--limit",
            "2",
            "--out",
            "{o}",
            "--json",
        ],
        {
            "--model": "model",
            "--data": "data",
            "--eval-data": "data",
            "--sizes": ["", ",", "0.05,0.1", "nan", "0", "1", "-0.1", "x", "0.05,,"],
            "--placements": ["sticker", "on-object", "", ",", "x", "sticker,x"],
            "--steps": "int",
            "--batch-size": "int",
            "--candidates": "int",
            "--loss": ["ce", "margin", "x"],
            "--limit": "int",
            "--seed": "int",
            "--out": "out",
            "--source": "text",
            "--target": "text",
        },
    ),
    "train": (
        [
            "train",
            "--arch",
            "cnn",
            "--data",
            "{d}",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--arch-kwargs",
            '{"width": 4, "hidden": 8}',
            "--out",
            "{o}",
            "--name",
            "fz",
            "--json",
        ],
        {
            "--arch": ["cnn", "resnet", "vit", "", "x"],
            "--data": "data",
            "--epochs": "int",
            "--batch-size": "int",
            "--lr": "float",
            "--seed": "int",
            "--name": "text",
            "--arch-kwargs": [
                "{}",
                '{"bogus": 1}',
                '{"width": -3}',
                '{"width": 0}',
                '{"width": 1e9}',
                '{"width": "4"}',
                '{"dropout": 2}',
                "[]",
                "x",
                '{"widths": []}',
                '{"heads": 5}',
                '{"patch": 64}',
                '{"width": true}',
            ],
            "--ema-decay": "float",
            "--threads": "int",
            "--out": "out",
            "--patch-training": "float",
            "--patch-steps": "int",
            "--mask-training": ["0.05", "nan", "", "x", "0.05,2", "0.5"],
            "--mask-tries": "int",
            "--ablation-training": ["column:4", "block:0", "column:99", "x", "column:x", ""],
            "--distill-weight": "float",
            "--precision": ["fp32", "bf16", "x"],
            "--augment": ["rotate=5", "rotate=nan", "scale=2:1", "x", "occlude_p=2", "", "jitter=inf"],
            "--init": "model",
            "--teacher": "model",
            "--ssl": ["mae", "x"],
        },
    ),
    "defend": (
        [
            "defend",
            "--defense",
            "jpeg",
            "--patch",
            "{p}",
            "--model",
            "{m}",
            "--data",
            "{d}",
            "--limit",
            "4",
            "--batch-size",
            "64",
            "--conditions",
            "none",
            "--steps",
            "2",
            "--attack-batch-size",
            "4",
        ],
        {
            "--defense": ["jpeg", "blur", "median", "bits", "lgs", "clip", "", "x", "patchcleanser"],
            "--patch": "patch",
            "--model": "model",
            "--data": "data",
            "--source": "text",
            "--target": "text",
            "--adaptive": ["--adaptive"],
            "--steps": "int",
            "--attack-batch-size": "int",
            "--limit": "int",
            "--option": option_values("defenses"),
            "--fit-limit": "int",
            "--batch-size": "int",
            "--out": "out",
            "--seed": "int",
            "--conditions": ["default", "none", "x"],
        },
    ),
    "certify": (
        ["certify", "--defense", "ds-column", "--model", "{m}", "--data", "{d}", "--limit", "2", "--json"],
        {
            "--defense": ["patchcleanser", "ds-column", "ds-block", "", "x"],
            "--model": "model",
            "--patch-size": "float",
            "--data": "data",
            "--limit": "int",
            "--option": option_values("certifiers"),
            "--batch-size": "int",
            "--bf16": ["--bf16"],
        },
    ),
    "explain": (
        ["explain", "--patch", "{p}", "--model", "{m}", "--data", "{d}", "--limit", "2", "--out", "{o}", "--json"],
        {
            "--patch": "patch",
            "--model": "model",
            "--data": "data",
            "--source": "text",
            "--index": "int",
            "--limit": "int",
            "--method": ["auto", "gradcam", "rollout", "", "x"],
            "--out": "out",
            "--batch-size": "int",
        },
    ),
    "study": (
        [
            "study",
            "robustness",
            "--models",
            "{m}",
            "--data",
            "{d}",
            "--sizes",
            "0.05",
            "--steps",
            "1",
            "--batch-size",
            "4",
            "--candidates",
            "1",
            "--conditions",
            "1",
            "--certify-images",
            "2",
            "--out",
            "{o}",
            "--json",
        ],
        {
            "--models": "model",
            "--data": "data",
            "--source": "text",
            "--target": "text",
            "--sizes": ["", "0.05,0.1", "nan", "2", "x"],
            "--steps": "int",
            "--batch-size": "int",
            "--candidates": "int",
            "--conditions": "int",
            "--certify-images": "int",
            "--out": "out",
            "--seed": "int",
        },
    ),
    "runs": (
        ["runs", "list", "--json"],
        {"--limit": "int", "--kind": "text", "--status": ["running", "done", "failed", "interrupted", "", "x"]},
    ),
    "report": (
        ["report", "--runs", "1", "--out", "{o}"],
        {"--runs": ["1", "", ",", "-1", "x", "999999", "1,1", "9223372036854775808"], "--out": "out"},
    ),
    "zoo": (["zoo", "--json"], {"--json": ["--json"]}),
    "print": (
        ["print", "{p}", "--width", "3cm", "--dpi", "72", "--out", "{o}/sheet.pdf"],
        {
            "--sign-width": ["75cm", "750mm", "30in", "75", "0cm", "-1cm", "nan", "1e9mm", "", "x"],
            "--width": ["3cm", "1mm", "0.001mm", "5000mm", "", "x", "inf"],
            "--paper": ["a4", "a3", "letter", "", "x"],
            "--dpi": "int",
            "--out": "out",
        },
    ),
}
# commands whose successful runs are too slow for a fuzz case: only their refusals are fuzzed (values must fail)
SLOW = {
    "demo": (
        ["demo", "--quick", "--out", "{o}"],
        {
            "--size": ["nan", "inf", "-1", "0", "1", "2", "", "x"],
            "--steps": ["0", "-1", "nan", "", "x", "1e3"],
            "--out": ["{f}/afile", "{f}/afile/sub"],
            "--device": ["cuda", "tpu", ""],
        },
    ),
    "bench": (
        ["bench", "--model", "{m}", "--data", "{d}", "--out", "{o}/card.json"],
        {
            "--profile": ["", "x", "QUICK"],
            "--shares": ["0", "1", "nan", "-0.1", "", "x", "0.0001", "0.05,0.05", "0.05,,2"],
            "--seed": ["-1", "x", "", "1e3", "9223372036854775808"],
            "--defense": ["", "x", "median,bits"],
            "--certifier": ["", "x"],
            "--out": ["{f}/afile/card.json", "{f}", ""],
            "--device": ["cuda", "tpu", ""],
        },
    ),
}

FLAGS_WITHOUT_VALUE = {"--per-image", "--resume", "--adaptive", "--bf16", "--json", "--per-sign-lighting"}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> dict[str, Path]:
    """A 24-image data set, the tiny model and a patch for it, and bad files of every kind."""
    from patchscope.attacks import load_patch
    from patchscope.data import load_data

    f = tmp_path_factory.mktemp("fuzz-files")
    demo = load_data("demo")
    pick = torch.cat([(demo.labels == c).nonzero().flatten()[:8] for c in (14, 13, 1)])
    np.savez(f / "small.npz", x=demo.images[pick].numpy(), y=demo.labels[pick].numpy())
    x = np.zeros((4, 32, 32, 3), np.uint8)
    np.savez(f / "l999.npz", x=x, y=np.array([0, 1, 2, 999]))
    np.savez(f / "lnan.npz", x=x, y=np.array([0, 1, 2, np.nan]))
    np.savez(f / "lneg.npz", x=x, y=np.array([0, 1, 2, -1]))
    np.savez(f / "nolabels.npz", x=x)
    np.savez(f / "gray.npz", x=np.zeros((2, 32, 32), np.uint8), y=np.zeros(2, np.int64))
    np.savez(f / "empty.npz", x=np.zeros((0, 32, 32, 3), np.uint8), y=np.zeros(0, np.int64))
    (f / "afile").write_text("not a folder")
    (f / "notimg" / "cls").mkdir(parents=True)
    (f / "notimg" / "cls" / "x.png").write_text("hello")
    from PIL import Image

    Image.new("L", (8, 8)).save(f / "blank.png")
    card = json.loads(tiny_model_path.with_suffix(".json").read_text())
    for tag, change in {
        "huge": {"input_size": 10**9},
        "negsize": {"input_size": -3},
        "strsize": {"input_size": "32"},
        "meanstr": {"mean": "abc"},
        "mean1": {"mean": [0.5]},
        "akbogus": {"arch_kwargs": {"bogus": 1}},
        "akneg": {"arch_kwargs": {"width": -3}},
        "akstr": {"arch_kwargs": "w"},
    }.items():
        shutil.copy(tiny_model_path, f / f"{tag}.safetensors")
        (f / f"{tag}.json").write_text(json.dumps({**card, **change}))
    shutil.copy(tiny_model_path, f / "badjson.safetensors")
    (f / "badjson.json").write_text("{not json")
    shutil.copy(tiny_model_path, f / "nocard.safetensors")
    import pickle

    with (f / "evil.pt").open("wb") as fh:
        pickle.dump({"w": Path("x")}, fh)
    (f / "evil.json").write_text(json.dumps(card))
    good = load_patch("zoo:gtsrb-cnn/stop-yield")
    good.save(f / "good")
    meta = {
        "placement": "sticker",
        "location": "null",
        "image_size": "32",
        "meta": json.dumps({"source": "stop", "target": "yield"}),
    }
    bad_patches = {
        "pnan": (torch.full((3, 5, 5), float("nan")), torch.ones(5, 5), meta),
        "pflat": (torch.rand(5, 7), torch.ones(5, 7), meta),
        "pwide": (torch.rand(3, 5, 7), torch.ones(5, 7), meta),
        "pzero": (torch.rand(3, 0, 0), torch.ones(0, 0), meta),
        "pempty": (torch.rand(3, 5, 5), torch.zeros(5, 5), meta),
        "pbig": (torch.rand(3, 40, 40), torch.ones(40, 40), meta),
        "ploc": (torch.rand(3, 5, 5), torch.ones(5, 5), {**meta, "placement": "on-object", "location": "[40, 40]"}),
        "pmeta": (torch.rand(3, 5, 5), torch.ones(5, 5), {**meta, "image_size": "x", "meta": "[1]"}),
    }
    for tag, (pixels, mask, md) in bad_patches.items():
        (f / tag).mkdir()
        save_file({"pixels": pixels, "mask": mask}, str(f / tag / "patch.safetensors"), metadata=md)
    (f / "notpatch.safetensors").write_bytes(b"\x00" * 20)
    _edge_files(f, tiny_model_path, demo.images[pick[:4]].permute(0, 2, 3, 1).numpy())
    ro = f / "readonly"
    ro.mkdir()
    ro.chmod(0o555)
    return {"f": f, "m": tiny_model_path, "p": f / "good", "d": f / "small.npz", "ro": ro}


def _edge_files(f: Path, tiny_model_path: Path, rgb: np.ndarray) -> None:
    """The second pass's edges: images of every mode and depth, unreadable and huge ones, numeric-looking folder
    names, bad model cards, links to nothing, and an --out folder holding folders where every command's files go."""
    from PIL import Image

    from tests.cli.test_error_contract_2 import _huge_png

    (f / "modes" / "14").mkdir(parents=True)
    grey = rgb[0, ..., 0]
    for mode in ("1", "L", "LA", "P", "RGBA", "CMYK", "RGB"):
        Image.fromarray(rgb[1]).convert(mode).save(f / "modes" / "14" / f"{mode}.{'tif' if mode == 'CMYK' else 'png'}")
    Image.fromarray(grey.astype(np.uint16) * 257).save(f / "modes" / "14" / "i16.png")
    Image.fromarray(grey.astype(np.float32) / 255).save(f / "modes" / "14" / "f32.tif")
    (f / "allbad" / "14").mkdir(parents=True)
    (f / "allbad" / "14" / "a.png").write_bytes(b"\x89PNG\r\n")
    (f / "numeric" / "\u00b2").mkdir(parents=True)
    Image.fromarray(rgb[2]).save(f / "numeric" / "\u00b2" / "a.png")
    (f / "huge" / "14").mkdir(parents=True)
    _huge_png(f / "huge" / "14" / "huge.png", 20000)
    card = json.loads(tiny_model_path.with_suffix(".json").read_text())
    changes = {
        "resize": {"preprocess": {"resize": "ab"}},
        "resize1": {"preprocess": {"resize": [1]}},
        "crop": {"preprocess": {"resize": 36, "crop": 10**8}},
        "interp": {"preprocess": {"resize": 36, "interpolation": "cubic"}},
        "wnids": {"wnids": 5},
    }
    for tag, change in changes.items():
        shutil.copy(tiny_model_path, f / f"card-{tag}.safetensors")
        (f / f"card-{tag}.json").write_text(json.dumps({**card, **change}))
    for tag in ("deep", "folder"):
        shutil.copy(tiny_model_path, f / f"card-{tag}.safetensors")
    (f / "card-deep.json").write_text("[" * 50_000 + "]" * 50_000)
    (f / "card-folder.json").mkdir()
    (f / "dangling").symlink_to(f / "nowhere")
    (f / "loop").symlink_to(f / "loop")
    for name in ("patch.safetensors", "patches.safetensors", "explain.json", "curve.json", "area.png", "report.html"):
        (f / "collide" / name).mkdir(parents=True)
    for name in ("results.json", "study.json", "metrics.json"):
        (f / "collide" / name).mkdir(parents=True)


@contextmanager
def _case_dir() -> Iterator[Path]:
    """A fresh working folder per case (a bad ``--out ''`` writes into the working folder, never the repository)."""
    here = os.getcwd()
    d = Path(tempfile.mkdtemp(prefix="fuzz-"))
    os.chdir(d)
    try:
        yield d
    finally:
        os.chdir(here)
        shutil.rmtree(d, ignore_errors=True)


def _fill(text: str, files: dict[str, Path], out: Path) -> str:
    return (
        text.replace("{m}", str(files["m"]))
        .replace("{p}", str(files["p"]))
        .replace("{d}", f"npz:{files['d']}")
        .replace("{f}", str(files["f"]))
        .replace("{ro}", str(files["ro"]))
        .replace("{o}", str(out))
    )


def _mutated(base: list[str], options: dict[str, str | list[str]]) -> st.SearchStrategy[list[str]]:
    """The base arguments with one to three options replaced (or added) by values from their pools."""

    def value(option: str) -> st.SearchStrategy[tuple[str, str | None]]:
        pool = options[option]
        if option in FLAGS_WITHOUT_VALUE:
            return st.just((option, None))
        return st.sampled_from(POOLS[pool] if isinstance(pool, str) else pool).map(lambda v: (option, v))

    def apply(changes: list[tuple[str, str | None]]) -> list[str]:
        args = list(base)
        for option, v in changes:
            if option in args and v is not None:
                args[args.index(option) + 1] = v
            elif option not in args:
                args += [option] if v is None else [option, v]
        return args

    chosen = st.lists(st.sampled_from(sorted(options)), min_size=1, max_size=3, unique=True)
    return chosen.flatmap(lambda opts: st.tuples(*(value(o) for o in opts))).map(lambda changes: apply(list(changes)))


def _check(args: list[str], files: dict[str, Path], expect_failure: bool = False) -> None:
    with _case_dir() as work:
        out = work / "out"
        filled = [_fill(a, files, out) for a in args]
        started = time.perf_counter()
        r = invoke(*filled)
        if os.environ.get("PATCHSCOPE_FUZZ_TIMES"):
            print(f"{time.perf_counter() - started:6.2f}s exit {r.code} {' '.join(filled)[:300]}", file=sys.__stderr__)
        assert_contract(r, tuple(filled))
        assert r.code != -1
        if expect_failure:
            assert r.code == 2, (filled, r.code)
        if r.code != 0:
            assert not out.exists() or not any(out.rglob("*")), (
                filled,
                sorted(map(str, out.rglob("*")))[:5],
            )  # nothing half-written
            assert not any(p.name != "out" for p in work.iterdir()), (filled, list(work.iterdir()))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_keeps_the_error_contract(command: str, files: dict[str, Path]) -> None:
    base, options = COMMANDS[command]

    @given(_mutated(base, options))
    def case(args: list[str]) -> None:
        _check(args, files)

    case()


@pytest.mark.parametrize("command", sorted(SLOW))
def test_slow_commands_refuse_bad_values_at_once(command: str, files: dict[str, Path]) -> None:
    base, options = SLOW[command]

    @given(_mutated(base, options))
    def case(args: list[str]) -> None:
        _check(args, files, expect_failure=True)

    case()


# -- the second pass's classes, drawn directly------------------------------------------------------------------------
MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "I;16", "I;16B", "F", "LAB", "HSV"]


@given(
    mode=st.sampled_from(MODES),
    size=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    level=st.integers(0, 255),
    ext=st.sampled_from(["png", "tif", "bmp", "webp", "jpg"]),
)
def test_an_image_of_any_mode_and_depth_reads_as_rgb_or_refuses_in_one_line(
    mode: str, size: tuple[int, int], level: int, ext: str
) -> None:
    """A flat grey image in any mode that can be saved reads back as 8-bit RGB near that grey (never white from
    a 16-bit mode), or is refused as an unreadable image: never another error."""
    import warnings

    from PIL import Image

    from patchscope.data.images import BAD_IMAGE_ERRORS, read_rgb8

    grey = Image.new("L", size, level)
    if mode.startswith("I"):  # built from the raw values (Pillow's own convert to I;16B clips to 255)
        dtype = {"I": np.int32, "I;16": np.uint16, "I;16B": np.dtype(">u2")}[mode]
        values = np.full(size[::-1], level * 257, dtype)
        img = Image.frombytes(mode, size, values.tobytes()) if mode == "I;16B" else Image.fromarray(values)
    elif mode == "F":
        img = Image.fromarray(np.full(size[::-1], level / 255, np.float32))
    else:
        try:
            img = grey.convert(mode)
        except ValueError:
            return
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"x.{ext}"
        try:
            img.save(path)
        except (OSError, ValueError, KeyError):
            return  # a mode this format cannot hold
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no warning may leak
            try:
                rgb = read_rgb8(path)
            except BAD_IMAGE_ERRORS:
                return
        a = np.asarray(rgb)
        assert rgb.mode == "RGB" and a.shape == (size[1], size[0], 3)
        # Pillow writes 16-bit, 32-bit and float greys to WebP through its 8-bit conversion, which clips (a 16-bit grey
        # is written white, a float one in [0, 1] black): the file itself holds another grey
        clipped = ext == "webp" and (mode.startswith("I") or mode == "F")
        if mode not in ("1", "LAB", "HSV", "P", "PA", "CMYK", "YCbCr") and ext != "jpg" and not clipped:
            assert abs(float(a.mean()) - level) <= 2, (mode, ext, level, float(a.mean()))


@given(
    column=st.sampled_from(["config", "metrics", "artifacts", "models", "started", "ended"]),
    value=st.sampled_from(["{", "[1]", "1", '"x"', "null", "NaN", "yesterday", "", "2020-13-45", "[" * 5000]),
)
def test_a_damaged_store_row_never_takes_down_the_store(column: str, value: str) -> None:
    import sqlite3

    from patchscope.runs.store import record

    with tempfile.TemporaryDirectory() as d:
        store = Path(d) / "runs.db"
        for _ in range(2):
            with record(store, "evaluate", {"x": 1}) as run:
                run.log({"acc": 0.5})
        with sqlite3.connect(store) as conn:
            conn.execute(f"UPDATE runs SET {column} = ? WHERE id = 1", (value,))
        for args in (["runs", "list", "--json"], ["runs", "show", "1"], ["runs", "show", "2"], ["runs", "list"]):
            r = invoke("--store", str(store), *args)
            assert_contract(r, tuple(args))
        out = invoke("--store", str(store), "runs", "list", "--json")
        assert 2 in [run["id"] for run in json.loads(out.out)["runs"]]


@settings(max_examples=3 if os.environ.get("PATCHSCOPE_FUZZ") != "long" else 30)
@given(
    # from 0.3 s: before the interpreter runs any of patchscope (its own start-up, slower on a busy machine), no
    # program can catch a signal
    delays=st.tuples(st.floats(0.3, 3.0), st.lists(st.floats(0.0, 1.0), max_size=2)).map(lambda t: [t[0], *t[1]]),
    sig=st.sampled_from(["SIGINT", "SIGTERM"]),
    command=st.sampled_from(["certify", "evaluate", "demo"]),
)
def test_a_signal_at_any_moment_exits_128_plus_it(delays: list[float], sig: str, command: str) -> None:
    import signal

    from tests.cli.test_error_contract_2 import assert_interrupted, signal_run

    args = {
        "certify": ["certify", "--defense", "patchcleanser", "--data", "demo", "--limit", "100"],
        "evaluate": ["evaluate", "--models", "gtsrb-vit", "--data", "demo", "--conditions", "sweep"],
        "demo": ["demo"],
    }[command]
    with tempfile.TemporaryDirectory() as d:
        if command == "demo":
            args = [*args, "--out", f"{d}/demo"]
        assert_interrupted(*signal_run(args, getattr(signal, sig), delays, Path(d)), getattr(signal, sig))
