"""The command line that reproduces a run, built from its settings: one function for the demo, the study and reports.

>>> command_line("attack", {"model": "gtsrb-cnn", "size": 0.05, "target": None, "compile": True, "batch_size": 32})
'patchscope attack --model gtsrb-cnn --size 0.05 --compile --batch-size 32'
>>> command_line("study robustness", {"models": ["a", "b"], "sizes": (0.02, 0.05), "out": "runs/my study"})
"patchscope study robustness --models a,b --sizes 0.02,0.05 --out 'runs/my study'"
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: settings whose option is spelled differently from the setting's name
FLAG_NAMES = {"tv_weight": "tv", "nps_weight": "nps", "as_json": "json"}


def _value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(_value(x) for x in v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v) if not isinstance(v, Path) else v.as_posix()


def command_line(command: str, settings: Mapping[str, Any], program: str = "patchscope") -> str:
    """``program COMMAND --key value ...`` for ``settings``, in their order.

    Args:
        command: the command words, e.g. ``"attack"`` or ``"study robustness"``.
        settings: option values by setting name (``batch_size`` becomes ``--batch-size``); None and False are left
            out, True is a bare flag, lists are joined by commas, every value is shell-quoted.
        program: the program name.

    Returns:
        One shell command line.
    """
    parts = [program, *command.split()]
    for key, value in settings.items():
        if value is None or value is False:
            continue
        flag = "--" + FLAG_NAMES.get(key, key).replace("_", "-")
        parts += [flag] if value is True else [flag, shlex.quote(_value(value))]
    return " ".join(parts)
