"""The `patchscope` command: a thin layer that parses options, calls one library function and prints the result.

Every command module (one per group: train, attack, evaluate, explain, defend, study, runs, demo, list) holds a
``typer.Typer`` named ``app`` that this package adds to the root, the same way for all. Every user error becomes one
line on stderr and exit status 2; SIGINT and SIGTERM one line saying what was kept, and exit status 130 or 143
(see :func:`main`).
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from patchscope.cli import attack, defend, demo, evaluate, explain, report, runs, study, train
from patchscope.cli import list as listing
from patchscope.cli.common import STATE, StoreOpt, command_name, install_signal_handlers, interrupt_line, translate
from patchscope.errors import Interrupted, PatchscopeError, clear_interrupt
from patchscope.memory import keep_freed_memory


def _flags_show_no_value() -> None:
    """Show a flag in --help as the bare option it is (``--compile``, ``--resume / --no-resume``), not with the
    ``<bool>`` value placeholder typer draws, as if it took a value."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_show_no_value()

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Attack, explain, defend and certify image classifiers against adversarial patches.",
)

for _module in (train, evaluate, attack, demo, report, explain, defend, listing, study, runs):
    app.add_typer(_module.app)


@app.callback()
def _root(store: StoreOpt = None) -> None:
    """Attack, explain, defend and certify image classifiers against adversarial patches."""
    STATE.store = store


def main() -> None:
    """Entry point: run the app. A :class:`PatchscopeError` becomes one line and exit status 2; SIGINT and SIGTERM
    one line saying what was interrupted and kept, and exit status 130 or 143."""
    import warnings

    keep_freed_memory()  # reuse freed host memory: page faults were half of a CPU mask-training step
    warnings.filterwarnings("ignore", category=UserWarning)  # torch's notes would break the one-line contract
    warnings.filterwarnings("ignore", category=FutureWarning)
    command = command_name(sys.argv[1:])
    STATE.recording = False
    clear_interrupt()
    install_signal_handlers()
    try:
        status = app(standalone_mode=False)
    except PatchscopeError as e:
        print(f"patchscope: error: {translate(e)}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as e:
        print(interrupt_line(e, command), file=sys.stderr)
        sys.exit(e.exit_status)
    except (typer.Abort, KeyboardInterrupt) as e:
        print(interrupt_line(e, command), file=sys.stderr)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code if hasattr(e, "exit_code") else 0)
    except typer.TyperException as e:  # usage errors: unknown option, bad value (help already shown if empty)
        if e.format_message():
            print(f"patchscope: error: {' '.join(e.format_message().split())}", file=sys.stderr)
        sys.exit(2)
    finally:
        _leave_torchrun()
    if status == 130:  # typer turned a KeyboardInterrupt into this status
        print(interrupt_line(KeyboardInterrupt(), command), file=sys.stderr)
        sys.exit(130)
    if isinstance(status, int) and status:
        sys.exit(status)


def _leave_torchrun() -> None:
    """Leave the torchrun process group a command joined, before the interpreter exits (a group torn down at exit
    can abort); nothing when none was joined (torch is not even imported then)."""
    if "torch.distributed" in sys.modules:
        from patchscope.distributed import leave

        leave()


__all__ = ["app", "main"]
