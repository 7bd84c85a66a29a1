"""The run store: one SQLite row per train / attack / evaluate / ... run, kept with the standard library only.

The database lives at ``~/.patchscope/runs.db`` unless ``$PATCHSCOPE_STORE`` or a ``--store PATH`` option
names another file (see :func:`store_for`). It is opened in WAL mode with a busy timeout, and every write
is its own ``BEGIN IMMEDIATE`` transaction, so several processes may record runs into one file at once.

>>> store = RunStore(tmp / "runs.db")                                    # doctest: +SKIP
>>> with record(store, "attack", {"steps": 300, "seed": 0}) as run:      # doctest: +SKIP
...     run.log(success=0.93)
...     run.artifact("patch", "runs/attack/patch.png")
>>> store.get(run.id).status                                             # doctest: +SKIP
'done'

A run whose process died without a word (SIGKILL, power loss) stays ``running`` in the file; :meth:`RunStore.get`
and :meth:`RunStore.list` report it as ``interrupted`` once its recorded process (pid, host) is gone, and write
that back.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import json
import math
import os
import shlex
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeGuard, cast

from patchscope.errors import Interrupted, PatchscopeError
from patchscope.io import dumps, utf8_text
from patchscope.validate import check_int

__all__ = [
    "KINDS",
    "STATUSES",
    "Run",
    "RunHandle",
    "RunStore",
    "compare",
    "default_store_path",
    "flatten",
    "record",
    "store_for",
]

KINDS = ("train", "attack", "evaluate", "transfer", "explain", "defend", "certify", "bench", "demo")
"""The kinds the package records; :meth:`RunStore.start` accepts any other short name too."""
STATUSES = ("running", "done", "failed", "interrupted")
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'interrupted')),
    started     TEXT NOT NULL,
    ended       TEXT,
    config      TEXT NOT NULL DEFAULT '{}',
    version     TEXT,
    git_commit  TEXT,
    seed        INTEGER,
    data_hash   TEXT,
    models      TEXT NOT NULL DEFAULT '[]',
    metrics     TEXT NOT NULL DEFAULT '{}',
    artifacts   TEXT NOT NULL DEFAULT '{}',
    command     TEXT,
    message     TEXT,
    pid         INTEGER,
    host        TEXT,
    proc_ns     TEXT,
    proc_start  TEXT
);
CREATE INDEX IF NOT EXISTS runs_kind ON runs (kind, id);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
"""


# --------------------------------------------------------------------------------------------- rows


@dataclasses.dataclass(frozen=True)
class Run:
    """One stored run. ``config``, ``metrics`` and ``artifacts`` are decoded JSON; times are ISO 8601 (UTC)."""

    id: int
    kind: str
    status: str
    started: str
    ended: str | None
    config: dict[str, Any]
    version: str | None
    git_commit: str | None
    seed: int | None
    data_hash: str | None
    models: list[str]
    metrics: dict[str, Any]
    artifacts: dict[str, Any]
    command: str | None
    message: str | None
    pid: int | None
    host: str | None

    @property
    def seconds(self) -> float | None:
        """Wall-clock duration, when the run has an end time."""
        if self.ended is None:
            return None
        return (datetime.fromisoformat(self.ended) - datetime.fromisoformat(self.started)).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "seconds": self.seconds}


_COLUMNS = [f.name for f in dataclasses.fields(Run)]


class DamagedRow(ValueError):
    """A stored row that cannot be read as a run (its JSON or a timestamp damaged): skipped by listings."""


