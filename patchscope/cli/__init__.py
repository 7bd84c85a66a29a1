"""The `patchscope` command: a thin layer that parses options, calls one library function and prints the result.

Every command module (one per group: train, attack, evaluate, explain, explore, defend, bench, study, runs, demo,
report, leaderboard, list, print, calibrate) holds a ``typer.Typer`` named ``app`` that this package adds to the root,
the same way for all. Every user error becomes one line on stderr and exit status 2; SIGINT and SIGTERM one line
saying what was kept, and exit status 130 or 143 (see :func:`main`).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import sys
from typing import Any

import typer

from patchscope.cli import (
    attack,
    bench,
    calibrate,
    defend,
    demo,
    evaluate,
    explain,
    explore,
    leaderboard,
    print_sheet,
    report,
    runs,
    study,
    train,
)
from patchscope.cli import list as listing
from patchscope.cli.common import STATE, StoreOpt, command_name, install_signal_handlers, interrupt_line, translate
from patchscope.cli.paths import FILE_SYSTEM_ERRNOS, file_system_line, name_the_option
from patchscope.errors import Interrupted, PatchscopeError, clear_interrupt, interrupt_pending
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


def _reflow_help(group: typer.Typer) -> None:
    """Give every command of ``group`` (and its sub-groups) its docstring with each paragraph on one line, so the
    help re-flows to the terminal's width instead of keeping the source's line breaks."""
    for command in group.registered_commands:
        if command.help is None and command.callback is not None and command.callback.__doc__:
            paragraphs = inspect.cleandoc(command.callback.__doc__).split("\n\n")
            command.help = "\n\n".join(" ".join(p.split()) for p in paragraphs)
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _reflow_help(sub.typer_instance)


for _module in (
    train,
    evaluate,
    attack,
    demo,
    report,
    leaderboard,
    explain,
    explore,
    defend,
    bench,
    listing,
    study,
    runs,
    print_sheet,
    calibrate,
):
    _reflow_help(_module.app)
    app.add_typer(_module.app)


@app.callback()
def _root(store: StoreOpt = None) -> None:
    """Attack, explain, defend and certify image classifiers against adversarial patches."""
    STATE.store = store


def main() -> None:
    """Entry point: run the app. A :class:`PatchscopeError` becomes one line and exit status 2; SIGINT and SIGTERM
    one line saying what was interrupted and kept, and exit status 130 or 143, whenever they come (while torch is
    still importing, or a second time while the first is being handled)."""
    command = command_name(sys.argv[1:])
    clear_interrupt()
    install_signal_handlers()
    try:
        status = _run(command)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001  the one exit path of a signal, at any moment
        signum = interrupt_pending()
        if signum is None:
            raise
        _quiet_signals()
        print(interrupt_line(e if isinstance(e, Interrupted) else Interrupted("", signum), command), file=sys.stderr)
        sys.exit(128 + signum)
    finally:
        _leave_torchrun()
        _quiet_signals()
    if status == 130:  # typer turned a KeyboardInterrupt into this status
        print(interrupt_line(KeyboardInterrupt(), command), file=sys.stderr)
        sys.exit(130)
    if isinstance(status, int) and status:
        sys.exit(status)


def _run(command: str) -> object:
    """The app's status; a user error printed as one line (exit 2), an interrupt as its line (exit 128 + signal)."""
    import logging
    import warnings

    keep_freed_memory()  # reuse freed host memory: page faults were half of a CPU mask-training step
    warnings.filterwarnings("ignore", category=UserWarning)  # torch's notes would break the one-line contract
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.getLogger("matplotlib").setLevel(logging.ERROR)  # its notes (a cache folder made elsewhere) on stderr
    logging.getLogger("PIL").setLevel(logging.CRITICAL)  # a TIFF's tags, its samples per pixel: the error says it
    STATE.recording = False
    try:
        status = app(standalone_mode=False)
        _flush_stdout()
        return status
    except PatchscopeError as e:
        _quiet_signals()
        print(f"patchscope: error: {one_line(name_the_option(translate(e), sys.argv[1:]))}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as e:
        _quiet_signals()
        print(interrupt_line(e, command), file=sys.stderr)
        sys.exit(e.exit_status)
    except (typer.Abort, KeyboardInterrupt) as e:
        _quiet_signals()
        print(interrupt_line(e, command), file=sys.stderr)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code if hasattr(e, "exit_code") else 0)
    except typer.TyperException as e:  # usage errors: unknown option, bad value (help already shown if empty)
        if e.format_message():
            print(f"patchscope: error: {one_line(' '.join(e.format_message().split()))}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # the file system's own refusals (a full disk, a name too long), whenever they come
        if e.errno not in FILE_SYSTEM_ERRNOS:
            raise
        _quiet_signals()
        _drop_stdout()
        line = file_system_line(e, sys.argv) if e.filename is not None else f"stdout: {e.strerror}"
        print(f"patchscope: error: {one_line(line)}", file=sys.stderr)
        sys.exit(2)


def _flush_stdout() -> None:
    """Flush what the command printed now, so that a full or closed stdout is an error of the command (a
    :class:`OSError` the caller shows as one line), not a message at the interpreter's exit."""
    try:
        sys.stdout.flush()
    except ValueError:  # already closed
        pass


def _drop_stdout() -> None:
    """Point stdout at /dev/null: what could not be written is dropped, and the exit does not try again."""
    import os

    with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
        fd = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


def one_line(text: str) -> str:
    r"""A message as one printable line: a newline or another control character (in a file name) as its escape.

    >>> one_line("cannot read a\nb.png")
    'cannot read a\\nb.png'
    """
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _quiet_signals() -> None:
    """From here on SIGINT and SIGTERM are ignored: the exit under way finishes with the status it has (a second
    Ctrl-C would otherwise interrupt the handling of the first, or kill the interpreter while it shuts down, when
    Python has put the default handlers back)."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread
            signal.signal(sig, signal.SIG_IGN)


def _leave_torchrun() -> None:
    """Leave the torchrun process group a command joined, before the interpreter exits (a group torn down at exit
    can abort); nothing when none was joined, or torch is only half imported (a signal stopped its import)."""
    dist = sys.modules.get("torch.distributed")
    is_initialized = getattr(dist, "is_initialized", None)
    try:
        if callable(is_initialized) and is_initialized():
            from patchscope.distributed import leave

            leave()
    except Exception:  # noqa: BLE001  leaving is best effort: the command's own outcome is what the user sees
        pass


__all__ = ["app", "main"]
