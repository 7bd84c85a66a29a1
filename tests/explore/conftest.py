"""Shared pieces of the explorer's tests: the bundled Stop sign and the zoo's small ViT patch that flips it."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from patchscope.attacks import load_patch
from patchscope.data import load_data

#: the zoo patch the docs tell a person to try first, and the model it was made on
PATCH = "zoo:gtsrb-vit/stop-yield-small"
MODEL = "gtsrb-vit"
STOP, YIELD = 14, 13


@pytest.fixture(scope="session")
def stop_image() -> torch.Tensor:
    """The first bundled Stop sign, (3, 32, 32) in [0, 1]."""
    return load_data("demo").of_class("stop").float_images()[0]


@pytest.fixture(scope="session")
def stop_index() -> int:
    """The first bundled Stop sign's index in the demo data (what the page asks for as data:INDEX)."""
    return int((load_data("demo").labels == STOP).nonzero()[0])


@pytest.fixture(scope="session")
def small_patch():
    return load_patch(PATCH)


@pytest.fixture(scope="session")
def vit():
    from patchscope.models import create_model

    return create_model(MODEL)


@contextlib.contextmanager
def served(*args: str, timeout: float = 240.0) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``patchscope explore --port 0 --no-browser ARGS`` in a process of its own, as a user starts it; yields the
    process and the page's address (from its first line). The process is stopped with SIGINT at the end if it runs."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "patchscope", "explore", "--port", "0", "--no-browser", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True).start()
    try:
        try:
            first = lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the server did not start: {proc.poll()}") from None
        found = re.search(r"(http://\S+/)", first)
        assert found, first
        yield proc, found.group(1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def get_json(url: str, timeout: float = 120.0) -> Any:
    """GET ``url`` and decode its JSON."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())
