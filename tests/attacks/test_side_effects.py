"""Every registered attack leaves the caller's model and the process as it found them: weights, requires_grad, training
mode, .grad, and the warnings filters."""

from __future__ import annotations

import warnings

import pytest
import torch

from patchscope.attacks import AttackConfig, create_attack, list_attacks
from patchscope.errors import PatchscopeError
from patchscope.models.archs import cnn
from patchscope.models.wrapper import Classifier


def _model() -> Classifier:
    torch.manual_seed(0)
    model = Classifier(cnn(num_classes=3, width=4, hidden=16), ["a", "b", "c"], name="tiny")
    model.train()  # the caller's mode: training, with gradients on
    model.net.requires_grad_(True)
    next(model.parameters()).requires_grad_(False)  # and one frozen tensor, which must stay frozen
    return model


def _snapshot(model: Classifier) -> tuple[dict[str, torch.Tensor], list[bool], list[bool], list[object]]:
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [p.requires_grad for p in model.parameters()],
        [m.training for m in model.modules()],
        [p.grad for p in model.parameters()],
    )


#: options that keep an attack's test small, where its defaults do not
OPTIONS: dict[str, dict[str, int]] = {"per-image": {"views": 2}}


@pytest.mark.parametrize("name", list_attacks())
def test_an_attack_leaves_the_model_and_the_warnings_filters_as_they_were(name):
    assert set(list_attacks()) >= {"universal", "per-image"}
    cfg = AttackConfig(size=0.1, target=1, steps=3, batch_size=8, candidates=2)
    options = OPTIONS.get(name, {})
    x, y = torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)
    create_attack(name, _model(), cfg, progress=False, **options)(
        x, y
    )  # first use: lazy imports (torch's sympy) add their own filters
    model = _model()
    weights, flags, modes, grads = _snapshot(model)
    filters = list(warnings.filters)
    create_attack(name, model, cfg, progress=False, **options)(x, y)
    after_weights, after_flags, after_modes, after_grads = _snapshot(model)
    assert (
        after_flags == flags and after_modes == modes and all(g is None for g in after_grads) and grads == after_grads
    )
    assert all(torch.equal(weights[k], after_weights[k]) for k in weights)  # BatchNorm's running statistics too
    assert warnings.filters == filters


def test_the_model_is_restored_when_the_attack_fails():
    model = _model()
    _, flags, modes, _ = _snapshot(model)
    with pytest.raises(PatchscopeError, match="square RGB images"):  # raised while the model is frozen
        create_attack("universal", model, AttackConfig(size=0.1, steps=2, batch_size=4), progress=False)(
            torch.rand(2, 1, 32, 32), torch.zeros(2, dtype=torch.long)
        )
    assert [p.requires_grad for p in model.parameters()] == flags and [m.training for m in model.modules()] == modes


def test_fine_tuning_after_an_attack_needs_nothing_undone():
    model = _model().eval()
    model.requires_grad_(True)
    create_attack(
        "universal", model, AttackConfig(size=0.1, target=1, steps=2, batch_size=4, candidates=1), progress=False
    )(torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long))
    model(torch.rand(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
