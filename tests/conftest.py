"""Shared fixtures: a tiny checkpoint with GTSRB classes, the demo set, CLI runner."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from patchscope.data import load_data
from patchscope.models import Classifier, save_checkpoint

# under pytest-xdist each worker takes one core
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@contextlib.contextmanager
def forward_rows(model: torch.nn.Module) -> Iterator[list[int]]:
    """The number of rows of every forward pass of ``model`` (or of a copy an attack makes of it) meanwhile."""
    rows: list[int] = []
    hook = model.register_forward_pre_hook(lambda _, args: rows.append(len(args[0])))
    try:
        yield rows
    finally:
        hook.remove()


@pytest.fixture(autouse=True, scope="session")
def _private_run_store(tmp_path_factory: pytest.TempPathFactory):
    """Never write the user's ~/.patchscope/runs.db from tests (subprocesses inherit the variable)."""

    path = tmp_path_factory.mktemp("store") / "runs.db"
    old = os.environ.get("PATCHSCOPE_STORE")
    os.environ["PATCHSCOPE_STORE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("PATCHSCOPE_STORE", None)
    else:
        os.environ["PATCHSCOPE_STORE"] = old


@pytest.fixture(scope="session")
def demo():
    return load_data("demo")


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN (8 channels) trained for a few seconds on the demo set, saved as safetensors + card."""
    from patchscope.models.train import Recipe, train_model

    recipe = Recipe.for_arch(
        "cnn", epochs=4, batch_size=64, lr=0.05, ema_decay=0.5, occlude_p=0.0, arch_kwargs={"width": 8, "hidden": 32}
    )
    model, card = train_model(load_data("demo"), recipe, progress=False, name="tiny")
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    save_checkpoint(model.net, card, path, half=False)
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path: Path) -> Classifier:
    from patchscope.models import create_model

    return create_model(str(tiny_model_path))


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, fresh: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``patchscope ARGS`` as a user would; returns the finished process (its exit status, stdout and stderr).

    In this process, through the same entry point (:func:`patchscope.cli.main`), unless the run needs its own
    environment, working folder or interpreter (``fresh``): then ``python -m patchscope`` in a new one."""
    if env is None and cwd is None and not fresh:
        from tests.cli._contract import invoke

        r = invoke(*args)
        return subprocess.CompletedProcess(["patchscope", *args], r.code, r.out, r.err)
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "patchscope", *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=600
    )


PROGRESS = re.compile(r"^[\w -]+: (\d+/\d+ \(\d+%\)|done, )")


def messages(stderr: str) -> list[str]:
    """The lines of ``stderr`` that are not progress (a slow machine may show a progress line before a message)."""
    return [line for line in stderr.splitlines() if line.strip() and not PROGRESS.match(line)]
