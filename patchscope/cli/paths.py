"""The file-system errors that can still come after the checks made before any work (a full disk, a name too long,
a folder where a file goes): one line naming the option whose path it is (:func:`file_system_line`)."""

from __future__ import annotations

import errno
import os

#: the errors of the file system itself, shown as one line (no traceback) whenever they come
FILE_SYSTEM_ERRNOS = {
    errno.ENAMETOOLONG,
    errno.ELOOP,
    errno.ENOSPC,
    errno.EFBIG,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EISDIR,
    errno.ENOTDIR,
    errno.EEXIST,
    errno.EIO,
}


def option_for(path: str, argv: list[str]) -> str:
    """The option of ``argv`` whose value holds ``path`` (``--out``, ``--data`` for ``folder:PATH``); "" if none."""
    best = ""
    for i, arg in enumerate(argv[1:], 1):
        value = arg.split(":", 1)[1] if arg.startswith(("npz:", "folder:")) else arg
        flag = argv[i - 1] if argv[i - 1].startswith("--") else ""
        if "=" in arg and arg.startswith("--"):
            flag, value = arg.split("=", 1)
        same = path == value or os.path.splitext(path)[0] == os.path.splitext(value)[0]  # a card beside its weights
        if flag and value and (same or path.startswith(value.rstrip("/") + "/") or value.startswith(path)):
            best = flag
    return best


def file_system_line(error: OSError, argv: list[str]) -> str:
    """One line for a file-system error: the option whose path it is, the path and what went wrong."""
    where = error.filename if error.filename is not None else ""
    option = option_for(os.fsdecode(where), argv) if where else ""
    what = error.strerror or error.__class__.__name__
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        what += "; nothing half-written was kept"
    shown = f"{option} {_short(where)}: " if option else f"{_short(where)}: " if where else ""
    return f"{shown}{what}"


def _short(path: object) -> str:
    text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
    return text if len(text) <= 120 else text[:60] + "..." + text[-40:]


def name_the_option(line: str, argv: list[str]) -> str:
    """``line`` prefixed with the option whose value it quotes, when it names no option itself and exactly one
    option's value (not a bare number) appears in it: ``unknown data 'gtsrb:nope'`` given to ``--eval-data``
    reads ``--eval-data: unknown data 'gtsrb:nope'``.

    >>> name_the_option("unknown data 'gtsrb:nope'", ["curve", "--data", "demo", "--eval-data", "gtsrb:nope"])
    "--eval-data: unknown data 'gtsrb:nope'"
    >>> name_the_option("--limit must be >= 1", ["evaluate", "--limit", "0"])
    '--limit must be >= 1'
    """
    if "--" in line:
        return line
    given = [
        (flag, value)
        for flag, value in zip(argv, argv[1:])
        if flag.startswith("--") and len(value) >= 2 and not value.lstrip("-").replace(".", "").isdigit()
    ]
    for shown in (repr, str):  # a quoted value first: 'gtsrb:nope' rather than a word such as demo
        found = {flag for flag, value in given if shown(value) in line}
        if len(found) == 1:
            return f"{found.pop()}: {line}"
    return line
