"""The attack registry: ``@register_attack(name)`` on a class, then ``list_attacks()`` and ``create_attack(name, ...)``.

An attack is built as ``cls(model, config, device=..., **options)`` and called as ``attack(images, labels)`` on
(N, 3, H, H) images in [0,1]; it returns a patch (:class:`~patchscope.attacks.patch.Patch` or per-image patches).
Adding an attack is one module in ``patchscope/attacks/`` with a decorated class: every module of the package is
imported the first time the registry (:data:`ATTACKS`, a :class:`~patchscope.registry.Registry`) is read.

>>> {'per-image', 'universal'} <= set(list_attacks())
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from patchscope.registry import Registry

T = TypeVar("T", bound=Callable[..., Any])

#: every registered attack; its options are its constructor's keywords after ``model`` and ``config``
ATTACKS = Registry("attack", package="patchscope.attacks")


def register_attack(name: str) -> Callable[[T], T]:
    """Class decorator: make the attack available as ``create_attack(name, ...)``.

    >>> @register_attack("doc-example")
    ... class Nothing:
    ...     def __init__(self, model, config, device="cpu"): ...
    >>> "doc-example" in list_attacks()
    True
    >>> ATTACKS.remove("doc-example")
    """
    return ATTACKS.register(name)


def list_attacks() -> list[str]:
    """The registered attack names, sorted."""
    return ATTACKS.list()


def create_attack(name: str, model: Any, config: Any, device: str = "cpu", **options: Any) -> Any:
    """The attack ``name`` on ``model`` with an :class:`~patchscope.attacks.universal.AttackConfig`; ``options`` go to
    its constructor (e.g. ``views`` and ``start`` for ``per-image``, ``checkpoint`` for ``universal``).

    >>> import torch
    >>> from patchscope.attacks.config import AttackConfig
    >>> from patchscope.models import create_model
    >>> model = create_model("gtsrb-cnn")
    >>> config = AttackConfig(size=0.1, target=1, steps=2, batch_size=4, candidates=1)
    >>> attack = create_attack("universal", model, config, progress=False)
    >>> attack(torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)).side
    10
    """
    return ATTACKS.create(name, model, config, device=device, **options)