def _row_to_run(row: sqlite3.Row, status: str | None = None, message: str | None = None) -> Run:
    """The run of one row; :class:`DamagedRow` naming the first field that cannot be read."""
    values = {k: row[k] for k in _COLUMNS}
    for k in ("config", "metrics", "artifacts", "models"):
        try:
            values[k] = json.loads(values[k]) if values[k] else ({} if k != "models" else [])
        except (ValueError, TypeError, RecursionError):
            raise DamagedRow(f"its {k} is not readable JSON") from None
        if not isinstance(values[k], list if k == "models" else dict):
            raise DamagedRow(f"its {k} is not a JSON {'list' if k == 'models' else 'object'}")
    if not all(isinstance(m, str) for m in values["models"]):
        raise DamagedRow("its models are not a JSON list of names")
    for k in ("started", "ended"):
        try:
            if values[k] is not None or k == "started":
                datetime.fromisoformat(values[k])
        except (ValueError, TypeError):
            raise DamagedRow(f"its {k} time {values[k]!r} is not a timestamp") from None
    if status is not None:
        values["status"], values["message"] = status, message
    return Run(**values)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _jsonable(obj: Any) -> Any:
    """``json.dumps`` fallback: numpy / torch scalars and arrays, paths, sets, dataclasses; anything else as text."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return str(obj)


def _dumps(obj: Any) -> str:
    return dumps(obj, default=_jsonable)


# ------------------------------------------------------------------------------ process identity


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _namespace() -> str | None:
    """``BOOT_ID|PID_NAMESPACE`` of this process (Linux), so a pid is only judged where it means the same process."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        ns = None
    return f"{boot}|{ns}" if boot and ns else None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of ``pid`` from /proc, or None where unreadable."""
    text = _read(f"/proc/{pid}/stat")
    if not text or ")" not in text:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _alive(pid: int | None, host: str | None, proc_ns: str | None, proc_start: str | None) -> bool | None:
    """Is the process that recorded a run still running? True / False, or None where this host cannot tell."""
    if not pid or host != socket.gethostname():
        return None
    here = _namespace()
    if proc_ns and here and proc_ns != here:
        return (
            False if proc_ns.split("|")[0] != here.split("|")[0] else None
        )  # another boot: gone; another container: unknown
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return None
    stat = _proc_stat(pid)
    if stat is not None:
        if stat[0] in ("Z", "X"):
            return False
        if proc_start and stat[1] != proc_start:
            return False  # the pid now belongs to another process
    return True


# ----------------------------------------------------------------------------------- git and argv


def _git_commit(start: Path | None = None) -> str | None:
    """The commit checked out in the git work tree holding ``start`` (default: cwd); read from .git, never raises."""
    try:
        gitdir = _git_dir(start)
        return _head_commit(gitdir) if gitdir is not None else None
    except Exception:  # best effort: a broken or unreadable repository just means "unknown"
        return None


def _git_dir(start: Path | None) -> Path | None:
    """The git directory of the work tree holding ``start`` (default: cwd), or None outside one."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        dotgit = folder / ".git"
        if dotgit.is_file():  # a worktree or submodule: "gitdir: PATH"
            text = dotgit.read_text().strip()
            return (folder / text[7:].strip()).resolve() if text.startswith("gitdir:") else None
        if dotgit.is_dir():
            return dotgit
    return None


def _head_commit(gitdir: Path) -> str | None:
    """The commit HEAD of ``gitdir`` points at: detached, a loose ref or a packed one; None on an unborn branch."""
    common = gitdir
    if (gitdir / "commondir").is_file():
        common = (gitdir / (gitdir / "commondir").read_text().strip()).resolve()
    head = (gitdir / "HEAD").read_text().strip()
    if not head.startswith("ref:"):
        return head or None  # detached HEAD
    ref = head[4:].strip()
    for base in (gitdir, common):
        if (base / ref).is_file():
            return (base / ref).read_text().strip() or None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == ref:
                return parts[0]
    return None  # a branch with no commits yet


def _command_line() -> str:
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("__main__.py", "patchscope"):
        argv[0] = "patchscope"
    return utf8_text(shlex.join(argv))


def _version() -> str | None:
    try:
        from patchscope import __version__

        return __version__
    except Exception:
        return None


# ------------------------------------------------------------------------------------------- store


def default_store_path() -> Path:
    """``$PATCHSCOPE_STORE`` if set, else ``~/.patchscope/runs.db``."""
    env = os.environ.get("PATCHSCOPE_STORE")
    return Path(env).expanduser() if env else Path.home() / ".patchscope" / "runs.db"


def store_for(path: str | os.PathLike[str] | None = None) -> RunStore:
    """The store a command should use: ``--store PATH`` when given, else :func:`default_store_path`."""
    return RunStore(Path(path).expanduser() if path is not None else default_store_path())


