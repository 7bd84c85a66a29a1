"""Workflows: the library calls behind the commands, each on a whole data set with progress, checkpoints and a
typed result (an attack on a data set, defend, certify, training a model, the demo, the study).

They sit on top of data, models, attacks, defenses, explain and eval; the CLI and the demo call the same ones.
The demo's and the study's names load on first use (they draw figures: matplotlib would slow every command's start).

>>> from patchscope.workflows import run_attack, defend_patch, certify, CertifyResult, RobustnessStudy
"""

from __future__ import annotations

from patchscope import lazy_exports
from patchscope.workflows.attack import AttackImages, AttackResult, run_attack
from patchscope.workflows.certify import CertifyCheckpoint, CertifyResult, certify
from patchscope.workflows.defend import AdaptiveResult, DefenseResult, defend_patch
from patchscope.workflows.train import TrainPlace, TrainPlan, TrainResult, TrainSpec, plan_training, run_training

__all__ = [
    "AdaptiveResult",
    "AttackImages",
    "AttackResult",
    "CertifyCheckpoint",
    "CertifyResult",
    "DefenseResult",
    "DemoSettings",
    "RobustnessStudy",
    "StudyResult",
    "StudySettings",
    "TrainPlace",
    "TrainPlan",
    "TrainResult",
    "TrainSpec",
    "certify",
    "defend_patch",
    "plan_training",
    "quick_settings",
    "run_attack",
    "run_demo",
    "run_training",
    "save_study",
]

_LAZY = {
    "DemoSettings": "demo",
    "quick_settings": "demo",
    "run_demo": "demo",
    "RobustnessStudy": "study",
    "StudyResult": "study",
    "StudySettings": "study",
    "save_study": "study",
}


__getattr__ = lazy_exports(__name__, _LAZY)
