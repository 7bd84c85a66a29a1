"""`certify`: the certification loop as a library call with a typed result, for every registered certifier."""

from __future__ import annotations

import pytest
import torch

from patchscope.data import load_data
from patchscope.defenses import ablation_set, ds_certify, ds_predict, ds_prediction_map, list_certifiers
from patchscope.errors import PatchscopeError
from patchscope.workflows import CertifyResult, certify


@pytest.fixture(scope="module")
def images():
    return load_data("demo").head(12)


@pytest.mark.parametrize("name", ["patchcleanser", "ds-column", "ds-block"])
def test_every_certifier_gives_a_consistent_typed_result(tiny_model, images, name):
    assert name in list_certifiers()
    r = certify(tiny_model, images, name, 0.05, progress=False, chunk=5)
    assert isinstance(r, CertifyResult) and r.images == 12 and r.patch_side == 7 and r.certifier == name
    assert 0 <= r.certified_accuracy <= r.defended_accuracy <= 1 and 0 <= r.clean_accuracy <= 1
    assert r.batch_size == 256 and r.precision == "fp32" and r.forward_passes_per_image > 0
    flat = r.as_dict()
    assert flat["defense"] == name and set(r.settings) <= set(flat) and "settings" not in flat


def test_chunks_do_not_change_the_numbers(tiny_model, images):
    a, b = (certify(tiny_model, images, "patchcleanser", 0.05, progress=False, chunk=c, k=3) for c in (1, 256))
    assert (a.clean_accuracy, a.defended_accuracy, a.certified_accuracy, a.forward_passes_per_image) == (
        b.clean_accuracy,
        b.defended_accuracy,
        b.certified_accuracy,
        b.forward_passes_per_image,
    )


def test_column_smoothing_counts_as_the_pure_functions(tiny_model, images):
    r = certify(tiny_model, images, "ds-column", 0.05, progress=False, band=4)
    x, y = images.float_images(), images.labels
    votes, _ = ds_prediction_map(tiny_model, x, ablation_set(32, 4, "column"))
    assert r.defended_accuracy == pytest.approx(int((ds_predict(votes) == y).sum()) / len(y))
    assert r.certified_accuracy == pytest.approx(int(ds_certify(votes, y, 7 + 4 - 1).sum()) / len(y))
    assert r.settings == {"band": 4, "ablations": 32, "delta": 10}


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"patch_size": 0.0}, "patch_size"),
        ({"patch_size": 1.5}, "patch_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"certifier": "nope"}, "certifier"),
        ({"k": 0}, "k"),
        ({"band": 99}, "band"),
    ],
)
def test_bad_settings_name_their_parameter(tiny_model, images, kwargs, param):
    args = {"certifier": "patchcleanser" if "band" not in kwargs else "ds-column", "patch_size": 0.05, **kwargs}
    with pytest.raises(PatchscopeError) as e:
        certify(tiny_model, images, progress=False, **args)
    assert param in e.value.params and "--" not in str(e.value)


def test_an_empty_data_set_is_refused(tiny_model, images):
    with pytest.raises(PatchscopeError, match="holds no images"):
        certify(
            tiny_model, images.subset(torch.zeros(len(images), dtype=torch.bool)), "patchcleanser", 0.05, progress=False
        )


def test_a_folder_is_certified_chunk_by_chunk_and_counts_only_the_images_read(
    tiny_model, images, tmp_path, monkeypatch
):
    """A streamed folder gives the numbers of the same images in memory, reads one chunk at a time (never the whole
    set) and leaves an unreadable image out of every share."""
    from PIL import Image

    from patchscope.data import ImageStream, open_folder

    for k, (x, y) in enumerate(zip(images.images, images.labels)):
        folder = tmp_path / f"{int(y):02d}"  # by class id
        folder.mkdir(exist_ok=True)
        Image.fromarray(x.permute(1, 2, 0).numpy()).save(folder / f"{k:02d}.png")
    (tmp_path / f"{int(images.labels[0]):02d}" / "zz.png").write_bytes(b"unreadable")
    stream = open_folder(tmp_path, tiny_model.classes, tiny_model.preprocess, skip_bad=True)
    in_memory = stream.load()  # the same 12 images, in the folder's order
    read: list[int] = []
    original = ImageStream.iter_uint8

    def spy(self, batch_size, *args, **kwargs):  # type: ignore[no-untyped-def]
        for x, y in original(self, batch_size, *args, **kwargs):
            read.append(len(y))
            yield x, y

    monkeypatch.setattr(ImageStream, "iter_uint8", spy)
    monkeypatch.setattr(ImageStream, "load", lambda self, *a: pytest.fail("certify read the whole folder"))
    streamed = certify(tiny_model, stream, "ds-column", 0.05, progress=False, chunk=5)
    expected = certify(tiny_model, in_memory, "ds-column", 0.05, progress=False, chunk=5)
    assert streamed.images == expected.images == 12 and max(read) <= 5 and len(stream) == 13
    assert (streamed.clean_accuracy, streamed.certified_accuracy) == (
        expected.clean_accuracy,
        expected.certified_accuracy,
    )
