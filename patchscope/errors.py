"""The one exception type that the command line turns into a one-line message and exit status 2."""

from __future__ import annotations


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
