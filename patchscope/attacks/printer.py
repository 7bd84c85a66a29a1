"""A printer's colours, as calibration measured them: what it makes of each intended colour, and an affine colour
transform fitted to that (observed = M @ [r, g, b, 1]), saved as JSON.

An attack given a :class:`PrinterModel` shows the model the patch as the printer will make it (the transform, before
it is pasted) and keeps the printed colours near those the printer was seen to make (the non-printability term
measured against the observed colours).

>>> from patchscope.attacks.losses import printable_colours
>>> p = fit_printer(printable_colours(), printable_colours() * 0.8 + 0.1)
>>> [round(v, 3) for v in p.matrix[0]]
[0.8, 0.0, 0.0, 0.1]
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from patchscope.errors import PatchscopeError
from patchscope.io import write_json

#: the ``format`` of a printer file
PRINTER_FORMAT = "patchscope-printer/1"

Rows = tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class PrinterModel:
    """``matrix`` (3 rows of 4): observed RGB = matrix @ [r, g, b, 1] for an intended RGB in [0, 1];
    ``intended`` and ``observed`` (K rows of 3): the chart's colours and what the printer (and camera) made of them;
    ``rms``: the fit's root-mean-square residual."""

    matrix: Rows
    intended: Rows
    observed: Rows
    rms: float = 0.0

    def apply(self, pixels: torch.Tensor) -> torch.Tensor:
        """``pixels`` (..., 3, H, W) in [0, 1] as printed: the transform, clipped to [0, 1]. The clipping passes
        gradients straight through (a saturated colour can still be moved back), so an identity printer changes
        neither the values nor the gradients."""
        m = torch.tensor(self.matrix, dtype=pixels.dtype, device=pixels.device)
        out = torch.einsum("ij,...jhw->...ihw", m[:, :3], pixels) + m[:, 3, None, None]
        return out + (out.clamp(0, 1) - out).detach()

    def colours(self) -> torch.Tensor:
        """The observed colours (K, 3): what the printer can make."""
        return torch.tensor(self.observed)

    def save(self, path: str | Path) -> None:
        """Write the printer as JSON (atomically)."""
        write_json(path, {"format": PRINTER_FORMAT, **asdict(self)})

    @classmethod
    def load(cls, path: str | Path) -> PrinterModel:
        """Read a printer file that :meth:`save` wrote; anything else is one line naming the problem."""
        try:
            data = json.loads(Path(path).read_text())
            if not isinstance(data, dict) or data.get("format") != PRINTER_FORMAT:
                raise ValueError(f"not a {PRINTER_FORMAT} file")
            printer = cls(_rows(data["matrix"], 4), _rows(data["intended"], 3), _rows(data["observed"], 3))
            if len(printer.matrix) != 3 or len(printer.intended) != len(printer.observed) or not printer.observed:
                raise ValueError("the matrix must have 3 rows, and intended and observed the same colours")
        except FileNotFoundError:
            raise PatchscopeError(f"printer {path}: no such file", params=("printer",)) from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise PatchscopeError(f"printer {path}: not a printer file ({str(e)[:120]})", params=("printer",)) from None
        return cls(printer.matrix, printer.intended, printer.observed, float(data.get("rms") or 0.0))


def _rows(value: Any, width: int) -> Rows:
    """``value`` as rows of ``width`` finite numbers (observed and intended colours within [0, 1])."""
    if not isinstance(value, list) or not all(isinstance(r, list) and len(r) == width for r in value):
        raise ValueError(f"expected rows of {width} numbers")
    rows = tuple(tuple(float(v) for v in r) for r in value)
    if not all(math.isfinite(v) for r in rows for v in r):
        raise ValueError("numbers must be finite")
    return rows


def fit_printer(intended: torch.Tensor, observed: torch.Tensor) -> PrinterModel:
    """The affine colour transform (3 x 4) that maps ``intended`` (K, 3) onto ``observed`` (K, 3) best in the least
    squares sense; K >= 4 colours that span the colour space.

    Returns:
        A :class:`PrinterModel` holding the transform and the colours it was fitted to.
    """
    if intended.shape != observed.shape or intended.ndim != 2 or intended.shape[1] != 3 or len(intended) < 4:
        raise PatchscopeError(
            f"a colour transform needs at least 4 colours, intended and observed (K, 3), got {tuple(intended.shape)} "
            f"and {tuple(observed.shape)}"
        )
    a = torch.cat([intended.double(), torch.ones(len(intended), 1, dtype=torch.float64)], 1)
    if torch.linalg.matrix_rank(a) < 4:
        raise PatchscopeError("the intended colours do not span the colour space: a transform cannot be fitted")
    solution = torch.linalg.lstsq(a, observed.double()).solution  # (4, 3)
    rms = float((a @ solution - observed.double()).pow(2).mean().sqrt())
    rows = lambda t: tuple(tuple(round(float(v), 6) + 0.0 for v in r) for r in t)  # noqa: E731  (no -0.0)
    return PrinterModel(rows(solution.T), rows(intended), rows(observed), round(rms, 6))
