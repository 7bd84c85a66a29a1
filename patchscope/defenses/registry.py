"""The defense and certifier registries (:class:`~patchscope.registry.Registry`): a decorator, ``list_*``, ``create_*``.

Empirical defenses wrap a classifier (``create_defense(name, model, **options) -> nn.Module``); certifiers count, per
batch, the images a certified defense gets right and certifies (``create_certifier(name, image_size, patch_side)``).
Adding either is one module in ``patchscope/defenses/`` with a decorated class or factory: every module of the package
is imported the first time a registry is read. A defense's options are its factory's keyword parameters (other than
``model``, ``bpda`` and ``clean_images``); ``bpda=True`` at registration says its cleaning step has no useful gradient,
so adaptive attacks go through it with BPDA.

>>> list_defenses()[:3], [n for n in list_defenses() if defense_spec(n).meta["bpda"]]
(['bits', 'blur', 'clip'], ['bits', 'lgs', 'median'])
>>> list_certifiers()
['ds-block', 'ds-column', 'patchcleanser']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import torch
from torch import nn

from patchscope.defenses.counts import CertCounts, CertOutcomes
from patchscope.errors import PatchscopeError
from patchscope.registry import Registry, Spec

D = TypeVar("D", bound=Callable[..., nn.Module])  # a defense: a module class or factory
C = TypeVar("C", bound=Callable[..., "Certifier"])  # a certifier class or factory

#: the empirical defenses, built as ``build(model, **options)`` (plus ``bpda`` and ``clean_images`` if they take them);
#: ``meta["bpda"]``: the cleaning step has no useful gradient, adaptive attacks pass its gradient straight through
DEFENSES = Registry("defense", package="patchscope.defenses", meta={"bpda": False})
#: the certifiers, built as ``build(image_size, patch_side, device=..., **options)``: each a :class:`Certifier`
CERTIFIERS = Registry("certifier", package="patchscope.defenses")


class Certifier(Protocol):
    """A certified defense against patches up to a side: counts what it gets right and what it certifies."""

    settings: dict[str, Any]  # what a result should report (masks, band, ...)
    precision: str  # "fp32" or "bf16"

    def counts(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> CertCounts:
        """Counts on the device (right without defense, right with it, certified) and the forward passes."""
        ...

    def outcomes(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> CertOutcomes:
        """The same per image, with the defended prediction (what ``patchscope bench`` judges patched images by). A
        label of -1 (unknown) certifies nothing and spends no forward pass on certificates."""
        ...


def register_defense(name: str, *, bpda: bool = False) -> Callable[[D], D]:
    """Decorator: make a defense (a class or factory taking ``model`` first) available as ``create_defense(name, ...)``.

    Args:
        name: the registry name (what ``--defense`` takes).
        bpda: the defense's cleaning step has no useful gradient (rounding, medians, thresholds): adaptive attacks
            go through it with BPDA.
    """
    return DEFENSES.register(name, bpda=bpda)


def register_certifier(name: str) -> Callable[[C], C]:
    """Decorator: make a certifier (a class or factory taking ``image_size, patch_side, device``) available as
    ``create_certifier(name, ...)``."""
    return CERTIFIERS.register(name)


def list_defenses() -> list[str]:
    """The registered empirical defenses, sorted."""
    return DEFENSES.list()


def list_certifiers() -> list[str]:
    """The registered certifiers, sorted."""
    return CERTIFIERS.list()


def defense_spec(name: str) -> Spec:
    """The registration of defense ``name``: its options, ``meta["bpda"]``, whether it ``takes("clean_images")``."""
    return DEFENSES.spec(name)


def certifier_spec(name: str) -> Spec:
    """The registration of certifier ``name`` (its options)."""
    return CERTIFIERS.spec(name)


def create_defense(
    name: str, model: nn.Module, *, bpda: bool | None = None, clean_images: torch.Tensor | None = None, **options: Any
) -> nn.Module:
    """``model`` wrapped in the named defense, in eval mode; ``options`` go to its factory (None values are dropped).

    Args:
        name: a registered defense (:func:`list_defenses`).
        model: the classifier to defend.
        bpda: straight-through gradients for the cleaning step; default: the defense's own ``bpda``.
        clean_images: (N,3,H,W) in [0,1], for defenses that measure something first (``clip``).
        options: the defense's options, e.g. ``kernel=3``.

    >>> from patchscope.models.archs import cnn
    >>> from patchscope.models.wrapper import Classifier
    >>> d = create_defense("bits", Classifier(cnn(num_classes=2, width=4), ["a", "b"]), bits=3)
    >>> d.name, d.bpda, d(torch.rand(1, 3, 32, 32)).shape
    ('model+bits', True, torch.Size([1, 2]))
    """
    spec = defense_spec(name)
    kwargs = _given(spec, options)
    if spec.takes("bpda"):
        kwargs["bpda"] = spec.meta["bpda"] if bpda is None else bpda
    if spec.takes("clean_images"):
        if clean_images is None:
            raise PatchscopeError(
                f"the {name} defense needs clean images to measure itself on", params=("clean_images",)
            )
        kwargs["clean_images"] = clean_images
    try:
        return spec.build(model, **kwargs).eval()
    except TypeError as e:
        raise PatchscopeError(f"defense {name!r}: {e}", params=("defense",)) from None


def create_certifier(
    name: str, image_size: int, patch_side: int, device: str | torch.device = "cpu", **options: Any
) -> Certifier:
    """The named certifier against square patches of ``patch_side`` px on ``image_size`` px images (``options`` go to
    its factory; None values are dropped).

    >>> c = create_certifier("ds-column", 32, 5, band=4)
    >>> c.settings
    {'band': 4, 'ablations': 32, 'delta': 8}
    """
    spec = certifier_spec(name)
    certifier: Certifier = spec.build(image_size, patch_side, device=device, **_given(spec, options))
    return certifier


def _given(spec: Spec, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` without None values, refusing any that ``spec`` does not take (one line naming it)."""
    return spec.check({k: v for k, v in options.items() if v is not None})
