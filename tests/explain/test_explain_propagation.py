"""Footprints on layer grids, the propagation metrics and max_z, on a tiny CNN and a tiny ViT."""

from __future__ import annotations

import math

import pytest
import torch

from patchscope.attacks import Patch, paste, shape_mask
from patchscope.explain import (
    apply_patch,
    capture,
    grid_footprint,
    layer_grid,
    max_z,
    patch_footprint,
    token_footprint,
    trace_layers,
)
from patchscope.explain.propagation import patch_view
from patchscope.models import Classifier


def _rect(top: int, left: int, side: int, size: int = 32) -> torch.Tensor:
    fp = torch.zeros(size, size, dtype=torch.bool)
    fp[top : top + side, left : left + side] = True
    return fp


def _cells(grid: tuple[int, int], rows: range, cols: range) -> torch.Tensor:
    out = torch.zeros(grid, dtype=torch.bool)
    out[rows.start : rows.stop, cols.start : cols.stop] = True
    return out


def test_footprint_is_where_the_patch_lands(patch: Patch):
    assert torch.equal(patch_footprint(patch), _rect(5, 9, 7))
    circle = Patch(torch.rand(3, 9, 9), shape_mask("circle", 9), "on-object", (20, 2), 32)
    fp = patch_footprint(circle)
    assert int(fp.sum()) == int(circle.mask.sum()) < 81
    assert torch.equal(fp[20:29, 2:11], circle.mask.bool()) and int(fp[:20].sum()) == 0
    centred = Patch(torch.rand(3, 6, 6), torch.ones(6, 6), "sticker", None, 32)  # no location: the centre
    assert torch.equal(patch_footprint(centred), _rect(13, 13, 6))


@pytest.mark.parametrize(
    ("grid", "rows", "cols"),
    [
        ((32, 32), range(5, 12), range(9, 16)),
        ((16, 16), range(2, 6), range(4, 8)),
        ((8, 8), range(1, 3), range(2, 4)),
        ((4, 4), range(0, 2), range(1, 2)),
    ],
)
def test_footprint_on_cnn_grids_follows_the_stride(grid: tuple[int, int], rows: range, cols: range):
    assert torch.equal(grid_footprint(_rect(5, 9, 7), grid), _cells(grid, rows, cols))


def test_footprint_straddling_a_cell_border_and_dilation():
    fp = _rect(3, 3, 2)  # pixels 3..4: cells 0 and 1 at stride 4
    assert torch.equal(grid_footprint(fp, (8, 8)), _cells((8, 8), range(0, 2), range(0, 2)))
    assert torch.equal(grid_footprint(fp, (8, 8), dilation=1), _cells((8, 8), range(0, 3), range(0, 3)))
    assert torch.equal(
        grid_footprint(_rect(4, 4, 4), (8, 8)), _cells((8, 8), range(1, 2), range(1, 2))
    )  # exactly one cell


def test_footprint_on_vit_tokens_skips_the_class_token():
    tokens = token_footprint(_rect(5, 9, 7), 8)
    assert tokens.shape == (65,) and not bool(tokens[0])
    assert tokens.nonzero().flatten().tolist() == [1 + 1 * 8 + 2, 1 + 1 * 8 + 3, 1 + 2 * 8 + 2, 1 + 2 * 8 + 3]
    assert token_footprint(_rect(4, 8, 4), 8).nonzero().flatten().tolist() == [1 + 1 * 8 + 2]
    assert token_footprint(_rect(0, 28, 4), 8).nonzero().flatten().tolist() == [8]  # top-right cell


def test_token_order_matches_the_vit_embedding(tiny_vit: Classifier):
    """Token 1 + r*g + c of the ViT is the embedding of pixel cell (r, c): the map token_footprint assumes."""
    x = torch.zeros(1, 3, 32, 32)
    x[0, :, 8:12, 20:24] = 1.0  # cell (2, 5)
    net = tiny_vit.net
    t = net.embed((x - tiny_vit.mean) / tiny_vit.std).flatten(2).transpose(1, 2)
    base = net.embed((torch.zeros_like(x) - tiny_vit.mean) / tiny_vit.std).flatten(2).transpose(1, 2)
    changed = (t - base).abs().sum(-1)[0].nonzero().flatten().tolist()
    assert [i + 1 for i in changed] == token_footprint(_rect(8, 20, 4), 8).nonzero().flatten().tolist()


def test_layer_grids_of_real_models(tiny_model: Classifier, tiny_vit: Classifier):
    x = torch.rand(2, 3, 32, 32)
    assert [layer_grid(a.shape) for a in capture(tiny_model, x).values()] == [(16, 16), (8, 8), (4, 4)]
    acts = capture(tiny_vit, x)
    assert list(acts) == ["block0", "block1"] and [layer_grid(a.shape) for a in acts.values()] == [(8, 8), (8, 8)]


