"""``Patch.resized``: the same patch at another image size keeps its share of the image and its relative place."""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from patchscope.attacks import Patch, patch_side, shape_mask
from patchscope.errors import PatchscopeError
from patchscope.eval import transfer_matrix
from patchscope.models.archs import cnn
from patchscope.models.wrapper import Classifier


@settings(max_examples=30, deadline=None)
@given(side=st.integers(1, 16), factor=st.sampled_from([2, 4]), top=st.integers(0, 16), left=st.integers(0, 16))
def test_an_integer_upscale_keeps_the_share_and_the_place(side, factor, top, left):
    assume(top + side <= 32 and left + side <= 32)
    patch = Patch(torch.rand(3, side, side), torch.ones(side, side), "on-object", (top, left), 32)
    big = patch.resized(32 * factor)
    big.check()
    assert big.side == side * factor and big.area_fraction == pytest.approx(patch.area_fraction)
    assert big.location == (top * factor, left * factor) and big.meta["resized_from"] == 32


def test_resizing_keeps_the_colours_the_shape_and_is_the_identity_at_the_same_size():
    pixels = torch.rand(3, 1, 1).expand(3, 7, 14).clone()[:, :, :7]  # one flat colour
    mask = shape_mask("rect:1:2", 7)
    patch = Patch(pixels, mask, "sticker", None, 32)
    big = patch.resized(64)
    assert torch.allclose(big.pixels, pixels[:, :1, :1].expand(3, 14, 14), atol=1e-6)
    assert big.mask.sum() == 4 * mask.sum() and big.location is None
    assert patch.resized(32) is patch


def test_a_model_is_measured_at_its_own_size_and_a_patch_follows_it():
    torch.manual_seed(0)
    small = Classifier(cnn(num_classes=3, width=4), ["a", "b", "c"], input_size=32).eval()
    large = Classifier(cnn(num_classes=3, width=4), ["a", "b", "c"], input_size=64).eval()
    patch = Patch(torch.rand(3, patch_side(0.05, 32), patch_side(0.05, 32)), torch.ones(7, 7), "sticker", None, 32)
    x32, labels = torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)
    images = {"small": x32, "large": torch.nn.functional.interpolate(x32, size=64, mode="bilinear")}
    matrix = transfer_matrix({"small": small, "large": large}, {"p": patch}, images, labels, 1)
    assert set(matrix.success["p"]) == {"small", "large"} and all(0 <= v <= 1 for v in matrix.success["p"].values())
    with pytest.raises(PatchscopeError, match=r"takes \(N, 3, 64, 64\)"):
        transfer_matrix({"large": large}, {"p": patch}, x32, labels, 1)  # 32-px images for a 64-px model
