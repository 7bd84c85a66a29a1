"""The defense and certifier registries (timm-style): a decorator, ``list_*`` and ``create_*``.

Empirical defenses wrap a classifier (``create_defense(name, model, **options) -> nn.Module``); certifiers count, per
batch, the images a certified defense gets right and certifies (``create_certifier(name, image_size, patch_side)``).
Adding either is one module in ``patchscope/defenses/`` with a decorated class or factory: every module of the package
is imported the first time a registry is read. A defense's options are its factory's keyword parameters (other than
``model``, ``bpda`` and ``clean_images``); ``bpda=True`` at registration says its cleaning step has no useful gradient,
so adaptive attacks go through it with BPDA.

>>> list_defenses()[:3], [n for n in list_defenses() if defense_spec(n).bpda]
(['bits', 'blur', 'clip'], ['bits', 'lgs', 'median'])
>>> list_certifiers()
['ds-block', 'ds-column', 'patchcleanser']
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from torch import nn

from patchscope.defenses.counts import CertCounts
from patchscope.errors import PatchscopeError

D = TypeVar("D", bound=Callable[..., nn.Module])  # a defense: a module class or factory
C = TypeVar("C", bound=Callable[..., "Certifier"])  # a certifier class or factory
_RESERVED = ("self", "model", "bpda", "clean_images", "image_size", "patch_side", "device")


@dataclass(frozen=True)
class DefenseSpec:
    """One registered empirical defense.

    Attributes:
        name: the registry name.
        build: the class or factory, called as ``build(model, **options)`` (plus ``bpda`` and ``clean_images`` if it
            takes them).
        bpda: its cleaning step has no useful gradient: adaptive attacks pass its gradient straight through.
        options: its option names and defaults.
        needs_clean_images: it measures something (e.g. activation bounds) on clean images first.
        summary: the first line of its docstring.
    """

    name: str
    build: Callable[..., nn.Module]
    bpda: bool
    options: dict[str, Any]
    needs_clean_images: bool
    summary: str

    def parse(self, texts: Iterable[str]) -> dict[str, Any]:
        """``KEY=VALUE`` texts as options, each value converted to the type of the option's default."""
        return parse_options("defense", self.name, self.options, texts)


@dataclass(frozen=True)
class CertifierSpec:
    """One registered certifier: ``build(image_size, patch_side, device=..., **options)`` gives a :class:`Certifier`."""

    name: str
    build: Callable[..., Certifier]
    options: dict[str, Any]
    summary: str

    def parse(self, texts: Iterable[str]) -> dict[str, Any]:
        """``KEY=VALUE`` texts as options, each value converted to the type of the option's default."""
        return parse_options("certifier", self.name, self.options, texts)


