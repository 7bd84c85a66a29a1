"""One self-contained HTML report (figures embedded, no network), rendered with jinja2.

A report is a list of :class:`Section` (title, text, figures, a table, the commands that reproduce
it) plus headline findings; the demo and ``patchscope report --runs`` build them.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

import patchscope
from patchscope.errors import PatchscopeError
from patchscope.io import atomic_path, utf8_text


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


#: images whose longer side is at most this many pixels (a patch, a thumbnail) are drawn enlarged, pixel-sharp
SMALL_PX = 128
#: the size a small image is enlarged to, in whole multiples of its pixels
ENLARGED_PX = 256


def data_uri(path: Path) -> str:
    """The PNG at ``path`` as a ``data:`` URI, so the page needs no other file."""
    try:
        return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()
    except FileNotFoundError:
        raise PatchscopeError(f"report: figure {path} is missing") from None


def figure_view(path: Path, caption: str, patch: bool = False) -> dict[str, str]:
    """A figure as the page shows it: its PNG embedded; a patch or any image of at most :data:`SMALL_PX` pixels a
    side enlarged by a whole factor with nearest-neighbour sampling (each pixel a sharp square) and drawn pixelated.

    >>> import tempfile
    >>> from PIL import Image
    >>> small = Path(tempfile.mkdtemp()) / "patch.png"
    >>> Image.new("RGB", (10, 10)).save(small)
    >>> view = figure_view(small, "a 10x10 px patch")
    >>> view["css"], Image.open(io.BytesIO(base64.b64decode(view["src"].split(",")[1]))).size
    ('patch', (260, 260))
    """
    from PIL import Image

    src = data_uri(path)
    with Image.open(path) as img:
        side = max(img.size)
        if not patch and side > SMALL_PX:
            return {"src": src, "caption": caption, "css": ""}
        factor = max(1, -(-ENLARGED_PX // side))
        if factor > 1:
            buf = io.BytesIO()
            img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST).save(buf, format="PNG")
            src = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return {"src": src, "caption": caption, "css": "patch"}


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
            "figures": [figure_view(p, c, s.patch_figure) for p, c in s.figures],
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
        tmp.write_text(utf8_text(html), encoding="utf-8")
    return path


def runs_report(runs: list[Any], out: Path) -> Path:
    """A report of stored runs (:class:`patchscope.runs.store.Run`): one section each, with its command, its
    results (:func:`~patchscope.runs.results.result_rows`, whatever its kind), its settings and any PNG artifacts
    (a run folder's PNGs included; patches drawn large and pixel-sharp)."""
    from patchscope.runs.results import result_rows, setting_rows

    sections = []
    for run in runs:
        pngs: list[tuple[Path, str]] = []
        for name, path in (run.artifacts or {}).items():
            p = Path(str(path))
            folder = p if p.is_dir() else p.parent
            pngs += [(f, f"{name}: {f.name}") for f in sorted(folder.glob("*.png"))] if folder.exists() else []
        results = result_rows(run.kind, run.metrics or {})
        table: dict[str, list[Any]] = {
            "columns": ["result", "value"],
            "rows": [[k, v] for k, v in results] + [["setting: " + k, v] for k, v in setting_rows(run.config or {})],
        }
        sections.append(
            Section(
                f"Run {run.id}: {run.kind} ({run.status})",
                f"started {run.started}" + ("" if results else "; no results recorded"),
                pngs,
                table,
                [run.command] if run.command else [],
            )
        )
    if not sections:
        raise PatchscopeError("report: no runs given")
    return render_report(sections, out, "patchscope runs", f"{len(sections)} runs")
