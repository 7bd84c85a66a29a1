"""The gaussian-noise defense, added through the registry alone."""

from __future__ import annotations

import pytest
import torch

from patchscope.defenses import create_defense, defense_spec, list_defenses
from patchscope.errors import PatchscopeError
from tests.defenses._helpers import small_cnn


def test_it_is_registered_with_its_option_and_needs_no_bpda():
    assert "gaussian-noise" in list_defenses()
    spec = defense_spec("gaussian-noise")
    assert spec.defaults == {"sigma": 0.1} and not spec.meta["bpda"] and not spec.takes("clean_images")


def test_it_adds_fresh_noise_of_the_asked_strength_and_keeps_the_classifier_contract():
    model = small_cnn()
    d = create_defense("gaussian-noise", model, sigma=0.05)
    x = torch.full((4, 3, 32, 32), 0.5)
    a, b = d.preprocess(x), d.preprocess(x)
    assert a.shape == x.shape and 0 <= a.min() and a.max() <= 1 and not torch.equal(a, b)
    assert abs(float((a - x).std()) - 0.05) < 0.005 and abs(float((a - x).mean())) < 0.005
    assert d(x).shape == (4, 3) and d.classes == model.classes and "gaussian-noise" in d.name


def test_the_gradient_reaches_every_pixel_without_bpda():
    x = torch.full((1, 3, 32, 32), 0.5, requires_grad=True)
    create_defense("gaussian-noise", small_cnn(), sigma=0.01).preprocess(x).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


@pytest.mark.parametrize("sigma", [0.0, -0.1])
def test_a_sigma_that_is_not_positive_names_its_parameter(sigma):
    with pytest.raises(PatchscopeError) as e:
        create_defense("gaussian-noise", small_cnn(), sigma=sigma)
    assert e.value.params == ("sigma",)


def test_the_command_line_defends_with_it(tiny_model_path, tmp_path):
    import json

    from patchscope.attacks import Patch
    from tests.conftest import run_cli

    Patch(torch.rand(3, 7, 7), torch.ones(7, 7), "on-object", (12, 12), 32, {"source": "stop", "target": "yield"}).save(
        tmp_path / "p"
    )
    r = run_cli(
        "defend",
        "--model",
        str(tiny_model_path),
        "--defense",
        "gaussian-noise",
        "-o",
        "sigma=0.05",
        "--patch",
        str(tmp_path / "p"),
        "--data",
        "demo",
        "--limit",
        "8",
        "--conditions",
        "none",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (
        out["defense"] == "gaussian-noise"
        and 0 <= out["defended_clean_accuracy"] <= 1
        and out["patch"]["defended"]["images"] == 8
    )
