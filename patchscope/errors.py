"""The exceptions the command line turns into one line on stderr: bad input (exit 2) and interrupts (exit 130/143)."""

from __future__ import annotations

import signal


class PatchscopeError(Exception):
    """A problem with the user's input (file, shape, name, option): shown as one line, no traceback."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM stopped the work; ``str()`` says what was interrupted and what was kept.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that ``except Exception`` blocks do not swallow it;
    the exit status is ``128 + signum`` (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, message: str = "", signum: int = int(signal.SIGINT)) -> None:
        super().__init__(message)
        self.signum = int(signum)

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @property
    def exit_status(self) -> int:
        return 128 + self.signum
