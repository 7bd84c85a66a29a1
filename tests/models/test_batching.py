"""Batch sizes follow the image size and the memory budget; a pass that runs out of memory backs off to smaller chunks
and gives the same numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from patchscope.data import ImageSet
from patchscope.errors import PatchscopeError
from patchscope.models import Classifier
from patchscope.models.archs import cnn
from patchscope.models.batching import (
    MAX_BATCH,
    auto_batch_size,
    bytes_per_image,
    forward_chunks,
    memory_budget,
    resolve_batch_size,
)
from patchscope.models.train import accuracy
from patchscope.workflows.certify import default_batch_size


class RunsOutAbove(nn.Module):
    """Wraps a model and raises the allocator's out-of-memory error on batches larger than ``most``."""

    def __init__(self, model: nn.Module, most: int) -> None:
        super().__init__()
        self.model, self.most, self.sizes = model, most, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(x))
        if len(x) > self.most:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")
        return self.model(x)


@pytest.fixture()
def net() -> nn.Module:
    torch.manual_seed(0)
    return cnn(num_classes=3, width=4).eval()


def test_the_batch_follows_the_image_size_and_the_budget(net: nn.Module) -> None:
    small, large = bytes_per_image(net, 32), bytes_per_image(net, 64)
    assert 3.5 < large / small < 4.5  # activations grow with the pixels
    budget = 200 * small
    assert auto_batch_size(net, 32, budget_bytes=budget) == 200
    assert auto_batch_size(net, 64, budget_bytes=budget) < 60
    assert auto_batch_size(net, 32, budget_bytes=1) == 1
    assert auto_batch_size(net, 32, budget_bytes=10**15) == MAX_BATCH
    assert auto_batch_size(net, 32, budget_bytes=10**15, most=16384) == 16384


def test_the_budget_can_be_set_and_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATCHSCOPE_BATCH_BUDGET_MB", "3")
    assert memory_budget("cpu") == 3 * 2**20
    monkeypatch.setenv("PATCHSCOPE_BATCH_BUDGET_MB", "-1")
    with pytest.raises(PatchscopeError, match="PATCHSCOPE_BATCH_BUDGET_MB"):
        memory_budget("cpu")


def test_a_given_batch_size_is_checked_and_kept(net: nn.Module) -> None:
    assert resolve_batch_size(net, 7, 32) == 7
    with pytest.raises(PatchscopeError, match="batch_size"):
        resolve_batch_size(net, 0, 32)


def test_out_of_memory_halves_the_chunk_and_keeps_the_numbers(net: nn.Module) -> None:
    x = torch.rand(13, 3, 32, 32)
    tight = RunsOutAbove(net, 3)
    with torch.no_grad():
        out = forward_chunks(tight, x, 16)
        assert torch.allclose(out, net(x), atol=1e-6)  # the same up to the kernels' float rounding
    assert max(s for s in tight.sizes if s <= 3) == 2  # 16 -> 8 -> 4 -> 2, then the rows go through in twos
    with pytest.raises(RuntimeError, match="allocate"):
        forward_chunks(RunsOutAbove(net, 0), x, 4)  # one row that still fails: the error stands
    with pytest.raises(ValueError, match="other"):
        forward_chunks(lambda t: (_ for _ in ()).throw(ValueError("other")), x, 4)


def test_accuracy_with_an_out_of_memory_back_off_equals_a_small_fixed_batch(net: nn.Module) -> None:
    torch.manual_seed(1)
    data = ImageSet(
        (torch.rand(40, 3, 32, 32) * 255).to(torch.uint8), torch.randint(0, 3, (40,)), ("a", "b", "c"), "random"
    )
    model = Classifier(net, ["a", "b", "c"]).eval()
    small = accuracy(model, data, batch_size=4)
    tight = RunsOutAbove(model, 5)
    tight.classes = model.classes  # type: ignore[assignment]
    assert accuracy(tight, data, batch_size=32) == small
    assert accuracy(model, data) == small  # the automatic batch


def test_certification_batches_stay_within_the_budget(net: nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_batch_size("cpu") == 256
    assert default_batch_size("cpu", net, 32) == 256
    monkeypatch.setenv("PATCHSCOPE_BATCH_BUDGET_MB", str(bytes_per_image(net, 64) * 10 / 2**20))
    assert default_batch_size("cpu", net, 64) == 10


def test_measuring_leaves_the_model_and_the_random_generator_alone() -> None:
    torch.manual_seed(0)
    net = cnn(num_classes=3, width=4).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    state = torch.get_rng_state()
    bytes_per_image(net, 32)
    assert net.training and torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
