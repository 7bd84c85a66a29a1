from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from patchscope.data import gtsrb_classes, load_data, resolve_class, split_by_track
from patchscope.errors import PatchscopeError


def test_class_names_resolve_case_insensitively_and_by_id():
    classes = gtsrb_classes()
    assert len(classes) == 43
    assert resolve_class("Stop", classes) == 14
    assert resolve_class("YIELD", classes) == 13
    assert resolve_class("speed limit (60km/h)", classes) == 3
    assert resolve_class(14, classes) == 14


def test_unknown_class_lists_near_matches():
    with pytest.raises(PatchscopeError, match="did you mean 'stop'"):
        resolve_class("stpo", gtsrb_classes())
    with pytest.raises(PatchscopeError, match="out of range"):
        resolve_class("99", gtsrb_classes())


def test_demo_subset_has_every_stop_test_image_and_20_per_other_class(demo):
    counts = torch.bincount(demo.labels, minlength=43)
    assert counts[14] == 270  # every Stop image of the official test set
    assert all(int(c) == 20 for i, c in enumerate(counts) if i != 14)
    assert demo.images.dtype == torch.uint8 and demo.images.shape[1:] == (3, 32, 32)
    x, y = next(demo.batches(16))
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and y.shape == (16,)


def test_split_by_track_never_shares_a_track():
    tracks = torch.arange(200) // 10
    from patchscope.data import ImageSet

    data = ImageSet(
        torch.zeros(200, 3, 4, 4, dtype=torch.uint8), torch.zeros(200, dtype=torch.long), ("a",), "t", tracks
    )
    train, val = split_by_track(data, 0.25, seed=1)
    assert len(train) + len(val) == 200 and len(val) == 50
    assert not set(train.tracks.tolist()) & set(val.tracks.tolist())


def test_npz_source_reads_plain_arrays_and_refuses_pickles(tmp_path: Path):
    x = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x_test=x, y_test=np.array([0, 1, 2, 14, 13], np.uint8))
    data = load_data(f"npz:{tmp_path / 'd.npz'}")
    assert data.images.shape == (5, 3, 32, 32) and data.classes[14] == "stop"
    assert torch.equal(data.images[0].permute(1, 2, 0), torch.from_numpy(x[0]))
    np.savez(tmp_path / "p.npz", x_test=np.array([object()], dtype=object), y_test=np.array([0]))
    with pytest.raises(PatchscopeError, match="not a readable .npz"):
        load_data(f"npz:{tmp_path / 'p.npz'}")


def test_folder_source_converts_grayscale_and_rgba_and_resizes(tmp_path: Path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "dogs").mkdir()
    Image.new("L", (50, 40), 128).save(tmp_path / "cats" / "a.png")
    Image.new("RGBA", (20, 20), (255, 0, 0, 10)).save(tmp_path / "dogs" / "b.png")
    data = load_data(f"folder:{tmp_path}", size=32)
    assert data.classes == ("cats", "dogs") and data.images.shape == (2, 3, 32, 32)
    assert data.labels.tolist() == [0, 1]
    (tmp_path / "dogs" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(PatchscopeError, match="cannot read image"):
        load_data(f"folder:{tmp_path}")


def test_bad_specs_and_missing_files_are_clear(tmp_path: Path):
    with pytest.raises(PatchscopeError, match="unknown data"):
        load_data("imagenet")
    with pytest.raises(PatchscopeError, match="no such file"):
        load_data(f"npz:{tmp_path / 'nope.npz'}")
    with pytest.raises(PatchscopeError, match="not a folder"):
        load_data(f"folder:{tmp_path / 'nope'}")


def _fake_torchvision_gtsrb(root: Path) -> None:
    """torchvision's on-disk GTSRB layout in miniature: 43 class folders, one 40x36 frame each, ROI CSVs."""
    train = root / "gtsrb" / "GTSRB" / "Training"
    for c in range(43):
        folder = train / f"{c:05d}"
        folder.mkdir(parents=True)
        img = np.zeros((36, 40, 3), np.uint8)
        img[5:31, 6:34] = (c * 5, 100, 200)  # the sign inside its ROI; black margin outside
        Image.fromarray(img).save(folder / "00007_00001.ppm")
        (folder / f"GT-{c:05d}.csv").write_text(
            f"Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n00007_00001.ppm;40;36;6;5;34;31;{c}\n"
        )


def test_gtsrb_without_packed_file_takes_torchvisions_route_and_crops_rois(tmp_path: Path):
    _fake_torchvision_gtsrb(tmp_path)  # a local stand-in: download=True finds it and fetches nothing
    data = load_data("gtsrb:train", tmp_path)
    assert len(data) == 43 and data.labels.tolist() == list(range(43))
    assert data.image_size == 32
    assert int(data.images[14, 1].min()) == 100  # ROI crop: no black margin left
    assert (tmp_path / "gtsrb32-train.npz").exists()  # cached for next time
    assert data.tracks is not None and len(set(data.tracks.tolist())) == 43


def test_gtsrb_offline_without_data_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import torchvision.datasets.gtsrb as tv

    def offline(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv, "download_and_extract_archive", offline)
    with pytest.raises(PatchscopeError, match="download failed") as e:
        load_data("gtsrb:test", tmp_path)
    assert e.value.params == ("root",) and str(e.value).startswith("gtsrb:test: set root or PATCHSCOPE_DATA")


def test_a_resolution_suffix_resizes_the_same_images(demo):
    big = load_data("demo@64")
    assert big.images.shape[1:] == (3, 64, 64) and big.name == "demo@64"
    assert torch.equal(big.labels, demo.labels) and big.classes == demo.classes
    back = torch.nn.functional.interpolate(big.images[:8].float(), size=32, mode="bilinear", antialias=True)
    assert (back - demo.images[:8].float()).abs().mean() < 6  # the same pictures, not other images
    assert load_data("demo@64", size=48).images.shape[-1] == 48  # a model's own size still wins


@pytest.mark.parametrize(
    "spec, message", [("demo@x", "whole number"), ("demo@4", "8..1024"), ("demo@99999", "8..1024")]
)
def test_a_bad_resolution_suffix_is_one_clear_error(spec, message):
    with pytest.raises(PatchscopeError, match=message):
        load_data(spec)
