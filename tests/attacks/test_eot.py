from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from patchscope.attacks import (
    NO_CHANGE,
    ViewParams,
    ViewRanges,
    fixed_view,
    paste,
    patch_side,
    render,
    sample_view,
    shape_mask,
    view,
)
from patchscope.errors import PatchscopeError


def _params(placement: str, top: int, left: int, angle: float, scale: float, n: int = 3):
    p = fixed_view(n, 32, 7, placement, (top, left))
    p.patch_rotation = torch.full((n,), angle)
    p.patch_scale = torch.full((n,), scale)
    return p


@settings(max_examples=40, deadline=None)
@given(
    placement=st.sampled_from(["sticker", "on-object"]),
    top=st.integers(0, 25),
    left=st.integers(0, 25),
    angle=st.floats(-90, 90),
    scale=st.floats(0.5, 1.5),
    shape=st.sampled_from(["square", "circle", "rect:1:2", "rect:3:1"]),
    seed=st.integers(0, 2**16),
)
def test_paste_leaves_pixels_outside_the_patch_unchanged_and_stays_in_range(
    placement, top, left, angle, scale, shape, seed
):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 3, 32, 32, generator=g)
    pixels = torch.rand(3, 7, 7, generator=g)
    mask = shape_mask(shape, 7)
    p = _params(placement, top, left, angle, scale)
    y = paste(x, pixels, mask, p)
    alpha = paste(torch.zeros_like(x), torch.ones_like(pixels), mask, p)[:, :1]  # where the patch lands
    outside = (alpha == 0).expand_as(x)
    assert torch.equal(y[outside], x[outside])
    assert y.min() >= 0 and y.max() <= 1
    assert (alpha > 0).any()


def test_on_object_paste_is_exact_at_its_location():
    x, pixels = torch.rand(2, 3, 32, 32), torch.rand(3, 7, 7)
    y = paste(x, pixels, torch.ones(7, 7), fixed_view(2, 32, 7, "on-object", (4, 20)))
    assert torch.equal(y[:, :, 4:11, 20:27], pixels.expand(2, 3, 7, 7))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), placement=st.sampled_from(["sticker", "on-object"]), jpeg=st.booleans())
def test_replaying_sampled_parameters_reproduces_the_output_bit_for_bit(seed, placement, jpeg):
    ranges = ViewRanges(jpeg=(60.0, 95.0) if jpeg else None, noise=0.05, shift=0.05)
    p1 = sample_view(4, ranges, 32, 6, placement, None, torch.Generator().manual_seed(seed))
    p2 = sample_view(4, ranges, 32, 6, placement, None, torch.Generator().manual_seed(seed))
    x, pix, m = torch.rand(4, 3, 32, 32), torch.rand(3, 6, 6), torch.ones(6, 6)
    out = render(x, pix, m, p1)
    assert torch.equal(out, render(x, pix, m, p2))
    assert torch.equal(out[1:3], render(x[1:3], pix, m, p1[1:3]))  # a row replays alone too
    assert out.min() >= 0 and out.max() <= 1


def test_no_change_view_is_the_identity_and_conditions_change_the_image():
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(view(x, fixed_view(2, 32, 5)), x, atol=1e-5)
    for factor, value in [("yaw", 40.0), ("rotation", 30.0), ("scale", 0.6), ("brightness", 0.5), ("blur", 1.0)]:
        assert (view(x, fixed_view(2, 32, 5, **{factor: value})) - x).abs().mean() > 0.01, factor


@pytest.mark.parametrize(
    "field, value",
    [
        ("rotation", 5.0),
        ("yaw", 5.0),
        ("pitch", 5.0),
        ("scale", (0.9, 1.0)),
        ("shift", 0.1),
        ("brightness", (0.9, 1.0)),
        ("contrast", (1.0, 1.1)),
        ("gain", 0.05),
        ("blur", (0.0, 0.5)),
        ("noise", 0.01),
        ("jpeg", (50.0, 90.0)),
    ],
)
def test_only_ranges_that_change_nothing_are_still_and_their_views_are_the_identity(field, value):
    """``ViewRanges.still`` lets an attack skip :func:`view`: true for ``NO_CHANGE`` (whatever the sticker's own
    rotation and scale), false as soon as any camera or light range opens, and a still sample's view is its input."""
    from dataclasses import replace

    assert NO_CHANGE.still and replace(NO_CHANGE, patch_rotation=20.0, patch_scale=(0.8, 1.2)).still
    assert not ViewRanges().still and not replace(NO_CHANGE, **{field: value}).still
    x = torch.rand(4, 3, 32, 32)
    assert torch.allclose(
        view(x, sample_view(4, NO_CHANGE, 32, 5, "sticker", None, torch.Generator().manual_seed(0))), x, atol=1e-5
    )


def test_sampled_values_stay_in_their_ranges():
    r = ViewRanges()
    p = sample_view(500, r, 32, 7, "sticker", None, torch.Generator().manual_seed(0))
    assert p.rotation.abs().max() <= r.rotation and p.yaw.abs().max() <= r.yaw and p.pitch.abs().max() <= r.pitch
    assert p.scale.min() >= r.scale[0] and p.scale.max() <= r.scale[1]
    assert p.location.min() >= 0 and p.location.max() <= 32 - 7
    q = sample_view(5, NO_CHANGE, 32, 7, "on-object", (1, 2), torch.Generator())
    assert torch.equal(q.location, torch.tensor([[1.0, 2.0]]).expand(5, 2))


