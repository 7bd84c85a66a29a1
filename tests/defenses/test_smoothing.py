from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from patchscope.defenses import ablation_set, ds_certify, ds_delta, ds_predict, ds_prediction_map
from patchscope.errors import PatchscopeError
from tests.defenses._helpers import all_patched, local_net, small_cnn, smooth_images


def test_threshold_rule_on_hand_built_counts():
    delta = 3
    counts = torch.tensor([[10, 4, 0], [10, 5, 0], [4, 10, 0], [4, 11, 0], [0, 3, 3]])
    # gap 6 = 2*delta with the winner the smaller index: a tie after the attack still goes to it
    # gap 5 < 2*delta: not certified; winner 1 over runner-up 0 needs gap > 2*delta (ties go to 0)
    assert ds_certify(counts, torch.tensor([0, 0, 1, 1, 1]), delta).tolist() == [True, False, False, True, False]
    assert ds_predict(counts).tolist() == [0, 0, 1, 1, 1]
    assert (
        ds_certify(counts, torch.tensor([1, 1, 0, 0, 1]), delta).tolist() == [False] * 5
    )  # wrong label never certifies


def _certified_reference(counts: list[int], label: int, delta: int) -> bool:
    """Every vote vector reachable by changing at most ``delta`` ablations still predicts ``label``."""
    total, c = sum(counts), len(counts)
    for m in itertools.product(range(total + 1), repeat=c):
        if sum(m) == total and sum(abs(a - b) for a, b in zip(m, counts)) <= 2 * delta:
            if max(range(c), key=lambda i: (m[i], -i)) != label:
                return False
    return True


@settings(max_examples=150, deadline=None)
@given(classes=st.integers(2, 3), data=st.data())
def test_vectorised_certificate_matches_exhaustive_adversary(classes, data):
    counts = data.draw(st.lists(st.integers(0, 7), min_size=classes, max_size=classes).filter(lambda v: sum(v) > 0))
    delta = data.draw(st.integers(1, 3))
    label = data.draw(st.integers(0, classes - 1))
    got = ds_certify(torch.tensor([counts]), torch.tensor([label]), delta).tolist()[0]
    assert got == _certified_reference(counts, label, delta)


@pytest.mark.parametrize(("mode", "band"), [("column", 2), ("column", 4), ("block", 3)])
def test_delta_is_exactly_the_most_ablations_one_patch_meets(mode, band):
    n, p = 12, 3
    kept = ablation_set(n, band, mode)
    assert len(kept) == (n if mode == "column" else n * n)
    assert kept.sum((1, 2)).unique().tolist() == [band * (n if mode == "column" else band)]
    worst = 0
    for top in range(n - p + 1):
        for left in range(n - p + 1):
            worst = max(worst, int(kept[:, top : top + p, left : left + p].flatten(1).any(1).sum()))
    assert worst == ds_delta(p, band, mode)


def test_the_vote_counts_match_ablating_one_position_at_a_time():
    model = small_cnn()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    kept = ablation_set(32, 4, "column")
    counts, passes = ds_prediction_map(model, x, kept, batch_size=24)  # chunks cut across images
    assert passes == 32 and counts.shape == (2, 3) and counts.sum(1).tolist() == [32, 32]
    with torch.no_grad():
        ablated = torch.where(kept[:, None, None], x[None], torch.tensor(0.5))  # (32, 2, 3, 32, 32)
        preds = model(ablated.flatten(0, 1)).argmax(1).view(32, 2).T
    assert torch.equal(counts, torch.nn.functional.one_hot(preds, 3).sum(1))


@pytest.mark.parametrize(("mode", "size", "band", "images"), [("column", 12, 2, 3), ("block", 10, 2, 1)])
def test_certified_predictions_survive_every_patch_at_every_location(mode, size, band, images):
    side = 3
    model = local_net(size, seed=2)
    x = smooth_images(16, size, seed=2)
    kept = ablation_set(size, band, mode)
    delta = ds_delta(side, band, mode)
    counts, _ = ds_prediction_map(model, x, kept)
    pred = ds_predict(counts)
    certified = ds_certify(counts, pred, delta).nonzero().flatten()[:images]
    assert len(certified) > 0
    for i in certified.tolist():
        patched = all_patched(x[i], side, random_per_location=1, seed=i)
        adv, _ = ds_prediction_map(model, patched, kept)
        assert (ds_predict(adv) == pred[i]).all()
        assert ((adv - counts[i]).abs().sum(1) <= 2 * delta).all()  # no patch moved more than delta votes
    with torch.no_grad():
        assert (model(patched).argmax(1) != model(x[i : i + 1]).argmax(1)).any()  # the plain model does fall for them


@pytest.mark.parametrize(("n", "band", "mode"), [(12, 0, "column"), (12, 13, "block"), (12, 2, "row")])
def test_bad_ablations_are_user_errors(n, band, mode):
    with pytest.raises(PatchscopeError):
        ablation_set(n, band, mode)


@pytest.mark.parametrize(
    ("n", "p", "band", "mode", "stride"), [(24, 5, 3, "column", 4), (26, 5, 3, "column", 4), (26, 4, 6, "block", 3)]
)
def test_with_a_stride_delta_is_still_the_most_ablations_one_patch_meets(n, p, band, mode, stride):
    kept = ablation_set(n, band, mode, stride=stride)
    positions = -(-n // stride)
    assert len(kept) == (positions if mode == "column" else positions**2)
    worst = max(
        int(kept[:, top : top + p, left : left + p].flatten(1).any(1).sum())
        for top in range(n - p + 1)
        for left in range(n - p + 1)
    )
    assert worst == ds_delta(p, band, mode, n, stride)  # 26 px: the wrap-around gap is narrower than the stride


def test_the_default_band_and_stride_follow_the_image_size():
    from patchscope.defenses.smoothing import DerandomizedSmoothing

    assert DerandomizedSmoothing(32, 7).settings == {"band": 4, "ablations": 32, "delta": 10}  # the zoo's, as before
    assert DerandomizedSmoothing(32, 7, mode="block").settings == {"band": 12, "ablations": 1024, "delta": 324}
    big = DerandomizedSmoothing(224, 50)  # the same 32 positions, bands 7x as wide
    assert big.settings == {"band": 28, "ablations": 32, "delta": 11, "stride": 7}
    assert DerandomizedSmoothing(224, 50, mode="block").settings["ablations"] == 1024
