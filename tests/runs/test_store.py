"""The run store: round trip, statuses, dead processes, compare, and `patchscope runs ...`."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from patchscope.errors import PatchscopeError
from patchscope.runs.store import RunStore, _git_commit, compare, default_store_path, flatten, record, store_for
from tests.conftest import run_cli

STORE_PY = Path(__file__).resolve().parents[2] / "patchscope" / "runs" / "store.py"
REPO = STORE_PY.parents[2]


def _child(code: str, store: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh Python with ``store_mod`` = the store module (loaded by file: no torch import)."""
    prelude = textwrap.dedent(f"""
        import importlib.util, sys
        sys.path.insert(0, {str(REPO)!r})
        spec = importlib.util.spec_from_file_location("store_mod", {str(STORE_PY)!r})
        store_mod = sys.modules["store_mod"] = importlib.util.module_from_spec(spec); spec.loader.exec_module(store_mod)
        store = store_mod.RunStore({str(store)!r})
    """)
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


def _raw_status(path: Path, run_id: int) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0]


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs.db")


def test_round_trip(store: RunStore, tmp_path: Path) -> None:
    config = {
        "model": "gtsrb-cnn,gtsrb-vit",
        "steps": 300,
        "seed": 7,
        "data_hash": "abc123",
        "lr": 0.1,
        "nested": {"a": [1, 2]},
    }
    rid = store.start("attack", config, command="patchscope attack --steps 300")
    run = store.get(rid)
    assert (run.kind, run.status, run.ended, run.seconds) == ("attack", "running", None, None)
    assert run.config == config and run.seed == 7 and run.data_hash == "abc123"
    assert run.models == ["gtsrb-cnn", "gtsrb-vit"]
    assert run.command == "patchscope attack --steps 300" and run.pid == os.getpid()
    from patchscope import __version__

    assert run.version == __version__

    store.update(rid, metrics={"step": 10})
    store.finish(rid, {"success": 0.9, "where": tmp_path, "pair": (1, 2)}, {"patch": tmp_path / "patch.png"})
    run = store.get(str(rid))
    assert run.status == "done" and run.ended is not None and run.seconds >= 0
    assert run.metrics == {"step": 10, "success": 0.9, "where": str(tmp_path), "pair": [1, 2]}
    assert run.artifacts == {"patch": str(tmp_path / "patch.png")}
    assert json.loads(json.dumps(run.as_dict()))["id"] == rid

    # explicit arguments win over the config's; another handle on the file sees the same rows
    other = store.start("train", {"seed": 1}, seed=2, models=["a"], data_hash="h")
    again = RunStore(store.path)
    assert (again.get(other).seed, again.get(other).models, again.get(other).data_hash) == (2, ["a"], "h")
    assert [r.id for r in again.runs()] == [other, rid]
    assert [r.id for r in again.runs(kind="attack")] == [rid]
    assert [r.id for r in again.runs(limit=1)] == [other]
    assert [r.id for r in again.runs(status="done")] == [rid]
    assert again.runs(kind="certify") == []


def test_store_settings(store: RunStore) -> None:
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1


def test_errors(store: RunStore, tmp_path: Path) -> None:
    with pytest.raises(PatchscopeError, match="no run 99"):
        store.get(99)
    with pytest.raises(PatchscopeError, match="no run 99"):
        store.finish(99)
    with pytest.raises(PatchscopeError, match="give a number"):
        store.get("latest")
    rid = store.start("train")
    store.finish(rid)
    with pytest.raises(PatchscopeError, match="already ended"):
        store.fail(rid, "late")
    with pytest.raises(PatchscopeError, match="kind"):
        store.start("")
    with pytest.raises(PatchscopeError, match="is a folder"):
        RunStore(tmp_path)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(PatchscopeError, match="junk.db"):
        RunStore(junk)


