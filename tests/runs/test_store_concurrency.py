"""Several processes (and threads) writing one run store at once lose no row and keep the file intact."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from patchscope.runs.store import RunStore

STORE_PY = Path(__file__).resolve().parents[2] / "patchscope" / "runs" / "store.py"
REPO = STORE_PY.parents[2]
WORKERS, RUNS = 4, 50

# Each worker loads store.py by file (no torch import, so the four start together), waits for the
# go file, then opens the store (the first ones race to create it) and records RUNS runs as fast as
# it can: start, a mid-run update, finish; every tenth run fails instead, and it lists now and then.
WORKER = textwrap.dedent("""
    import importlib.util, os, sys, time
    sys.path.insert(0, REPO)
    spec = importlib.util.spec_from_file_location("store_mod", STORE_PY)
    store_mod = sys.modules["store_mod"] = importlib.util.module_from_spec(spec); spec.loader.exec_module(store_mod)
    worker = int(sys.argv[1])
    while not os.path.exists(GO):
        time.sleep(0.005)
    store = store_mod.RunStore(DB)
    for i in range(RUNS):
        rid = store.start("attack", {"worker": worker, "i": i, "seed": i}, models=["m%d" % worker])
        store.update(rid, metrics={"step": i})
        if i % 10 == 9:
            store.fail(rid, "planned failure %d" % i)
        else:
            store.finish(rid, {"worker": worker, "i": i, "success": i / RUNS}, {"patch": "w%d/%d.png" % (worker, i)})
        if i % 10 == 0:
            store.runs(limit=5)
    print("ok")
""")


def test_processes_write_at_once(tmp_path: Path) -> None:
    db, go = tmp_path / "store" / "runs.db", tmp_path / "go"
    code = (
        f"REPO, STORE_PY, DB, GO, RUNS = {str(REPO)!r}, {str(STORE_PY)!r}, {str(db)!r}, {str(go)!r}, {RUNS}\n" + WORKER
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(w)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for w in range(WORKERS)
    ]
    time.sleep(0.5)
    go.touch()
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0 and out.strip() == "ok", err

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = conn.execute("SELECT id, status, config, metrics, artifacts, message FROM runs").fetchall()
    assert len(rows) == WORKERS * RUNS
    assert len({r[0] for r in rows}) == WORKERS * RUNS
    seen = set()
    for _, status, config, metrics, artifacts, message in rows:
        c, m = json.loads(config), json.loads(metrics)
        seen.add((c["worker"], c["i"]))
        if c["i"] % 10 == 9:
            assert (status, message, m) == ("failed", f"planned failure {c['i']}", {"step": c["i"]})
        else:
            assert status == "done" and m == {
                "step": c["i"],
                "worker": c["worker"],
                "i": c["i"],
                "success": c["i"] / RUNS,
            }
            assert json.loads(artifacts) == {"patch": f"w{c['worker']}/{c['i']}.png"}
    assert seen == {(w, i) for w in range(WORKERS) for i in range(RUNS)}

    store = RunStore(db)
    assert len(store.runs(limit=None)) == WORKERS * RUNS
    assert len(store.runs(status="failed", limit=None)) == WORKERS * RUNS // 10


def test_threads_share_a_store(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(25):
                store.finish(store.start("evaluate", {"thread": t, "i": i}), {"i": i})
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    runs = store.runs(limit=None)
    assert len(runs) == 100 and {r.status for r in runs} == {"done"}
    assert {(r.config["thread"], r.config["i"]) for r in runs} == {(t, i) for t in range(4) for i in range(25)}
