"""Heatmaps (Grad-CAM via captum, attention rollout) and top-k probability shifts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from patchscope.attacks import Patch
from patchscope.errors import PatchscopeError
from patchscope.explain import (
    apply_patch,
    attention_rollout,
    explain_attention,
    grad_cam,
    heatmaps,
    patch_footprint,
    top_probabilities,
)
from patchscope.explain.attention import TokenGrid, default_layer
from patchscope.models import Classifier


def _check_maps(maps: torch.Tensor, n: int) -> None:
    assert maps.shape == (n, 32, 32)
    assert bool(maps.isfinite().all()) and float(maps.min()) >= 0 and float(maps.max()) <= 1
    peaks = maps.flatten(1).amax(1)
    assert bool(((peaks == 1) | (peaks == 0)).all())  # each map scaled to a peak of 1 (or all zero)


def test_gradcam_heatmaps_have_image_shape(any_model: Classifier, stops: torch.Tensor):
    maps = heatmaps(any_model, stops)
    _check_maps(maps, len(stops))
    assert float(maps.sum()) > 0


def test_rollout_heatmaps_for_vit(tiny_vit: Classifier, stops: torch.Tensor):
    maps = attention_rollout(tiny_vit, stops)
    _check_maps(maps, len(stops))
    assert bool((maps.flatten(1).amax(1) == 1).all())
    assert all(not b.keep_attention and b.last_attention is None for b in tiny_vit.net.blocks)  # state restored


def test_rollout_on_a_cnn_is_a_clear_error(tiny_model: Classifier, stops: torch.Tensor):
    with pytest.raises(PatchscopeError):
        heatmaps(tiny_model, stops, "rollout")


def test_default_gradcam_layers():
    from patchscope.models.archs import cnn, vit

    assert default_layer(Classifier(cnn(num_classes=3, width=4, hidden=8), "abc")) == "stage2"
    assert (
        default_layer(Classifier(vit(num_classes=3, dim=16, depth=3, heads=2), "abc")) == "block1"
    )  # the last block's grid has no gradient


def test_gradcam_finds_a_planted_feature():
    """A hand-built CNN whose class-0 logit sums channel 0 after ReLU and 2x pooling: the map is on the bright patch."""
    conv = nn.Conv2d(3, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
    head = nn.Linear(16 * 16, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.stack([torch.ones(256), torch.zeros(256)]))
    model = Classifier(
        nn.Sequential(nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2)), nn.Sequential(nn.Flatten(), head)), ["a", "b"]
    ).eval()
    x = torch.zeros(2, 3, 32, 32)
    x[0, 0, 4:8, 20:24] = 1.0  # top right
    x[1, 0, 24:28, 2:6] = 1.0  # bottom left
    maps = grad_cam(model, x, target=torch.zeros(2, dtype=torch.long))
    _check_maps(maps, 2)
    for i, (rows, cols) in enumerate([(slice(4, 8), slice(20, 24)), (slice(24, 28), slice(2, 6))]):
        inside = torch.zeros(32, 32, dtype=torch.bool)
        inside[rows, cols] = True
        assert float(maps[i][inside].min()) > 0.5
        assert float(maps[i][~inside].sum()) < 0.5 * float(maps[i][inside].sum())  # only the bilinear rim leaks
        assert bool(inside.flatten()[maps[i].flatten().argmax()])


def test_token_grid_keeps_the_row_major_token_order():
    tokens = torch.zeros(1, 65, 4)
    tokens[0, 1 + 2 * 8 + 5, 3] = 1.0
    grid = TokenGrid()(tokens)
    assert grid.shape == (1, 4, 8, 8) and float(grid[0, 3, 2, 5]) == 1.0 and float(grid.sum()) == 1.0


def test_top_probabilities_are_sorted_and_match_the_prediction(any_model: Classifier, stops: torch.Tensor):
    top = top_probabilities(any_model, stops, k=5)
    assert top.probs.shape == top.classes.shape == (len(stops), 5)
    assert bool((top.probs[:, :-1] >= top.probs[:, 1:]).all()) and bool((top.probs.sum(1) <= 1 + 1e-5).all())
    assert torch.equal(top.classes[:, 0], any_model(stops).argmax(1))


def test_explain_attention_before_and_after(any_model: Classifier, stops: torch.Tensor, patch: Patch):
    patched = apply_patch(stops, patch)
    a = explain_attention(any_model, stops, patched)
    _check_maps(a.clean, len(stops))
    _check_maps(a.patched, len(stops))
    assert torch.allclose(a.before.probs, top_probabilities(any_model, stops).probs)
    assert torch.allclose(a.after.probs, top_probabilities(any_model, patched).probs)
    clean_in, patched_in = a.mass_inside(patch_footprint(patch))
    assert (
        clean_in.shape == (len(stops),)
        and bool(((clean_in >= 0) & (clean_in <= 1)).all())
        and bool(((patched_in >= 0) & (patched_in <= 1)).all())
    )
    same = explain_attention(any_model, stops, stops.clone())
    assert torch.allclose(same.clean, same.patched, atol=1e-5)  # no patch: the same maps


def _library_vit(kind: str) -> Classifier:
    """A tiny torchvision ViT (built from its class, 4x4 tokens of 16 px) or timm's test ViT, random weights."""
    from patchscope.models import build_net, create_model

    if kind == "timm":
        pytest.importorskip("timm")
        return create_model("timm:test_vit:random")
    torch.manual_seed(0)
    sizes = {"image_size": 64, "patch_size": 16, "num_layers": 2, "num_heads": 2, "hidden_dim": 16, "mlp_dim": 32}
    return Classifier(build_net("tv:VisionTransformer", 5, sizes), list("abcde"), 64).eval()


@pytest.mark.parametrize("kind", ["torchvision", "timm"])
def test_rollout_and_grad_cam_read_torchvision_and_timm_vits(kind: str):
    model = _library_vit(kind)
    n = model.input_size
    assert [name for name, _ in model.stages()] == [f"block{i}" for i in range(len(model.stages()))]
    x = torch.rand(2, 3, n, n, generator=torch.Generator().manual_seed(0))
    before, fused = model(x), [getattr(m, "fused_attn", None) for m in model.modules()]
    maps = attention_rollout(model, x)
    assert maps.shape == (2, n, n) and bool((maps.flatten(1).amax(1) == 1).all())
    assert float(maps.std()) > 0 and not torch.equal(maps[0], maps[1])  # each image's own attention
    assert torch.allclose(model(x), before)  # the hooks are gone and the model computes as before
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert [getattr(m, "fused_attn", None) for m in model.modules()] == fused  # timm's fast path is back
    assert grad_cam(model, x).shape == (2, n, n) and default_layer(model) == f"block{len(model.stages()) - 2}"


def test_torchvision_cnn_stages_stop_before_the_pooling_head():
    from patchscope.models import create_model

    resnet = create_model("tv:resnet18:random")
    assert [n for n, _ in resnet.stages()][-2:] == ["layer3", "layer4"] and default_layer(resnet) == "layer4"
    mobile = create_model("tv:mobilenet_v3_small:random")
    assert [n for n, _ in mobile.stages()] == [f"features.{i}" for i in range(13)]
    maps = grad_cam(resnet, torch.rand(1, 3, 224, 224))
    assert maps.shape == (1, 224, 224)