def test_record_statuses(store: RunStore) -> None:
    with record(store, "evaluate", {"seed": 0}) as run:
        run.log({"accuracy": 0.5}, images=10)
        run.artifact("report", "out/report.html")
    done = store.get(run.id)
    assert (done.status, done.metrics, done.artifacts) == (
        "done",
        {"accuracy": 0.5, "images": 10},
        {"report": str(Path("out/report.html").absolute())},  # absolute: a report from elsewhere finds it
    )

    with pytest.raises(ValueError, match="boom"):
        with record(store, "train") as run:
            run.log(epoch=3)
            run.save()
            raise ValueError("boom")
    failed = store.get(run.id)
    assert (failed.status, failed.message, failed.metrics) == ("failed", "ValueError: boom", {"epoch": 3})

    with pytest.raises(KeyboardInterrupt):
        with record(store, "attack") as run:
            raise KeyboardInterrupt
    assert (store.get(run.id).status, store.get(run.id).message) == ("interrupted", "KeyboardInterrupt")

    with pytest.raises(SystemExit):
        with record(store, "attack") as run:
            raise SystemExit(130)
    assert (store.get(run.id).status, store.get(run.id).message) == ("interrupted", "exit status 130")

    with pytest.raises(SystemExit):
        with record(store, "demo") as run:
            raise SystemExit(0)
    assert store.get(run.id).status == "done"

    rid = store.start("defend")
    store.fail(rid, "out of memory")
    assert (store.get(rid).status, store.get(rid).message) == ("failed", "out of memory")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # record put the handler back


