"""`python -m patchscope ...` runs the command line (also under `torchrun`).

SIGINT and SIGTERM are routed before the command line is even imported, so that a signal in the first instant also
ends with one line and exit status 130 or 143.
"""

import signal
import sys

from patchscope.errors import Interrupted, interrupt_pending, note_interrupt


def _on_signal(signum: int, frame: object) -> None:
    """The first signal stops the start-up; a repeat is only noted (raised inside the import machinery's clean-up,
    it would be printed there as an ignored exception)."""
    if interrupt_pending() is None:
        note_interrupt(signum)
        raise Interrupted("", signum)


def _leave(signum: int) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # the exit is under way: a second signal must not kill it
    name = signal.Signals(signum).name
    print(f"patchscope: interrupted by {name} while starting: no results were written", file=sys.stderr)
    sys.exit(128 + signum)


if __name__ == "__main__":
    for _sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_sig, _on_signal)
    try:
        from patchscope.cli import main
    except Interrupted as e:
        _leave(e.signum)
    pending = interrupt_pending()
    if pending is not None:  # a signal whose raise the import machinery swallowed
        _leave(pending)
    main()
