"""`patchscope demo` end to end on the bundled zoo (tiny budget), and its report in a browser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patchscope.models import list_models
from patchscope.workflows.demo import DEMO_MODELS
from tests.conftest import run_cli
from tests.runs.test_report_browser import CHROMIUM, check_page


@pytest.mark.skipif(not list_models(), reason="no zoo bundled")
def test_demo_writes_a_report_that_loads_cleanly(tmp_path: Path):
    out = tmp_path / "demo-report"
    proc = run_cli("demo", "--quick", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("report: ") and last.endswith("report.html")
    page = Path(last.removeprefix("report: "))
    assert page.exists()
    results = json.loads((out / "results.json").read_text())
    assert set(results["evaluate"]) == {m for m in DEMO_MODELS if m in list_models()}
    if "gtsrb-cnn-at" in list_models():
        assert {"clean_accuracy", "patch", "adaptive"} <= set(results["defend"]["gtsrb-cnn-at"])
    for stage in ("attack", "evaluate", "sweeps", "explain", "defend", "certify"):
        assert stage in results, stage
    html = page.read_text()
    for heading in (
        "How the patch fools the network",
        "Across viewing conditions",
        "Defenses",
        "Certified",
        "Reproduce",
    ):
        assert heading in html
    if CHROMIUM:
        images, broken, errors = check_page(page, tmp_path / "screenshot.png")
        assert images >= 6 and broken == 0 and errors == 0
