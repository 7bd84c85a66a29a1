"""The `patchscope` command: a thin layer that parses options, calls one library function and prints the result.

Every command module (one per group: train, attack, evaluate, explain, defend, study, runs, demo) holds a
``typer.Typer`` named ``app`` that this package adds to the root, the same way for all. Every user error becomes one
line on stderr and exit status 2 (see :func:`main`).
"""

from __future__ import annotations

import sys

import typer

from patchscope.cli import attack, defend, demo, evaluate, explain, report, runs, study, train
from patchscope.cli.common import STATE, StoreOpt, translate
from patchscope.errors import PatchscopeError
from patchscope.memory import keep_freed_memory

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Attack, explain, defend and certify image classifiers against adversarial patches.",
)

for _module in (train, evaluate, attack, demo, report, explain, defend, study, runs):
    app.add_typer(_module.app)


@app.callback()
def _root(store: StoreOpt = None) -> None:
    """Attack, explain, defend and certify image classifiers against adversarial patches."""
    STATE.store = store


def main() -> None:
    """Entry point: run the app; a :class:`PatchscopeError` becomes one line and exit status 2."""
    keep_freed_memory()  # reuse freed host memory: page faults were half of a CPU mask-training step
    try:
        app(standalone_mode=False)
    except PatchscopeError as e:
        print(f"patchscope: error: {translate(e)}", file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        print("patchscope: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code if hasattr(e, "exit_code") else 0)
    except typer.TyperException as e:  # usage errors: unknown option, bad value (help already shown if empty)
        if e.format_message():
            print(f"patchscope: error: {e.format_message()}", file=sys.stderr)
        sys.exit(2)


__all__ = ["app", "main"]
