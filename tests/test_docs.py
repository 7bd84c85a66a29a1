"""What users read: the README stays short and speaks of the product, links resolve, the docs site builds."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

#: "issue #3", "issues #3 and #4", a bare "#3" (not an HTML entity, a URL fragment or a markdown anchor)
ISSUE_REF = re.compile(r"(?i)\bissues?\s*#\s*\d+|\bthe issue's\b|(?<![\w&/#\]`(])#\d+\b")
#: project-management narrative that does not belong in what users read first
GOAL_TALK = re.compile(r"(?i)\bgoals?\b|not reached yet|\bsession\b")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def user_pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def test_readme_is_short() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 320, f"README.md has {len(lines)} lines; move detail into docs/"


@pytest.mark.parametrize("page", user_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_issue_references(page: Path) -> None:
    hits = [f"{i}: {line.strip()}" for i, line in enumerate(page.read_text().splitlines(), 1) if ISSUE_REF.search(line)]
    assert not hits, f"{page.relative_to(ROOT)} refers to issues:\n" + "\n".join(hits)


def test_readme_has_no_goal_narrative() -> None:
    hits = [
        f"{i}: {line.strip()}" for i, line in enumerate(README.read_text().splitlines(), 1) if GOAL_TALK.search(line)
    ]
    assert not hits, "README.md: state questions and answers, not goals:\n" + "\n".join(hits)


def test_readme_findings_give_one_number_per_claim_of_bundled_models() -> None:
    """What we found: one row per claim, every cell filled, no footnote marks, only models the zoo ships."""
    from patchscope.models import list_models

    found = README.read_text().split("## What we found", 1)[1].split("\n## ", 1)[0]
    assert not re.search(r"[†‡*]\)|[†‡]", found), "footnote marks belong in docs/findings.md"
    rows = [line for line in found.splitlines() if line.startswith("| (")]
    assert [r[3] for r in rows] == list("abcdefg")
    assert all(cell.strip() for r in rows for cell in r.strip("|").split("|")), "a blank cell"
    named = set(re.findall(r"`(gtsrb-[\w-]+)`", found))
    assert named and named <= set(list_models()), named - set(list_models())


def test_issue_pattern_catches_what_it_should() -> None:
    for bad in ("see issue #3", "Issue #12 asks", "the missing points of #3", "#3's goal", "the issue's 95%"):
        assert ISSUE_REF.search(bad), bad
    for fine in ("[a](findings.md#a-how-small)", "&#39;", "colour #fff", "`#3`-free", "http://x/#3"):
        assert not ISSUE_REF.search(fine), fine


@pytest.mark.parametrize(
    "page", [README, *sorted(p for p in DOCS.glob("*.md"))], ids=lambda p: str(p.relative_to(ROOT))
)
def test_local_links_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: links to missing files {broken}"


def test_mkdocs_strict_build(tmp_path: Path) -> None:
    missing = [m for m in ("mkdocs", "mkdocstrings", "material") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"docs tools not installed ({', '.join(missing)}): pip install -e '.[docs]'")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "findings" / "index.html").exists()
    assert "patchscope.attacks.PatchAttack" in (tmp_path / "site" / "api" / "attacks" / "index.html").read_text()


def test_readme_python_example_runs_and_prints_typed_results(tmp_path: Path) -> None:
    """The README's "same from Python" block runs as written (on the bundled model, patch and demo data)."""
    text = README.read_text()
    block = re.search(r"The same from Python:\n\n```python\n(.*?)```", text, re.S)
    assert block is not None, "README.md: the Python example is missing"
    script = tmp_path / "example.py"
    script.write_text(block.group(1))
    r = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["quick patch", "bundled patch", "certified"], r.stdout
    assert re.fullmatch(r"certified: \d+% of 8", lines[-1]), lines[-1]
