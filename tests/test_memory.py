"""patchscope.memory: glibc's thresholds raised once, and left alone where the user or the platform says so."""

from __future__ import annotations

import platform
import sys
from typing import Any

import pytest

from patchscope import memory


class FakeLibc:
    """Stands in for ``ctypes.CDLL(None)``: records each mallopt call and answers ``answer``."""

    def __init__(self, answer: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.answer


@pytest.fixture
def libc(monkeypatch: pytest.MonkeyPatch) -> FakeLibc:
    fake = FakeLibc()
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: fake)
    monkeypatch.setattr(memory.sys, "platform", "linux")
    for var in ("PATCHSCOPE_MALLOC", *memory._USER_VARS):
        monkeypatch.delenv(var, raising=False)
    return fake


def test_sets_all_three_thresholds(libc: FakeLibc) -> None:
    assert memory.keep_freed_memory() is True
    assert {p for p, _ in libc.calls} == {memory.M_MMAP_THRESHOLD, memory.M_TRIM_THRESHOLD, memory.M_TOP_PAD}
    assert all(0 < v < 2**31 for _, v in libc.calls)  # mallopt takes a C int


def test_a_refused_setting_is_reported(libc: FakeLibc) -> None:
    libc.answer = 0
    assert memory.keep_freed_memory() is False


@pytest.mark.parametrize(
    "var,value",
    [
        ("PATCHSCOPE_MALLOC", "system"),
        ("PATCHSCOPE_MALLOC", "SYSTEM"),
        ("MALLOC_TRIM_THRESHOLD_", "0"),
        ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=1"),
    ],
)
def test_the_users_choice_wins(libc: FakeLibc, monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    assert memory.keep_freed_memory() is False
    assert libc.calls == []


def test_other_platforms_untouched(libc: FakeLibc, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.keep_freed_memory() is False
    assert libc.calls == []


def test_no_mallopt_is_not_an_error(libc: FakeLibc, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: Any) -> Any:
        raise OSError("no C library")

    monkeypatch.setattr(memory.ctypes, "CDLL", missing)
    assert memory.keep_freed_memory() is False


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"), reason="glibc only")
def test_real_glibc_takes_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PATCHSCOPE_MALLOC", *memory._USER_VARS):
        monkeypatch.delenv(var, raising=False)
    assert memory.keep_freed_memory() is True
