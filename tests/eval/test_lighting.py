"""Per-sign lighting: estimated per image against the class's typical sign, put on the patch before it is pasted,
and the success under it measured beside the uniform grid's."""

from __future__ import annotations

import pytest
import torch

from patchscope.attacks.eot import fixed_view, paste, relight
from patchscope.errors import PatchscopeError
from patchscope.eval import (
    LightingComparison,
    compare_lighting,
    estimate_lighting,
    lighting_reference,
    measure_patch,
    patch_success,
)
from patchscope.eval.lighting import SignLighting, sign_region
from tests.eval.test_patch_metrics import ConstantOnPatch, _red_patch


def _signs(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.2 + 0.4 * torch.rand(n, 3, 32, 32, generator=g)  # away from 0 and 1: no clipping below


def test_a_sign_like_the_typical_one_has_no_lighting_of_its_own():
    x = _signs(1).expand(5, 3, 32, 32)
    lit = estimate_lighting(x, lighting_reference(x))
    assert torch.allclose(lit.gain, torch.ones(5, 3), atol=1e-5) and torch.allclose(
        lit.offset, torch.zeros(5, 3), atol=1e-5
    )


def test_a_known_light_per_sign_and_channel_is_recovered():
    x = _signs(6)
    ref = lighting_reference(_signs(40, seed=1))
    a = torch.tensor([0.5, 0.8, 1.0, 1.2, 1.4, 0.9])[:, None] * torch.tensor([1.0, 0.9, 1.1])  # (N, 3)
    b = torch.linspace(-0.1, 0.1, 6)[:, None].expand(6, 3)
    seen = x * a[:, :, None, None] + b[:, :, None, None]
    base, lit = estimate_lighting(x, ref), estimate_lighting(seen, ref)
    assert torch.allclose(lit.gain, base.gain * a, atol=1e-4)
    assert torch.allclose(lit.offset, base.offset * a + b, atol=1e-4)


def test_the_lighting_is_read_inside_the_sign_only():
    x = _signs(3)
    changed = x.clone()
    changed[:, :, ~sign_region(32)] = 1.0  # another background in the corners
    ref = lighting_reference(_signs(10, seed=2))
    assert torch.equal(estimate_lighting(x, ref).gain, estimate_lighting(changed, ref).gain)


def test_paste_relights_only_the_patch_and_identity_light_changes_nothing():
    x, pix, mask = _signs(4), torch.rand(3, 5, 5), torch.ones(5, 5)
    v = fixed_view(4, 32, 5, "on-object", (3, 7))
    plain = paste(x, pix, mask, v)
    v.patch_gain, v.patch_offset = torch.ones(4, 3), torch.zeros(4, 3)
    assert torch.equal(paste(x, pix, mask, v), plain)
    v.patch_gain = torch.tensor([[0.5, 0.5, 0.5]]).repeat(4, 1)
    lit = paste(x, pix, mask, v)
    assert torch.allclose(lit[:, :, 3:8, 7:12], relight(pix, v.patch_gain, v.patch_offset))
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[3:8, 7:12] = False
    assert torch.equal(lit[:, :, outside], x[:, :, outside])


def test_success_under_per_sign_lighting_follows_each_signs_light():
    """The model wins on pure red only: a sign whose light halves the red leaves the patch powerless there."""
    x, y = torch.full((6, 3, 32, 32), 0.5), torch.zeros(6, dtype=torch.long)
    gain = torch.tensor([1.0, 1.0, 0.5, 1.0, 0.5, 1.0])[:, None].expand(6, 3)
    lit = SignLighting(gain, torch.zeros(6, 3))
    conditions = [{}, {"rotation": 0.0}]
    own = patch_success(ConstantOnPatch(), x, y, _red_patch(), 1, conditions)
    relit = patch_success(ConstantOnPatch(), x, y, _red_patch(), 1, conditions, lighting=lit, by_image=True)
    assert own.targeted_success == 1.0 and relit.targeted_success == pytest.approx(4 / 6)
    assert relit.image_success == [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    with pytest.raises(PatchscopeError, match="lighting for 6 images given for 3 images"):
        patch_success(ConstantOnPatch(), x[:3], y[:3], _red_patch(), 1, conditions, lighting=lit)


def test_compare_lighting_puts_the_uniform_and_the_per_sign_measurement_side_by_side(demo):
    from patchscope.attacks import load_patch
    from patchscope.models import create_model

    model, patch = create_model("gtsrb-cnn", "cpu"), load_patch("zoo:gtsrb-cnn/stop-yield")
    stops = demo.of_class("stop").head(40).load()
    c = compare_lighting(model, stops, patch, demo, conditions="none")
    assert isinstance(c, LightingComparison)
    assert c.uniform == measure_patch(model, stops, patch, conditions="none")
    assert c.per_sign.images == c.uniform.images == 40 and c.per_sign.source == "stop"
    assert c.per_sign.source_clean_accuracy == c.uniform.source_clean_accuracy  # the signs themselves are not relit
    assert c.lighting["gain_p10"] <= c.lighting["gain_median"] <= c.lighting["gain_p90"]
    shown = c.as_dict(conditions=False)
    assert shown["targeted_success"] == c.uniform.targeted_success
    assert shown["per_sign_lighting"]["targeted_success"] == c.per_sign.targeted_success
    with pytest.raises(PatchscopeError, match="no images of class"):
        compare_lighting(model, stops, patch, demo.of_class("yield").load(), conditions="none")
