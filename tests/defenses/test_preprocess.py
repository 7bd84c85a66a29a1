from __future__ import annotations

import pytest
import torch

from patchscope.defenses import (
    BitDepthDefense,
    BlurDefense,
    JpegDefense,
    LocalGradientSmoothing,
    MedianDefense,
    create_defense,
    gradient_magnitude,
)
from patchscope.errors import PatchscopeError
from tests.defenses._helpers import small_cnn, smooth_images

NAMES = ("jpeg", "blur", "median", "bits", "lgs")


@pytest.fixture(scope="module")
def model():
    return small_cnn()


@pytest.mark.parametrize("name", NAMES)
def test_input_defenses_keep_shape_range_and_the_classifier_contract(model, name):
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    d = create_defense(name, model)
    y = d.preprocess(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= 0 and y.max() <= 1
    assert d(x).shape == (4, 3)
    assert d.classes == model.classes and d.input_size == model.input_size and name in d.name
    assert not torch.equal(y, x)  # it does change a random image


@pytest.mark.parametrize("name", NAMES)
def test_bpda_keeps_the_forward_pass_and_gives_a_nonzero_identity_gradient(model, name):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    exact, bpda = create_defense(name, model), create_defense(name, model, bpda=True)
    assert torch.allclose(exact(x), bpda(x))
    xg = x.clone().requires_grad_()
    bpda.preprocess(xg).sum().backward()
    assert torch.equal(xg.grad, torch.ones_like(x))
    xg.grad = None
    bpda(xg)[:, 0].sum().backward()
    assert xg.grad.abs().sum() > 0


def test_bit_reduction_has_no_gradient_without_bpda_and_lands_on_the_grid(model):
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    d = BitDepthDefense(model, bits=3)
    y = d.preprocess(x)
    y.sum().backward()
    assert x.grad.abs().sum() == 0
    levels = y.detach() * 7
    assert torch.allclose(levels, levels.round(), atol=1e-5) and len(levels.round().unique()) <= 8


def test_median_removes_an_isolated_impulse_and_blur_lowers_variation(model):
    x = torch.full((1, 3, 32, 32), 0.3)
    x[..., 10, 20] = 1.0
    assert torch.allclose(MedianDefense(model, 3).preprocess(x), torch.full_like(x, 0.3))
    noisy = torch.rand(2, 3, 32, 32)
    tv = lambda t: t.diff(dim=-1).abs().mean() + t.diff(dim=-2).abs().mean()  # noqa: E731
    assert tv(BlurDefense(model, 1.0).preprocess(noisy)) < 0.5 * tv(noisy)


def test_stronger_jpeg_loses_more():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    err = [float((JpegDefense(torch.nn.Identity(), q).preprocess(x) - x).abs().mean()) for q in (95, 50, 10)]
    assert err[0] < err[1] < err[2]


def test_lgs_suppresses_a_high_frequency_patch_more_than_the_smooth_background():
    x = smooth_images(4, 32, seed=4)
    x[:, :, 8:16, 12:20] = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    d = LocalGradientSmoothing(torch.nn.Identity(), threshold=0.2)
    g_hat = d.suppression_map(x)
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[9:15, 13:19] = True
    assert g_hat[..., inside].mean() > 3 * g_hat[..., ~inside].mean()
    change = (x - d.preprocess(x)).abs().mean(1)
    assert change[:, inside].mean() > 3 * change[:, ~inside].mean()
    flat = torch.full((1, 3, 32, 32), 0.6)
    assert torch.allclose(d.preprocess(flat), flat)  # no gradient, nothing to suppress
    assert torch.allclose(gradient_magnitude(x).amax((1, 2, 3)), torch.ones(4))


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("bits", {"bits": 0}),
        ("median", {"kernel": 4}),
        ("jpeg", {"quality": 0}),
        ("blur", {"sigma": -1.0}),
        ("lgs", {"stride": 9}),
        ("nope", {}),
        ("clip", {}),
    ],
)
def test_bad_defense_settings_are_user_errors(model, name, options):
    with pytest.raises(PatchscopeError):
        create_defense(name, model, **options)
