"""Adversarial patch training: patches stay inside their squares, raise the loss, and fine-tuning records them."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from patchscope.defenses.patch_training import AblationAugment, MaskAugment, PatchAdversary, random_square_masks
from patchscope.models.train import Recipe, train_model
from tests.conftest import run_cli


def test_masks_are_one_square_of_the_right_side_inside_the_image():
    g = torch.Generator().manual_seed(0)
    m = random_square_masks(64, 7, 32, g)
    assert m.shape == (64, 1, 32, 32)
    assert (m.sum((1, 2, 3)) == 49).all()
    rows, cols = m.any(3).squeeze(1), m.any(2).squeeze(1)
    assert (rows.sum(1) == 7).all() and (cols.sum(1) == 7).all()


def test_adversary_changes_only_patch_pixels_of_the_chosen_share_and_raises_the_loss(tiny_model, demo):
    x, y = demo.float_images()[:32], demo.labels[:32]
    adv = PatchAdversary(area=0.05, steps=5, fraction=0.5)
    g = torch.Generator().manual_seed(1)
    xa = adv(tiny_model, x, y, g)
    changed = (xa != x).any(1)
    assert not changed[16:].any(), "the clean half must stay clean"
    assert (changed[:16].sum((1, 2)) <= 49).all() and changed[:16].any()
    assert xa.min() >= 0 and xa.max() <= 1
    assert not tiny_model.training
    with torch.no_grad():
        clean = F.cross_entropy(tiny_model(x[:16]), y[:16])
        attacked = F.cross_entropy(tiny_model(xa[:16]), y[:16])
        noise = adv.__class__(area=0.05, steps=0)(tiny_model, x, y, g)
    assert attacked > clean
    assert torch.equal(noise, x)


def test_fine_tuning_with_patches_keeps_normalisation_and_records_the_adversary(tiny_model, demo):
    small = demo.head(128)
    adv = PatchAdversary(area=0.05, steps=2)
    recipe = Recipe.for_arch(
        "cnn",
        epochs=1,
        batch_size=64,
        lr=0.01,
        arch_kwargs=tiny_model.card["arch_kwargs"],
        patch_training=adv.describe(),
        init="tiny",
    )
    model, card = train_model(small, recipe, progress=False, initial=tiny_model, perturb=adv)
    assert torch.equal(model.mean, tiny_model.mean) and torch.equal(model.std, tiny_model.std)
    assert card["recipe"]["patch_training"]["area"] == 0.05 and card["recipe"]["init"] == "tiny"
    assert any(
        not torch.equal(a, b) for a, b in zip(model.net.state_dict().values(), tiny_model.net.state_dict().values())
    )


def test_cli_patch_training_from_a_checkpoint(tmp_path, tiny_model_path):
    r = run_cli(
        "train",
        "--init",
        str(tiny_model_path),
        "--data",
        "demo",
        "--epochs",
        "1",
        "--patch-training",
        "0.05",
        "--patch-steps",
        "1",
        "--out",
        str(tmp_path),
        "--name",
        "tiny-at",
    )
    assert r.returncode == 0, r.stderr
    card = json.loads((tmp_path / "tiny-at.json").read_text())
    assert card["arch"] == "cnn" and card["recipe"]["patch_training"]["steps"] == 1
    bad = run_cli(
        "train",
        "--init",
        str(tiny_model_path),
        "--data",
        "demo",
        "--patch-training",
        "1.5",
        "--out",
        str(tmp_path / "x"),
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_mask_augment_greys_out_a_union_of_two_patchcleanser_masks():
    from patchscope.defenses.patchcleanser import FILL, mask_set

    aug = MaskAugment(areas=(0.024, 0.048), p=0.75)
    masks = torch.cat([mask_set(32, 5), mask_set(32, 7)])
    assert torch.equal(aug.masks, masks)
    x = torch.rand(400, 3, 32, 32) * 0.4  # never FILL by chance
    out = aug(None, x, torch.zeros(400, dtype=torch.long), torch.Generator().manual_seed(0))
    grey = (out == FILL).all(1)
    changed = (out != x).any(1)
    assert torch.equal(grey, changed), "pixels change only by becoming grey"
    hit = grey.flatten(1).any(1)
    assert 0.65 < hit.float().mean() < 0.85
    unions = masks[:, None] | masks[None]
    for g in grey[hit][:20]:
        assert (unions == g).flatten(2).all(-1).any(), "each covered region is one pair of masks"


@pytest.mark.parametrize("second", [("--mask-training", "0.024"), ("--ablation-training", "column:4")])
def test_cli_rejects_two_recipes_at_once(tmp_path, tiny_model_path, second):
    r = run_cli(
        "train",
        "--init",
        str(tiny_model_path),
        "--data",
        "demo",
        "--patch-training",
        "0.05",
        *second,
        "--out",
        str(tmp_path / "m"),
    )
    assert r.returncode == 2 and "pick one" in r.stderr and not (tmp_path / "m").exists()


def test_mask_augment_tries_picks_the_pair_the_model_likes_least():
    from patchscope.defenses.patchcleanser import FILL

    class FearsTheTop(torch.nn.Module):  # the more grey in the top 8 rows, the lower the true class's logit
        def forward(self, x):
            grey = (x == FILL).all(1)[:, :8].flatten(1).sum(1).float()
            return torch.stack([-grey, torch.zeros_like(grey)], 1)

    x = torch.rand(200, 3, 32, 32) * 0.4
    y = torch.zeros(200, dtype=torch.long)
    top = {}
    for tries in (1, 16):
        out = MaskAugment(areas=(0.024,), p=1.0, tries=tries)(FearsTheTop(), x, y, torch.Generator().manual_seed(0))
        grey = (out == FILL).all(1)
        assert torch.equal(grey, (out != x).any(1)), "pixels change only by becoming grey"
        top[tries] = grey[:, :8].flatten(1).sum(1).float()
    assert top[16].mean() > 2 * top[1].mean()
    assert (top[16] > 0).all(), "16 tries always find a pair reaching the top rows"


def test_cli_rejects_zero_mask_tries(tmp_path, tiny_model_path):
    r = run_cli(
        "train",
        "--init",
        str(tiny_model_path),
        "--data",
        "demo",
        "--mask-training",
        "0.024",
        "--mask-tries",
        "0",
        "--out",
        str(tmp_path / "m"),
    )
    assert (
        r.returncode == 2
        and "--mask-tries" in r.stderr
        and len(r.stderr.strip().splitlines()) == 1
        and not (tmp_path / "m").exists()
    )


@pytest.mark.parametrize(("mode", "band"), [("column", 4), ("block", 12)])
def test_ablation_augment_keeps_exactly_one_smoothing_region(mode, band):
    from patchscope.defenses import FILL, ablation_set

    x = torch.rand(64, 3, 32, 32) * 0.4  # never FILL by chance
    out = AblationAugment(band, mode)(None, x, torch.zeros(64, dtype=torch.long), torch.Generator().manual_seed(0))
    kept = (out != FILL).all(1)
    assert torch.equal(kept, ~(out != x).any(1)), "pixels either stay as they were or turn grey"
    regions = ablation_set(32, band, mode)
    assert (regions[None] == kept[:, None]).flatten(2).all(-1).any(1).all(), (
        "what stays is one of the ablations that certification votes over"
    )
    assert len({tuple(k.flatten().nonzero().flatten()[:3].tolist()) for k in kept}) > 10, (
        "the ablation is drawn per image"
    )


def test_ablation_augment_with_p_zero_is_the_identity():
    x = torch.rand(8, 3, 32, 32)
    assert torch.equal(AblationAugment(4, "column", p=0.0)(None, x, torch.zeros(8, dtype=torch.long)), x)


def test_cli_ablation_training_records_its_recipe(tmp_path, tiny_model_path):
    r = run_cli(
        "train",
        "--init",
        str(tiny_model_path),
        "--data",
        "demo",
        "--epochs",
        "1",
        "--ablation-training",
        "block:12",
        "--out",
        str(tmp_path),
        "--name",
        "tiny-ds",
    )
    assert r.returncode == 0, r.stderr
    recipe = json.loads((tmp_path / "tiny-ds.json").read_text())["recipe"]["patch_training"]
    assert recipe == {"method": "derandomized-smoothing-ablations", "mode": "block", "band": 12, "p": 1.0}


@pytest.mark.parametrize("spec", ["row:4", "column:0", "column:x", "block:33"])
def test_cli_rejects_a_bad_ablation_spec_in_one_line(tmp_path, tiny_model_path, spec):
    r = run_cli(
        "train",
        "--init",
        str(tiny_model_path),
        "--data",
        "demo",
        "--ablation-training",
        spec,
        "--out",
        str(tmp_path / "m"),
    )
    assert (
        r.returncode == 2
        and "--ablation-training" in r.stderr
        and len(r.stderr.strip().splitlines()) == 1
        and not (tmp_path / "m").exists()
    )
