"""The report as a person sees it: headless Chromium loads it, no image is broken, no script error."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from patchscope.eval.figures import transfer_figure
from patchscope.runs.report import Section, render_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("chromium-headless-shell")
#: why the browser tests skip: `make test` installs no browser, CI's `.ci/run` does where it can
NO_CHROMIUM = "no Chromium (chromium, chromium-browser or chromium-headless-shell) on PATH; .ci/run installs it"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
window.addEventListener('load', () => {
  const broken = [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length;
  const errors = window.__errors.length;
  document.body.setAttribute('data-probe', `images=${document.images.length} broken=${broken} errors=${errors}`);
});
</script>"""


def check_page(page: Path, screenshot: Path) -> tuple[int, int, int]:
    """Load ``page`` in headless Chromium; return (images, broken images, script errors) and save a screenshot."""
    assert CHROMIUM
    probe = page.with_name("probe-" + page.name)
    probe.write_text(page.read_text().replace("<head>", "<head>" + PROBE, 1))
    profile = page.parent / "chromium-profile"
    common = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=3000"]
    dom = subprocess.run([*common, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    subprocess.run(
        [*common, f"--screenshot={screenshot}", "--window-size=1200,2000", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    m = re.search(r'data-probe="images=(\d+) broken=(\d+) errors=(\d+)"', dom.stdout)
    assert m, dom.stderr[-2000:]
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_report_loads_in_chromium_without_broken_images_or_errors(tmp_path: Path):
    transfer_figure({"gtsrb-cnn": {"gtsrb-cnn": 0.9, "gtsrb-vit": 0.05}}, tmp_path / "t.png")
    page = render_report(
        [
            Section(
                "Transfer",
                "text",
                [(tmp_path / "t.png", "matrix")],
                {"columns": ["a", "b"], "rows": [["1", "2"]]},
                ["patchscope transfer"],
            )
        ],
        tmp_path,
        findings=["a finding"],
    )
    images, broken, errors = check_page(page, tmp_path / "shot.png")
    assert images == 1 and broken == 0 and errors == 0
    assert (tmp_path / "shot.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_the_browser_check_catches_a_broken_image_and_a_script_error(tmp_path: Path):
    page = tmp_path / "bad.html"
    page.write_text(
        '<html><head></head><body><img src="data:image/png;base64,AAAA">'
        "<script>undefinedFunction()</script></body></html>"
    )
    images, broken, errors = check_page(page, tmp_path / "bad.png")
    assert (images, broken) == (1, 1) and errors >= 1  # the broken image fires an error event too
