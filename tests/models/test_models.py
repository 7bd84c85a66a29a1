from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from patchscope.errors import PatchscopeError
from patchscope.models import ARCHS, build_net, create_model, list_models, load_state
from patchscope.models.train import Recipe, distill_loss, occlude, parse_augment, train_model


@pytest.mark.parametrize("arch", ARCHS.list())
def test_every_arch_maps_32px_images_to_logits(arch: str):
    net = build_net(arch, 43).eval()
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 43)


def test_checkpoint_round_trip_and_normalisation_inside(tiny_model_path: Path, tiny_model):
    again = create_model(str(tiny_model_path))
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(again(x), tiny_model(x))
    mean = torch.tensor(tiny_model.card["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(tiny_model.card["std"]).view(1, 3, 1, 1)
    assert torch.allclose(tiny_model(x), tiny_model.net((x - mean) / std))  # normalisation inside the wrapper
    assert not torch.allclose(tiny_model(x), tiny_model.net(x))
    assert len(tiny_model.stages()) == 3


def test_unknown_model_name_is_clear():
    with pytest.raises(PatchscopeError, match="unknown model"):
        create_model("gtsrb-nonexistent")


def test_a_pickle_that_runs_code_is_refused_and_never_runs(tmp_path: Path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    bad = tmp_path / "evil.pt"
    with bad.open("wb") as fh:
        pickle.dump({"w": Evil()}, fh)
    with pytest.raises(PatchscopeError, match="refused"):
        load_state(bad)
    assert not marker.exists()


def test_weights_only_pt_state_dict_loads(tmp_path: Path):
    torch.save({"w": torch.ones(2)}, tmp_path / "ok.pt")
    assert torch.equal(load_state(tmp_path / "ok.pt")["w"], torch.ones(2))


def test_truncated_safetensors_and_bad_cards_are_clear(tmp_path: Path, tiny_model_path: Path):
    data = tiny_model_path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    (tmp_path / "cut.json").write_text(tiny_model_path.with_suffix(".json").read_text())
    with pytest.raises(PatchscopeError, match="not a valid safetensors"):
        create_model(str(cut))
    nocard = tmp_path / "nocard.safetensors"
    nocard.write_bytes(data)
    with pytest.raises(PatchscopeError, match="no model card"):
        create_model(str(nocard))
    wrong = tmp_path / "wrong.safetensors"
    wrong.write_bytes(data)
    card = json.loads(tiny_model_path.with_suffix(".json").read_text())
    (tmp_path / "wrong.json").write_text(json.dumps({**card, "arch_kwargs": {"width": 4}}))
    with pytest.raises(PatchscopeError, match="do not fit"):
        create_model(str(wrong))


def test_torchvision_names_build_with_random_weights():
    m = create_model("tv:resnet18:random")
    assert m.input_size == 224 and len(m.classes) == 1000
    with pytest.raises(PatchscopeError, match="unknown torchvision model"):
        create_model("tv:not_a_model:random")


def test_occlusion_paints_squares_only_inside_and_keeps_rest():
    x = torch.rand(64, 3, 32, 32)
    y = occlude(x, 1.0, (6, 6), torch.Generator().manual_seed(0))
    changed = (y != x).any(1)
    assert (changed.sum((1, 2)) <= 36).all() and (changed.sum((1, 2)) > 0).all()
    assert torch.all(y[changed.unsqueeze(1).expand_as(y)] == 0.5)


def test_training_is_seeded_and_writes_a_complete_card(demo):
    small = demo.head(96)
    recipe = Recipe.for_arch("cnn", epochs=1, batch_size=32, arch_kwargs={"width": 4, "hidden": 16})
    m1, card = train_model(small, recipe, progress=False)
    m2, _ = train_model(small, recipe, progress=False)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(m1(x), m2(x))
    for key in ("recipe", "data_hash", "params", "classes", "mean", "std", "val_accuracy", "train_seconds"):
        assert key in card
    assert card["recipe"]["occlude_p"] > 0


def test_distill_loss_is_zero_on_agreement_and_pulls_the_student_toward_the_teacher():
    teacher = torch.randn(8, 43)
    assert float(distill_loss(teacher, teacher, 4.0)) == pytest.approx(0.0, abs=1e-6)
    student = torch.zeros(8, 43, requires_grad=True)
    loss = distill_loss(student, teacher, 4.0)
    assert float(loss.detach()) > 0
    loss.backward()
    stepped = student.detach() - 10.0 * student.grad
    assert float(distill_loss(stepped, teacher, 4.0)) < float(loss.detach())


def test_distillation_from_a_teacher_is_recorded_and_changes_the_student(demo, tiny_model):
    small = demo.head(96)
    kw = dict(epochs=1, batch_size=32, arch_kwargs={"width": 4, "hidden": 16})
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    plain, _ = train_model(small, Recipe.for_arch("cnn", **kw), progress=False)
    taught, card = train_model(small, Recipe.for_arch("cnn", teacher="tiny", **kw), progress=False, teacher=tiny_model)
    assert card["recipe"]["teacher"] == "tiny" and card["recipe"]["distill_temperature"] > 0
    x = torch.rand(4, 3, 32, 32)
    assert not torch.equal(plain(x), taught(x))
    assert all(torch.equal(v, tiny_model.state_dict()[k]) for k, v in before.items())  # the teacher is only read


def test_a_teacher_with_other_classes_is_refused(demo, tiny_model):
    import copy

    other = copy.deepcopy(tiny_model)
    other.classes = list(other.classes)[:-1]
    with pytest.raises(PatchscopeError, match="teacher model"):
        train_model(demo.head(32), Recipe.for_arch("cnn", epochs=1), progress=False, teacher=other)


@pytest.mark.skipif(not list_models(), reason="no zoo bundled yet")
def test_zoo_models_classify_the_demo_subset_well(demo):
    for name in list_models():
        model = create_model(name)
        from patchscope.models.train import accuracy

        measured = model.card["accuracy"]["gtsrb:test"]
        # the demo subset is drawn from the test set: its accuracy must agree with the card's number
        assert accuracy(model, demo) > measured - 0.1, name
        assert model.card["data_hash"] and model.card["recipe"]


def test_cli_trains_a_student_from_a_teacher_checkpoint(tmp_path: Path, tiny_model_path: Path):
    from tests.conftest import run_cli

    r = run_cli(
        "train",
        "--arch",
        "cnn",
        "--arch-kwargs",
        '{"width": 4, "hidden": 16}',
        "--data",
        "demo",
        "--epochs",
        "1",
        "--teacher",
        str(tiny_model_path),
        "--out",
        str(tmp_path),
        "--name",
        "s",
        env={"PATCHSCOPE_PROGRESS_SECONDS": "0"},
    )
    assert r.returncode == 0, r.stderr
    assert "train s: " in r.stderr and "train s: done" in r.stderr  # a log (not a terminal) still shows progress
    card = json.loads((tmp_path / "s.json").read_text())
    assert card["recipe"]["teacher"] == str(tiny_model_path) and card["recipe"]["distill_weight"] == 0.5
    bad = run_cli(
        "train",
        "--arch",
        "cnn",
        "--teacher",
        str(tiny_model_path),
        "--distill-weight",
        "1.5",
        "--out",
        str(tmp_path / "x"),
    )
    assert (
        bad.returncode == 2
        and "--distill-weight" in bad.stderr
        and len(bad.stderr.strip().splitlines()) == 1
        and not (tmp_path / "x").exists()
    )
    missing = run_cli("train", "--arch", "cnn", "--teacher", "gtsrb-nothing", "--out", str(tmp_path / "y"))
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1 and not (tmp_path / "y").exists()


def test_bf16_training_runs_the_forward_in_bf16_and_keeps_float32_weights(demo, tiny_model):
    small = demo.head(128)
    kw = {"epochs": 1, "batch_size": 64, "lr": 0.01, "ema_decay": 0.0, "occlude_p": 0.0}
    fp32, _ = train_model(small, Recipe.for_arch("cnn", **kw), progress=False, initial=tiny_model)
    bf16, card = train_model(small, Recipe.for_arch("cnn", precision="bf16", **kw), progress=False, initial=tiny_model)
    assert card["recipe"]["precision"] == "bf16"
    a, b = fp32.state_dict(), bf16.state_dict()
    assert all(v.dtype == a[k].dtype for k, v in b.items())  # the stored weights stay float32
    diffs = [float((b[k].float() - a[k].float()).abs().max()) for k in a if a[k].is_floating_point()]
    assert max(diffs) > 0  # the forward really ran in bf16: the same seed and steps give other weights
    assert max(diffs) < 0.05  # ... but only by rounding: two small steps from the same start


@pytest.mark.parametrize("precision,expected", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_the_perturbations_forward_passes_run_at_the_recipes_precision(demo, tiny_model, precision, expected):
    seen: list[torch.dtype] = []

    def spy(model, x, y, g):  # e.g. MaskAugment's worst-of-N pass: 16x the batch, the bulk of a step
        seen.append(model.net(x).dtype)
        return x

    kw = {"epochs": 1, "batch_size": 32, "lr": 0.01, "ema_decay": 0.0}
    train_model(
        demo.head(64),
        Recipe.for_arch("cnn", precision=precision, **kw),
        progress=False,
        initial=tiny_model,
        perturb=spy,
    )
    assert seen == [expected, expected]


def test_cli_refuses_an_unknown_training_precision(tmp_path: Path):
    from tests.conftest import run_cli

    r = run_cli("train", "--arch", "cnn", "--data", "demo", "--precision", "fp16", "--out", str(tmp_path / "m"))
    assert r.returncode == 2 and "--precision" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_augment_overrides_parse_and_bad_ones_say_which():
    assert parse_augment("rotate=5, translate=0.05,jitter=0,occlude_p=0.25,scale=0.95:1.05") == {
        "rotate": 5.0,
        "translate": 0.05,
        "jitter": 0.0,
        "occlude_p": 0.25,
        "scale": (0.95, 1.05),
    }
    assert parse_augment("") == {}
    for bad, word in [
        ("spin=3", "KEY one of"),
        ("rotate", "KEY=VALUE"),
        ("jitter=lots", "not a number"),
        ("occlude_p=1.5", "occlude_p takes"),
        ("scale=1.1:0.9", "scale=LOW:HIGH"),
        ("scale=1", "scale=LOW:HIGH"),
        ("rotate=1:2", "rotate takes"),
    ]:
        with pytest.raises(PatchscopeError, match=word):
            parse_augment(bad)


def test_no_augmentation_trains_on_the_images_as_they_are(demo, tiny_model):
    small = demo.head(64)
    seen: list[torch.Tensor] = []

    def spy(model, x, y, g):
        seen.append(x.detach().clone())
        return x

    still = parse_augment("rotate=0,translate=0,jitter=0,occlude_p=0,scale=1:1")
    train_model(
        small,
        Recipe.for_arch("cnn", epochs=1, batch_size=16, val_fraction=0.0, **still),
        progress=False,
        initial=tiny_model,
        perturb=spy,
    )
    raw = small.images.float().div(255).flatten(1)
    for x in seen:  # every training image is one of the data's images, untouched but for the warp's float rounding
        nearest = raw[torch.cdist(x.flatten(1), raw).argmin(dim=1)]
        assert (x.flatten(1) - nearest).abs().max() < 0.5 / 255
    moved: list[torch.Tensor] = []
    train_model(
        small,
        Recipe.for_arch("cnn", epochs=1, batch_size=16, val_fraction=0.0, **parse_augment("rotate=30")),
        progress=False,
        initial=tiny_model,
        perturb=lambda m, x, y, g: moved.append(x.detach().clone()) or x,
    )
    assert torch.cdist(moved[0].flatten(1), raw).min(dim=1).values.max() > 1.0  # rotation does move them


def test_cli_records_augment_overrides_and_refuses_bad_ones(tmp_path: Path, tiny_model_path: Path):
    from tests.conftest import run_cli

    r = run_cli(
        "train",
        "--init",
        str(tiny_model_path),
        "--data",
        "demo",
        "--epochs",
        "1",
        "--augment",
        "rotate=5,occlude_p=0.25",
        "--out",
        str(tmp_path),
        "--name",
        "light",
    )
    assert r.returncode == 0, r.stderr
    recipe = json.loads((tmp_path / "light.json").read_text())["recipe"]
    assert (recipe["rotate"], recipe["occlude_p"], recipe["jitter"]) == (5.0, 0.25, 0.3)
    bad = run_cli("train", "--arch", "cnn", "--data", "demo", "--augment", "rotate=400", "--out", str(tmp_path / "x"))
    assert (
        bad.returncode == 2
        and "--augment" in bad.stderr
        and len(bad.stderr.strip().splitlines()) == 1
        and not (tmp_path / "x").exists()
    )
