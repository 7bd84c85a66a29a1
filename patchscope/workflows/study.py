"""Do some model families fear patches less? One study, the same measurements for every model.

For each model: white-box targeted success of its own patches (each size, sticker and on-object),
transfer of its on-object patch to every other model (out) and of theirs to it (in), the patch's
share of activation energy at the first and last layer, clean accuracy, and PatchCleanser's
certified accuracy. Patches are optimised on half of the source images and measured on the other
half (alternate images), over the first ``conditions`` cells of the default viewing grid.

Computing and writing are two calls: ``result = RobustnessStudy(models, data, settings)()`` gives a
:class:`StudyResult`; ``save_study(result, out, data)`` writes its patches, JSON, figure and report.

>>> from patchscope.workflows.study import StudySettings
>>> StudySettings().sizes
(0.02, 0.05)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from patchscope.attacks import AttackConfig, Patch, create_attack
from patchscope.data import ImageSet, resolve_class
from patchscope.errors import PatchscopeError
from patchscope.eval.conditions import DEFAULT_GRID
from patchscope.eval.patch_metrics import patch_success
from patchscope.explain.attention import explain_attention
from patchscope.explain.propagation import apply_patch, patch_footprint, trace_layers
from patchscope.formatting import an, pct
from patchscope.models import Classifier
from patchscope.models.train import accuracy
from patchscope.recipe import AttackRecipe, flat_settings
from patchscope.validate import check_fraction, check_positive
from patchscope.workflows.certify import certify


@dataclass
class StudySettings:
    """The study's budget; every number goes into the results so a run can be reproduced."""

    sizes: tuple[float, ...] = (0.02, 0.05)
    placements: tuple[str, ...] = ("sticker", "on-object")
    source: str = "stop"
    target: str = "yield"
    recipe: AttackRecipe = field(default_factory=lambda: AttackRecipe(steps=150, batch_size=32, candidates=2))
    conditions: int = 9
    certify_size: float = 0.05
    certify_images: int = 256
    explain_images: int = 64
    transfer_size: float = 0.05
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.sizes:
            raise PatchscopeError("sizes must hold at least one patch area", params=("sizes",))
        for v in (*self.sizes, self.certify_size, self.transfer_size):
            check_fraction("sizes", v)
        check_positive("conditions", self.conditions)
        check_positive("certify_images", self.certify_images)
        check_positive("explain_images", self.explain_images)


