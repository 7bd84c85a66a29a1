"""MAE pretraining: token bookkeeping, a loss that only counts hidden tokens, and the CLI route."""

from __future__ import annotations

import json

import torch

from patchscope.models.archs import ViT
from patchscope.models.ssl import MaeRecipe, MaskedAutoencoder, patchify, pretrain_mae, random_keep
from tests.conftest import run_cli


def test_patchify_matches_the_encoders_token_order():
    x = torch.rand(2, 3, 32, 32)
    tokens = patchify(x, 4)
    assert tokens.shape == (2, 64, 48)
    # token 9 is row 1, column 1 of the 8x8 grid
    assert torch.equal(tokens[:, 9].view(2, 4, 4, 3).permute(0, 3, 1, 2), x[:, :, 4:8, 4:8])


def test_keep_indices_are_distinct_per_image():
    keep = random_keep(8, 64, 16, torch.Generator().manual_seed(0))
    assert keep.shape == (8, 16)
    assert all(len(set(row.tolist())) == 16 for row in keep)
    assert not torch.equal(keep[0].sort().values, keep[1].sort().values)


def test_hidden_tokens_are_reconstructed_from_the_mask_token():
    torch.manual_seed(0)
    mae = MaskedAutoencoder(ViT(dim=32, depth=1, heads=2), decoder_dim=16, decoder_depth=1)
    x = torch.rand(2, 3, 32, 32)
    keep = random_keep(2, 64, 16, torch.Generator().manual_seed(0))
    loss = mae(x, keep)
    loss.backward()
    assert loss > 0 and torch.isfinite(loss)
    for p in (mae.mask_token, mae.to_pixels.weight, mae.encoder.embed.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    # the encoder never sees hidden pixels: changing them leaves the encoder's input tokens unchanged
    hidden = torch.ones(2, 64, dtype=torch.bool).scatter_(1, keep, False)
    y = x.clone()
    y_tokens = patchify(y, 4)
    y_tokens[hidden] = 0.0
    y = y_tokens.view(2, 8, 8, 4, 4, 3).permute(0, 5, 1, 3, 2, 4).reshape(2, 3, 32, 32)
    with torch.no_grad():
        enc = mae.encoder

        def seen(z: torch.Tensor) -> torch.Tensor:
            return torch.gather(enc.embed(z).flatten(2).transpose(1, 2), 1, keep.unsqueeze(-1).expand(-1, -1, 32))

        assert torch.allclose(seen(x), seen(y))


def test_pretraining_lowers_the_reconstruction_loss(demo):
    net = ViT(dim=32, depth=2, heads=2)
    card = pretrain_mae(
        demo.head(256),
        net,
        [0.5] * 3,
        [0.25] * 3,
        MaeRecipe(epochs=6, batch_size=64, lr=3e-3, decoder_dim=32, decoder_depth=1),
        progress=False,
    )
    losses = [h["loss"] for h in card["history"]]
    assert losses[-1] < losses[0]
    assert card["method"] == "mae" and card["images"] == 256


def test_cli_mae_then_fine_tune_writes_both_into_the_card(tmp_path):
    r = run_cli(
        "train",
        "--arch",
        "vit",
        "--arch-kwargs",
        '{"dim": 32, "depth": 1, "heads": 2}',
        "--ssl",
        "mae",
        "--ssl-epochs",
        "1",
        "--data",
        "demo",
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
        "--name",
        "v",
    )
    assert r.returncode == 0, r.stderr
    card = json.loads((tmp_path / "v.json").read_text())
    assert card["pretraining"]["method"] == "mae" and card["arch"] == "vit"
    bad = run_cli("train", "--arch", "cnn", "--ssl", "mae", "--data", "demo", "--out", str(tmp_path / "y"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
