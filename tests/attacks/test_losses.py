import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from patchscope.attacks import attack_loss, non_printability, printable_colours, total_variation


def test_margin_loss_targets_and_caps():
    z = torch.tensor([[5.0, 1.0, 0.0], [0.0, 9.0, 0.0]])
    loss = attack_loss(z, torch.tensor([0, 0]), target=1, kappa=2.0)
    assert loss.tolist() == [4.0, -2.0]
    untargeted = attack_loss(z, torch.tensor([0, 0]), target=None, kappa=2.0)
    assert untargeted.tolist() == [4.0, -2.0]


def test_printability_terms():
    flat = torch.full((3, 4, 4), 0.5)
    assert total_variation(flat) == 0
    assert non_printability(flat, printable_colours()) < 1e-6
    assert total_variation(torch.rand(3, 4, 4)) > 0


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([None, 1]))
def test_sigmoid_loss_is_a_bounded_monotone_count_of_unwon_rows(seed, target):
    z = torch.randn(16, 5, generator=torch.Generator().manual_seed(seed)) * 3
    labels = torch.zeros(16, dtype=torch.long)
    smooth = attack_loss(z, labels, target, kind="sigmoid")
    gap = attack_loss(z, labels, target, kind="margin", kappa=float("inf"))
    assert ((smooth >= 0) & (smooth <= 1)).all()
    assert torch.equal(smooth > 0.5, gap > 0)  # above one half exactly where the row is not yet won
    order = gap.argsort()
    assert (smooth[order].diff() >= 0).all()  # the same ranking as the margin