def test_sigterm_marks_interrupted(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    child = _child(
        """
        import os, signal, time
        with store_mod.record(store, "attack", {"seed": 0}) as run:
            print(run.id, flush=True)
            run.log(step=5)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
    """,
        db,
    )
    assert child.returncode == 128 + signal.SIGTERM, child.stderr
    run = RunStore(db).get(int(child.stdout))
    assert (run.status, run.message, run.metrics) == ("interrupted", "SIGTERM", {"step": 5})


def test_sigkilled_run_reads_as_interrupted(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    child = _child(
        """
        import os, signal
        with store_mod.record(store, "train", {"epochs": 20}) as run:
            run.log(epoch=1)
            run.save()
            print(run.id, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    """,
        db,
    )
    assert child.returncode == -signal.SIGKILL
    rid = int(child.stdout)
    assert _raw_status(db, rid) == "running"  # nothing got the chance to write

    store = RunStore(db)
    alive = store.start("evaluate")  # this process is alive: its run stays running
    run = store.get(rid)
    assert run.status == "interrupted" and "ended without recording" in run.message
    assert run.metrics == {"epoch": 1}
    assert {r.id: r.status for r in store.runs()} == {alive: "running", rid: "interrupted"}
    assert [r.id for r in store.runs(status="interrupted")] == [rid]
    assert [r.id for r in store.runs(status="running")] == [alive]
    assert _raw_status(db, rid) == "interrupted"  # written back


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_reused_pid_and_other_hosts(store: RunStore) -> None:
    reused = store.start("attack")
    elsewhere = store.start("attack")
    with sqlite3.connect(store.path) as conn:  # our pid, but a process that started at another time
        conn.execute("UPDATE runs SET proc_start = '1' WHERE id = ?", (reused,))
        conn.execute("UPDATE runs SET host = 'some-other-machine', pid = 999999999 WHERE id = ?", (elsewhere,))
    assert store.get(reused).status == "interrupted"
    assert store.get(elsewhere).status == "running"  # cannot tell from here


def test_compare(store: RunStore) -> None:
    a = store.start("attack", {"steps": 300, "lr": 0.1, "loss": "margin", "eot": {"angle": 20}, "seed": 0})
    b = store.start("attack", {"steps": 300, "lr": 0.05, "eot": {"angle": 30}, "tv": 0.1, "seed": 0})
    store.finish(a, {"success": 0.8, "history": [1, 2], "images": 10})
    store.finish(b, {"success": 0.9, "history": [1, 3], "images": 10})
    diff = store.compare(a, b)
    assert diff == compare(store.get(a), store.get(b))
    assert (diff["a"], diff["b"], diff["run"]) == (a, b, {})
    assert diff["config"] == {
        "lr": {"a": 0.1, "b": 0.05, "delta": -0.05},
        "loss": {"a": "margin", "b": None, "only_in": "a"},
        "eot.angle": {"a": 20, "b": 30, "delta": 10},
        "tv": {"a": None, "b": 0.1, "only_in": "b"},
    }
    assert diff["metrics"] == {"success": {"a": 0.8, "b": 0.9, "delta": 0.1}, "history": {"a": [1, 2], "b": [1, 3]}}
    assert flatten({"a": {"b": {"c": 1}}, "d": {}}) == {"a.b.c": 1, "d": {}}


def test_store_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PATCHSCOPE_STORE", raising=False)
    assert default_store_path() == tmp_path / "home" / ".patchscope" / "runs.db"
    monkeypatch.setenv("PATCHSCOPE_STORE", str(tmp_path / "env.db"))
    assert store_for(None).path == tmp_path / "env.db" and (tmp_path / "env.db").exists()
    assert store_for(tmp_path / "deep" / "opt.db").path == tmp_path / "deep" / "opt.db"


def test_git_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "repo"
    (repo / ".git" / "refs" / "heads").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".git" / "refs" / "heads" / "main").write_text(sha + "\n")
    (repo / "sub").mkdir()
    assert _git_commit(repo / "sub") == sha
    (repo / ".git" / "refs" / "heads" / "main").unlink()
    (repo / ".git" / "packed-refs").write_text(f"# pack-refs with: peeled\n{sha} refs/heads/main\n")
    assert _git_commit(repo) == sha
    (repo / ".git" / "HEAD").write_text(sha[::-1])  # detached
    assert _git_commit(repo) == sha[::-1]
    (repo / ".git" / "HEAD").unlink()  # broken: unknown, never an error
    assert _git_commit(repo) is None
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    monkeypatch.chdir(repo / "sub")
    store = RunStore(tmp_path / "runs.db")
    assert store.get(store.start("demo")).git_commit == sha


def test_cli(tmp_path: Path) -> None:
    """`runs list / show / compare` as a user runs them (each call pays for importing the package)."""
    db = tmp_path / "runs.db"
    store = RunStore(db)
    a = store.start("attack", {"model": "gtsrb-cnn", "lr": 0.1, "seed": 0})
    store.finish(a, {"success": 0.75}, {"patch": "runs/a/patch.png"})
    b = store.start("attack", {"model": "gtsrb-cnn", "lr": 0.2, "seed": 0})
    store.fail(b, "diverged")
    t = store.start("train", {"arch": "cnn"})
    store.finish(t, {"val_accuracy": 0.97})

    listed = run_cli("runs", "list", "--kind", "attack", "--json", "--store", str(db))
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["runs"]
    assert [(r["id"], r["status"]) for r in rows] == [(b, "failed"), (a, "done")]

    table = run_cli("runs", "list", env={"PATCHSCOPE_STORE": str(db), "COLUMNS": "200"})
    assert table.returncode == 0, table.stderr
    assert all(word in table.stdout for word in ("attack", "train", "failed", "done", "success 75.0%"))

    shown = run_cli("runs", "show", str(a), "--json", "--store", str(db))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["artifacts"] == {"patch": "runs/a/patch.png"}
    shown = run_cli("runs", "show", str(b), "--store", str(db), env={"COLUMNS": "200"})
    assert shown.returncode == 0 and "diverged" in shown.stdout and "lr" in shown.stdout

    compared = run_cli("runs", "compare", str(a), str(b), "--json", "--store", str(db))
    assert compared.returncode == 0, compared.stderr
    diff = json.loads(compared.stdout)
    assert diff["config"]["lr"] == {"a": 0.1, "b": 0.2, "delta": 0.1}
    assert diff["run"]["status"] == {"a": "done", "b": "failed"}
    compared = run_cli("runs", "compare", str(a), str(b), "--store", str(db), env={"COLUMNS": "200"})
    assert compared.returncode == 0 and "lr" in compared.stdout and "+0.1" in compared.stdout

    missing = run_cli("runs", "show", "42", "--store", str(db))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"patchscope: error: --store: no run 42 in {db}"
    assert missing.stdout == ""
