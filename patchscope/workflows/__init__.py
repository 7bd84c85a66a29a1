"""Workflows: the library calls behind the commands, each on a whole data set with progress, checkpoints and a
typed result (an attack on a data set, defend, certify, the demo, the study).

They sit on top of data, models, attacks, defenses, explain and eval; the CLI and the demo call the same ones.

>>> from patchscope.workflows.attack import run_attack
>>> from patchscope.workflows.defend import defend_patch
>>> from patchscope.workflows.certify import certify
"""
