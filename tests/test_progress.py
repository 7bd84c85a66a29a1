"""Progress in logs: plain lines at most once per interval, nothing for short loops, a closing line."""

from __future__ import annotations

import io
import itertools

from hypothesis import given
from hypothesis import strategies as st

from patchscope.progress import progress_bar


def _run(total: int, step_s: float, interval: float, fields: bool = True) -> list[str]:
    ticks, out = itertools.count(0.0, step_s), io.StringIO()
    with progress_bar(total, "job", interval=interval, stream=out, clock=lambda: next(ticks)) as update:
        for i in range(total):
            update(epoch=i + 1) if fields else update()
    return out.getvalue().splitlines()


@given(total=st.integers(1, 200), step_s=st.floats(0.01, 50), interval=st.floats(1, 100))
def test_lines_are_spaced_by_the_interval_and_end_with_done(total: int, step_s: float, interval: float) -> None:
    lines = _run(total, step_s, interval)
    progress, done = lines[:-1], lines[-1:]
    # the clock advances step_s per call: one line per `interval` seconds of work at most (plus the closing one)
    assert len(progress) <= total * step_s / interval + 1
    assert (done == [f"job: done, {total}/{total} in " + done[0].rsplit(" in ", 1)[-1]]) if lines else True
    counts = [int(line.split(": ")[1].split("/")[0]) for line in progress]
    assert counts == sorted(counts) and all(0 < c <= total for c in counts)
    assert all(f"/{total} (" in line and "elapsed" in line and "left" in line and "epoch" in line for line in progress)


def test_a_short_loop_prints_nothing_and_a_long_one_reports_as_it_goes() -> None:
    assert _run(10, step_s=1.0, interval=30) == []
    lines = _run(10, step_s=10.0, interval=30, fields=False)
    assert lines[0] == "job: 3/10 (30%), 30s elapsed, ~1m10s left" and lines[-1] == "job: done, 10/10 in 1m50s"


def test_disabled_progress_writes_nothing() -> None:
    out = io.StringIO()
    with progress_bar(5, "job", enabled=False, interval=0, stream=out) as update:
        for _ in range(5):
            update(loss=1.0)
    assert out.getvalue() == ""
