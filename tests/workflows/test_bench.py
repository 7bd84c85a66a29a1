"""`run_bench` on the bundled demo data with a zoo model and the quick profile (or a smaller one, for the slow paths):
the card follows its schema, the accuracies are ordered, a seed gives the same results, the cascade is at least as
strong as each of its attacks, and bad input is refused before any work."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from patchscope.data import load_data
from patchscope.errors import PatchscopeError
from patchscope.models import create_model
from patchscope.workflows.bench import bench_share, is_randomized, make_subject, pasted, run_bench
from patchscope.workflows.bench_card import RobustnessCard, ShareResult, validate_card
from patchscope.workflows.bench_checks import SelfCheckFailed, check_certified, masking_flag, monotone_flags
from patchscope.workflows.bench_protocol import CASCADE, SHARES, profile, select_images, share_side

SHARES_TESTED = (0.02, 0.05)


@pytest.fixture(scope="module")
def demo():
    return load_data("demo")


@pytest.fixture(scope="module")
def cnn():
    return create_model("gtsrb-cnn")


@pytest.fixture(scope="module")
def card(cnn, demo) -> RobustnessCard:
    return run_bench(cnn, demo, model_name="gtsrb-cnn", data_spec="demo", shares=SHARES_TESTED, seed=3)


def test_the_card_follows_its_schema_and_names_what_was_measured(card, cnn, demo):
    validate_card(card.as_dict())
    assert card.protocol.version == "v1" and card.protocol.profile == "quick" and card.protocol.seed == 3
    assert card.model.weights and card.model.classes == len(cnn.classes) and card.model.defense is None
    assert card.data.images == profile("quick").images
    assert [r.share for r in card.results.shares] == list(SHARES_TESTED)
    assert "--seed 3" in card.reproduce and "--shares 0.02,0.05" in card.reproduce


def test_the_seeded_setting_is_measured_where_the_data_has_it(card, cnn, demo):
    seeded = card.results.seeded
    assert seeded is not None and (seeded.setting, seeded.source, seeded.target) == ("gtsrb-stop-to-yield", 14, 13)
    assert [r.share for r in seeded.shares] == list(SHARES_TESTED)
    for r in seeded.shares:
        assert r.robust_count <= r.clean_count <= r.images == profile("quick").images
    assert card.data.hash != select_images(demo, 16).data_hash()  # the hash covers the seeded images too
    plain = run_bench(cnn, demo.subset(demo.labels != 14), model_name="gtsrb-cnn", shares=(0.1,))
    assert plain.results.seeded is None  # no stop sign in the data: no seeded setting


def test_robust_is_at_most_clean_and_falls_with_the_share(card):
    for r in card.results.shares:
        assert r.robust_count <= r.clean_count <= r.images and r.certified is None
        assert r.robust_count == r.clean_count - sum(a.broken for a in r.attacks)
        assert [a.name for a in r.attacks] == list(CASCADE)
        assert all(a.broken <= a.attacked for a in r.attacks)
        assert r.side == share_side(r.share, 32) and r.area == r.side**2 / 32**2
    small, large = card.results.shares
    assert large.robust <= small.robust or any(f.code == "robust-rises-with-share" for f in card.results.flags)


def test_the_same_seed_gives_the_same_results(card, cnn, demo):
    again = run_bench(cnn, demo, model_name="gtsrb-cnn", data_spec="demo", shares=SHARES_TESTED, seed=3)
    first, second = card.as_dict(), again.as_dict()
    assert first["results"] == second["results"]
    assert {k: v for k, v in first.items() if k != "run"} == {k: v for k, v in second.items() if k != "run"}


def _tiny(images: int = 8, queries: int = 10):
    return replace(profile("quick"), images=images, sparse_rs_queries=queries)


def test_the_cascade_is_at_least_as_strong_as_each_of_its_attacks(cnn, demo):
    prof = _tiny(images=8)
    picked = select_images(demo, prof.images)
    x, y = picked.float_images(), picked.labels
    subject = make_subject(cnn, demo, None, None, {}, "cpu")
    both, _ = bench_share(subject, x, y, 0.02, prof, 0, "cpu")
    for name in CASCADE:
        alone, _ = bench_share(subject, x, y, 0.02, prof, 0, "cpu", attacks=(name,))
        assert both.robust_count <= alone.robust_count, name
    assert both.robust_count < both.clean_count  # the cascade broke something: the comparison is not vacuous


def test_under_a_certifier_certified_is_at_most_robust_at_most_clean(demo):
    model = create_model("gtsrb-cnn-ds")
    prof = _tiny(images=4, queries=4)
    picked = select_images(demo, prof.images)
    subject = make_subject(model, demo, None, "ds-column", {}, "cpu")
    result, _ = bench_share(subject, picked.float_images(), picked.labels, 0.02, prof, 0, "cpu")
    assert result.certified is not None and result.certified_count is not None
    assert result.certified <= result.robust <= result.clean
    assert result.certified_count > 0  # the check is not vacuous
    assert [a.through for a in result.attacks] == ["surrogate", "surrogate", "model"]


def test_a_randomised_defense_is_found_and_attacked_through_its_draws(cnn, demo):
    prof = _tiny(images=4, queries=4)
    picked = select_images(demo, prof.images)
    x, y = picked.float_images(), picked.labels
    subject = make_subject(cnn, demo, "gaussian-noise", None, {"sigma": 0.2}, "cpu")
    assert is_randomized(subject.defended, x, 0) and not is_randomized(cnn, x, 0)
    subject.randomized = True
    result, _ = bench_share(subject, x, y, 0.05, prof, 0, "cpu")
    per_image = result.attacks[0]
    assert per_image.queries == per_image.attacked * prof.eot_views * 15  # 2 places x 3 search steps + 2 + 7
    assert result.robust_count <= result.clean_count


def test_a_bpda_defense_is_attacked_through_straight_through_gradients(cnn, demo):
    prof = _tiny(images=4, queries=4)
    picked = select_images(demo, prof.images)
    subject = make_subject(cnn, demo, "median", None, {}, "cpu")
    result, _ = bench_share(subject, picked.float_images(), picked.labels, 0.05, prof, 0, "cpu")
    assert subject.bpda and [a.through for a in result.attacks] == ["bpda", "bpda", "model"]


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        ({"defense": "no-such"}, "unknown defense"),
        ({"certifier": "no-such"}, "unknown certifier"),
        ({"profile_name": "slow"}, "unknown profile"),
        ({"shares": (0.0001,)}, "no patch on a 32px image"),
        ({"shares": (1.5,)}, "0 < share < 1"),
        ({"defense": "median", "certifier": "ds-column"}, "not both"),
    ],
)
def test_bad_input_is_refused_in_one_line(cnn, demo, given, needle):
    with pytest.raises(PatchscopeError, match=needle) as e:
        run_bench(cnn, demo, model_name="gtsrb-cnn", **given)
    assert "\n" not in str(e.value)


def test_a_share_no_patch_can_have_is_refused():
    assert share_side(0.01, 32) == 3 and [share_side(s, 224) for s in SHARES] == [22, 32, 50, 71]
    with pytest.raises(PatchscopeError, match="no patch on a 8px image"):
        share_side(0.001, 8)  # sqrt(0.064) px rounds to 0


def test_a_certified_image_that_is_broken_fails_the_run():
    certified = torch.tensor([True, True, False, False])
    check_certified(certified, torch.tensor([False, False, True, True]), 0.05)  # only uncertified ones broken
    check_certified(None, torch.ones(4, dtype=torch.bool), 0.05)  # no certifier: nothing to check
    with pytest.raises(SelfCheckFailed, match=r"1 certified image\(s\) broken .*image 1"):
        check_certified(certified, torch.tensor([False, True, True, False]), 0.05)


def test_black_box_breaking_what_white_box_could_not_is_flagged():
    white = torch.tensor([True, False, False])
    assert masking_flag({"per-image": white, "sparse-rs": torch.tensor([True, False, False])}, 0.02) is None
    universal = torch.tensor([False, True, False])
    flag = masking_flag(
        {"per-image": white, "universal": universal, "sparse-rs": torch.ones(3, dtype=torch.bool)}, 0.02
    )
    assert flag is not None and flag.code == "gradient-masking" and flag.share == 0.02 and "1 image" in flag.message
    assert (
        masking_flag({"per-image": white, "universal": ~white, "sparse-rs": torch.ones(3, dtype=torch.bool)}, 0.02)
        is None
    )
    assert masking_flag({"per-image": white, "sparse-rs": torch.tensor([0, 0, 1]).bool()}, 0.1) is not None


def test_robust_accuracy_rising_with_the_share_is_flagged():
    rows = [ShareResult(s, 1, s, 4, 1.0, r, None, 4, int(r * 4), None, ()) for s, r in ((0.01, 0.5), (0.02, 0.25))]
    assert monotone_flags(rows) == []
    rows.append(ShareResult(0.05, 2, 0.05, 4, 1.0, 0.75, None, 4, 3, None, ()))
    assert [(f.code, f.share) for f in monotone_flags(rows)] == [("robust-rises-with-share", 0.05)]


def test_a_patch_is_pasted_where_it_says(cnn, demo):
    from patchscope.attacks import Patch

    x = torch.zeros(2, 3, 32, 32)
    patch = Patch(torch.ones(3, 4, 4), torch.ones(4, 4), "on-object", (5, 9), 32)
    out = pasted(x, patch)
    assert out[:, :, 5:9, 9:13].eq(1).all() and out.sum() == 2 * 3 * 16
