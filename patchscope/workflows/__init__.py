"""Workflows: the library calls behind the commands, each on a whole data set with progress, checkpoints and a
typed result (an attack on a data set, defend, certify, the demo, the study).

They sit on top of data, models, attacks, defenses, explain and eval; the CLI and the demo call the same ones.
Submodules load on first use (they import torch).

>>> from patchscope.workflows import run_attack, defend_patch, certify, CertifyResult, RobustnessStudy
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AttackImages": "attack",
    "AttackResult": "attack",
    "run_attack": "attack",
    "CertifyCheckpoint": "certify",
    "CertifyResult": "certify",
    "certify": "certify",
    "AdaptiveResult": "defend",
    "DefenseResult": "defend",
    "defend_patch": "defend",
    "DemoSettings": "demo",
    "quick_settings": "demo",
    "run_demo": "demo",
    "RobustnessStudy": "study",
    "StudyResult": "study",
    "StudySettings": "study",
    "save_study": "study",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"patchscope.workflows.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'patchscope.workflows' has no attribute {name!r}")
