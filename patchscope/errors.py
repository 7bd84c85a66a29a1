"""The exceptions the command line turns into one line on stderr: bad input (exit 2) and interrupts (exit 130/143)."""

from __future__ import annotations

import contextlib
import re
import signal
from collections.abc import Iterator


class PatchscopeError(Exception):
    """A problem with the user's input (file, shape, name, option): shown as one line, no traceback.

    ``params`` names the library parameters the message is about, each written in the message as its plain name
    (``kappa``, ``batch_size``); a front end such as the command line may replace those names with its own
    spelling of them (``--kappa``, ``--batch-size``).

    >>> e = PatchscopeError("kappa -1.0: the margin to win by cannot be negative", params=("kappa",))
    >>> str(e), e.params
    ('kappa -1.0: the margin to win by cannot be negative', ('kappa',))
    """

    def __init__(self, message: str, *, params: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.params = tuple(params)

    def __reduce__(self) -> tuple[object, ...]:  # keeps ``params`` across pickling (multiprocessing)
        return (_rebuild, (type(self), str(self), self.params))


def _rebuild(cls: type[PatchscopeError], message: str, params: tuple[str, ...]) -> PatchscopeError:
    return cls(message, params=params)


@contextlib.contextmanager
def errors_about(param: str) -> Iterator[None]:
    """Errors raised in the block are about the value of ``param``, data given as ``eval_data`` rather than as
    ``data``: the message names ``param`` where it named ``data``, else starts with it (a front end spells it as its
    own option, ``--eval-data``).

    >>> try:
    ...     with errors_about("eval_data"):
    ...         raise PatchscopeError("data 'demo@4': the side must be in 8..1024", params=("data",))
    ... except PatchscopeError as e:
    ...     print(e, e.params)
    eval_data 'demo@4': the side must be in 8..1024 ('eval_data',)
    """
    try:
        yield
    except PatchscopeError as e:
        named = 0
        text = str(e)
        if "data" in e.params:
            text, named = re.subn(r"(?<![\w'\"./-])data(?![\w'\"-])", param, text, count=1)
        params = tuple(p for p in e.params if p != "data")
        raise PatchscopeError(text if named else f"{param}: {text}", params=(param, *params)) from None


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


#: the signal number of an interrupt already raised as :class:`Interrupted` (see :func:`interrupt_pending`)
_PENDING: list[int] = []


def note_interrupt(signum: int) -> None:
    """Remember that ``signum`` stopped the work, so long loops end even if the first raise was swallowed
    (a signal handler's exception raised inside a finaliser is only printed, never propagated)."""
    _PENDING[:] = [int(signum)]


def clear_interrupt() -> None:
    """Forget a noted interrupt (a new command starts)."""
    _PENDING.clear()


def interrupt_pending() -> int | None:
    """The signal of an interrupt noted by :func:`note_interrupt`, or None."""
    return _PENDING[0] if _PENDING else None


def raise_if_interrupted() -> None:
    """Raise :class:`Interrupted` again if an interrupt was noted: long loops call this at every progress update."""
    if _PENDING:
        raise Interrupted("", _PENDING[0])
