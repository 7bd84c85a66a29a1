"""Bring-your-own models: torchvision/timm weights from local files only, cards from their library's metadata."""

from __future__ import annotations

import pickle
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

from patchscope.data import Preprocess, gtsrb_classes, open_folder
from patchscope.errors import PatchscopeError
from patchscope.models import Classifier, create_model, default_device, resolve_device

TV = "squeezenet1_1"  # the smallest torchvision classifier (1.2M parameters)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any download attempt fails, as it would without a network."""

    def no_network(*args: object, **kwargs: object) -> None:
        raise URLError("no network in tests")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)


def _stand_in_state() -> dict[str, torch.Tensor]:
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.get_model(TV, weights=None).state_dict()


def test_tv_pretrained_comes_from_torchvisions_cache_with_its_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline: None
):
    import torchvision

    weights = torchvision.models.get_model_weights(TV).DEFAULT
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    state = _stand_in_state()
    torch.save(state, cache / Path(weights.url).name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    m = create_model(f"tv:{TV}")
    assert all(torch.equal(m.net.state_dict()[k], v) for k, v in state.items())
    assert m.input_size == 224 and m.preprocess == Preprocess(256, 224, "bilinear")
    assert m.classes[919] == "street sign" and len(m.classes) == 1000
    assert m.card["mean"] == pytest.approx([0.485, 0.456, 0.406])


def test_tv_without_cached_weights_offline_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline: None
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(
        PatchscopeError, match=f"tv:{TV}: pretrained weights are not in torchvision's cache .*tv:{TV}:PATH"
    ):
        create_model(f"tv:{TV}")


def test_tv_weights_from_a_state_dict_path_load_weights_only(tmp_path: Path, offline: None):
    state = _stand_in_state()
    torch.save(state, tmp_path / "w.pth")
    m = create_model(f"tv:{TV}:{tmp_path / 'w.pth'}")
    assert all(torch.equal(m.net.state_dict()[k], v) for k, v in state.items())
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    with (tmp_path / "evil.pth").open("wb") as fh:
        pickle.dump({"w": Evil()}, fh)
    with pytest.raises(PatchscopeError, match="refused"):
        create_model(f"tv:{TV}:{tmp_path / 'evil.pth'}")
    assert not marker.exists()
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(PatchscopeError, match="do not fit"):
        create_model(f"tv:{TV}:{tmp_path / 'wrong.pth'}")


def test_timm_models_carry_imagenet_names_wordnet_ids_and_preprocessing(tmp_path: Path):
    timm = pytest.importorskip("timm")
    m = create_model("timm:test_resnet:random")
    cfg = timm.data.resolve_data_config({}, model=m.net)
    assert m.input_size == cfg["input_size"][-1]
    assert m.preprocess.crop == m.input_size and m.preprocess.resize == int(m.input_size / cfg["crop_pct"])
    assert m.classes[0] == "tench" and m.wnids is not None and m.wnids[0] == "n01440764"
    torch.save(m.net.state_dict(), tmp_path / "t.pth")
    again = create_model(f"timm:test_resnet:{tmp_path / 't.pth'}")
    x = torch.rand(2, 3, m.input_size, m.input_size)
    assert torch.equal(again(x), m(x))


def test_a_users_folder_runs_through_a_models_preprocessing_end_to_end(tmp_path: Path):
    import torchvision

    classes = torchvision.models.ResNet18_Weights.DEFAULT.meta["categories"]
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 1000)
    )
    model = Classifier(
        net, classes, 24, card={"preprocess": {"resize": 28, "crop": 24, "interpolation": "bicubic"}}
    ).eval()
    for folder in ("street_sign", "919", "tench"):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(
            tmp_path / folder / "a.png"
        )
    s = open_folder(tmp_path, model.classes, model.preprocess)
    assert sorted(s.labels.tolist()) == [0, 919, 919]
    with torch.no_grad():
        logits = torch.cat([model(x) for x, _ in s.iter_batches(2)])
    assert logits.shape == (3, 1000)


def test_zoo_models_keep_their_square_32px_resize():
    assert create_model("gtsrb-cnn").preprocess == Preprocess.square(32)


def test_device_auto_resolves_and_bad_names_are_clear():
    assert resolve_device("auto") == default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("CPU") == "cpu"
    with pytest.raises(PatchscopeError, match="use auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(PatchscopeError, match="CUDA is not available"):
            resolve_device("cuda:0")
    else:
        with pytest.raises(PatchscopeError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_accuracy_streams_a_folder_and_counts_only_the_images_read(tmp_path: Path):
    from patchscope.models.train import accuracy

    class AlwaysStop(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.one_hot(torch.full((len(x),), 14), 43).float()

    model = Classifier(AlwaysStop(), gtsrb_classes(), 32)
    for folder, n in (("stop", 3), ("yield", 1)):
        (tmp_path / folder).mkdir()
        for k in range(n):
            Image.new("RGB", (40, 40), (k * 40, 0, 0)).save(tmp_path / folder / f"{k}.png")
    (tmp_path / "stop" / "zz.png").write_bytes(b"truncated")
    data = open_folder(tmp_path, model.classes, model.preprocess, skip_bad=True)
    assert accuracy(model, data, batch_size=2) == pytest.approx(3 / 4)  # the unreadable image counts nowhere
    assert len(data.skipped) == 1
