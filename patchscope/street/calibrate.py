"""Calibrate a printer from a photograph of its printed sheet: find the chart's four ArUco markers, rectify the chart
(a homography from the page's millimetres to the photograph's pixels), read each colour cell's mean colour and fit
the affine colour transform from intended to observed colours (:func:`~patchscope.attacks.printer.fit_printer`).

Needs OpenCV (the ``calibrate`` or ``print`` extra).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from patchscope.attacks.printer import PrinterModel, fit_printer
from patchscope.errors import PatchscopeError
from patchscope.io import check_output
from patchscope.street.printing import SHEET_FORMAT
from patchscope.street.sheet import ColourChart, Rect

#: the share of each cell's side read (its centre), clear of the neighbours' edges
CELL_INNER = 0.6


def require_opencv() -> None:
    """Refuse, in one line, where OpenCV is not installed."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        raise PatchscopeError("calibrating needs OpenCV: pip install 'patchscope[calibrate]'") from None


def load_chart(sheet: str | Path) -> ColourChart:
    """The colour chart a sheet's record (``sheet.json``, written beside the PDF) describes."""
    try:
        data = json.loads(Path(sheet).read_text())
        if not isinstance(data, dict) or data.get("format") != SHEET_FORMAT:
            raise ValueError(f"not a {SHEET_FORMAT} record")
        c = data["layout"]["chart"]
        rect = lambda r: Rect(*(float(r[k]) for k in ("x", "y", "w", "h")))  # noqa: E731
        chart = ColourChart(
            rect(c["box"]),
            tuple(rect(r) for r in c["cells"]),
            tuple((float(r), float(g), float(b)) for r, g, b in c["colours"]),
            tuple(rect(r) for r in c["markers"]),
            tuple(int(i) for i in c["marker_ids"]),
            str(c["dictionary"]),
        )
        if len(chart.cells) != len(chart.colours) or len(chart.markers) != len(chart.marker_ids):
            raise ValueError("cells and colours, or markers and ids, differ in number")
    except FileNotFoundError:
        raise PatchscopeError(f"sheet {sheet}: no such file", params=("sheet",)) from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PatchscopeError(f"sheet {sheet}: not a sheet record ({str(e)[:120]})", params=("sheet",)) from None
    return chart


def chart_homography(photo: np.ndarray, chart: ColourChart) -> np.ndarray:
    """The (3, 3) homography from the page's millimetres to ``photo``'s pixels (H, W, 3 uint8 RGB), from the chart's
    four markers; a photograph where not all four are found is refused in one line."""
    import cv2

    dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, chart.dictionary))
    detector = cv2.aruco.ArucoDetector(dictionary, cv2.aruco.DetectorParameters())
    corners, ids, _ = detector.detectMarkers(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY))
    found = {int(i): c.reshape(4, 2) for i, c in zip(ids.flatten(), corners)} if ids is not None else {}
    missing = [i for i in chart.marker_ids if i not in found]
    if missing:
        raise PatchscopeError(
            f"the colour chart was not found: markers {', '.join(map(str, missing))} of "
            f"{', '.join(map(str, chart.marker_ids))} are not in the photo; photograph the whole chart, flat, sharp "
            "and evenly lit, all four markers in view"
        )
    page = np.array([p for m in chart.markers for p in m.corners()], dtype=np.float64)
    pixels = np.concatenate([found[i] for i in chart.marker_ids]).astype(np.float64)
    h, _ = cv2.findHomography(page, pixels)
    if h is None:
        raise PatchscopeError("the colour chart's markers do not fit one flat page; photograph the chart flat")
    return np.asarray(h)