class Certifier(Protocol):
    """A certified defense against patches up to a side: counts what it gets right and what it certifies."""

    settings: dict[str, Any]  # what a result should report (masks, band, ...)
    precision: str  # "fp32" or "bf16"

    def counts(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> CertCounts:
        """Counts on the device (right without defense, right with it, certified) and the forward passes."""
        ...


_DEFENSES: dict[str, DefenseSpec] = {}
_CERTIFIERS: dict[str, CertifierSpec] = {}


def _options(build: Callable[..., Any]) -> dict[str, Any]:
    params = inspect.signature(build).parameters.values()
    return {
        p.name: (None if p.default is inspect.Parameter.empty else p.default)
        for p in params
        if p.name not in _RESERVED and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def _summary(build: Callable[..., Any]) -> str:
    """The docstring's first line, without reST markup."""
    line = (inspect.getdoc(build) or "").split("\n")[0]
    return re.sub(r":\w+:`~?([^`]+)`", r"\1", line).replace("``", "")


def register_defense(name: str, *, bpda: bool = False) -> Callable[[D], D]:
    """Decorator: make a defense (a class or factory taking ``model`` first) available as ``create_defense(name, ...)``.

    Args:
        name: the registry name (what ``--defense`` takes).
        bpda: the defense's cleaning step has no useful gradient (rounding, medians, thresholds): adaptive attacks
            go through it with BPDA.
    """

    def add(build: D) -> D:
        params = inspect.signature(build).parameters
        spec = DefenseSpec(name, build, bpda, _options(build), "clean_images" in params, _summary(build))
        _add(_DEFENSES, name, spec)
        return build

    return add


def register_certifier(name: str) -> Callable[[C], C]:
    """Decorator: make a certifier (a class or factory taking ``image_size, patch_side, device``) available as
    ``create_certifier(name, ...)``."""

    def add(build: C) -> C:
        _add(_CERTIFIERS, name, CertifierSpec(name, build, _options(build), _summary(build)))
        return build

    return add


def _add(registry: dict[str, Any], name: str, spec: Any) -> None:
    old = registry.get(name)
    if old is not None and old.build is not spec.build:
        raise ValueError(f"{name!r} is registered twice")
    registry[name] = spec


def _discover() -> None:
    """Import every module of :mod:`patchscope.defenses`, so that their decorators have run."""
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        importlib.import_module(f"{__package__}.{info.name}")


def list_defenses() -> list[str]:
    """The registered empirical defenses, sorted."""
    _discover()
    return sorted(_DEFENSES)


def list_certifiers() -> list[str]:
    """The registered certifiers, sorted."""
    _discover()
    return sorted(_CERTIFIERS)


def defense_spec(name: str) -> DefenseSpec:
    """The registration of defense ``name`` (its options, whether it needs BPDA)."""
    _discover()
    if name not in _DEFENSES:
        raise PatchscopeError(
            f"unknown defense {name!r}: choose from {', '.join(sorted(_DEFENSES))}", params=("defense",)
        )
    return _DEFENSES[name]


def certifier_spec(name: str) -> CertifierSpec:
    """The registration of certifier ``name`` (its options)."""
    _discover()
    if name not in _CERTIFIERS:
        raise PatchscopeError(
            f"unknown certifier {name!r}: choose from {', '.join(sorted(_CERTIFIERS))}", params=("certifier",)
        )
    return _CERTIFIERS[name]


def check_options(kind: str, name: str, allowed: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` without None values, refusing any that ``allowed`` lacks (one line naming the parameter)."""
    given = {k: v for k, v in options.items() if v is not None}
    stray = [k for k in given if k not in allowed]
    if stray:
        its = f"its options: {', '.join(allowed)}" if allowed else "it takes no options"
        raise PatchscopeError(
            f"{stray[0]} does not apply to {kind} {name!r} ({its})", params=(stray[0], kind, *allowed)
        )
    return given


def parse_options(kind: str, name: str, allowed: Mapping[str, Any], texts: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` texts as ``{KEY: value}``, each value of the type of ``allowed[KEY]`` (bool, int, float or text).

    >>> parse_options("defense", "blur", {"sigma": 1.0, "kernel": 5}, ["sigma=0.5", "kernel=3"])
    {'sigma': 0.5, 'kernel': 3}
    """
    out: dict[str, Any] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise PatchscopeError(f"option {text!r}: give KEY=VALUE, e.g. sigma=0.5", params=("option",))
        check_options(kind, name, allowed, {key: value})
        out[key] = _convert(key, value.strip(), allowed[key])
    return out


def _convert(key: str, value: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return value.lower() in ("true", "1", "yes")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise PatchscopeError(f"option {key}={value!r}: not a {type(default).__name__}", params=("option",)) from None
    return value


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
    kwargs = check_options("defense", name, spec.options, options)
    params = inspect.signature(spec.build).parameters
    if "bpda" in params:
        kwargs["bpda"] = spec.bpda if bpda is None else bpda
    if spec.needs_clean_images:
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
    """The named certifier against square patches of ``patch_side`` px on ``image_size`` px images.

    >>> c = create_certifier("ds-column", 32, 5, band=4)
    >>> c.settings
    {'band': 4, 'ablations': 32, 'delta': 8}
    """
    spec = certifier_spec(name)
    return spec.build(image_size, patch_side, device=device, **check_options("certifier", name, spec.options, options))
