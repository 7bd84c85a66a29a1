"""`patchscope demo` end to end on the bundled zoo (tiny budget), and its report in a browser."""

from __future__ import annotations

import json
from html import escape as html_escape
from pathlib import Path

import pytest

from patchscope.models import list_models
from patchscope.workflows.demo import DEMO_MODELS, attention_heading
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
    masses = {n: r["attention_in_patch"] for n, r in results["explain"].items()}
    for heading in (
        html_escape(attention_heading(masses)),  # what the heat maps show, from the measured shares
        "Across viewing conditions",
        "Defenses",
        "Certified",
        "Reproduce",
    ):
        assert heading in html
    if CHROMIUM:
        images, broken, errors = check_page(page, tmp_path / "screenshot.png")
        assert images >= 6 and broken == 0 and errors == 0


def test_the_heading_says_where_attention_moves():
    moved, kept = {"clean": 0.1, "patched": 0.4}, {"clean": 0.12, "patched": 0.02}
    assert attention_heading({"a": moved, "b": kept}) == "Attention moves to the patch on a, not on b"
    assert "not" not in attention_heading({"a": moved, "b": moved})
    assert "does not move" in attention_heading({"a": kept, "b": kept, "c": kept})


def test_the_headline_image_is_the_one_the_patch_is_surest_of(tmp_path: Path):
    import torch
    from rich.console import Console

    from patchscope.attacks import Patch
    from patchscope.explain import apply_patch
    from patchscope.models import Classifier
    from patchscope.models.archs import cnn
    from patchscope.workflows.demo import Demo, quick_settings

    torch.manual_seed(0)
    demo = Demo(tmp_path, quick_settings(), Console(stderr=True))
    demo.main, demo.tgt = Classifier(cnn(num_classes=43, width=4, hidden=8), [str(i) for i in range(43)]).eval(), 13
    patch = Patch(torch.rand(3, 7, 7), torch.ones(7, 7), "on-object", (12, 12))
    x = torch.rand(6, 3, 32, 32)
    index, confidence = demo._headline_image(patch, x)
    with torch.no_grad():
        every = demo.main(apply_patch(x, patch)).softmax(1)[:, 13]
    assert confidence == pytest.approx(float(every.max())) and float(every[index]) == pytest.approx(confidence)
