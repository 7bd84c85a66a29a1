"""`Classifier`: any network behind one contract: float images in [0,1], NCHW, in; logits out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from patchscope.data.preprocess import Preprocess


class Classifier(nn.Module):
    """Normalises ``x`` in [0,1] with ``mean``/``std`` and runs ``net``; carries names and card.

    >>> from patchscope.models.archs import cnn
    >>> m = Classifier(cnn(num_classes=2), ["a", "b"], input_size=32)
    >>> m(torch.rand(5, 3, 32, 32)).shape
    torch.Size([5, 2])
    """

    mean: torch.Tensor  # (1, C, 1, 1) buffers
    std: torch.Tensor

    def __init__(
        self,
        net: nn.Module,
        classes: Sequence[str],
        input_size: int = 32,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        name: str = "model",
        card: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.classes = tuple(classes)
        self.input_size = int(input_size)
        self.name = name
        self.card = dict(card or {})
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)

    @property
    def preprocess(self) -> Preprocess:
        """How to prepare an image for this model: the card's resize and centre crop, else a square resize to
        ``input_size``."""
        return Preprocess.from_card(self.card, self.input_size)

    @property
    def wnids(self) -> list[str] | None:
        """The classes' WordNet ids when the card names them (timm's ImageNet models); None otherwise."""
        ids = self.card.get("wnids")
        return list(ids) if ids else None

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def stages(self) -> list[tuple[str, nn.Module]]:
        """The modules whose outputs explain and defenses hook: transformer blocks (``block0`` ...; the zoo's ViT,
        timm's ``blocks``, torchvision's ``encoder.layers``) or CNN stages (a ``features`` sequence's parts, else the
        network's children up to its pooling and classifier head)."""
        blocks = transformer_blocks(self.net)
        if blocks is not None:
            return [(f"block{i}", b) for i, b in enumerate(blocks)]
        if isinstance(self.net, nn.Sequential):
            return [(f"stage{n}", m) for n, m in list(self.net.named_children())[:-1]]
        features = getattr(self.net, "features", None)
        if isinstance(features, nn.Sequential) and len(features) > 1:
            return [(f"features.{n}", m) for n, m in features.named_children()]
        children = list(self.net.named_children())
        body = list(children)
        while body and body[-1][0] in HEAD_NAMES:
            body.pop()
        return body or children


#: trailing children of a network that pool, flatten or classify: not stages with a spatial output
HEAD_NAMES = frozenset(
    ("avgpool", "global_pool", "pool", "flatten", "permute", "fc", "fc_norm", "head", "heads", "head_drop")
    + ("classifier", "pre_logits", "norm", "ln", "dropout")
)


def transformer_blocks(net: nn.Module) -> list[nn.Module] | None:
    """A ViT's transformer blocks in order (``net.blocks``, or torchvision's ``net.encoder.layers``); None otherwise.

    A block counts when it holds an attention module: ``qkv`` (the zoo's), ``attn`` (timm's) or
    ``self_attention`` (torchvision's).
    """
    found = getattr(net, "blocks", None)
    if found is None:
        found = getattr(getattr(net, "encoder", None), "layers", None)
    if not isinstance(found, (nn.ModuleList, nn.Sequential)) or len(found) == 0:
        return None
    blocks = list(found)
    if not all(any(hasattr(b, a) for a in ("qkv", "attn", "self_attention")) for b in blocks):
        return None
    return blocks


class Ensemble(nn.Module):
    """Averages the logits of classifiers that share one class list (attack several models at once)."""

    def __init__(self, members: Sequence[Classifier]) -> None:
        super().__init__()
        if len({m.classes for m in members}) != 1:
            from patchscope.errors import PatchscopeError

            raise PatchscopeError("an ensemble's models must share the same classes")
        self.members = nn.ModuleList(members)
        self.classes, self.input_size = members[0].classes, members[0].input_size
        self.name = "+".join(m.name for m in members)
        self.preprocess, self.wnids = members[0].preprocess, members[0].wnids

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


def nonfinite_rows(logits: torch.Tensor) -> torch.Tensor:
    """How many rows of ``logits`` hold NaN or inf, as a 0-d tensor on their device (no host sync)."""
    return (~torch.isfinite(logits)).any(1).sum()


def check_finite(bad_rows: torch.Tensor | int, what: str) -> None:
    """Raise a one-line :class:`PatchscopeError` if ``bad_rows`` (from :func:`nonfinite_rows`) is non-zero."""
    count = int(bad_rows)
    if count:
        from patchscope.errors import PatchscopeError

        raise PatchscopeError(
            f"{what} produced NaN or inf outputs on {count} images: check the model's weights and input range"
        )