class RunStore:
    """A SQLite file of runs. Cheap to create; each call opens its own connection, so it is fork- and thread-safe."""

    def __init__(self, path: str | os.PathLike[str], timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path).expanduser()
        self.timeout = timeout
        self.damaged: dict[int, str] = {}  # id -> why, for every row read so far that could not be read as a run
        if self.path.is_dir():
            raise PatchscopeError(f"run store {self.path} is a folder; give a file such as {self.path / 'runs.db'}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PatchscopeError(f"run store {self.path}: cannot create its folder ({e.strerror or e})") from None
        self._init_schema()

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    # -- connections ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as e:
            raise PatchscopeError(f"run store {self.path}: {e}") from None
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            yield conn
        except sqlite3.Error as e:
            raise PatchscopeError(f"run store {self.path}: {e}") from None
        finally:
            conn.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``BEGIN IMMEDIATE`` takes the write lock up front so the busy timeout applies."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _init_schema(self) -> None:
        with self._connect() as conn:
            deadline = time.monotonic() + self.timeout
            while True:  # switching to WAL needs a moment alone with the file; several processes may start at once
                try:
                    conn.execute("PRAGMA journal_mode = WAL").fetchone()
                    break
                except sqlite3.OperationalError as e:
                    if ("locked" not in str(e) and "busy" not in str(e)) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise PatchscopeError(
                    f"run store {self.path} was written by a newer patchscope (schema {version}); upgrade patchscope"
                )
            if version < SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in filter(str.strip, _SCHEMA.split(";")):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")

    # -- writes -----------------------------------------------------------------------------------

    def start(
        self,
        kind: str,
        config: Mapping[str, Any] | None = None,
        *,
        seed: int | None = None,
        data_hash: str | None = None,
        models: str | Iterable[str] | None = None,
        command: str | None = None,
        pid: int | None = None,
    ) -> int:
        """Record a new ``running`` run and return its id.

        ``seed``, ``data_hash`` and ``models`` default to the config's ``seed``, ``data_hash`` and
        ``models`` / ``model`` entries; ``models`` may be a comma-separated string. ``command`` defaults to
        this process's command line, ``pid`` to this process.
        """
        if not isinstance(kind, str) or not kind.strip():
            raise PatchscopeError("a run needs a kind such as train, attack or evaluate")
        config = dict(config or {})
        if seed is None and isinstance(config.get("seed"), int) and not isinstance(config.get("seed"), bool):
            seed = config["seed"]
        if seed is not None:
            seed = check_int("seed", seed, -(2**63), 2**63 - 1)  # SQLite's INTEGER
        if data_hash is None and isinstance(config.get("data_hash"), str):
            data_hash = config["data_hash"]
        if models is None:
            models = config.get("models", config.get("model"))
        if isinstance(models, str):
            models = [m.strip() for m in models.split(",") if m.strip()]
        model_list = [str(m) for m in models] if models is not None else []
        pid = os.getpid() if pid is None else pid
        own = pid == os.getpid()
        stat = _proc_stat(pid)
        row = {
            "kind": kind.strip(),
            "status": "running",
            "started": _now(),
            "config": _dumps(config),
            "version": _version(),
            "git_commit": _git_commit(),
            "seed": seed,
            "data_hash": data_hash,
            "models": _dumps(model_list),
            "command": command if command is not None else (_command_line() if own else None),
            "pid": pid,
            "host": socket.gethostname(),
            "proc_ns": _namespace(),
            "proc_start": stat[1] if stat else None,
        }
        with self._write() as conn:
            cur = conn.execute(
                f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
            )
            return cast(int, cur.lastrowid)  # set by the INSERT

    def update(
        self, run_id: int, *, metrics: Mapping[str, Any] | None = None, artifacts: Mapping[str, Any] | None = None
    ) -> None:
        """Merge ``metrics`` and ``artifacts`` into a run (while it runs: partial results survive a crash)."""
        self._end(run_id, None, None, metrics, artifacts)

    def finish(
        self, run_id: int, metrics: Mapping[str, Any] | None = None, artifacts: Mapping[str, Any] | None = None
    ) -> None:
        """Mark a run ``done``, merging in its final ``metrics`` and ``artifacts`` (name -> path)."""
        self._end(run_id, "done", None, metrics, artifacts)

    def fail(
        self,
        run_id: int,
        message: str,
        *,
        status: str = "failed",
        metrics: Mapping[str, Any] | None = None,
        artifacts: Mapping[str, Any] | None = None,
    ) -> None:
        """Mark a run ``failed`` (or ``interrupted`` with ``status=``) with a message saying why."""
        if status not in ("failed", "interrupted"):
            raise ValueError(f"status {status!r}: use failed or interrupted")
        self._end(run_id, status, str(message)[:10_000], metrics, artifacts)

    def _end(
        self,
        run_id: int,
        status: str | None,
        message: str | None,
        metrics: Mapping[str, Any] | None,
        artifacts: Mapping[str, Any] | None,
    ) -> None:
        run_id = _as_id(run_id)
        with self._write() as conn:
            row = conn.execute("SELECT status, metrics, artifacts FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise PatchscopeError(f"no run {run_id} in {self.path}")
            if row["status"] != "running":
                raise PatchscopeError(f"run {run_id} has already ended ({row['status']})")
            merged_metrics = {**json.loads(row["metrics"] or "{}"), **dict(metrics or {})}
            merged_artifacts = {
                **json.loads(row["artifacts"] or "{}"),
                **{k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in (artifacts or {}).items()},
            }
            merged = (_dumps(merged_metrics), _dumps(merged_artifacts))
            if status is None:
                conn.execute("UPDATE runs SET metrics = ?, artifacts = ? WHERE id = ?", (*merged, run_id))
            else:
                conn.execute(
                    "UPDATE runs SET status = ?, ended = ?, message = ?, metrics = ?, artifacts = ? WHERE id = ?",
                    (status, _now(), utf8_text(message) if message else message, *merged, run_id),
                )

    # -- reads ------------------------------------------------------------------------------------

    def get(self, run_id: int | str) -> Run:
        """The run with this id; :class:`PatchscopeError` when there is none."""
        rid = _as_id(run_id)
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM runs WHERE id = ?", (rid,)).fetchone()
        if row is None:
            raise PatchscopeError(f"no run {run_id} in {self.path}")
        runs = self._settle([row])
        if not runs:
            raise PatchscopeError(f"run {rid} in {self.path} is damaged ({self.damaged[rid]}); it cannot be shown")
        return runs[0]

    def runs(self, kind: str | None = None, limit: int | None = 50, status: str | None = None) -> list[Run]:
        """Runs, newest first, optionally of one ``kind`` and/or ``status`` (``limit=None``: all of them)."""
        if status is not None and status not in STATUSES:
            raise PatchscopeError(f"status {status!r}: choose from {', '.join(STATUSES)}", params=("status",))
        if limit is not None:
            limit = min(check_int("limit", limit, 1), 2**62)  # more than any store holds: all of them
        where, args = [], []
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        settles = status in ("running", "interrupted")  # a running row may read as interrupted
        if status is not None:
            where.append("status IN ('running', 'interrupted')" if settles else "status = ?")
            args += [] if settles else [status]
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC"
        if limit is not None and not settles:
            sql += f" LIMIT {max(int(limit), 0)}"
        with self._connect() as conn:
            rows = conn.execute(sql, args).fetchall()
        runs = self._settle(rows)
        if settles:
            runs = [r for r in runs if r.status == status][: None if limit is None else max(int(limit), 0)]
        return runs

    def compare(self, a: int | str, b: int | str) -> dict[str, Any]:
        """:func:`compare` of two stored runs."""
        return compare(self.get(a), self.get(b))

    def _settle(self, rows: builtins.list[sqlite3.Row]) -> builtins.list[Run]:  # ``list`` is a method here
        """Rows as runs; a ``running`` row whose process is gone reads (and is written back) as ``interrupted``."""
        runs, dead = [], []
        for row in rows:
            try:
                if (
                    row["status"] == "running"
                    and _alive(row["pid"], row["host"], row["proc_ns"], row["proc_start"]) is False
                ):
                    message = f"process {row['pid']} on {row['host']} ended without recording a result"
                    runs.append(_row_to_run(row, "interrupted", message))
                    dead.append((message, row["id"]))
                else:
                    runs.append(_row_to_run(row))
            except DamagedRow as e:  # one bad row is reported and skipped; it does not take down the store
                self.damaged[row["id"]] = str(e)
        if dead:
            with contextlib.suppress(PatchscopeError):  # a read-only store still reads right
                with self._write() as conn:
                    conn.executemany(
                        "UPDATE runs SET status = 'interrupted', message = ? WHERE id = ? AND status = 'running'", dead
                    )
        return runs


def _as_id(run_id: int | str) -> int:
    if isinstance(run_id, bool):
        raise PatchscopeError(f"run id {run_id!r}: give a number")
    text = str(run_id).strip().lstrip("#")
    if not isinstance(run_id, int) and not (text.isascii() and text.isdigit()):
        raise PatchscopeError(f"run id {run_id!r}: give a number such as 12 (see `patchscope runs list`)")
    value = int(text)
    if not 1 <= value <= 2**63 - 1:  # no parameter is named: the id is an argument, not an option
        raise PatchscopeError(f"run id {run_id!r}: ids are whole numbers from 1 (see `patchscope runs list`)")
    return value


# ----------------------------------------------------------------------------------------- compare


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _is_number(v: Any) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not (isinstance(v, float) and math.isnan(v))


def _diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    fa, fb = flatten(a), flatten(b)
    out: dict[str, dict[str, Any]] = {}
    for key in [*fa, *(k for k in fb if k not in fa)]:
        va, vb = fa.get(key), fb.get(key)
        if key in fa and key in fb and va == vb:
            continue
        entry: dict[str, Any] = {"a": va, "b": vb}
        if key not in fa or key not in fb:
            entry["only_in"] = "a" if key in fa else "b"
        elif _is_number(va) and _is_number(vb):
            entry["delta"] = vb - va if isinstance(vb - va, int) else round(vb - va, 12)
        out[key] = entry
    return out


def compare(a: Run, b: Run) -> dict[str, Any]:
    """What differs between two runs: ``{"a": id, "b": id, "run": {...}, "config": {...}, "metrics": {...}}``.

    Each difference is ``{"a": VALUE, "b": VALUE}``, plus ``"delta": b - a`` for two numbers and
    ``"only_in": "a" | "b"`` for a key that one run lacks. Nested dicts are compared key by key
    (``accuracy.gtsrb:test``); ``run`` covers kind, status, version, commit, seed, data hash, models.
    """
    fields = ("kind", "status", "version", "git_commit", "seed", "data_hash", "models")
    return {
        "a": a.id,
        "b": b.id,
        "run": _diff({f: getattr(a, f) for f in fields}, {f: getattr(b, f) for f in fields}),
        "config": _diff(a.config, b.config),
        "metrics": _diff(a.metrics, b.metrics),
    }


# ------------------------------------------------------------------------------------------ record


class RunHandle:
    """What :func:`record` yields: the run id plus ``metrics`` and ``artifacts`` dicts saved when the run ends."""

    def __init__(self, store: RunStore, run_id: int) -> None:
        self.store, self.id = store, run_id
        self.metrics: dict[str, Any] = {}
        self.artifacts: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"RunHandle(id={self.id}, store={self.store!r})"

    def log(self, metrics: Mapping[str, Any] | None = None, **more: Any) -> None:
        """Add metrics (a dict and/or keywords); later values replace earlier ones."""
        self.metrics.update(metrics or {}, **more)

    def artifact(self, name: str, path: str | os.PathLike[str]) -> None:
        """Note an output file or folder under ``name`` (its absolute path: a report made from another working folder
        still finds it)."""
        self.artifacts[name] = os.fspath(Path(path).absolute())

    def save(self) -> None:
        """Write the metrics and artifacts so far to the store now (so a killed run keeps them)."""
        self.store.update(self.id, metrics=self.metrics, artifacts=self.artifacts)


class _Terminated(SystemExit):
    """SIGTERM, turned into an exception so the run is marked ``interrupted`` before the process exits."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated(128 + signal.SIGTERM)


def _end_status(e: BaseException) -> tuple[str, str | None]:
    """(status, message) of a run whose block raised ``e``: done, interrupted (and by what) or failed."""
    if isinstance(e, _Terminated):
        return "interrupted", "SIGTERM"
    if isinstance(e, Interrupted):
        return "interrupted", e.signal_name
    if isinstance(e, KeyboardInterrupt):
        return "interrupted", "KeyboardInterrupt"
    if isinstance(e, SystemExit):
        return ("done", None) if e.code in (0, None) else ("interrupted", f"exit status {e.code}")
    if isinstance(e, GeneratorExit):
        return "interrupted", "abandoned"
    return "failed", f"{type(e).__name__}: {e}"


def _warn(text: str) -> None:
    print(f"patchscope: warning: {text}", file=sys.stderr)


@contextlib.contextmanager
def record(
    store: RunStore | str | os.PathLike[str] | None, kind: str, config: Mapping[str, Any] | None = None, **start: Any
) -> Iterator[RunHandle]:
    """Record the enclosed block as one run; yields a :class:`RunHandle`.

    The run is ``done`` when the block ends normally (or by ``SystemExit(0)``), ``interrupted`` on
    KeyboardInterrupt, SIGTERM or a non-zero ``SystemExit``, and ``failed`` on any other exception, which
    is then re-raised unchanged. ``store`` may be a :class:`RunStore`, a path or None (the default store);
    keywords go to :meth:`RunStore.start`. While the block runs in the main thread, SIGTERM raises
    SystemExit(143) (unless a SIGTERM handler was already set).
    """
    if not isinstance(store, RunStore):
        store = store_for(store)
    handle = RunHandle(store, store.start(kind, config, **start))
    previous = None
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield handle
    except BaseException as e:
        status, message = _end_status(e)
        try:  # never let the store hide the real error
            if status == "done":
                store.finish(handle.id, handle.metrics, handle.artifacts)
            else:
                store.fail(
                    handle.id, message or status, status=status, metrics=handle.metrics, artifacts=handle.artifacts
                )
        except Exception as store_error:
            _warn(f"could not record the end of run {handle.id}: {store_error}")
        raise
    else:
        store.finish(handle.id, handle.metrics, handle.artifacts)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
