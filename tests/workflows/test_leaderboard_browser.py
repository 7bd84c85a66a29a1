"""The leaderboard as a person uses it: headless Chromium loads the page, a click on a column's header sorts the rows
by it (a second click reverses), the figures show, and no script error or console error comes up."""

from __future__ import annotations

import html
import re
import subprocess
from pathlib import Path

import pytest

from patchscope.workflows.leaderboard import write_leaderboard
from tests.runs.test_report_browser import CHROMIUM, FLAGS, NO_CHROMIUM
from tests.workflows.test_leaderboard import sample_cards

#: clicks the model header, then the 5% robust header twice, and writes the first table's order after each step
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
const consoleError = console.error;
console.error = (...args) => { window.__errors.push(args.join(' ')); consoleError(...args); };
window.addEventListener('load', () => {
  const table = document.querySelector('table.board');
  const order = () => [...table.tBodies[0].rows].map(r => r.cells[1].dataset.value).join(',');
  const header = text => [...table.tHead.querySelectorAll('th')].find(th => th.textContent.trim().startsWith(text));
  const steps = [order()];
  header('model').click(); steps.push(order());
  header('5%').click(); steps.push(order());
  header('5%').click(); steps.push(order() + ' ' + header('5%').getAttribute('aria-sort'));
  const broken = [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length;
  document.body.setAttribute('data-probe', steps.join(';') + `;images=${document.images.length} broken=${broken}` +
    ` errors=${window.__errors.length}`);
});
</script>"""


def probe_page(page: Path) -> list[str]:
    """Load ``page`` with :data:`PROBE` in headless Chromium; the probe's steps."""
    assert CHROMIUM
    probe = page.with_name("probe-" + page.name)
    probe.write_text(page.read_text().replace("<head>", "<head>" + PROBE, 1))
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={page.parent / 'chromium-profile'}", "--virtual-time-budget=3000"]
    dom = subprocess.run([*command, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    m = re.search(r'data-probe="([^"]*)"', dom.stdout)
    assert m, dom.stderr[-2000:]
    return html.unescape(m.group(1)).split(";")


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_a_click_on_a_header_sorts_the_rows_without_errors(tmp_path: Path) -> None:
    made = write_leaderboard(sample_cards(tmp_path), tmp_path / "board")
    ranked = [r.label for r in made.board.rows]
    before, by_model, by_robust, reversed_robust, status = probe_page(made.page)
    assert before.split(",") == ranked
    assert by_model.split(",") == sorted(ranked) != ranked  # the order changed, to the names' order
    assert by_robust.split(",") == ranked  # robust at 5%, best first: the board's own rank again
    order, direction = reversed_robust.rsplit(" ", 1)
    # lowest first; the two rows tied at 50% keep their rank order
    assert direction == "ascending" and order.split(",") == [ranked[3], ranked[1], ranked[2], ranked[0]]
    assert status == "images=2 broken=0 errors=0"
