"""What ``patchscope.memory.keep_freed_memory`` (called by the CLI at start) buys on a CPU.

    python bench/malloc.py --json > malloc.json          # a few minutes on 2 cores
    python bench/malloc.py --reps 1 --tries 4 --limit 8  # smoke, about a minute

Each workload runs as a ``patchscope`` command in a child process, once with the allocator as glibc
leaves it (``PATCHSCOPE_MALLOC=system``) and once as the CLI sets it, alternating, ``--reps`` times
each; a row reports the median wall, user and system (kernel) seconds of each and the ratio
system / tuned of the wall times. Workloads, on the bundled ``demo`` subset:

* ``mask-train``: one epoch of ``train --init gtsrb-resnet --mask-training 0.024,0.048 --mask-tries T``
  (bf16): the worst-of-T pass forwards T x 128 images a step;
* ``certify``: ``certify --model gtsrb-resnet --defense patchcleanser --patch-size 0.024 --limit N``;
* ``attack``: ``attack --model gtsrb-cnn --size 0.05 --steps S --batch-size 256``.

The children's times come from ``os.wait4``. Runs outside the unit suite; use an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _workloads(args: argparse.Namespace, out: Path) -> dict[str, list[str]]:
    common = ["--data", "demo", "--device", args.device]
    return {
        "mask-train": [
            "train",
            "--init",
            "gtsrb-resnet",
            *common,
            "--epochs",
            "1",
            "--mask-training",
            "0.024,0.048",
            "--mask-tries",
            str(args.tries),
            "--precision",
            "bf16",
            "--out",
            str(out / "train"),
            "--name",
            "bench",
            "--threads",
            str(args.threads),
        ],
        "certify": [
            "certify",
            "--model",
            "gtsrb-resnet",
            *common,
            "--defense",
            "patchcleanser",
            "--patch-size",
            "0.024",
            "--limit",
            str(args.limit),
            "--json",
        ],
        "attack": [
            "attack",
            "--model",
            "gtsrb-cnn",
            *common,
            "--source",
            "stop",
            "--target",
            "yield",
            "--size",
            "0.05",
            "--steps",
            str(args.steps),
            "--batch-size",
            "256",
            "--out",
            str(out / "attack"),
        ],
    }


def _run(cmd: list[str], system: bool, threads: int, store: Path) -> dict[str, float]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "PATCHSCOPE_STORE": str(store),
        "PATCHSCOPE_PROGRESS_SECONDS": "100000",
    }
    env.pop("PATCHSCOPE_MALLOC", None)
    if system:
        env["PATCHSCOPE_MALLOC"] = "system"
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty child cannot fill it and stall before wait4
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "patchscope", *cmd], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(
                f"bench/malloc.py: `patchscope {' '.join(cmd)}` failed: {err.read().decode().strip().splitlines()[-1:]}"
            )
    return {"wall_s": wall, "user_s": usage.ru_utime, "sys_s": usage.ru_stime}


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--tries", type=int, default=16, help="--mask-tries of the training workload")
    p.add_argument("--limit", type=int, default=64, help="images certified")
    p.add_argument("--steps", type=int, default=30, help="attack steps")
    p.add_argument("--only", default="", help="comma-separated workloads (default: all)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for name, cmd in _workloads(args, out).items():
            if args.only and name not in args.only.split(","):
                continue
            runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
            for _ in range(args.reps):
                for system in (True, False):
                    runs[system].append(_run(cmd, system, args.threads, out / "runs.db"))
            glibc, tuned = _median(runs[True]), _median(runs[False])
            rows.append(
                {
                    "workload": name,
                    "glibc": glibc,
                    "tuned": tuned,
                    "speedup": round(glibc["wall_s"] / tuned["wall_s"], 2),
                }
            )
            if not args.json:
                print(
                    f"{name:10s} glibc {glibc['wall_s']:7.1f}s (sys {glibc['sys_s']:6.1f})  "
                    f"tuned {tuned['wall_s']:7.1f}s (sys {tuned['sys_s']:6.1f})  x{rows[-1]['speedup']}",
                    flush=True,
                )
    if args.json:
        print(
            json.dumps(
                {
                    "threads": args.threads,
                    "reps": args.reps,
                    "tries": args.tries,
                    "limit": args.limit,
                    "steps": args.steps,
                    "rows": rows,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
