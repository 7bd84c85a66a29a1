"""The bench's self-checks, as AutoAttack warns: pure functions over per-image outcomes.

An image certified at a share but broken there is a bug (of the certifier, the judge or the attack's paste): the run
fails. A black-box attack that breaks images the white-box attacks left standing points at gradient masking, and a
robust accuracy that rises with the share at too weak an attack: both are flagged on the card.

>>> import torch
>>> certified, broken = torch.tensor([True, False]), torch.tensor([False, True])
>>> check_certified(certified, broken, 0.05)  # the broken image was not certified: no bug
>>> masking_flag({"per-image": broken, "sparse-rs": torch.tensor([True, False])}, 0.05).code
'gradient-masking'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from patchscope.errors import PatchscopeError
from patchscope.formatting import pct
from patchscope.workflows.bench_card import Flag, ShareResult
from patchscope.workflows.bench_protocol import KINDS


class SelfCheckFailed(PatchscopeError):
    """A self-check found what cannot be: the card would be wrong, so none is written."""


def check_certified(certified: torch.Tensor | None, broken: torch.Tensor, share: float) -> None:
    """Raise :class:`SelfCheckFailed` where an image is both certified and broken at ``share``.

    Args:
        certified: (N,) bool, certified against every patch of the share (None: no certifier, nothing to check).
        broken: (N,) bool, some attack's patch changed the (defended) prediction away from the label.
        share: the share, for the message.
    """
    if certified is None:
        return
    both = (certified & broken).nonzero().flatten()
    if len(both):
        first = ", ".join(str(i) for i in both[:5].tolist())
        raise SelfCheckFailed(
            f"self-check failed at share {pct(share)}: {len(both)} certified image(s) broken by an attack "
            f"(image {first}); a certificate or the attack's judge is wrong"
        )


def masking_flag(broken_by: Mapping[str, torch.Tensor], share: float) -> Flag | None:
    """A ``gradient-masking`` flag where a black-box attack broke images no white-box attack broke (None: it did not).

    Args:
        broken_by: per attack of the cascade, (N,) bool, the images it broke.
        share: the share they were attacked at.
    """
    white = [b for name, b in broken_by.items() if KINDS.get(name) == "white-box"]
    black = {name: b for name, b in broken_by.items() if KINDS.get(name) == "black-box"}
    if not black:
        return None
    white_any = torch.stack(white).any(0) if white else torch.zeros_like(next(iter(black.values())))
    only_black = {name: int((b & ~white_any).sum()) for name, b in black.items()}
    found = {name: n for name, n in only_black.items() if n}
    if not found:
        return None
    what = ", ".join(f"{name} broke {n} image(s)" for name, n in found.items())
    return Flag(
        "gradient-masking",
        share,
        f"likely gradient masking at share {pct(share)}: {what} that the white-box attacks could not",
    )


def monotone_flags(results: Sequence[ShareResult]) -> list[Flag]:
    """A ``robust-rises-with-share`` flag for each share whose robust accuracy is above that of a smaller share (a
    larger patch can always do what a smaller one does: the attack was too weak at the larger share).

    >>> from patchscope.workflows.bench_card import ShareResult
    >>> rows = [ShareResult(s, 1, s, 4, 1.0, r, None, 4, int(4 * r), None, ()) for s, r in ((0.01, 0.5), (0.02, 0.75))]
    >>> tuple(f.share for f in monotone_flags(rows))
    (0.02,)
    """
    flags, lowest = [], None
    for r in sorted(results, key=lambda r: r.share):
        if lowest is not None and r.robust > lowest.robust:
            flags.append(
                Flag(
                    "robust-rises-with-share",
                    r.share,
                    f"robust accuracy rises with the share: {pct(r.robust)} at {pct(r.share)} against "
                    f"{pct(lowest.robust)} at {pct(lowest.share)}; the attacks were too weak at {pct(r.share)}",
                )
            )
        if lowest is None or r.robust < lowest.robust:
            lowest = r
    return flags
