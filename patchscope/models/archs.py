"""The zoo's three architectures for 32x32 inputs, each a sequence of named stages for hooks.

Every network takes *normalised* input; :class:`patchscope.models.Classifier` does the normalising.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from patchscope.registry import Registry

#: the architectures (``--arch NAME`` and a model card's ``arch``); their options are a card's ``arch_kwargs``
ARCHS = Registry("arch", reserved=("self", "num_classes"))

N = TypeVar("N", bound=Callable[..., nn.Module])


def register_arch(name: str) -> Callable[[N], N]:
    """Decorator: make a network constructor available as ``--arch NAME`` and in model cards."""
    return ARCHS.register(name)


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


@register_arch("cnn")
def cnn(num_classes: int = 43, width: int = 32, hidden: int = 256, dropout: float = 0.3) -> nn.Sequential:
    """A VGG-style CNN: three stages of two 3x3 convolutions, max-pooling between, and an MLP head.

    The last stage ends in a 4x4 average pool, the identity at 32 px, so the same network (and head) takes
    larger images (64 px: 8x8 features pooled to 4x4).

    Args:
        num_classes: outputs of the head.
        width: channels of the first stage (the others: 2x and 4x).
        hidden: units of the head's hidden layer.
        dropout: dropout before each layer of the head.
    """
    w = width
    return nn.Sequential(
        _stage_seq(3, w),
        _stage_seq(w, 2 * w),
        nn.Sequential(*_stage_seq(2 * w, 4 * w), nn.AdaptiveAvgPool2d(4)),
        nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(4 * w * 16, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        ),
    )


def _stage_seq(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(_conv_bn(cin, cout), _conv_bn(cout, cout), nn.MaxPool2d(2))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(cin, cout, stride), nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        )
        self.short = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.short(x))


@register_arch("resnet")
def resnet(num_classes: int = 43, widths: tuple[int, ...] = (32, 64, 128, 256), blocks: int = 2) -> nn.Sequential:
    """A ResNet-18-shaped network for 32x32 input (BasicBlocks, ``blocks`` per stage).

    Args:
        num_classes: outputs of the head.
        widths: channels of each stage (each after the first halves the resolution).
        blocks: BasicBlocks per stage.
    """
    layers: list[nn.Module] = [_conv_bn(3, widths[0])]
    cin = widths[0]
    for i, w in enumerate(widths):
        layers.append(
            nn.Sequential(*[BasicBlock(cin if b == 0 else w, w, 2 if (b == 0 and i > 0) else 1) for b in range(blocks)])
        )
        cin = w
    layers.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)))
    return nn.Sequential(*layers)


class Block(nn.Module):
    """A pre-norm transformer block; ``last_attention`` holds the attention map when ``keep_attention``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))
        self.keep_attention = False
        self.last_attention: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if self.keep_attention:
            attn = (q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5).softmax(-1)
            self.last_attention = attn
            out = attn @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(out.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


@register_arch("vit")
class ViT(nn.Module):
    """A small Vision Transformer: square tokens, a class token, learned positions (the zoo's: patch 4, dim 192,
    depth 7).

    Args:
        num_classes: outputs of the head.
        image_size: the input side in px (a multiple of ``patch``).
        patch: the token side in px.
        dim: the token width.
        depth: transformer blocks.
        heads: attention heads per block (a divisor of ``dim``).
        mlp_ratio: the blocks' MLP width over ``dim``.
    """

    def __init__(
        self,
        num_classes: int = 43,
        image_size: int = 32,
        patch: int = 4,
        dim: int = 192,
        depth: int = 7,
        heads: int = 3,
        mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__()
        self.patch, self.grid = patch, image_size // patch
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, self.grid**2 + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], 1) + self.pos
        for blk in self.blocks:
            t = blk(t)
        return self.head(self.norm(t[:, 0]))


#: the ``vit`` architecture's constructor, named as ``cnn`` and ``resnet`` are
vit = ViT
