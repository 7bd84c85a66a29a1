"""Attacks: patches, replayable EOT (sample, then apply), the :class:`Attack` base class, the universal patch attack
and per-image patches; every registered attack is listed by :func:`list_attacks`.

>>> from patchscope.attacks import Attack, AttackConfig, PatchAttack, PerImageAttack, ViewRanges, sample_view, render
>>> from patchscope.attacks import create_attack, list_attacks, register_attack
"""

from patchscope.attacks.base import Attack
from patchscope.attacks.config import AttackConfig
from patchscope.attacks.eot import (
    NEUTRAL,
    NO_CHANGE,
    PLACEMENTS,
    ViewParams,
    ViewRanges,
    camera_matrix,
    fixed_view,
    paste,
    relight,
    render,
    render_clean,
    sample_view,
    view,
)
from patchscope.attacks.frozen import frozen
from patchscope.attacks.load import load_patch
from patchscope.attacks.losses import attack_loss, non_printability, printable_colours, total_variation
from patchscope.attacks.optim import SignSGD
from patchscope.attacks.patch import (
    SHAPES,
    Patch,
    PerImagePatches,
    is_named_shape,
    list_patches,
    patch_side,
    patch_zoo_dir,
    shape_mask,
)
from patchscope.attacks.per_image import PerImageAttack
from patchscope.attacks.printer import PrinterModel, fit_printer
from patchscope.attacks.registry import create_attack, list_attacks, register_attack
from patchscope.attacks.universal import AttackInterrupted, PatchAttack, attack_settings

__all__ = [
    "NEUTRAL",
    "NO_CHANGE",
    "PLACEMENTS",
    "SHAPES",
    "Attack",
    "AttackConfig",
    "AttackInterrupted",
    "Patch",
    "PatchAttack",
    "PerImageAttack",
    "PerImagePatches",
    "PrinterModel",
    "fit_printer",
    "SignSGD",
    "attack_settings",
    "ViewParams",
    "ViewRanges",
    "attack_loss",
    "create_attack",
    "frozen",
    "list_attacks",
    "register_attack",
    "list_patches",
    "load_patch",
    "patch_zoo_dir",
    "camera_matrix",
    "fixed_view",
    "is_named_shape",
    "non_printability",
    "paste",
    "relight",
    "patch_side",
    "printable_colours",
    "render",
    "render_clean",
    "sample_view",
    "shape_mask",
    "total_variation",
    "view",
]
