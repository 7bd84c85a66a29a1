"""Workflows: the library calls behind the commands, each on a whole data set with progress, checkpoints and a
typed result (an attack on a data set, defend, certify, training a model, the bench's robustness card, the demo,
the study, the leaderboard of robustness cards).

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
    "Leaderboard",
    "LeaderboardPage",
    "RobustnessCard",
    "RobustnessStudy",
    "StudyResult",
    "StudySettings",
    "TrainPlace",
    "TrainPlan",
    "TrainResult",
    "TrainSpec",
    "build_leaderboard",
    "certify",
    "defend_patch",
    "load_card",
    "load_cards",
    "plan_training",
    "quick_settings",
    "run_attack",
    "run_bench",
    "run_demo",
    "run_training",
    "save_study",
    "validate_card",
    "write_leaderboard",
]

_LAZY = {
    "run_bench": "bench",
    "RobustnessCard": "bench_card",
    "load_card": "bench_card",
    "validate_card": "bench_card",
    "DemoSettings": "demo",
    "quick_settings": "demo",
    "run_demo": "demo",
    "RobustnessStudy": "study",
    "StudyResult": "study",
    "StudySettings": "study",
    "save_study": "study",
    "Leaderboard": "leaderboard",
    "LeaderboardPage": "leaderboard",
    "build_leaderboard": "leaderboard",
    "load_cards": "leaderboard",
    "write_leaderboard": "leaderboard",
}


__getattr__ = lazy_exports(__name__, _LAZY)
