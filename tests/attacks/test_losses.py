import torch

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
