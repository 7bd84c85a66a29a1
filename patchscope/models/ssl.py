"""Self-supervised pretraining of the zoo ViT: masked autoencoding (He et al. 2022, MAE).

Why MAE and not DINO at 32x32: MAE's encoder sees only the visible quarter of the 64 tokens, so a
pretraining step costs about a third of a supervised one; it needs one network, no teacher, no
multi-crop (DINO's local crops of a 32 px sign are a few pixels wide) and no large batches; and it
is known to train well from scratch on small data sets. The decoder is dropped after pretraining;
:func:`patchscope.models.train.train_model` then fine-tunes the encoder (``initial=``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import kornia.augmentation as K
import torch
from torch import nn

from patchscope.data import ImageSet
from patchscope.errors import PatchscopeError
from patchscope.models.archs import Block, ViT
from patchscope.progress import progress_bar


@dataclass
class MaeRecipe:
    """The pretraining settings, stored in the fine-tuned model's card under ``pretraining``."""

    epochs: int = 8
    batch_size: int = 256
    lr: float = 1.5e-3
    weight_decay: float = 0.05
    mask_ratio: float = 0.75
    decoder_dim: int = 96
    decoder_depth: int = 2
    seed: int = 0


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(N,C,H,W) -> (N, H*W/p^2, p*p*C): the pixels of each token, in the encoder's token order.

    >>> patchify(torch.rand(2, 3, 32, 32), 4).shape
    torch.Size([2, 64, 48])
    """
    n, c, h, w = x.shape
    return x.view(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(n, (h // p) * (w // p), p * p * c)


def random_keep(
    n: int, tokens: int, keep: int, generator: torch.Generator | None = None, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """(N, keep) indices of the visible tokens, a fresh random subset per image (sorted noise, batched)."""
    return torch.rand(n, tokens, generator=generator).to(device).argsort(1)[:, :keep]


class MaskedAutoencoder(nn.Module):
    """MAE around a :class:`ViT`: ``loss = mae(x_normalised, keep)`` with ``keep`` from :func:`random_keep`.

    >>> from patchscope.models.archs import ViT
    >>> mae = MaskedAutoencoder(ViT(dim=32, depth=1, heads=2), decoder_dim=16, decoder_depth=1)
    >>> x = torch.rand(2, 3, 32, 32)
    >>> float(mae(x, random_keep(2, 64, 16)).detach()) > 0
    True
    """

    def __init__(self, encoder: ViT, decoder_dim: int = 96, decoder_depth: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.encoder = encoder
        dim, tokens = encoder.pos.shape[-1], encoder.grid**2
        self.to_decoder = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos = nn.Parameter(torch.randn(1, tokens + 1, decoder_dim) * 0.02)
        self.decoder = nn.ModuleList(Block(decoder_dim, heads, 2.0) for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.to_pixels = nn.Linear(decoder_dim, encoder.patch**2 * 3)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        enc, n = self.encoder, len(x)
        t = enc.embed(x).flatten(2).transpose(1, 2) + enc.pos[:, 1:]
        d = t.shape[-1]
        t = torch.gather(t, 1, keep.unsqueeze(-1).expand(-1, -1, d))
        t = torch.cat([(enc.cls + enc.pos[:, :1]).expand(n, -1, -1), t], 1)
        for blk in enc.blocks:
            t = blk(t)
        z = self.to_decoder(enc.norm(t))
        tokens = enc.grid**2
        full = self.mask_token.expand(n, tokens, -1).clone()
        full.scatter_(1, keep.unsqueeze(-1).expand(-1, -1, z.shape[-1]), z[:, 1:])
        u = torch.cat([z[:, :1], full], 1) + self.decoder_pos
        for blk in self.decoder:
            u = blk(u)
        pred = self.to_pixels(self.decoder_norm(u[:, 1:]))
        target = patchify(x, enc.patch)
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        hidden = torch.ones(n, tokens, device=x.device).scatter_(1, keep, 0.0)
        return ((pred - target).pow(2).mean(-1) * hidden).sum() / hidden.sum()


def pretrain_mae(
    data: ImageSet,
    encoder: ViT,
    mean: list[float],
    std: list[float],
    recipe: MaeRecipe,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Pretrain ``encoder`` in place on ``data``'s images (labels unused); returns the pretraining card.

    Images are normalised with ``mean``/``std`` (the classifier's own), lightly augmented (affine,
    colour jitter) and 75% of their tokens hidden.
    """
    if not isinstance(encoder, ViT):
        raise PatchscopeError("MAE pretraining needs the zoo ViT (arch vit)", params=("arch",))
    torch.manual_seed(recipe.seed)
    g = torch.Generator().manual_seed(recipe.seed)
    mae = MaskedAutoencoder(encoder, recipe.decoder_dim, recipe.decoder_depth).to(device)
    augment = K.AugmentationSequential(
        K.RandomAffine(10.0, (0.1, 0.1), (0.9, 1.1), p=1.0), K.ColorJiggle(0.2, 0.2, 0.2, p=0.5)
    ).to(device)
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)
    steps = math.ceil(len(data) / recipe.batch_size)
    opt = torch.optim.AdamW(mae.parameters(), lr=recipe.lr, betas=(0.9, 0.95), weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=recipe.lr, total_steps=max(steps * recipe.epochs, 1), pct_start=0.1
    )
    keep = max(1, round(encoder.grid**2 * (1 - recipe.mask_ratio)))
    history: list[dict[str, float | None]] = []
    start = time.time()
    mae.train()
    with progress_bar(recipe.epochs * steps, "pretrain MAE", progress) as update:
        for epoch in range(recipe.epochs):
            order, total = torch.randperm(len(data), generator=g), torch.zeros((), device=device)
            for i in range(steps):
                idx = order[i * recipe.batch_size : (i + 1) * recipe.batch_size]
                x = (augment(data.images[idx].to(device).float().div_(255)).clamp_(0, 1) - m) / s
                loss = mae(x, random_keep(len(x), encoder.grid**2, keep, g, device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.detach()
                if i % 20 == 0:
                    update(advance=min(20, steps - i), epoch=epoch + 1, loss=float(loss.detach()))
            history.append({"epoch": epoch + 1, "loss": float(total) / steps})
    return {
        "method": "mae",
        **asdict(recipe),
        "data": data.name,
        "data_hash": data.data_hash(),
        "images": len(data),
        "history": history,
        "seconds": round(time.time() - start, 1),
    }
