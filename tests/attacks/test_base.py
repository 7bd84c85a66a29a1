"""The `Attack` base class: a subclass writes only `run` and inherits the frozen model, the input and target checks,
the device, the seeded generator and the loop's books."""

from __future__ import annotations

import pytest
import torch

from patchscope.attacks import Attack, AttackConfig
from patchscope.errors import PatchscopeError
from patchscope.models.archs import cnn
from patchscope.models.wrapper import Classifier


class Probe(Attack):
    """Records what ``run`` sees; returns one draw of the seeded generator."""

    title = "probe"
    makes = "probe patches"
    refuses = ("tv_weight",)

    def run(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.seen = {
            "training": self.model.training,
            "requires_grad": any(p.requires_grad for p in self.model.parameters()),
            "device": images.device,
            "labels_device": labels.device,
        }
        with self.bar(3) as update:
            for step in range(3):
                self.record(step, 3, torch.tensor(0.5), torch.tensor(1.0), 4, update)
        return torch.rand(2, generator=self.generator())


def _model() -> Classifier:
    model = Classifier(cnn(num_classes=3, width=4), ["a", "b", "c"]).train()
    model.requires_grad_(True)
    return model


def test_a_subclass_runs_on_a_frozen_model_that_is_restored_after():
    model = _model()
    attack = Probe(model, AttackConfig(target=1, seed=3), progress=False)
    first = attack(torch.rand(2, 3, 8, 8), torch.zeros(2, dtype=torch.long))
    assert attack.seen["training"] is False and attack.seen["requires_grad"] is False
    assert attack.seen["device"] == attack.seen["labels_device"] == torch.device("cpu")
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert torch.equal(
        first,
        Probe(model, AttackConfig(target=1, seed=3), progress=False)(
            torch.rand(2, 3, 8, 8), torch.zeros(2, dtype=torch.long)
        ),
    )  # the same seed, the same draws
    assert [h["step"] for h in attack.history] == [0, 2] and attack.history[0]["batch_success"] == 0.25


@pytest.mark.parametrize(
    ("images", "labels", "target", "message"),
    [
        (torch.rand(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), 1, "square RGB images"),
        (torch.rand(2, 3, 8, 6), torch.zeros(2, dtype=torch.long), 1, "square RGB images"),
        (torch.rand(0, 3, 8, 8), torch.zeros(0, dtype=torch.long), 1, "square RGB images"),
        (torch.rand(2, 3, 8, 8), torch.zeros(2, dtype=torch.long), 7, "target must be a class id in 0..2"),
        (torch.rand(2, 3, 8, 8), torch.ones(2, dtype=torch.long), 1, "target must differ"),
    ],
)
def test_bad_inputs_are_refused_and_the_model_is_restored(images, labels, target, message):
    model = _model()
    with pytest.raises(PatchscopeError, match=message):
        Probe(model, AttackConfig(target=target), progress=False)(images, labels)
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_settings_a_subclass_refuses_are_refused_when_it_is_made():
    with pytest.raises(PatchscopeError, match="^probe patches: tv_weight is the universal attack's only") as e:
        Probe(_model(), AttackConfig(tv_weight=0.5))
    assert e.value.params == ("tv_weight",)


def test_a_non_finite_loss_is_refused():
    class Broken(Probe):
        def run(self, images: torch.Tensor, labels: torch.Tensor) -> None:
            with self.bar(1) as update:
                self.record(0, 1, torch.tensor(float("nan")), torch.tensor(0.0), 1, update)

    with pytest.raises(PatchscopeError, match="NaN or inf at step 0"):
        Broken(_model(), AttackConfig(), progress=False)(torch.rand(1, 3, 8, 8), torch.zeros(1, dtype=torch.long))
