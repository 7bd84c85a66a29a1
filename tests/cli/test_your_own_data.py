"""Every command on a user's own ImageFolder and torchvision model at 224 px: folders labelled by the model's classes
(WordNet id, name, index or class map), the model card's resize and centre crop, patch and mask sizes from 224 px.

The models are torchvision's smallest ImageNet classifier with random weights from a local state dict (no download).
A "constant" model has a zero last layer and one bias: it answers one class for every image, so its accuracy is the
share of that class's images, which says exactly which label each folder got.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from patchscope.attacks import load_patch, patch_side
from tests.conftest import run_cli

TV = "mobilenet_v3_small"  # 57 MFLOPs a 224-px image: the cheapest torchvision ImageNet model
STREET_SIGN, TENCH, GOLDFISH = 919, 0, 1
FOLDERS = {"n06794110": 3, "tench": 2, "1": 2}  # street sign by WordNet id, tench by name, goldfish by index
SIDE = patch_side(0.05, 224)  # 50 px


def _weights(path: Path, constant: int | None = None) -> str:
    """A random state dict of the torchvision model (or one whose logits are constant, peaked at ``constant``)."""
    import torchvision

    torch.manual_seed(0)
    state = torchvision.models.get_model(TV, weights=None).state_dict()
    if constant is not None:
        state["classifier.3.weight"].zero_()
        state["classifier.3.bias"].zero_()[constant] = 10.0
    torch.save(state, path)
    return f"tv:{TV}:{path}"


@pytest.fixture(scope="module")
def byo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The folder (JPEGs of other sizes than 224 px), three models and an on-object patch made at 224 px."""
    root = tmp_path_factory.mktemp("byo")
    rng = np.random.default_rng(0)
    for folder, n in FOLDERS.items():
        (root / "photos" / folder).mkdir(parents=True)
        for k in range(n):
            pixels = rng.integers(0, 255, (260 + 10 * k, 300, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "photos" / folder / f"{k}.jpg", quality=90)
    paths = {
        "data": f"folder:{root / 'photos'}",
        "model": _weights(root / "random.pth"),
        "sign": _weights(root / "sign.pth", STREET_SIGN),
        "tench": _weights(root / "tench.pth", TENCH),
        "root": str(root),
    }
    made = run_cli(*_attack(paths, root / "patch"), "--source", "n06794110", "--target", "tench")
    assert made.returncode == 0, made.stderr
    paths["patch"] = str(root / "patch")
    return paths


def _attack(byo: dict[str, str], out: Path, *extra: str) -> list[str]:
    common = ["--model", byo["model"], "--data", byo["data"], "--steps", "2", "--batch-size", "4"]
    return [
        "attack",
        *common,
        "--candidates",
        "1",
        "--limit",
        "1",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--json",
        *extra,
    ]


def _json(*args: str) -> dict:
    r = run_cli(*args, "--device", "cpu", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_attack_on_object_names_classes_by_the_models_wordnet_id_and_scales_the_patch(byo):
    out = Path(byo["patch"])
    config, metrics = (json.loads((out / f).read_text()) for f in ("config.json", "metrics.json"))
    assert (config["source"], config["target"]) == ("street sign", "tench")  # from n06794110 and the name "tench"
    assert (config["source_id"], config["target_id"]) == (STREET_SIGN, TENCH)
    assert metrics["patch_side"] == SIDE and metrics["attack_images"] == 1
    top, left = metrics["location"]
    assert 0 <= top <= 224 - SIDE and 0 <= left <= 224 - SIDE


def test_attack_sticker_by_class_index(byo, tmp_path):
    r = run_cli(*_attack(byo, tmp_path / "s", "--placement", "sticker", "--source", "919", "--target", "0"))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["patch_side"] == SIDE and summary["location"] is None and summary["attack_images"] == 1
    assert json.loads((tmp_path / "s" / "config.json").read_text())["source"] == "street sign"


def test_attack_per_image(byo, tmp_path):
    r = run_cli(*_attack(byo, tmp_path / "p", "--per-image", "--views", "2", "--source", "street_sign"), "--target", "")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["per_image"] and summary["attack_images"] == 1 and summary["patch_side"] == SIDE


def test_evaluate_labels_each_folder_with_the_models_class(byo):
    """A model that always answers street sign is right on exactly the n06794110 folder's 3 of 7 images."""
    out = _json("evaluate", "--models", f"{byo['sign']},{byo['tench']}", "--data", byo["data"], "--batch-size", "4")
    sign, tench = out["models"][byo["sign"]], out["models"][byo["tench"]]
    assert sign["clean_images"] == tench["clean_images"] == 7
    assert sign["clean_accuracy"] == pytest.approx(3 / 7) and tench["clean_accuracy"] == pytest.approx(2 / 7)
    patched = _json(
        "evaluate", "--models", byo["sign"], "--data", byo["data"], "--patch", byo["patch"], "--conditions", "none"
    )
    row = patched["models"][byo["sign"]]
    assert row["images"] == 3 and row["source"] == "street sign" and row["untargeted_success"] == 0.0


def test_evaluate_class_map_skip_bad_and_refusals(byo, tmp_path):
    photos = Path(byo["data"][len("folder:") :])
    mine = tmp_path / "mine"
    for folder in ("n06794110", "tench"):
        (mine / folder).mkdir(parents=True)
        for f in (photos / folder).iterdir():
            (mine / folder / f.name).write_bytes(f.read_bytes())
    (mine / "my signs").mkdir()
    (mine / "my signs" / "a.jpg").write_bytes((photos / "n06794110" / "0.jpg").read_bytes())
    (mine / "tench" / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "map.json").write_text(json.dumps({"my signs": "street sign"}))
    args = ["evaluate", "--models", byo["sign"], "--data", f"folder:{mine}", "--device", "cpu"]
    unmatched = run_cli(*args)
    assert unmatched.returncode == 2 and unmatched.stderr.count("\n") == 1
    assert "'my signs' matches no class of the model" in unmatched.stderr and "--class-map" in unmatched.stderr
    bad = run_cli(*args, "--class-map", str(tmp_path / "map.json"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "broken.jpg" in bad.stderr and "--skip-bad" in bad.stderr
    out = json.loads(run_cli(*args, "--class-map", str(tmp_path / "map.json"), "--skip-bad", "--json").stdout)
    assert out["skipped_images"] == 1 and out["models"][byo["sign"]]["clean_images"] == 6
    assert out["models"][byo["sign"]]["clean_accuracy"] == pytest.approx(4 / 6)  # 3 + the mapped folder's 1
    mixed = run_cli("evaluate", "--models", f"{byo['sign']},gtsrb-cnn", "--data", byo["data"], "--device", "cpu")
    assert mixed.returncode == 2 and "different classes" in mixed.stderr and mixed.stderr.count("\n") == 1


def test_transfer_uses_the_folders_labels_for_every_model(byo):
    out = _json(
        "transfer", "--patches", byo["patch"], "--models", f"{byo['sign']},{byo['tench']}", "--data", byo["data"],
        "--source", "n06794110", "--target", "tench", "--limit", "1",
    )  # fmt: skip
    row = out["matrix"][byo["patch"]]
    assert row == {byo["sign"]: 0.0, byo["tench"]: 1.0}  # one model never says tench, the other always


def test_curve_sizes_are_areas_of_the_224px_image(byo, tmp_path):
    r = run_cli(
        "curve", "--model", byo["model"], "--data", byo["data"], "--eval-data", byo["data"], "--sizes", "0.02,0.05",
        "--placements", "sticker", "--steps", "1", "--batch-size", "2", "--candidates", "1", "--limit", "2",
        "--source", "n06794110", "--target", "tench", "--out", str(tmp_path / "c"), "--device", "cpu",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "c" / "curve.json").read_text())["sticker"]["rows"]
    assert [row["side"] for row in rows] == [patch_side(0.02, 224), SIDE]


def test_explain_grad_cam_on_a_resnet_at_224px(byo, tmp_path):
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    out = _json(
        "explain", "--model", f"tv:resnet18:{tmp_path / 'r18.pth'}", "--data", byo["data"], "--patch", byo["patch"],
        "--limit", "1", "--out", str(tmp_path / "x"),
    )  # fmt: skip
    assert out["heatmap"] == {"method": "gradcam", "layer": "layer4", "tokens": False}
    assert out["footprint"]["side"] == SIDE and out["source"] == "street sign" and out["images"] == 1
    grids = {row["name"]: row["grid"] for row in out["layers"]}
    assert grids["conv1"] == [112, 112] and grids["layer4"] == [7, 7]


def test_explain_attention_rollout_on_a_vit_with_14x14_tokens(byo, tmp_path):
    from patchscope.models import build_net, create_model, save_checkpoint

    tv = create_model(f"tv:{TV}:random")  # an ImageNet model's card: classes, mean, std, resize and crop
    card = {k: tv.card[k] for k in ("classes", "input_size", "mean", "std", "preprocess")}
    card |= {"arch": "tv:VisionTransformer", "arch_kwargs": {"image_size": 224, "patch_size": 16, "num_layers": 2}}
    card["arch_kwargs"] |= {"num_heads": 2, "hidden_dim": 32, "mlp_dim": 64}
    torch.manual_seed(0)
    net = build_net(card["arch"], len(card["classes"]), card["arch_kwargs"])
    save_checkpoint(net, card, tmp_path / "vit.safetensors", half=False)
    out = _json(
        "explain", "--model", str(tmp_path / "vit.safetensors"), "--data", byo["data"], "--patch", byo["patch"],
        "--method", "rollout", "--limit", "2", "--out", str(tmp_path / "x"),
    )  # fmt: skip
    assert out["heatmap"] == {"method": "rollout", "layer": None, "tokens": True}
    assert [row["grid"] for row in out["layers"]] == [[14, 14], [14, 14]]
    assert out["footprint"]["pixels"] == SIDE * SIDE


def test_defend_adaptive_at_224px(byo, tmp_path):
    out = _json(
        "defend", "--defense", "median", "--patch", byo["patch"], "--model", byo["model"], "--data", byo["data"],
        "--adaptive", "--steps", "2", "--attack-batch-size", "2", "--conditions", "none", "--limit", "2",
        "--out", str(tmp_path / "d"),
    )  # fmt: skip
    assert out["images"] == 2 and out["source_images"] == 2 and out["patch"]["undefended"]["source"] == "street sign"
    assert out["adaptive"]["steps"] == 2
    adaptive = load_patch(tmp_path / "d")
    assert (adaptive.image_size, adaptive.side, adaptive.meta["defense"]) == (224, SIDE, "median")


@pytest.mark.parametrize(
    ("defense", "limit", "expected"),
    [
        ("patchcleanser", "7", {"masks": 36, "mask_side": 79, "mask_stride": 30}),  # stride ceil((224 - 50 + 1) / 6)
        ("ds-column", "7", {"band": 28, "stride": 7, "ablations": 32, "delta": 11}),
        ("ds-block", "1", {"band": 84, "stride": 7, "ablations": 1024, "delta": 19 * 19}),
    ],
)
def test_certify_at_224px(byo, defense, limit, expected):
    """The constant street-sign model is certified on exactly the street-sign images (none among the first one)."""
    out = _json(
        "certify", "--defense", defense, "--model", byo["sign"], "--data", byo["data"], "--limit", limit,
        "--patch-size", "0.05", "--batch-size", "256",
    )  # fmt: skip
    assert out["patch_side"] == SIDE and {k: out[k] for k in expected} == expected
    certified = 3 / 7 if limit == "7" else 0.0
    assert out["images"] == int(limit) and out["certified_accuracy"] == pytest.approx(certified)
    assert out["clean_accuracy"] == pytest.approx(certified)
