"""A patch placed by hand is the attacks' own render: the same pixels as an on-object paste where they coincide, a
footprint that turns, grows and shrinks with the placement and the camera, and refusals of settings out of range."""

from __future__ import annotations

import pytest
import torch

from patchscope.errors import PatchscopeError
from patchscope.explain import apply_patch
from patchscope.explore import Camera, Placement, blank_patch, patch_from_rgba, render_scene


def test_a_patch_at_its_own_place_renders_as_the_on_object_paste(stop_image, small_patch):
    s = render_scene(stop_image, small_patch, Placement.of(small_patch, 32), Camera())
    assert torch.allclose(s.patched, apply_patch(stop_image[None], small_patch), atol=1e-5)
    assert torch.allclose(s.clean, stop_image[None], atol=1e-5)
    assert int(s.footprint.sum()) == int(small_patch.mask.sum())


def test_the_footprint_follows_rotation_scale_and_distance(stop_image):
    patch = blank_patch(32, 0.1)  # a 10 px square

    def area(placement: Placement, camera: Camera | None = None) -> int:
        return int(render_scene(stop_image, patch, placement, camera or Camera()).footprint.sum())

    assert area(Placement(16, 16)) == 100
    assert area(Placement(16, 16, rotation=90)) == 100
    assert 380 <= area(Placement(16, 16, scale=2.0)) <= 420
    assert 20 <= area(Placement(16, 16), Camera(distance=2.0)) <= 30
    assert area(Placement(-40, -40)) == 0  # off the image: nothing of it is seen
    moved = render_scene(stop_image, patch, Placement(10, 20), Camera()).footprint.nonzero()
    assert moved.min(0).values.tolist() == [5, 15] and moved.max(0).values.tolist() == [14, 24]


def test_the_camera_changes_both_views_alike(stop_image, small_patch):
    dark = render_scene(stop_image, small_patch, Placement(3, 3), Camera(brightness=0.5))
    assert float(dark.clean.mean()) < 0.6 * float(stop_image.mean())
    tilted = render_scene(stop_image, small_patch, Placement(16, 16), Camera(yaw=30))
    near = torch.nn.functional.max_pool2d(tilted.footprint[None, None].float(), 3, 1, 1)[0, 0] > 0  # and its edge
    assert torch.allclose(tilted.clean[0][:, ~near], tilted.patched[0][:, ~near], atol=1e-5)  # only the patch differs
    assert not torch.allclose(tilted.clean[0][:, tilted.footprint], tilted.patched[0][:, tilted.footprint], atol=1e-2)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: Camera(yaw=80), "yaw"),
        (lambda: Camera(distance=0), "distance"),
        (lambda: Camera(blur=float("nan")), "blur"),
        (lambda: Placement(1, 1, scale=0), "scale"),
        (lambda: Placement(float("inf"), 1), "row"),
    ],
)
def test_settings_out_of_range_are_refused_by_name(make, words):
    with pytest.raises(PatchscopeError, match=words):
        make()


def test_an_uploaded_picture_becomes_a_patch_of_its_alpha_shape():
    rgba = torch.zeros(4, 6, 10, dtype=torch.uint8)
    rgba[:3] = 200
    rgba[3, :, :5] = 255  # the left half is opaque
    p = patch_from_rgba(rgba, 32)
    assert p.side == 10 and int(p.mask.sum()) == 30 and p.mask[2:8, :5].all() and not p.mask[:, 5:].any()
    big = patch_from_rgba(torch.full((3, 300, 300), 255, dtype=torch.uint8), 32)
    assert big.side == 16 and bool(big.mask.all())
    with pytest.raises(PatchscopeError, match="transparent"):
        patch_from_rgba(torch.zeros(4, 5, 5, dtype=torch.uint8), 32)
