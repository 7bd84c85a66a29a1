"""`python -m patchscope ...` runs the command line (also under `torchrun`).

SIGINT and SIGTERM are routed before the command line is even imported, so that a signal in the first instant also
ends with one line and exit status 130 or 143.
"""

import signal
import sys

from patchscope.errors import Interrupted, note_interrupt


def _on_signal(signum: int, frame: object) -> None:
    note_interrupt(signum)
    raise Interrupted("", signum)


if __name__ == "__main__":
    for _sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_sig, _on_signal)
    try:
        from patchscope.cli import main
    except Interrupted as e:
        print(f"patchscope: interrupted by {e.signal_name} while starting: no results were written", file=sys.stderr)
        sys.exit(e.exit_status)
    main()
