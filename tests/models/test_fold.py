from __future__ import annotations

import pytest
import torch
from torch import nn

from patchscope.defenses.clipping import ActivationClipping
from patchscope.models.archs import cnn, resnet, vit
from patchscope.models.fold import fold_batchnorm
from patchscope.models.wrapper import Classifier


def _trained_bn(net: nn.Module) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine terms, as training would."""
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return net.eval()


@pytest.mark.parametrize(
    "arch", [lambda: cnn(num_classes=5, width=4), lambda: resnet(num_classes=5, widths=(4, 8), blocks=1)]
)
def test_folding_keeps_the_function_and_its_input_gradient_and_leaves_the_original_alone(arch):
    model = Classifier(_trained_bn(arch()), [str(i) for i in range(5)]).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    assert folded is not model and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert folded.classes == model.classes and folded.input_size == model.input_size
    x = torch.rand(6, 3, 32, 32, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    a, b = model(x), folded(x2)
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    (a * torch.arange(5.0)).sum().backward()
    (b * torch.arange(5.0)).sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-4, rtol=1e-3)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the user's model is untouched


def test_nothing_to_fold_returns_the_model_itself():
    train_mode = Classifier(cnn(num_classes=3, width=4), ["a", "b", "c"]).train()
    assert fold_batchnorm(train_mode) is train_mode  # batch statistics in use: BN is no fixed map
    transformer = Classifier(vit(num_classes=3, dim=16, depth=1, heads=2), ["a", "b", "c"]).eval()
    assert fold_batchnorm(transformer) is transformer


def test_a_folded_clipping_defense_still_clamps():
    """Activation clipping hooks whole stages; folding swaps modules inside them, so the copy's hooks still bite."""
    model = Classifier(_trained_bn(cnn(num_classes=3, width=4)), ["a", "b", "c"]).eval()
    g = torch.Generator().manual_seed(0)
    defended = ActivationClipping.fit(model, torch.full((4, 3, 32, 32), 0.5), stages=1)  # bounds of a flat grey image
    folded = fold_batchnorm(defended)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(8, 3, 32, 32, generator=g)  # texture the grey image never had: stage 0 clamps it
    with torch.no_grad():
        clip_effect, fold_error = (defended(x) - model(x)).abs().max(), (folded(x) - defended(x)).abs().max()
    assert (
        clip_effect > 0 and fold_error < 0.01 * clip_effect
    )  # had folding dropped the clamp, the error would be the effect
