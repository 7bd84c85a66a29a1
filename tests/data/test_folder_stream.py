"""Bring-your-own data: folders labelled by the model's classes, streamed, prepared as the model expects."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from patchscope.data import (
    ImageSet,
    ImageStream,
    Preprocess,
    data_for,
    gtsrb_classes,
    load_class_map,
    load_data,
    match_folders,
    open_folder,
    resolve_class,
)
from patchscope.data.stream import open_npz_stream
from patchscope.errors import PatchscopeError

IMAGENET = tuple(__import__("torchvision").models.ResNet18_Weights.DEFAULT.meta["categories"])


def _tree(root: Path, folders: dict[str, int], side: int = 40) -> Path:
    """``folders``: name -> number of images; each image a distinct solid colour, ``side`` x ``side`` PNG."""
    rng = np.random.default_rng(0)
    for name, n in folders.items():
        (root / name).mkdir(parents=True)
        for k in range(n):
            Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(root / name / f"{k}.png")
    return root


def test_folders_match_the_models_classes_by_id_name_and_class_map(tmp_path: Path):
    _tree(tmp_path, {"00014": 2, "Yield": 1, "Priority_Road": 1, "my signs": 1})
    (tmp_path / "map.json").write_text(json.dumps({"my signs": "no entry"}))
    s = open_folder(tmp_path, gtsrb_classes(), class_map=load_class_map(tmp_path / "map.json"))
    by_folder = {Path(f).parent.name: int(y) for f, y in zip(s.items.files, s.labels)}
    assert by_folder == {"00014": 14, "Yield": 13, "Priority_Road": 12, "my signs": gtsrb_classes().index("no entry")}
    assert s.classes == gtsrb_classes() and len(s) == 5


def test_a_folder_matching_no_class_is_one_error_naming_it(tmp_path: Path):
    _tree(tmp_path, {"stop": 1, "bicycle": 1})
    with pytest.raises(PatchscopeError, match="folder 'bicycle' matches no class of the model.*class_map"):
        open_folder(tmp_path, gtsrb_classes())
    with pytest.raises(PatchscopeError, match="maps folder 'bicycle' to 'unicycle'"):
        open_folder(tmp_path, gtsrb_classes(), class_map={"bicycle": "unicycle"})
    assert open_folder(tmp_path, gtsrb_classes(), class_map={"bicycle": 29}).labels.tolist() == [29, 14]


def test_hidden_and_empty_folders_need_no_class(tmp_path: Path):
    _tree(tmp_path, {"stop": 1, ".ipynb_checkpoints": 1, "notes": 0})
    (tmp_path / "stop" / "._0.png").write_bytes(b"macOS resource fork, not an image")
    s = open_folder(tmp_path, gtsrb_classes())
    assert s.labels.tolist() == [14] and len(list(s.iter_batches(4))) == 1


def test_imagenet_folders_by_name_or_wordnet_id(tmp_path: Path):
    _tree(tmp_path, {"street sign": 1, "n03196217": 1})  # 919 by name; 531 by the given WordNet ids
    wnids = [f"n{i:08d}" for i in range(1000)]
    wnids[531] = "n03196217"
    assert open_folder(tmp_path, IMAGENET, wnids=wnids).labels.tolist() == [531, 919]
    assert open_folder(tmp_path, IMAGENET).labels.tolist() == [IMAGENET.index("digital clock"), 919]  # ImageNet's own
    _tree(tmp_path / "two", {"n03196217": 1})
    with pytest.raises(PatchscopeError, match="'n03196217'.*WordNet id.*unknown.*class map"):
        open_folder(tmp_path / "two", ("a", "b"))  # a 2-class model has no WordNet ids


def test_imagenet_wordnet_ids_without_timm_match_timms_and_torchvisions_order(tmp_path: Path):
    from patchscope.data import imagenet_wnids

    ids = imagenet_wnids()
    assert len(ids) == len(set(ids)) == 1000 and list(ids) == sorted(ids)
    assert (ids[0], ids[IMAGENET.index("street sign")]) == ("n01440764", "n06794110")
    _tree(tmp_path, {"n06794110": 1, "n01440764": 1})
    assert sorted(open_folder(tmp_path, IMAGENET).labels.tolist()) == [0, IMAGENET.index("street sign")]
    assert resolve_class("n06794110", IMAGENET) == IMAGENET.index("street sign")
    timm = pytest.importorskip("timm")
    assert ids == tuple(timm.data.ImageNetInfo("imagenet-1k").label_names())


def test_user_classes_resolve_by_id_name_underscores_and_refuse_ambiguity():
    assert resolve_class("Street_Sign", IMAGENET) == 919
    assert resolve_class(" 919 ", IMAGENET) == 919
    assert (resolve_class("Cardigan", IMAGENET), resolve_class("cardigan", IMAGENET)) == (
        264,
        474,
    )  # the dog, the sweater
    with pytest.raises(PatchscopeError, match="names several classes"):
        resolve_class("CARDIGAN", IMAGENET)
    with pytest.raises(PatchscopeError, match="out of range"):
        match_folders(["1000"], IMAGENET)


def test_stream_batches_equal_the_in_memory_load_with_and_without_workers(tmp_path: Path):
    _tree(tmp_path, {"stop": 5, "yield": 4})
    s = open_folder(tmp_path, gtsrb_classes(), Preprocess.square(32))
    whole = s.load()
    assert isinstance(whole, ImageSet) and whole.images.shape == (9, 3, 32, 32)
    for workers in (0, 1):
        xs, ys = zip(*s.iter_batches(4, workers=workers))
        assert [len(y) for y in ys] == [4, 4, 1]
        x = torch.cat(xs)
        assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
        assert torch.equal(x, whole.float_images()) and torch.equal(torch.cat(ys), whole.labels)
    assert s.of_class("yield").head(2).labels.tolist() == [13, 13]
    assert torch.equal(s.of_class("stop").float_images(), whole.of_class("stop").float_images())


def test_model_preprocessing_is_torchvisions_resize_then_centre_crop(tmp_path: Path):
    from torchvision.transforms._presets import ImageClassification

    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    ours = Preprocess(28, 24, "bilinear")(img)
    tv = ImageClassification(crop_size=24, resize_size=28, mean=(0, 0, 0), std=(1, 1, 1))(img)
    assert ours.shape == (3, 24, 24) and ours.dtype == torch.uint8
    assert torch.allclose(ours.float() / 255, tv, atol=1 / 255 + 1e-6)
    (tmp_path / "stop").mkdir()
    img.save(tmp_path / "stop" / "a.png")
    x, _ = next(open_folder(tmp_path, gtsrb_classes(), Preprocess(28, 24)).iter_batches(2))
    assert torch.equal(x[0], ours.float() / 255)


def test_timm_preprocessing_matches_timms_transform():
    timm_data = pytest.importorskip("timm.data")
    img = Image.fromarray(np.random.default_rng(2).integers(0, 255, (50, 70, 3), dtype=np.uint8))
    t = timm_data.create_transform(
        input_size=(3, 32, 32), interpolation="bicubic", crop_pct=0.875, mean=(0, 0, 0), std=(1, 1, 1)
    )
    ours = Preprocess(int(32 / 0.875), 32, "bicubic")(img)
    assert torch.allclose(ours.float() / 255, t(img), atol=1 / 255 + 1e-6)


def test_unreadable_image_is_one_clear_error_or_skipped_and_counted(tmp_path: Path):
    _tree(tmp_path, {"stop": 3})
    (tmp_path / "stop" / "1.png").write_bytes(b"not an image")
    s = open_folder(tmp_path, gtsrb_classes())
    with pytest.raises(PatchscopeError) as err:
        list(s.iter_batches(2, workers=1))
    assert str(err.value).startswith(f"folder:{tmp_path}: cannot read image {tmp_path / 'stop' / '1.png'}")
    assert "\n" not in str(err.value) and str(err.value).endswith("skip_bad skips unreadable images")
    lenient = open_folder(tmp_path, gtsrb_classes(), skip_bad=True)
    assert sum(len(y) for _, y in lenient.iter_batches(2, workers=1)) == 2
    assert list(lenient.skipped) == [str(tmp_path / "stop" / "1.png")]
    assert lenient.head(1).load().skipped == ()  # a load lists only what it skipped itself
    data = load_data(f"folder:{tmp_path}", classes=gtsrb_classes(), skip_bad=True)
    assert len(data) == 2 and data.skipped == (str(tmp_path / "stop" / "1.png"),)


class _Model:  # what data_for reads of a classifier
    classes, input_size = gtsrb_classes(), 32

    def __init__(self, preprocess: Preprocess) -> None:
        self.preprocess = preprocess


def test_data_for_keeps_gtsrb_in_memory_and_streams_folders(tmp_path: Path):
    assert isinstance(data_for("demo", _Model(Preprocess(36, 32))), ImageSet)
    _tree(tmp_path, {"stop": 1})

    def opened(prep: Preprocess) -> ImageSet | ImageStream:
        return data_for(f"folder:{tmp_path}", _Model(prep))

    s = opened(Preprocess(36, 32))
    assert isinstance(s, ImageStream) and s.image_size == 32
    assert s.data_hash() == opened(Preprocess(36, 32)).data_hash()
    assert s.data_hash() != opened(Preprocess(40, 32)).data_hash()


def test_data_for_a_size_loads_at_that_size_and_labels_a_folder_by_its_names(tmp_path: Path):
    assert data_for("demo", 64).image_size == 64 and isinstance(data_for("demo", 64), ImageSet)
    _tree(tmp_path, {"stop": 1, "yield": 1})
    plain = data_for(f"folder:{tmp_path}", 40)
    assert isinstance(plain, ImageSet) and plain.image_size == 40 and plain.classes == ("stop", "yield")


def test_large_uncompressed_npz_is_memory_mapped_and_reads_the_same(tmp_path: Path):
    x = np.random.default_rng(3).integers(0, 255, (7, 32, 32, 3), dtype=np.uint8)
    y = np.array([14, 13, 14, 1, 2, 3, 14], np.uint8)
    np.savez(tmp_path / "d.npz", x_test=x, y_test=y)
    s = open_npz_stream(tmp_path / "d.npz", None, "npz", min_bytes=0)
    assert isinstance(s, ImageStream) and len(s) == 7 and s.classes[14] == "stop"
    got = torch.cat([b for b, _ in s.iter_batches(3, workers=1)])
    assert torch.equal(got, load_data(f"npz:{tmp_path / 'd.npz'}").float_images())
    assert open_npz_stream(tmp_path / "d.npz", None, "npz") is None  # small: in memory as before
    np.savez(tmp_path / "e.npz", x_test=255 - x, y_test=y)
    assert s.data_hash() != open_npz_stream(tmp_path / "e.npz", None, "npz", min_bytes=0).data_hash()
    np.savez_compressed(tmp_path / "c.npz", x_test=x, y_test=y)
    assert open_npz_stream(tmp_path / "c.npz", None, "npz", min_bytes=0) is None  # compressed: cannot be mapped
    resized = open_npz_stream(tmp_path / "d.npz", None, "npz", Preprocess.square(16), min_bytes=0)
    assert next(resized.iter_batches(7))[0].shape == (7, 3, 16, 16)


def test_class_map_file_errors_are_clear(tmp_path: Path):
    with pytest.raises(PatchscopeError, match="no such file"):
        load_class_map(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(PatchscopeError, match="one JSON object"):
        load_class_map(tmp_path / "bad.json")
