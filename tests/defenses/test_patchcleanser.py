from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from patchscope.defenses import (
    UNKNOWN,
    mask_positions,
    mask_set,
    masked_predictions,
    pc_certify,
    pc_decision_map,
    pc_infer,
    pc_needed,
    pc_prediction_map,
    predict_masked,
)
from patchscope.errors import PatchscopeError
from tests.defenses._helpers import all_patched, local_net, small_cnn, smooth_images


def _map(one: list[int], default: int) -> torch.Tensor:
    """A (1, K, K) map: one-mask predictions ``one`` on the diagonal, ``default`` for every pair."""
    pm = torch.full((len(one), len(one)), default)
    pm.diagonal().copy_(torch.tensor(one))
    return pm[None]


def _infer_reference(pm: torch.Tensor) -> int:
    """Algorithm 1 of Xiang et al. 2022, one image, plain Python."""
    k = pm.shape[0]
    one = [int(pm[i, i]) for i in range(k)]
    counts = Counter(one)
    best = max(counts.values())
    majority = min(c for c, v in counts.items() if v == best)
    for i in range(k):
        if one[i] != majority and all(int(pm[i, j]) == one[i] for j in range(k)):
            return one[i]
    return majority


def test_an_agreeing_map_certifies_and_one_disagreeing_pair_breaks_it():
    agree = torch.full((1, 6, 6), 2)
    assert pc_certify(agree, torch.tensor([2])).tolist() == [True]
    assert pc_certify(agree, torch.tensor([1])).tolist() == [False]
    broken = agree.clone()
    broken[0, 1, 4] = broken[0, 4, 1] = 0
    assert pc_certify(broken, torch.tensor([2])).tolist() == [False]
    assert pc_infer(broken).tolist() == [2]  # all first-round masks still agree: Case I


def test_robust_inference_follows_the_papers_three_cases():
    # Case I: unanimous first round
    assert pc_infer(torch.full((1, 4, 4), 3)).tolist() == [3]
    # Case II: mask 2 sees the patch's region; its first-round label 1 disagrees with the majority 0 and
    # every second-round prediction with mask 2 says 1 -> the patch was under mask 2, answer 1
    pm = torch.zeros(1, 5, 5, dtype=torch.long)
    pm[0, 2, :] = pm[0, :, 2] = 1
    assert pc_infer(pm).tolist() == [1]
    # Case III: the disagreer's second round is split -> fall back to the majority
    pm[0, 2, 4] = pm[0, 4, 2] = 0
    assert pc_infer(pm).tolist() == [0]
    # majority ties go to the smaller class
    assert pc_infer(_map([1, 1, 0, 0], default=5)).tolist() == [0]


def _sym_maps(draw_n: int, k: int, classes: int, data: st.DataObject) -> torch.Tensor:
    vals = data.draw(st.lists(st.integers(0, classes - 1), min_size=draw_n * k * k, max_size=draw_n * k * k))
    pm = torch.tensor(vals).view(draw_n, k, k)
    upper = torch.triu(torch.ones(k, k, dtype=torch.bool))
    return torch.where(upper, pm, pm.transpose(1, 2))


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 4), k=st.integers(1, 5), classes=st.integers(1, 3), data=st.data())
def test_vectorised_certify_and_infer_match_the_definition(n, k, classes, data):
    pm = _sym_maps(n, k, classes, data)
    if data.draw(st.booleans()):  # make agreement likely too
        pm = torch.where(torch.rand(pm.shape) < 0.9, pm.flatten(1)[:, :1, None], pm)
        pm = torch.where(torch.triu(torch.ones(k, k, dtype=torch.bool)), pm, pm.transpose(1, 2))
    labels = torch.tensor(data.draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)))
    expected_cert = [all(int(v) == int(labels[i]) for v in pm[i].flatten()) for i in range(n)]
    assert pc_certify(pm, labels).tolist() == expected_cert
    assert pc_infer(pm).tolist() == [_infer_reference(pm[i]) for i in range(n)]
    # a certified image is predicted correctly by the robust inference
    assert all(p == int(y) for p, y, c in zip(pc_infer(pm).tolist(), labels, expected_cert) if c)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 4), k=st.integers(1, 5), classes=st.integers(1, 3), data=st.data())
def test_entries_pc_needed_leaves_out_never_change_a_decision(n, k, classes, data):
    pm = _sym_maps(n, k, classes, data)
    if data.draw(st.booleans()):  # mostly one label, so that some images keep every single mask right
        pm = torch.where(torch.rand(pm.shape) < 0.9, pm.flatten(1)[:, :1, None], pm)
        pm = torch.where(torch.triu(torch.ones(k, k, dtype=torch.bool)), pm, pm.transpose(1, 2))
    labels = torch.tensor(data.draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)))
    rows, full = pc_needed(pm.diagonal(dim1=1, dim2=2), labels, classes)
    keep = rows[:, :, None] | rows[:, None, :] | full[:, None, None] | torch.eye(k, dtype=torch.bool)
    partial = torch.where(keep, pm, torch.full_like(pm, UNKNOWN))
    assert pc_certify(partial, labels).tolist() == pc_certify(pm, labels).tolist()
    assert pc_infer(partial, classes).tolist() == pc_infer(pm, classes).tolist()


