"""One self-contained HTML report (figures embedded, no network), rendered with jinja2.

A report is a list of :class:`Section` (title, text, figures, a table, the commands that reproduce
it) plus headline findings; the demo and ``patchscope report --runs`` build them.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

import patchscope
from patchscope.errors import PatchscopeError
from patchscope.io import atomic_path


@dataclass
class Section:
    """One block of the report. ``figures`` are (path to a PNG, caption) pairs; ``table`` has columns and rows."""

    title: str
    text: str = ""
    figures: list[tuple[Path, str]] = field(default_factory=list)
    table: dict[str, list[Any]] | None = None
    commands: list[str] = field(default_factory=list)
    note: str = ""
    patch_figure: bool = False

    @property
    def id(self) -> str:
        return "".join(ch if ch.isalnum() else "-" for ch in self.title.lower()).strip("-")


def data_uri(path: Path) -> str:
    """The PNG at ``path`` as a ``data:`` URI, so the page needs no other file."""
    try:
        return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()
    except FileNotFoundError:
        raise PatchscopeError(f"report: figure {path} is missing") from None


def render_report(
    sections: list[Section],
    out: Path,
    title: str = "patchscope report",
    subtitle: str = "",
    findings: list[str] | None = None,
) -> Path:
    """Write ``out/report.html`` and return its path.

    >>> import tempfile
    >>> p = render_report([Section("Hello", text="world")], Path(tempfile.mkdtemp()))
    >>> "world" in p.read_text()
    True
    """
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("patchscope.runs", "templates"), autoescape=jinja2.select_autoescape(["html", "j2"])
    )
    view = [
        {
            "id": s.id,
            "title": s.title,
            "text": s.text,
            "table": s.table,
            "commands": s.commands,
            "note": s.note,
            "figures": [
                {"src": data_uri(p), "caption": c, "css": "patch" if s.patch_figure else ""} for p, c in s.figures
            ],
        }
        for s in sections
    ]
    html = env.get_template("report.html.j2").render(
        title=title,
        subtitle=subtitle,
        sections=view,
        findings=findings or [],
        version=patchscope.__version__,
        generated=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
    )
    path = Path(out) / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text(html)
    return path


def _cell(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def runs_report(runs: list[Any], out: Path) -> Path:
    """A report of stored runs (:class:`patchscope.runs.store.Run`): one section each, with its command,
    settings, scalar metrics and any PNG artifacts (a run folder's PNGs included)."""
    sections = []
    for run in runs:
        metrics = {
            k: v for k, v in (run.metrics or {}).items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)
        }
        pngs: list[tuple[Path, str]] = []
        for name, path in (run.artifacts or {}).items():
            p = Path(str(path))
            folder = p if p.is_dir() else p.parent
            pngs += [(f, f"{name}: {f.name}") for f in sorted(folder.glob("*.png"))] if folder.exists() else []
        rows = [[k, _cell(v)] for k, v in sorted((run.config or {}).items()) if not isinstance(v, (dict, list))]
        table: dict[str, list[Any]] = {
            "columns": ["metric", "value"],
            "rows": [[k, _cell(v)] for k, v in metrics.items()] + [["config: " + r[0], r[1]] for r in rows],
        }
        sections.append(
            Section(
                f"Run {run.id}: {run.kind} ({run.status})",
                f"started {run.started}",
                pngs,
                table,
                [run.command] if run.command else [],
            )
        )
    if not sections:
        raise PatchscopeError("report: no runs given")
    return render_report(sections, out, "patchscope runs", f"{len(sections)} runs")