@dataclass
class StudyResult:
    """What :class:`RobustnessStudy` measured.

    Attributes:
        settings: the budget it ran with.
        data: the data's name.
        source_images: how many source images the patches were made on (``make``) and measured on (``measure``).
        models: per model, a JSON-ready row: ``white_box`` (``PLACEMENT@SIZE`` -> targeted success),
            ``clean_accuracy``, ``certified_accuracy``, ``transfer_out``, ``transfer_in`` (None with one model),
            ``share_first``, ``share_last``, ``natural_last`` and ``attention_in_patch``.
        transfer: ``transfer[patch_model][model]``: targeted success of each model's on-object patch on each model.
        seconds: how long it took.
        patches: ``patches[model][PLACEMENT@SIZE]``: the patches themselves (not in :meth:`as_dict`).
    """

    settings: StudySettings
    data: str
    source_images: dict[str, int]
    models: dict[str, dict[str, Any]]
    transfer: dict[str, dict[str, float]]
    seconds: float
    patches: dict[str, dict[str, Patch]] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (what ``study.json`` holds): everything but the patches."""
        return {
            "settings": flat_settings(self.settings),
            "data": self.data,
            "source_images": dict(self.source_images),
            "models": self.models,
            "transfer": self.transfer,
            "seconds": self.seconds,
        }


def _key(size: float, placement: str) -> str:
    return f"{placement}@{size:g}"


class RobustnessStudy:
    """``RobustnessStudy(models, data, settings)()`` -> :class:`StudyResult` (nothing is written)."""

    def __init__(
        self,
        models: dict[str, Classifier],
        data: ImageSet,
        settings: StudySettings,
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.models, self.data, self.s, self.log = models, data, settings, log
        self.src, self.tgt = resolve_class(settings.source, data.classes), resolve_class(settings.target, data.classes)
        if self.src == self.tgt:
            raise PatchscopeError(
                f"target must differ from source, got {data.classes[self.src]!r} for both", params=("target", "source")
            )
        self.make, self.test = data.of_class(self.src).alternate()
        self.grid = DEFAULT_GRID[: settings.conditions]
        if len(self.make) == 0 or len(self.test) == 0:
            raise PatchscopeError(
                f"the data has fewer than two {settings.source} images to make and measure patches on"
            )

    def __call__(self) -> StudyResult:
        start = time.time()
        dev = self.s.device
        x, y = self.test.float_images(dev), self.test.labels
        patches: dict[str, dict[str, Patch]] = {}
        rows: dict[str, dict[str, Any]] = {}
        for name, model in self.models.items():
            patches[name] = {
                _key(sz, pl): self._attack(name, model, sz, pl) for sz in self.s.sizes for pl in self.s.placements
            }
            rows[name] = {
                "white_box": {
                    k: patch_success(model, x, y, p, self.tgt, self.grid, device=dev).targeted_success
                    for k, p in patches[name].items()
                }
            }
            rows[name].update(self._propagation(model, patches[name][_key(self.s.transfer_size, "on-object")]))
            rows[name].update(self._certify(name, model))
        transfer = self._transfer({n: p[_key(self.s.transfer_size, "on-object")] for n, p in patches.items()}, x, y)
        for name, row in rows.items():
            others = [m for m in self.models if m != name]
            row["transfer_out"] = sum(transfer[name][m] for m in others) / len(others) if others else None
            row["transfer_in"] = sum(transfer[m][name] for m in others) / len(others) if others else None
        sources = {"make": len(self.make), "measure": len(self.test)}
        return StudyResult(self.s, self.data.name, sources, rows, transfer, round(time.time() - start, 1), patches)

    def _attack(self, name: str, model: Classifier, size: float, placement: str) -> Patch:
        self.log(
            f"{name}: optimising {an(pct(size))} {placement} {self.s.source}->{self.s.target} patch "
            f"({self.s.recipe.steps} steps)"
        )
        cfg = AttackConfig.of(self.s.recipe, size=size, placement=placement, target=self.tgt)
        patch = create_attack("universal", model, cfg, self.s.device, progress=False)(
            self.make.float_images(self.s.device), self.make.labels
        )
        patch.meta.update({"model": name, "source": self.s.source, "target": self.s.target, "data": self.data.name})
        return patch

    def _propagation(self, model: Classifier, patch: Patch) -> dict[str, Any]:
        x = self.test.float_images(self.s.device)[: self.s.explain_images]
        patched, footprint = apply_patch(x, patch), patch_footprint(patch, x.device)
        with torch.no_grad():
            layers = [t.summary() for t in trace_layers(model, x, patched, footprint)]
        clean_mass, patched_mass = explain_attention(model, x, patched).mass_inside(footprint)
        return {
            "share_first": layers[0]["adversarial_share"],
            "share_last": layers[-1]["adversarial_share"],
            "natural_last": layers[-1]["natural_ratio"],
            "attention_in_patch": {
                "clean": float(clean_mass.mean()),
                "patched": float(patched_mass.mean()),
                "area": float(footprint.float().mean()),
            },
        }

    def _certify(self, name: str, model: Classifier) -> dict[str, Any]:
        s, dev = self.s, self.s.device
        self.log(
            f"{name}: clean accuracy on {len(self.data)} images; "
            f"PatchCleanser against {pct(s.certify_size)} patches on {s.certify_images}"
        )
        pick = torch.randperm(len(self.data), generator=torch.Generator().manual_seed(s.recipe.seed))[
            : s.certify_images
        ]
        result = certify(
            model,
            self.data.subset(pick),
            "patchcleanser",
            s.certify_size,
            batch_size=512,
            device=dev,
            progress=False,
            k=6,
        )
        return {"clean_accuracy": accuracy(model, self.data, dev), "certified_accuracy": result.certified_accuracy}

    def _transfer(self, patches: dict[str, Patch], x: torch.Tensor, y: torch.Tensor) -> dict[str, dict[str, float]]:
        self.log(f"transfer: {len(patches)} patches on {len(self.models)} models")
        return {
            p: {
                m: patch_success(model, x, y, patch, self.tgt, self.grid, device=self.s.device).targeted_success
                for m, model in self.models.items()
            }
            for p, patch in patches.items()
        }


def study_table(results: StudyResult) -> dict[str, list[Any]]:
    """The comparison table of a :class:`StudyResult` (percentages as text)."""
    keys = list(next(iter(results.models.values()))["white_box"])
    rows = [
        [
            n,
            pct(r["clean_accuracy"]),
            *[pct(r["white_box"][k]) for k in keys],
            pct(r["transfer_out"]),
            pct(r["transfer_in"]),
            f"{r['share_first']:.3f} -> {r['share_last']:.3f}"
            if r["share_first"] is not None and r["share_last"] is not None
            else "-",
            f"{r['attention_in_patch']['clean']:.2f} -> {r['attention_in_patch']['patched']:.2f}",
            pct(r["certified_accuracy"]),
        ]
        for n, r in results.models.items()
    ]
    columns = [
        "model",
        "clean",
        *[f"white-box {k}" for k in keys],
        "transfer out",
        "transfer in",
        "patch share first -> last",
        "heat-map mass on patch, clean -> patched",
        "certified",
    ]
    return {"columns": columns, "rows": rows}


def study_figure(results: StudyResult, path: Path) -> None:
    """Grouped bars: white-box success per attack setting, and certified accuracy, for every model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from patchscope.io import atomic_path

    rows = results.models
    models = list(rows)
    keys = list(rows[models[0]]["white_box"])
    series = {f"white-box {k}": [rows[m]["white_box"][k] for m in models] for k in keys}
    series["certified accuracy"] = [rows[m]["certified_accuracy"] for m in models]
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(models), 3.6))
    width = 0.8 / len(series)
    colors = plt.get_cmap("Reds")(torch.linspace(0.35, 0.9, len(keys)).tolist()).tolist() + ["tab:blue"]
    for i, (label, vals) in enumerate(series.items()):
        ax.bar(
            [j + (i - (len(series) - 1) / 2) * width for j in range(len(models))],
            vals,
            width,
            label=label,
            color=colors[i],
        )
    ax.set_xticks(range(len(models)), models)
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"{results.settings.source} -> {results.settings.target} success / certified")
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(0, -0.12))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, format="png", bbox_inches="tight")
    plt.close(fig)