def test_patch_free_input_gives_exactly_zero_signal(any_model: Classifier, stops: torch.Tensor):
    traces = trace_layers(any_model, stops, stops.clone(), _rect(5, 9, 7))
    assert [t.name for t in traces] == [n for n, _ in any_model.stages()]
    for t in traces:
        assert torch.equal(t.adversarial_signal(), torch.zeros(len(stops)))
        assert torch.equal(t.adversarial_share(), torch.zeros(len(stops)))
        assert torch.equal(t.natural_ratio(), torch.ones(len(stops)))
        s = t.summary()
        assert s["adversarial_signal"] == 0.0 and s["adversarial_share"] == 0.0 and s["natural_ratio"] == 1.0
        assert abs(s["max_z"]) < 1e-4  # the clean maxima against themselves: mean z is 0


def test_patch_copying_the_underlying_pixels_gives_exactly_zero_signal(
    any_model: Classifier, stops: torch.Tensor, patch: Patch
):
    crops = stops[:, :, 5:12, 9:16].clone()  # each image's own pixels under the patch
    patched = paste(stops, crops, patch.mask, patch_view(patch, len(stops)))
    for t in trace_layers(any_model, stops, patched, patch_footprint(patch)):
        assert float(t.adversarial_signal().abs().max()) == 0.0 and float(t.adversarial_share().max()) == 0.0


def test_a_patch_gives_positive_signal(any_model: Classifier, stops: torch.Tensor, patch: Patch):
    patched = apply_patch(stops, patch)
    assert not torch.equal(patched, stops)
    for t in trace_layers(any_model, stops, patched, patch_footprint(patch)):
        assert bool((t.adversarial_signal() > 0).all()), t.name
        assert bool((t.adversarial_share() > 0).all()) and bool(t.natural_ratio().isfinite().all())
        s = t.summary()
        assert s["adversarial_share"] > 0 and s["natural_ratio"] > 0 and math.isfinite(s["max_z"])


def test_first_cnn_layer_sees_the_patch_only_near_its_footprint(
    tiny_model: Classifier, stops: torch.Tensor, patch: Patch
):
    fp = patch_footprint(patch)
    t = trace_layers(tiny_model, stops, apply_patch(stops, patch), fp)[0]
    near = grid_footprint(fp, t.grid, dilation=2).flatten().float()
    delta = capture(tiny_model, apply_patch(stops, patch))["stage0"] - capture(tiny_model, stops)["stage0"]
    energy = delta.pow(2).sum(1).flatten(1)
    assert float((energy * (1 - near)).sum()) <= 1e-10 * float(energy.sum())
    assert torch.allclose((energy * t.footprint.flatten().float()).sum(1), t.delta_inside, rtol=1e-5)


def test_batching_does_not_change_the_numbers(tiny_model: Classifier, stops: torch.Tensor, patch: Patch):
    patched, fp = apply_patch(stops, patch), patch_footprint(patch)
    whole, parts = (
        trace_layers(tiny_model, stops, patched, fp),
        trace_layers(tiny_model, stops, patched, fp, batch_size=4),
    )
    for a, b in zip(whole, parts):
        assert torch.allclose(a.adversarial_share(), b.adversarial_share(), rtol=1e-4)
        assert torch.allclose(a.patched_max, b.patched_max, rtol=1e-4)


def test_max_z_against_the_clean_distribution():
    clean = torch.tensor([1.0, 2.0, 3.0])  # mean 2, unbiased std 1
    assert torch.allclose(max_z(clean, torch.tensor([4.0, 2.0, 0.5])), torch.tensor([2.0, 0.0, -1.5]))
    assert bool(max_z(torch.tensor([1.0]), torch.tensor([2.0])).isnan().all())  # one clean image: no spread


def test_single_image_max_z_uses_the_set_as_reference(tiny_model: Classifier, stops: torch.Tensor):
    """One image scored against the set's clean maxima equals its row in the set; clean vs clean has mean 0."""
    white = Patch(torch.ones(3, 12, 12), torch.ones(12, 12), "on-object", (10, 10), 32)
    fp = patch_footprint(white)
    t = trace_layers(tiny_model, stops, apply_patch(stops, white), fp)
    same = trace_layers(tiny_model, stops, stops, fp)
    zs = torch.stack([x.max_z() for x in t])
    assert zs.isfinite().all()
    assert all(abs(float(x.max_z().mean())) < 1e-4 for x in same)
    single = trace_layers(tiny_model, stops[:1], apply_patch(stops[:1], white), fp)
    assert torch.allclose(torch.stack([s.max_z(reference=r)[0] for s, r in zip(single, t)]), zs[:, 0], atol=1e-5)