def read_cells(photo: np.ndarray, chart: ColourChart, homography: np.ndarray, samples: int = 9) -> torch.Tensor:
    """Each cell's mean colour (K, 3) in [0, 1]: ``samples`` x ``samples`` points over the centre of the cell
    (:data:`CELL_INNER` of its side), mapped into ``photo`` by ``homography`` and read bilinearly."""
    steps = (torch.arange(samples, dtype=torch.float64) + 0.5) / samples * CELL_INNER + (1 - CELL_INNER) / 2
    u, v = torch.meshgrid(steps, steps, indexing="xy")
    cells = torch.tensor([[c.x, c.y, c.w, c.h] for c in chart.cells], dtype=torch.float64)
    xs = cells[:, :1] + u.flatten()[None] * cells[:, 2:3]  # (K, S*S) in millimetres
    ys = cells[:, 1:2] + v.flatten()[None] * cells[:, 3:4]
    pts = torch.stack([xs, ys, torch.ones_like(xs)], -1) @ torch.from_numpy(homography).T  # (K, S*S, 3)
    px, py = pts[..., 0] / pts[..., 2], pts[..., 1] / pts[..., 2]
    h, w = photo.shape[:2]
    if bool((px < 0).any() | (py < 0).any() | (px > w - 1).any() | (py > h - 1).any()):
        raise PatchscopeError("the colour chart is partly outside the photo: photograph all of it")
    image = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255
    grid = torch.stack([px / (w - 1) * 2 - 1, py / (h - 1) * 2 - 1], -1)[None].float()  # (1, K, S*S, 2)
    read = torch.nn.functional.grid_sample(image, grid, mode="bilinear", align_corners=True)  # (1, 3, K, S*S)
    return read[0].mean(-1).T  # (K, 3)


@dataclass(frozen=True)
class Calibration:
    """What :func:`calibrate_printer` measured: the ``printer`` (transform and colours) and where it was written."""

    printer: PrinterModel
    out: Path
    mean_error: float  # mean distance between intended and observed colours, before the transform

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the file, the transform, its residual and the colours' error before it."""
        p = self.printer
        return {"printer": str(self.out), "matrix": p.matrix, "rms": p.rms, "mean_error": self.mean_error}


def calibrate_printer(photo: str | Path, sheet: str | Path, out: str | Path) -> Calibration:
    """Calibrate a printer from ``photo``, a photograph of the printed sheet whose record is ``sheet``; write the
    printer file to ``out`` (its folder checked before any work).

    Returns:
        A :class:`Calibration`. A photo where the chart is not found raises :class:`PatchscopeError`.
    """
    from patchscope.data.images import BAD_IMAGE_ERRORS, open_image, reason, to_rgb8

    out = Path(out)
    check_output(out.parent, (out.name,), "out")
    require_opencv()
    chart = load_chart(sheet)
    try:
        with open_image(Path(photo)) as im:
            rgb = np.asarray(to_rgb8(im)).copy()
    except FileNotFoundError:
        raise PatchscopeError(f"photo {photo}: no such file", params=("photo",)) from None
    except BAD_IMAGE_ERRORS as e:
        raise PatchscopeError(f"photo {photo}: cannot read the image ({reason(e)})", params=("photo",)) from None
    observed = read_cells(rgb, chart, chart_homography(rgb, chart))
    intended = torch.tensor(chart.colours, dtype=torch.float64)
    printer = fit_printer(intended, observed.double())
    printer.save(out)
    return Calibration(printer, out, float((observed.double() - intended).norm(dim=1).mean()))


def render_chart(chart: ColourChart, px_per_mm: float, margin_mm: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """The chart as a flat scan would see it: an RGB uint8 image of the chart's box and ``margin_mm`` of white paper
    around it, and the (3, 3) map from the page's millimetres to its pixels (for tests and previews)."""
    from patchscope.street.pdf import aruco_marker

    x0, y0 = chart.box.x - margin_mm, chart.box.y - margin_mm
    w, h = round((chart.box.w + 2 * margin_mm) * px_per_mm), round((chart.box.h + 2 * margin_mm) * px_per_mm)
    img = np.full((h, w, 3), 255, dtype=np.uint8)

    def span(r: Rect) -> tuple[slice, slice]:
        top, left = round((r.y - y0) * px_per_mm), round((r.x - x0) * px_per_mm)
        return slice(top, top + round(r.h * px_per_mm)), slice(left, left + round(r.w * px_per_mm))

    for cell, rgb in zip(chart.cells, chart.colours):
        img[span(cell)] = np.round(np.array(rgb) * 255).astype(np.uint8)
    for rect, marker_id in zip(chart.markers, chart.marker_ids):
        modules = aruco_marker(chart.dictionary, marker_id).numpy()
        rows, cols = span(rect)
        side = rows.stop - rows.start
        idx = (np.arange(side) * len(modules) // side).clip(0, len(modules) - 1)
        img[rows, cols] = modules[idx][:, idx][..., None]
    to_pixels = np.array([[px_per_mm, 0, -x0 * px_per_mm], [0, px_per_mm, -y0 * px_per_mm], [0, 0, 1]])
    return img, to_pixels
