"""Fixtures for the explain tests: a tiny random ViT, a few demo stop signs, a patch."""

from __future__ import annotations

import pytest
import torch

from patchscope.attacks import Patch
from patchscope.data import gtsrb_classes
from patchscope.models import Classifier
from patchscope.models.archs import vit


@pytest.fixture(scope="session")
def tiny_vit() -> Classifier:
    torch.manual_seed(0)
    return Classifier(vit(num_classes=43, dim=32, depth=2, heads=2), gtsrb_classes(), name="tiny-vit").eval()


@pytest.fixture(params=["cnn", "vit"])
def any_model(request: pytest.FixtureRequest, tiny_model: Classifier, tiny_vit: Classifier) -> Classifier:
    return tiny_model if request.param == "cnn" else tiny_vit


@pytest.fixture()
def stops(demo) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return demo.of_class("stop").head(6).float_images()


@pytest.fixture()
def patch() -> Patch:
    g = torch.Generator().manual_seed(0)
    return Patch(torch.rand(3, 7, 7, generator=g), torch.ones(7, 7), "on-object", (5, 9), 32)
