from __future__ import annotations

import pytest
import torch

from patchscope.defenses import ActivationClipping, fit_bounds
from patchscope.errors import PatchscopeError
from tests.defenses._helpers import small_cnn, smooth_images


def _stage1_inputs(model):
    """Record what stage1 receives: stage0's output after any clamping."""
    seen = []
    handle = dict(model.stages())["stage1"].register_forward_pre_hook(
        lambda m, inp: seen.append(inp[0].detach().clone())
    )
    return seen, handle


def test_clean_inputs_within_the_bounds_pass_unchanged():
    model = small_cnn()
    x = smooth_images(24, 32, seed=0)
    defended = ActivationClipping.fit(model, x, stages=2)
    assert torch.allclose(defended(x), model(x), atol=1e-5)
    # the wrapped model itself is not left hooked
    assert all(not m._forward_hooks for _, m in model.stages())


def test_large_activations_are_capped_per_channel():
    model = small_cnn()
    clean = smooth_images(24, 32, seed=1) * 0.2 + 0.4  # low contrast: small activations
    defended = ActivationClipping.fit(model, clean, stages=1)
    hi, lo = defended.bounds["stage0"]
    loud = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(2)).round()  # full-contrast noise
    seen, handle = _stage1_inputs(model)
    try:
        model(loud)
        defended(loud)
    finally:
        handle.remove()
    raw, clipped = seen
    assert (raw.amax((0, 2, 3)) > hi + 1e-3).any()  # the noise does exceed the clean range...
    assert (clipped.amax((0, 2, 3)) <= hi + 1e-5).all() and (
        clipped.amin((0, 2, 3)) >= lo - 1e-5
    ).all()  # ...and is capped
    assert not torch.allclose(defended(loud), model(loud))


def test_lower_quantile_gives_tighter_bounds_and_bad_settings_fail():
    model = small_cnn()
    x = torch.rand(32, 3, 32, 32)
    full, q90 = fit_bounds(model, x, 2, 1.0), fit_bounds(model, x, 2, 0.9)
    for name in full:
        assert (q90[name][0] <= full[name][0] + 1e-6).all() and (q90[name][1] >= full[name][1] - 1e-6).all()
    with pytest.raises(PatchscopeError):
        fit_bounds(model, x, ["nope"])
    with pytest.raises(PatchscopeError):
        fit_bounds(model, x, 2, quantile=0.0)


def test_clipping_is_differentiable_for_adaptive_attacks():
    model = small_cnn()
    defended = ActivationClipping.fit(model, torch.rand(16, 3, 32, 32), stages=2)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    defended(x)[:, 1].sum().backward()
    assert x.grad.abs().sum() > 0
