"""The defense and certifier registries: names, options, BPDA as one property of each defense, user errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from patchscope.defenses import (
    DEFENSES,
    InputDefense,
    certifier_spec,
    create_certifier,
    create_defense,
    defense_spec,
    list_certifiers,
    list_defenses,
    mask_set,
    pc_counts,
    register_defense,
)
from patchscope.errors import PatchscopeError
from tests.defenses._helpers import small_cnn, smooth_images


def test_the_bundled_defenses_and_certifiers_are_registered():
    assert {"jpeg", "blur", "median", "bits", "lgs", "clip"} <= set(list_defenses())
    assert {"patchcleanser", "ds-column", "ds-block"} <= set(list_certifiers())
    assert defense_spec("median").defaults == {"kernel": 3} and defense_spec("clip").takes("clean_images")
    assert certifier_spec("patchcleanser").defaults == {"k": 6, "bf16": False}


def _input_gradient(name: str) -> torch.Tensor:
    """d sum(clean(x)) / dx without BPDA, on smooth images with a noisy square (where a patch would be)."""
    x = smooth_images(2, 32, seed=1)
    x[:, :, 8:16, 8:16] = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    x.requires_grad_()
    create_defense(name, nn.Identity(), bpda=False).preprocess(x).sum().backward()
    return x.grad


@pytest.mark.parametrize("name", [n for n in list_defenses() if not defense_spec(n).takes("clean_images")])
def test_bpda_is_registered_exactly_for_the_cleaning_steps_without_a_useful_gradient(name):
    """A differentiable cleaning step passes a gradient to (nearly) every input pixel; rounding gives none, a median
    only to the pixels it picked (under half), and LGS none where it suppresses the noisy square."""
    grad = _input_gradient(name)
    dense = float((grad != 0).float().mean())
    inside = float((grad[:, :, 9:15, 9:15] != 0).float().mean())
    useful = dense > 0.75 and inside > 0.75
    assert defense_spec(name).meta["bpda"] == (not useful), (name, dense, inside)
    assert create_defense(name, small_cnn()).bpda == defense_spec(name).meta["bpda"]  # default: the registration's


def test_unknown_names_and_stray_options_name_their_parameter():
    with pytest.raises(PatchscopeError) as e:
        create_defense("nope", small_cnn())
    assert e.value.params == ("defense",) and "jpeg" in str(e.value)
    with pytest.raises(PatchscopeError) as e:
        create_defense("median", small_cnn(), bits=3)
    assert e.value.params[:2] == ("bits", "defense") and str(e.value).startswith(
        "bits does not apply to defense 'median'"
    )
    with pytest.raises(PatchscopeError) as e:
        create_certifier("ds-column", 32, 5, k=3)
    assert e.value.params[:2] == ("k", "certifier")


def test_options_parse_to_the_type_of_their_default():
    assert DEFENSES.parse("lgs", ["window=7", "threshold=0.2"]) == {"window": 7, "threshold": 0.2}
    assert defense_spec("lgs").parse(["window=7"]) == {"window": 7}
    assert certifier_spec("patchcleanser").parse(["bf16=true"]) == {"bf16": True}
    for bad in (["window"], ["window=big"], ["nope=1"]):
        with pytest.raises(PatchscopeError) as e:
            DEFENSES.parse("lgs", bad)
        assert e.value.params == ("option",)


def test_a_new_defense_is_one_decorated_class():
    @register_defense("invert-test", bpda=True)
    class Invert(InputDefense):
        """Colour inversion (a test defense)."""

        def __init__(self, model: nn.Module, strength: float = 1.0, bpda: bool = False) -> None:
            super().__init__(model, bpda)
            self.strength = strength

        def clean(self, x: torch.Tensor) -> torch.Tensor:
            return (x + self.strength * (1 - 2 * x)).clamp(0, 1)

    try:
        assert "invert-test" in list_defenses() and defense_spec("invert-test").defaults == {"strength": 1.0}
        d = create_defense("invert-test", small_cnn(), strength=0.5)
        assert d.bpda and d.strength == 0.5 and d(torch.rand(2, 3, 32, 32)).shape == (2, 3)
        assert d.name.endswith("+invert-test")  # the name lives in the registry alone
    finally:
        DEFENSES.remove("invert-test")
    assert "invert-test" not in list_defenses()


def test_the_patchcleanser_certifier_counts_as_pc_counts():
    model, x, y = (
        small_cnn(),
        torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0)),
        torch.tensor([0, 1, 2, 0, 1, 2]),
    )
    pc = create_certifier("patchcleanser", 32, 7, k=3)
    counts = pc.counts(model, x, y, 64)
    expected = pc_counts(model, x, y, mask_set(32, 7, 3), 64, num_classes=3)
    assert torch.equal(counts.stacked(), expected.stacked()) and counts.passes == expected.passes
    assert pc.settings["masks"] == 9


@pytest.mark.parametrize(("name", "options"), [("patchcleanser", {"k": 2}), ("ds-column", {})])
def test_a_certifiers_outcomes_are_its_counts_per_image(name, options):
    model, x = small_cnn(), torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = model(x).argmax(1).detach()  # right on most images: some are certified, some not
    cert = create_certifier(name, 32, 5, **options)
    outcomes = cert.outcomes(model, x, y, 64)
    assert torch.equal(outcomes.counts().stacked(), cert.counts(model, x, y, 64).stacked())
    assert torch.equal(outcomes.robust, outcomes.prediction == y)
    assert bool((outcomes.certified <= outcomes.robust).all())


@pytest.mark.parametrize(("name", "options"), [("patchcleanser", {"k": 2}), ("ds-column", {})])
def test_unknown_labels_give_the_prediction_without_certificates(name, options):
    model, x = small_cnn(), torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    y = model(x).argmax(1).detach()
    cert = create_certifier(name, 32, 5, **options)
    known, unknown = cert.outcomes(model, x, y, 64), cert.outcomes(model, x, torch.full_like(y, -1), 64)
    assert torch.equal(known.prediction, unknown.prediction) and not unknown.certified.any()
    assert unknown.passes <= known.passes