def study_metrics(results: StudyResult) -> dict[str, Any]:
    """The scalar numbers of a study, flat (``MODEL.KEY``), for the run store."""
    rows = results.models.items()
    return {f"{n}.{k}": v for n, r in rows for k, v in r.items() if not isinstance(v, dict)} | {
        f"{n}.white_box.{k}": v for n, r in rows for k, v in r["white_box"].items()
    }


def save_study(results: StudyResult, out: Path, data: str) -> Path:
    """Write a study's patches (``out/patches/MODEL/KEY``), ``study.json``, ``study.png`` and ``report.html``.

    Args:
        results: what :class:`RobustnessStudy` returned.
        out: the folder.
        data: the data spec the study ran on (for the report and its reproducing command).

    Returns:
        The report's path.
    """
    from patchscope.io import write_json
    from patchscope.runs.report import Section, render_report
    from patchscope.runs.reproduce import command_line

    for model_name, patches in results.patches.items():
        for key, patch in patches.items():
            patch.save(out / "patches" / model_name.replace("/", "_") / key.replace("@", "-"))
    write_json(out / "study.json", results.as_dict())
    study_figure(results, out / "study.png")
    s, names = flat_settings(results.settings), list(results.models)
    cmd = command_line(
        "study robustness",
        {
            "models": names,
            "data": data,
            "sizes": s["sizes"],
            "steps": s["steps"],
            "batch_size": s["batch_size"],
            "candidates": s["candidates"],
            "conditions": s["conditions"],
            "certify_images": s["certify_images"],
            "seed": s["seed"],
        },
    )
    text = (
        f"{s['source']} -> {s['target']} patches optimised on {results.source_images['make']} {s['source']} "
        f"images and measured on {results.source_images['measure']} others over {s['conditions']} viewing "
        f"conditions; transfer uses each model's {pct(s['transfer_size'])} on-object patch; certified: "
        f"PatchCleanser against {pct(s['certify_size'])} patches on {s['certify_images']} images."
    )
    section = Section(
        "Which models fear patches less?",
        text,
        [(out / "study.png", "White-box success per attack setting (red) and certified accuracy (blue)")],
        study_table(results),
        [cmd],
    )
    return render_report([section], out, "patchscope study: robustness", f"{len(names)} models on {data}")
