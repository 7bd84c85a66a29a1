"""Small file helpers shared by every layer: output folders checked before any work, atomic writes, so nothing is
ever half-written, and the one JSON
encoder (strict JSON: a NaN or an infinity is written as null, never as the bare ``NaN`` strict parsers refuse)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from patchscope.errors import PatchscopeError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    >>> with atomic_path("/tmp/x.txt") as tmp:
    ...     _ = tmp.write_text("hello")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp_path, path)
    except OSError as e:
        if e.filename is not None and os.fsdecode(e.filename) == tmp:
            e.filename = str(path)  # a full disk says which file could not be written, not its hidden stand-in
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def written_together(folder: str | os.PathLike[str], names: tuple[str, ...]) -> Iterator[None]:
    """The files ``names`` in ``folder`` are written whole or not at all: where the block fails (a full disk after
    the first of them), those it wrote are removed again, so a failed run leaves none of its files behind.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> try:
    ...     with written_together(d, ("a.txt", "b.txt")):
    ...         _ = (d / "a.txt").write_text("a")
    ...         raise OSError("disk full")
    ... except OSError:
    ...     pass
    >>> sorted(p.name for p in d.iterdir())
    []
    """
    folder = Path(folder)
    before = {name: _stamp(folder / name) for name in names}
    try:
        yield
    except BaseException:
        for name in names:
            stamp = _stamp(folder / name)
            if stamp is not None and stamp != before[name]:
                (folder / name).unlink(missing_ok=True)
        raise


def _stamp(path: Path) -> tuple[int, int] | None:
    """The file's identity and change time (a file replaced by :func:`atomic_path` is a new inode); None if none."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def check_path_names(path: Path, option: str) -> None:
    """Refuse a path with a component longer than file systems take (255 bytes), before any work.

    >>> check_path_names(Path("/tmp/" + "a" * 300), "out")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    patchscope.errors.PatchscopeError: out /tmp/aaa...aaa: a name in it is over 255 bytes, too long for a file name
    """
    for part in path.parts:
        if len(os.fsencode(part)) > 255:
            text = str(path) if len(str(path)) <= 120 else f"{str(path)[:60]}...{str(path)[-40:]}"
            raise PatchscopeError(
                f"{option} {text}: a name in it is over 255 bytes, too long for a file name", params=(option,)
            )


def check_output(out: Path, names: tuple[str, ...], option: str = "out") -> None:
    """Refuse, before any work, an output folder that cannot be written: a file, a link to nothing or a loop of
    links, a name too long, under a read-only folder, or holding something other than a file where one of ``names``
    goes."""
    check_path_names(out, option)
    if out.is_symlink() and not out.exists():
        raise PatchscopeError(
            f"{option} {out}: a link to nothing (or a loop of links); give a folder", params=(option,)
        )
    if out.exists() and not out.is_dir():
        raise PatchscopeError(f"{option} {out}: a file is there; give a folder", params=(option,))
    for name in names:
        inside = out / name
        if inside.is_symlink() and not inside.exists():
            raise PatchscopeError(f"{option} {out}: {name} there is a link to nothing; remove it", params=(option,))
        if inside.exists() and not inside.is_file():
            raise PatchscopeError(f"{option} {out}: {name} there is a folder, not a file", params=(option,))
    existing = out.absolute()
    while not existing.exists() and not existing.is_symlink():
        existing = existing.parent
    if not existing.is_dir():
        raise PatchscopeError(f"{option} {out}: {existing} is not a folder", params=(option,))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PatchscopeError(f"{option} {out}: {existing} is not writable", params=(option,))


def finite(obj: Any) -> Any:
    """``obj`` with every float that is not finite (in dicts, lists and tuples) replaced by None.

    >>> finite({"a": float("nan"), "b": [1.5, float("inf")]})
    {'a': None, 'b': [1.5, None]}
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any, indent: int | None = None, default: Callable[[Any], Any] | None = str) -> str:
    """``obj`` as strict JSON: NaN and infinities as null (also inside what ``default`` makes of other objects).

    >>> dumps({"val_accuracy": float("nan"), "n": 3})
    '{"val_accuracy": null, "n": 3}'
    """

    def fallback(o: Any) -> Any:
        if default is None:
            raise TypeError(f"{type(o).__name__} is not JSON serialisable")
        return finite(default(o))

    return json.dumps(finite(obj), indent=indent, default=fallback, allow_nan=False)


def utf8_text(text: str) -> str:
    r"""``text`` as UTF-8 can hold it (SQLite, a report page): the bytes of a command-line argument the locale could
    not decode (Python's surrogate escapes: a UTF-8 name under an ASCII locale, a Latin-1 name) as the UTF-8 they
    are, else as escapes.

    >>> utf8_text("run\udcc2\udcb2"), utf8_text("p\udcb2")
    ('run²', 'p\\xb2')
    """
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented strict JSON (see :func:`dumps`), atomically."""
    text = dumps(obj, indent=2) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