def test_view_is_differentiable_through_the_patch():
    pix = torch.rand(3, 7, 7, requires_grad=True)
    p = sample_view(4, ViewRanges(jpeg=(70.0, 90.0)), 32, 7, "sticker", None, torch.Generator().manual_seed(1))
    render(torch.rand(4, 3, 32, 32), pix, torch.ones(7, 7), p).sum().backward()
    assert pix.grad is not None and pix.grad.abs().sum() > 0


def test_patch_sizes_and_shapes():
    assert patch_side(0.05, 32) == 7 and patch_side(0.1, 32) == 10
    assert shape_mask("circle", 9).sum() < 81
    for bad in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(PatchscopeError):
            patch_side(bad, 32)


@given(w=st.integers(1, 5), h=st.integers(1, 5), side=st.integers(1, 24))
def test_rect_shapes_are_centred_rectangles_of_the_asked_proportions(w, h, side):
    mask = shape_mask(f"rect:{w}:{h}", side)
    rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
    assert mask.sum() == len(rows) * len(cols)  # one solid rectangle
    assert max(len(rows), len(cols)) == side  # its long side spans the patch
    assert abs(len(cols) / len(rows) - w / h) <= max(w / h, 1.0) / min(
        len(rows), len(cols)
    )  # proportions up to rounding
    assert (
        abs(int(rows[0]) - (side - int(rows[-1]) - 1)) <= 1 and abs(int(cols[0]) - (side - int(cols[-1]) - 1)) <= 1
    )  # centred


def test_a_rect_patch_covers_the_asked_area():
    side = patch_side(0.1, 32, "rect:1:2")
    assert abs(shape_mask("rect:1:2", side).sum() / 32**2 - 0.1) < 0.01
    for bad in ("rect:0:2", "rect:1", "rect:a:b", "rect:1:2:3", "rect:-1:2"):
        with pytest.raises(PatchscopeError, match="rect:W:H"):
            shape_mask(bad, 8)


def test_homography_warp_is_kornias_up_to_rounding():
    from kornia.geometry.transform import warp_perspective

    from patchscope.attacks.eot import camera_matrix, warp_homography

    g = torch.Generator().manual_seed(3)
    p = ViewParams.cat(
        [
            sample_view(
                20,
                ViewRanges(shift=0.1, scale=(0.3, 1.5), yaw=40.0, pitch=40.0, rotation=60.0),
                32,
                7,
                "on-object",
                None,
                g,
            ),
            fixed_view(4, 32, 7),
        ]
    )
    x = torch.rand(24, 3, 32, 32, generator=g)
    m = camera_matrix(p, 32)
    ours, theirs = warp_homography(x, m), warp_perspective(x, m, (32, 32), padding_mode="border", align_corners=True)
    assert (ours - theirs).abs().max() < 1e-4
    assert (warp_homography(x, torch.eye(3).expand(24, 3, 3)) - x).abs().max() < 1e-5  # the identity keeps the image


def test_sticker_warp_is_kornias_affine_warp_up_to_rounding():
    from kornia.geometry.transform import warp_affine

    from patchscope.attacks.eot import _sticker_matrix, warp_homography

    g = torch.Generator().manual_seed(4)
    p = sample_view(30, ViewRanges(patch_rotation=45.0, patch_scale=(0.6, 1.4)), 32, 7, "sticker", None, g)
    pix = torch.rand(30, 4, 7, 7, generator=g)
    m = _sticker_matrix(p, 7)
    affine = m[:, :2]
    ours = warp_homography(pix, m, (32, 32), padding="zeros")
    assert (ours - warp_affine(pix, affine, (32, 32), align_corners=True)).abs().max() < 1e-4


def test_hoisted_blur_is_kornias_bit_for_bit():
    from kornia.filters import gaussian_blur2d

    from patchscope.attacks.eot import _blur

    x = torch.rand(24, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    p = ViewParams.cat(
        [
            sample_view(
                20,
                ViewRanges(shift=0.1, scale=(0.3, 1.5), yaw=40.0, pitch=40.0),
                32,
                7,
                "on-object",
                None,
                torch.Generator().manual_seed(1),
            ),
            fixed_view(4, 32, 7),
        ]
    )
    sigma = p.blur.clamp_min(1e-2)
    assert torch.equal(_blur(x, 5, sigma), gaussian_blur2d(x, 5, torch.stack([sigma, sigma], 1)))


def test_no_change_draws_the_neutral_view_of_every_factor():
    """One neutral view: the ranges that change nothing draw each factor's :data:`NEUTRAL` value, and the default
    grid's first condition and a fixed view with no factor named are that view."""
    from patchscope.attacks.eot import NEUTRAL, fixed_view
    from patchscope.eval.conditions import DEFAULT_GRID, condition_label

    drawn = sample_view(3, NO_CHANGE, 32, 5, "sticker", None, torch.Generator().manual_seed(0))
    fixed = fixed_view(3, 32, 5)
    for factor, value in NEUTRAL.items():
        for p in (drawn, fixed):
            assert torch.all(getattr(p, factor) == value), factor
    assert all(DEFAULT_GRID[0][k] == NEUTRAL[k] for k in DEFAULT_GRID[0])
    assert condition_label(DEFAULT_GRID[0]) == "no change"
    assert condition_label({"yaw": 10.0, "gain": 1.0}) == "yaw=10"