@pytest.mark.parametrize("first_round", [1, 5, 1000])
def test_the_decision_map_decides_as_the_full_map_with_fewer_passes(first_round):
    model = small_cnn(classes=3, seed=4)
    x = torch.rand(12, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    masks = mask_set(32, 5, k=3)
    full, per_image = pc_prediction_map(model, x, masks, batch_size=11)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:3] = (y[:3] + 1) % 3  # some images mislabelled: never certified
    dm, passes = pc_decision_map(model, x, y, masks, batch_size=11, num_classes=3, first_round=first_round)
    assert torch.equal(pc_certify(dm, y), pc_certify(full, y)) and torch.equal(pc_infer(dm, 3), pc_infer(full, 3))
    known = dm != UNKNOWN
    assert torch.equal(dm[known], full[known]) and torch.equal(dm, dm.transpose(1, 2))
    assert pc_certify(full, y).any() and not pc_certify(full, y).all()  # both kinds of image are in the test
    assert len(x) * len(masks) <= passes < len(x) * per_image
    assert passes == int(known.triu().sum())  # one forward pass per evaluated entry, none twice


@settings(max_examples=80, deadline=None)
@given(n=st.integers(2, 40), data=st.data())
def test_the_mask_set_covers_every_patch_location(n, data):
    p = data.draw(st.integers(1, n))
    k = data.draw(st.integers(1, 8))
    starts, side, stride = mask_positions(n, p, k)
    assert len(starts) <= k and all(0 <= s <= n - side for s in starts) and side <= n
    for i in range(n - p + 1):  # every 1-D window lies inside some mask interval
        assert any(s <= i and i + p <= s + side for s in starts)
    if n <= 24:  # and in 2-D: every p x p window lies inside some mask
        masks = mask_set(n, p, k).float()
        inside = F.avg_pool2d(masks[:, None], p, stride=1)[:, 0] > 1 - 1e-6  # (K, n-p+1, n-p+1)
        assert inside.any(0).all()


def test_the_prediction_map_matches_masking_one_pair_at_a_time():
    model = small_cnn()
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    masks = mask_set(32, 7, k=3)
    pm, passes = pc_prediction_map(model, x, masks, batch_size=7)  # chunks cut across images
    assert passes == 9 * 10 // 2 and pm.shape == (3, 9, 9)
    with torch.no_grad():
        for i, j in [(0, 0), (2, 7), (8, 8), (5, 1)]:
            xm = torch.where(masks[i] | masks[j], torch.tensor(0.5), x)
            assert pm[:, i, j].tolist() == model(xm).argmax(1).tolist()
    singles = masked_predictions(model, x, masks, batch_size=5)
    assert torch.equal(singles, pm.diagonal(dim1=1, dim2=2))


def test_certified_predictions_survive_every_patch_at_every_location():
    """Soundness: a patch of the certified size anywhere, extreme or random pixels, never moves the robust decision."""
    size, side = 12, 3
    model = local_net(size, seed=2)
    x = smooth_images(16, size, seed=2)
    masks = mask_set(size, side, k=3)
    pm, _ = pc_prediction_map(model, x, masks)
    robust = pc_infer(pm)
    certified = pc_certify(pm, robust).nonzero().flatten()[:2]
    assert len(certified) > 0
    flipped_plain = False
    for i in certified.tolist():
        patched = all_patched(x[i], side, random_per_location=1, seed=i)
        pm_adv, _ = pc_prediction_map(model, patched, masks)
        assert (pc_infer(pm_adv) == robust[i]).all()
        with torch.no_grad():
            flipped_plain |= bool((model(patched).argmax(1) != model(x[i : i + 1]).argmax(1)).any())
    assert flipped_plain  # the undefended model does fall for some of these patches


@pytest.mark.parametrize(("n", "p", "k"), [(32, 0, 6), (32, 33, 6), (32, 7, 0)])
def test_impossible_mask_sets_are_user_errors(n, p, k):
    with pytest.raises(PatchscopeError):
        mask_positions(n, p, k)


def test_bf16_prediction_map_agrees_with_fp32_away_from_ties():
    """bf16 autocast on channels-last input may flip only near-ties: where fp32's top-2 margin is wide, maps agree."""
    model = small_cnn(classes=4, seed=3)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    masks = mask_set(32, 5, k=3)
    pm32, passes = pc_prediction_map(model, x, masks, batch_size=16)
    pm16, passes16 = pc_prediction_map(model, x, masks, batch_size=16, bf16=True)
    assert passes == passes16 and pm16.shape == pm32.shape and pm16.dtype == torch.long
    assert torch.equal(pm16, pm16.transpose(1, 2))
    union = torch.stack([masks[i] | masks[j] for i in range(len(masks)) for j in range(len(masks))])
    with torch.no_grad():
        logits = model(torch.where(union[None, :, None], torch.tensor(0.5), x[:, None]).flatten(0, 1))
    top2 = logits.topk(2, dim=1).values
    wide = ((top2[:, 0] - top2[:, 1]) > 0.05 * logits.abs().max()).view(pm32.shape)  # far beyond bf16's ~0.4% rounding
    assert wide.any()
    assert torch.equal(pm16[wide], pm32[wide])


def test_bf16_near_ties_are_redone_in_float32():
    model = small_cnn(classes=4, seed=3)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    masks = mask_set(32, 5, k=3)
    rows = torch.arange(4 * len(masks))
    args = (model, x, masks, rows // len(masks), rows % len(masks), (rows + 1) % len(masks), 8)
    with torch.inference_mode():
        p32 = predict_masked(*args)
        assert torch.equal(
            predict_masked(*args, bf16=True, recheck=10.0), p32
        )  # every gap is "near": all redone in fp32
        raw, checked = predict_masked(*args, bf16=True, recheck=0.0), predict_masked(*args, bf16=True)
    assert torch.equal(
        checked[checked != raw], p32[checked != raw]
    )  # what the recheck changed, it changed to fp32's answer
