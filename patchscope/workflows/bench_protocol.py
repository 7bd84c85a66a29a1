"""The patch-robustness protocol ``v1``: the shares, how a share becomes a patch side, the images, and the budgets of
each profile. A card names the protocol version and profile it was measured under; what is here decides it, not the
user.

>>> tuple(share_side(s, 32) for s in SHARES)
(3, 5, 7, 10)
>>> profile("quick").images, profile("standard").sparse_rs_queries
(16, 1000)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from patchscope.attacks import AttackConfig
from patchscope.attacks.eot import NO_CHANGE
from patchscope.data import ImageSet, ImageStream
from patchscope.errors import PatchscopeError

#: the protocol's version, in every card
PROTOCOL_VERSION = "v1"
#: the patch shares of the image area the protocol measures, smallest first
SHARES = (0.01, 0.02, 0.05, 0.1)
#: the attacks of the cascade, in order: the white-box ones first, the black-box one on what they left standing
CASCADE = ("per-image", "universal", "sparse-rs")
#: whether each attack follows gradients
KINDS = {"per-image": "white-box", "universal": "white-box", "sparse-rs": "black-box"}
#: how a card says its images were picked
SELECTION = "round-robin over classes in data order (each class's first image, then each class's second, ...)"
#: the data's own seeded settings: (name, source class, target class), measured where the data has both classes
SEEDED = (("gtsrb-stop-to-yield", "stop", "yield"),)
#: how a card says the seeded setting's images were picked
SEEDED_SELECTION = "; seeded setting: the source class's first images in data order, as many"


def seeded_setting(classes: tuple[str, ...] | list[str]) -> tuple[str, int, int] | None:
    """The seeded setting the data's ``classes`` have (its name, source and target class ids), else None.

    >>> from patchscope.data.classes import gtsrb_classes
    >>> seeded_setting(gtsrb_classes()), seeded_setting(("cat", "dog"))
    (('gtsrb-stop-to-yield', 14, 13), None)
    """
    names = [c.lower() for c in classes]
    for name, source, target in SEEDED:
        if source in names and target in names:
            return name, names.index(source), names.index(target)
    return None


@dataclass(frozen=True)
class Profile:
    """The budgets of one profile.

    Attributes:
        name: ``quick`` (a smoke test: seconds on a CPU) or ``standard`` (the numbers to compare).
        images: at most this many images, picked by :func:`select_images`.
        per_image_steps, per_image_places, per_image_restarts: the white-box per-image attack's optimiser steps,
            candidate places searched, and random starts per place.
        universal_steps, universal_places, universal_batch: the universal patch's steps, places and batch.
        sparse_rs_queries: the gradient-free attack's queries per image.
        eot_views: views averaged per step (per-image attack) over a randomised defense's draws.
        draws: a randomised defense's verdict on an image is the majority of this many draws.
    """

    name: str
    images: int
    per_image_steps: int
    per_image_places: int
    per_image_restarts: int
    universal_steps: int
    universal_places: int
    universal_batch: int
    sparse_rs_queries: int
    eot_views: int
    draws: int

    def budgets(self) -> dict[str, Any]:
        """The budgets as a card records them, by attack."""
        b = asdict(self)
        return {
            "images": b["images"],
            "per-image": {"steps": b["per_image_steps"], "places": b["per_image_places"]}
            | {"restarts": b["per_image_restarts"], "loss": LOSS},
            "universal": {"steps": b["universal_steps"], "places": b["universal_places"]}
            | {"batch": b["universal_batch"], "loss": LOSS},
            "sparse-rs": {"queries": b["sparse_rs_queries"], "loss": "margin"},
            "randomized": {"eot_views": b["eot_views"], "draws": b["draws"]},
        }


#: the attacks' objective: the logit margin (capped at kappa 5), untargeted
LOSS = "margin"
#: the most rows per forward pass inside the per-image attacks (memory, not the objective; fewer where the memory
#: budget holds fewer for a pass with gradients)
ROWS = 512

PROFILES = {
    "quick": Profile("quick", 16, 10, 2, 1, 10, 2, 16, 50, 2, 5),
    "standard": Profile("standard", 500, 200, 5, 2, 300, 5, 64, 1000, 8, 15),
}


def profile(name: str) -> Profile:
    """The profile ``name`` (one line naming the choices for another)."""
    if name not in PROFILES:
        raise PatchscopeError(f"unknown profile {name!r}: choose from {', '.join(PROFILES)}", params=("profile",))
    return PROFILES[name]


def share_side(share: float, image_size: int) -> int:
    """The side of the square patch covering ``share`` of an ``image_size``-px square image: ``sqrt(share) * size``
    rounded to the nearest pixel (a half to the even one, as Python's ``round``); refused where that is no pixel or
    more than the image.

    >>> share_side(0.05, 224), share_side(0.1, 32)
    (50, 10)
    """
    if not (isinstance(share, (int, float)) and 0 < share < 1):
        raise PatchscopeError(
            f"shares {share!r}: a share must be a fraction of the image area, 0 < share < 1", params=("shares",)
        )
    exact = math.sqrt(share * image_size * image_size)
    side = round(exact)
    if side < 1:
        raise PatchscopeError(
            f"shares {share:g}: no patch on a {image_size}px image (a side of {exact:.2f}px rounds to 0px); "
            f"a share must be above {0.25 / image_size**2:.3g} there",
            params=("shares",),
        )
    if side > image_size:
        raise PatchscopeError(
            f"shares {share:g}: a {side}px patch is larger than the {image_size}px image", params=("shares",)
        )
    return side


def check_shares(shares: tuple[float, ...], image_size: int) -> tuple[float, ...]:
    """``shares`` sorted, each one a patch on ``image_size``-px images and none twice."""
    if not shares:
        raise PatchscopeError("shares: give at least one", params=("shares",))
    for s in shares:
        share_side(s, image_size)
    twice = sorted({s for s in shares if shares.count(s) > 1})
    if twice:
        raise PatchscopeError(f"shares {twice[0]:g} is given twice", params=("shares",))
    return tuple(sorted(float(s) for s in shares))


def select_images(data: ImageSet | ImageStream, n: int) -> ImageSet | ImageStream:
    """At most ``n`` images of ``data``: each class's first image, then each class's second, and so on (each round
    in data order), so that a small selection still spans the classes.

    >>> from patchscope.data import ImageSet, ImageStream
    >>> data = ImageSet(torch.zeros(5, 3, 4, 4, dtype=torch.uint8), torch.tensor([1, 1, 0, 1, 0]), ("a", "b"), "toy")
    >>> select_images(data, 3).labels.tolist()
    [1, 0, 1]
    """
    labels = data.labels
    order = torch.argsort(labels, stable=True)
    rank = torch.empty_like(order)
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    rank[order] = torch.arange(len(labels)) - starts[labels[order]]  # position of each image within its class
    picked = torch.argsort(rank * len(labels) + torch.arange(len(labels)), stable=True)[:n]
    return data.subset(picked)


def attack_config(
    name: str, prof: Profile, share: float, seed: int, target: int | None = None, rows: int = ROWS
) -> tuple[AttackConfig, dict[str, Any]]:
    """The :class:`AttackConfig` and constructor options of cascade attack ``name`` at ``share`` (``target``: the
    class a targeted attack aims for, None: untargeted; ``rows``: rows per forward pass of a per-image attack)."""
    base = AttackConfig(size=share, loss=LOSS, ranges=NO_CHANGE, seed=seed, batch_size=rows, candidates=1)
    base = replace(base, target=target)
    if name == "per-image":
        cfg = replace(base, steps=prof.per_image_steps, candidates=prof.per_image_places)
        return replace(cfg, restarts=prof.per_image_restarts), {}
    if name == "universal":
        cfg = replace(base, steps=prof.universal_steps, candidates=prof.universal_places)
        return replace(cfg, batch_size=prof.universal_batch), {}
    if name == "sparse-rs":
        return replace(base, steps=prof.sparse_rs_queries, loss="margin"), {"queries": prof.sparse_rs_queries}
    raise PatchscopeError(f"unknown attack {name!r} in the cascade")


def optimiser_queries(images: int, cfg: AttackConfig, views: int = 1) -> int:
    """Single-image forward passes an optimising attack spends on ``images`` rows (``views`` each) under ``cfg``:
    every candidate while the place search lasts and once more to choose, then the chosen one alone.

    >>> optimiser_queries(4, AttackConfig(steps=10, candidates=2, search_fraction=0.3))
    60
    """
    starts = cfg.candidates * cfg.restarts
    if starts == 1:
        return images * views * cfg.steps
    switch = max(1, round(cfg.search_fraction * cfg.steps))
    return images * views * (starts * switch + starts + (cfg.steps - switch))
