"""The main job: bundled models and data, from a Stop->Yield patch to one HTML report, no network.

Attack on half of the bundled Stop images, measure on the other half (over the viewing grid and the
sweeps, on every bundled model), explain, defend, certify, and write ``OUT/report.html``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from patchscope.attacks import AttackConfig, Patch, create_attack, patch_side
from patchscope.data import load_data, resolve_class
from patchscope.defenses import create_defense, defense_spec, list_defenses
from patchscope.eval.conditions import DEFAULT_GRID, sweep_conditions
from patchscope.eval.figures import condition_curves, transfer_figure
from patchscope.eval.patch_metrics import PatchSuccess, patch_success
from patchscope.explain import Explanation, apply_patch, explain_patch, save_explanation
from patchscope.formatting import an, pct
from patchscope.io import write_json
from patchscope.models import create_model, list_models
from patchscope.models.train import accuracy
from patchscope.recipe import AttackRecipe, flat_settings
from patchscope.runs.report import Section, render_report
from patchscope.runs.reproduce import command_line
from patchscope.workflows.certify import certify

ADAPTIVE = ("jpeg", "clip")
"""The registered defenses the demo also attacks adaptively (every registered defense is measured against the patch)."""
DEMO_MODELS = ("gtsrb-cnn", "gtsrb-resnet", "gtsrb-vit")
"""The bundled models the demo measures (the zoo's defended and pretrained variants are for the study)."""


@dataclass
class DemoSettings:
    """The demo's budget: small enough for two CPU cores in a few minutes, large enough to succeed."""

    model: str = "gtsrb-cnn"
    source: str = "stop"
    target: str = "yield"
    size: float = 0.08
    recipe: AttackRecipe = field(default_factory=lambda: AttackRecipe(steps=150, batch_size=32, candidates=4))
    certify_images: int = 24
    explain_images: int = 32
    defense_conditions: int = 9
    sweep_images: int = 64
    transfer_images: int = 24
    defense_clean_images: int = 256
    adaptive_steps: int = 60
    device: str = "cpu"
    models: list[str] = field(default_factory=list)

    def attack_config(self, target: int, **changes: Any) -> AttackConfig:
        """The demo's on-object patch attack towards ``target``, with ``changes`` to the recipe or the patch."""
        return replace(AttackConfig.of(self.recipe, size=self.size, placement="on-object", target=target), **changes)


def quick_settings(device: str = "cpu") -> DemoSettings:
    """A tiny budget for tests: every stage runs, nothing is expected to succeed."""
    recipe = AttackRecipe(steps=8, batch_size=16, candidates=2)
    return DemoSettings(recipe=recipe, certify_images=8, explain_images=8, adaptive_steps=3, device=device)


class Demo:
    """Runs each stage and keeps what the report needs."""

    def __init__(self, out: Path, settings: DemoSettings, console: Console) -> None:
        self.out, self.settings, self.console = out, settings, console
        self.results: dict[str, Any] = {"settings": flat_settings(settings)}
        self._last: tuple[str, float] | None = None  # the stage running and when it began
        self.sections: list[Section] = []
        self.findings: list[str] = []

    def stage(self, text: str) -> None:
        now = time.time()
        if self._last:
            name, began = self._last
            self.results.setdefault("stage_seconds", {})[name] = round(now - began, 1)
        self._last = (text.split(":")[0].split(" ")[0], now)
        self.console.print(f"[bold cyan]>[/] {text}", soft_wrap=True)  # one line, never broken mid-message

    def run(self) -> Path:
        s, dev = self.settings, self.settings.device
        started = time.time()
        names = s.models or [m for m in DEMO_MODELS if m in list_models()]
        self.models = {n: create_model(n, dev) for n in names}
        self.main = self.models[s.model]
        data = load_data("demo")
        self.src, self.tgt = resolve_class(s.source, data.classes), resolve_class(s.target, data.classes)
        self.make_set, self.test_set = data.of_class(self.src).alternate()
        self.data = data
        # one random subset of the whole demo set for every clean-accuracy number (models and defenses)
        self.clean_set = data.subset(
            torch.randperm(len(data), generator=torch.Generator().manual_seed(1))[: s.defense_clean_images]
        )
        patch = self.attack()
        self.measure(patch)
        self.explain(patch)
        self.defend(patch)
        self.certify()
        self.stage("writing the report")
        self.results["seconds"] = round(time.time() - started, 1)
        write_json(self.out / "results.json", self.results)
        return render_report(
            self.sections, self.out, "Does a small patch turn STOP into YIELD?", self._subtitle(), self.findings
        )

    def _subtitle(self) -> str:
        return (
            f"patchscope demo: {self.settings.model} attacked on {len(self.make_set)} bundled Stop images, "
            f"measured on {len(self.test_set)} others, "
            f"models {', '.join(self.models)}; {self.results.get('seconds', 0):.0f} s on {self.settings.device}"
        )

    # -- stages ---------------------------------------------------------------------------------------
    def attack(self) -> Patch:
        s = self.settings
        size, side = self.make_set.image_size, patch_side(s.size, self.make_set.image_size)
        self.stage(
            f"optimising {an(pct(side**2 / size**2))} ({side}x{side} px) on-object {s.source}->{s.target} patch "
            f"on {s.model} ({s.recipe.steps} steps, EOT)"
        )
        cfg = s.attack_config(self.tgt)
        t = time.time()
        patch = create_attack("universal", self.main, cfg, s.device)(self.make_set.float_images(), self.make_set.labels)
        patch.meta.update({"model": s.model, "source": s.source, "target": s.target, "data": "demo"})
        patch.save(self.out / "patch")
        patch.to_png(self.out / "patch" / "patch-large.png", scale=16)
        self.results["attack"] = {
            "seconds": round(time.time() - t, 1),
            "area": patch.area_fraction,
            "location": patch.location,
            "side": patch.side,
        }
        return patch

    def measure(self, patch: Patch) -> None:
        s = self.settings
        self.stage(
            f"measuring the patch over {len(DEFAULT_GRID)} viewing conditions and {len(sweep_conditions())} "
            f"sweep points on {len(self.models)} models"
        )
        grid, sweeps, clean = self._measure_numbers(patch)
        self.results["evaluate"] = {
            n: {k: v for k, v in r.as_dict().items() if k != "conditions"}
            | {"demo_accuracy": clean[n], "demo_accuracy_images": len(self.clean_set)}
            for n, r in grid.items()
        }
        self.results["sweeps"] = sweeps
        condition_curves(sweeps, self.out / "curves.png", title=f"{pct(patch.area_fraction)} patch made on {s.model}")
        transfer_figure({s.model: {n: r.targeted_success for n, r in grid.items()}}, self.out / "transfer.png")
        self._measure_findings(patch, grid)
        self.sections.append(self._patch_section(patch))
        self.sections.append(self._grid_section(grid, clean))

    def _measure_numbers(
        self, patch: Patch
    ) -> tuple[dict[str, PatchSuccess], dict[str, list[dict[str, Any]]], dict[str, float]]:
        """The patch over the viewing grid on every model, the sweeps on the attacked one, and clean accuracies."""
        s = self.settings
        x, y = self.test_set.float_images(s.device), self.test_set.labels
        k, kt = s.sweep_images, s.transfer_images
        # every held-out image on the attacked model; the other networks (transfer, near zero so far) on the first kt
        grid = {
            n: patch_success(
                m,
                x if m is self.main else x[:kt],
                y if m is self.main else y[:kt],
                patch,
                self.tgt,
                DEFAULT_GRID,
                device=s.device,
            )
            for n, m in self.models.items()
        }
        # the sweeps (one factor at a time) on the attacked model only: the grid already shows the others near zero
        sweeps = {
            s.model: patch_success(
                self.main, x[:k], y[:k], patch, self.tgt, sweep_conditions(), device=s.device
            ).conditions
        }
        clean = {n: accuracy(m, self.clean_set, s.device) for n, m in self.models.items()}
        return grid, sweeps, clean

    def _measure_findings(self, patch: Patch, grid: dict[str, PatchSuccess]) -> None:
        model = self.settings.model
        main = grid[model]
        self.findings.append(
            f"{an(pct(patch.area_fraction)).capitalize()} patch ({patch.side}x{patch.side} px) made on {model} "
            f"turned Stop into Yield on <b>{pct(main.targeted_success)}</b> of unseen Stop images across the "
            "viewing grid (rotation and tilt up to 15 deg, distance, light, blur); "
            f"untargeted success {pct(main.untargeted_success)}."
        )
        others = {n: r.targeted_success for n, r in grid.items() if n != model}
        if others:
            self.findings.append(
                "Transfer to other networks: " + ", ".join(f"{n} {pct(v)}" for n, v in others.items()) + "."
            )

    def _attack_command(self, model: str, steps: int, out: str, **options: Any) -> str:
        """The ``patchscope attack`` command line that makes an on-object patch like the demo's."""
        s = self.settings
        return command_line(
            "attack",
            {
                "model": model,
                "data": "demo",
                "source": s.source,
                "target": s.target,
                "size": s.size,
                "placement": "on-object",
                "steps": steps,
                **options,
                "out": out,
            },
        )

    def _patch_section(self, patch: Patch) -> Section:
        s = self.settings
        return Section(
            "The patch",
            f"Optimised on {s.model} with EOT, placed on the sign at (top, left) = {patch.location}.",
            [
                (
                    self.out / "patch" / "patch-large.png",
                    f"{patch.side}x{patch.side} px, {pct(patch.area_fraction)} of the image",
                )
            ],
            patch_figure=True,
            commands=[
                self._attack_command(
                    s.model,
                    s.recipe.steps,
                    "runs/demo-patch",
                    batch_size=s.recipe.batch_size,
                    candidates=s.recipe.candidates,
                    seed=s.recipe.seed,
                )
            ],
        )

    def _grid_section(self, grid: dict[str, PatchSuccess], clean: dict[str, float]) -> Section:
        s = self.settings
        rows = [
            [
                n,
                pct(clean[n]),
                pct(r.clean_accuracy),
                pct(r.targeted_success),
                pct(r.untargeted_success),
                pct(r.target_confidence),
            ]
            for n, r in grid.items()
        ]
        cmd = command_line(
            "evaluate",
            {
                "patch": self.out / "patch",
                "models": list(self.models),
                "data": "demo",
                "source": s.source,
                "target": s.target,
                "as_json": True,
            },
        )
        return Section(
            "Across viewing conditions and networks",
            f"Success over the default viewing grid ({len(self.test_set)} held-out Stop images on "
            f"{s.model}, the first {min(s.transfer_images, len(self.test_set))} on the other "
            "networks), with each network's clean accuracy under the same conditions.",
            [
                (
                    self.out / "curves.png",
                    "One factor at a time: solid lines the patch's targeted success, dashed the clean accuracy",
                ),
                (self.out / "transfer.png", "The patch on every bundled network"),
            ],
            {
                "columns": [
                    "model",
                    f"accuracy ({len(self.clean_set)} demo images)",
                    "clean acc. (grid)",
                    "targeted",
                    "untargeted",
                    "target conf.",
                ],
                "rows": rows,
            },
            [cmd],
        )

    def explain(self, patch: Patch) -> None:
        self.stage("explaining: attention, propagation through the layers, abnormal activations")
        x, y = self.test_set.float_images(self.settings.device), self.test_set.labels.to(self.settings.device)
        k = self.settings.explain_images
        index, confidence = self._headline_image(patch, x[:k])
        self.results["explain_image"] = {"index": index, "target_confidence": confidence}
        figures: list[tuple[Path, str]] = []
        attention: list[tuple[Path, str]] = []
        table: list[list[str]] = []
        for name, model in self.models.items():
            res = explain_patch(model, x[:k], y[:k], patch, index)
            save_explanation(res, self.out / f"explain-{name}")
            table.append(self._explain_row(name, res))
            mass = res.attention_in_patch
            attention.append(
                (
                    self.out / f"explain-{name}" / "attention.png",
                    f"{name}: where it looks, and the probabilities, before and after the patch "
                    f"(heat map on the patch: {pct(mass['clean'])} -> {pct(mass['patched'])} over {k} images)",
                )
            )
            figures.append(
                (
                    self.out / f"explain-{name}" / "propagation.png",
                    f"{name}: the patch's share of activation energy (red) and the natural features (blue), "
                    "layer by layer",
                )
            )
        self.sections.insert(0, self._attention_section(attention, confidence))
        self.sections.append(self._propagation_section(patch, figures, table))

    def _explain_row(self, name: str, res: Explanation) -> list[str]:
        """Keep one network's explanation numbers in the results and return its row of the report's table."""
        layers = res.layers
        first, last, mass = layers[0]["adversarial_share"], layers[-1]["adversarial_share"], res.attention_in_patch
        amplification = last / first if first else None
        self.results.setdefault("explain", {})[name] = {
            "first": layers[0],
            "last": layers[-1],
            "amplification": amplification,
            "attention_in_patch": mass,
        }
        return [
            name,
            f"{first:.3f}",
            f"{last:.3f}",
            "-" if amplification is None else f"{amplification:.1f}x",
            f"{layers[-1]['natural_ratio']:.2f}",
            f"{max((r['max_z'] or 0) for r in layers):.1f}",
            f"{pct(mass['clean'])} -> {pct(mass['patched'])}",
        ]

    def _attention_section(self, attention: list[tuple[Path, str]], confidence: float) -> Section:
        s = self.settings
        masses = {n: r["attention_in_patch"] for n, r in self.results["explain"].items()}
        main_first = sorted(attention, key=lambda f: f[0].parent.name != f"explain-{s.model}")
        return Section(
            attention_heading(masses),
            f"Heat maps on a clean and a patched Stop sign, and the top-5 probabilities, on every network: the "
            f"held-out image on which the patch makes {s.model} most confident of {s.target} "
            f"({pct(confidence)}). The share of the heat map that falls on the patch, averaged over "
            f"{s.explain_images} images, says whether the network's attention moves to it.",
            main_first,
        )

    def _propagation_section(self, patch: Patch, figures: list[tuple[Path, str]], table: list[list[str]]) -> Section:
        s = self.settings
        why = (
            "The same patch through every network (CNNs and the ViT side by side): the share of each layer's "
            "activation energy that the patch causes, how much of the natural features' energy is left, the "
            "largest activation's z-score against clean images, and the share of the heat map on the patch, "
            f"which covers {pct(patch.area_fraction)} of the image."
        )
        columns = [
            "model",
            "adversarial share, first layer",
            "last layer",
            "amplification",
            "natural features kept, last layer",
            "max z",
            "heat-map mass on the patch, clean -> patched",
        ]
        commands = [
            command_line(
                "explain",
                {
                    "model": n,
                    "patch": self.out / "patch",
                    "data": "demo",
                    "source": s.source,
                    "limit": s.explain_images,
                    "out": f"explain-{n}",
                },
            )
            for n in self.models
        ]
        return Section(
            "Why: the patch's signal through the layers", why, figures, {"columns": columns, "rows": table}, commands
        )

    def _headline_image(self, patch: Patch, x: torch.Tensor) -> tuple[int, float]:
        """The image of ``x`` on which the patch makes the attacked model most confident of the target, and that
        confidence: the example the report shows."""
        with torch.no_grad():
            confidence = self.main(apply_patch(x, patch)).softmax(1)[:, self.tgt]
        index = int(confidence.argmax())
        return index, float(confidence[index])

    def defend(self, patch: Patch) -> None:
        names = list_defenses()
        self.stage(
            f"defenses on {self.settings.model}: {', '.join(names)}; adaptive attacks through {', '.join(ADAPTIVE)}"
        )
        s, dev = self.settings, self.settings.device
        grid = DEFAULT_GRID[: s.defense_conditions]
        rows, out = [], {}
        trained = f"{s.model}-at"
        for name in (*names, *([trained] if trained in list_models() else [])):
            out[name] = self._defense_row(name, trained, patch, grid)
            r = out[name]
            rows.append(
                [
                    f"adversarial patch training ({name})" if name == trained else name,
                    pct(r["clean_accuracy"]),
                    pct(r["patch"]),
                    pct(r.get("adaptive")),
                ]
            )
        x, y = self.test_set.float_images(dev), self.test_set.labels
        bare = patch_success(self.main, x, y, patch, self.tgt, grid, device=dev).targeted_success
        rows.insert(0, ["none", pct(accuracy(self.main, self.clean_set, dev)), pct(bare), "-"])
        self.results["defend"] = out
        bpda = [n for n in ADAPTIVE if defense_spec(n).meta["bpda"]]
        how = f"BPDA through {', '.join(bpda)}" if bpda else "plain gradients: each of these defenses is differentiable"
        common = {"patch": self.out / "patch", "data": "demo", "source": s.source, "target": s.target}
        commands = [
            command_line(
                "defend", {"model": s.model, "defense": n, **common, "adaptive": n in ADAPTIVE, "as_json": True}
            )
            for n in names
        ]
        if trained in out:
            commands += [
                self._attack_command(trained, s.adaptive_steps, "runs/at-patch"),
                command_line("evaluate", {**common, "patch": "runs/at-patch", "models": trained, "as_json": True}),
            ]
        self.sections.append(
            Section(
                "Defenses, against the patch and against an adaptive attacker",
                f"Targeted success on held-out Stop images over the first {len(grid)} viewing conditions: the "
                "original patch through each defense, and a new patch optimised through it "
                f"({how}; for the adversarially trained model, a patch made on it). "
                f"Clean accuracy on {len(self.clean_set)} demo images.",
                table={"columns": ["defense", "clean accuracy", "original patch", "adaptive patch"], "rows": rows},
                commands=commands,
            )
        )

    def _defense_row(
        self, name: str, trained: str, patch: Patch, grid: list[dict[str, float | None]]
    ) -> dict[str, float | None]:
        """Clean accuracy and patch success through one registered defense (or the adversarially trained model)."""
        s, dev = self.settings, self.settings.device
        x, y = self.test_set.float_images(dev), self.test_set.labels
        if name == trained:  # adversarial patch training: a model, not a wrapper
            d: torch.nn.Module = create_model(trained, dev)
        else:
            d = create_defense(
                name,
                self.main,
                clean_images=self.data.float_images(dev)[:512] if defense_spec(name).takes("clean_images") else None,
            )
        r: dict[str, float | None] = {
            "clean_accuracy": accuracy(d, self.clean_set, dev),
            "patch": patch_success(d, x, y, patch, self.tgt, grid, device=dev).targeted_success,
        }
        if name in (*ADAPTIVE, trained):
            cfg = s.attack_config(self.tgt, location=patch.location, steps=s.adaptive_steps, candidates=1)
            adaptive = create_attack("universal", d, cfg, dev, progress=False)(
                self.make_set.float_images(dev), self.make_set.labels
            )
            r["adaptive"] = patch_success(d, x, y, adaptive, self.tgt, grid, device=dev).targeted_success
        return r

    def certify(self) -> None:
        s, dev = self.settings, self.settings.device
        subset = self.data.subset(
            torch.randperm(len(self.data), generator=torch.Generator().manual_seed(0))[: s.certify_images]
        )
        rows = []
        for area in (0.025, 0.048):  # 5x5 and 7x7 on 32 px
            side = patch_side(area, subset.image_size)
            self.stage(f"PatchCleanser certification against any {side}x{side} patch on {len(subset)} images")
            r = certify(self.main, subset, "patchcleanser", area, batch_size=512, device=dev, progress=False, k=6)
            self.results.setdefault("certify", {})[f"{side}px"] = {
                "clean": r.clean_accuracy,
                "defended": r.defended_accuracy,
                "certified": r.certified_accuracy,
                "passes": r.forward_passes_per_image,
                "images_per_second": r.images_per_second,
            }
            rows.append(
                [
                    f"{side}x{side} ({pct(side * side / subset.image_size**2)})",
                    pct(r.clean_accuracy),
                    pct(r.defended_accuracy),
                    pct(r.certified_accuracy),
                    f"{r.forward_passes_per_image:.0f}",
                    f"{r.images_per_second:.0f}",
                ]
            )
        self.findings.append(
            f"PatchCleanser certifies {pct(self.results['certify']['5px']['certified'])} of demo images against "
            f"<i>any</i> 5x5 patch anywhere, and {pct(self.results['certify']['7px']['certified'])} against 7x7."
        )
        self.sections.append(
            Section(
                "Certified: PatchCleanser",
                "Double masking with 6x6 mask positions: an image is certified when every one- and two-mask "
                "prediction is right, so no patch of that size anywhere can change it.",
                table={
                    "columns": ["patch", "clean", "defended", "certified", "forward passes / image", "images / s"],
                    "rows": rows,
                },
                commands=[
                    command_line(
                        "certify",
                        {
                            "model": s.model,
                            "defense": "patchcleanser",
                            "patch_size": a,
                            "data": "demo",
                            "limit": s.certify_images,
                            "as_json": True,
                        },
                    )
                    for a in (0.025, 0.048)
                ],
            )
        )


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def attention_heading(masses: dict[str, dict[str, float]]) -> str:
    """What the heat maps show, per network: on which the share of the heat map on the patch grows (attention
    moves to the patch) and on which it does not.

    Args:
        masses: per network, the mean share of its heat map on the patch, ``clean`` and ``patched``.

    >>> attention_heading({"cnn": {"clean": 0.12, "patched": 0.02}, "vit": {"clean": 0.1, "patched": 0.5}})
    'Attention moves to the patch on vit, not on cnn'
    >>> attention_heading({"cnn": {"clean": 0.12, "patched": 0.02}, "resnet": {"clean": 0.2, "patched": 0.1}})
    'The patch fools without drawing attention: it does not move to the patch on cnn or resnet'
    """
    onto = [n for n, m in masses.items() if m["patched"] > m["clean"]]
    away = [n for n in masses if n not in onto]
    if not away:
        return f"Attention moves to the patch on {'every network' if len(onto) > 1 else onto[0]}"
    if not onto:
        return f"The patch fools without drawing attention: it does not move to the patch on {_names(away)}"
    return f"Attention moves to the patch on {_names(onto)}, not on {_names(away)}"


def demo_metrics(results: dict[str, Any]) -> dict[str, Any]:
    """The numbers a stored demo run keeps, from its ``results.json``: the patch's success on the attacked model and
    on the others, the patch's area, and the certified accuracy per patch side.

    >>> m = demo_metrics({"settings": {"model": "a"}, "attack": {"area": 0.08}, "certify": {"5px": {"certified": 0.7}},
    ...     "evaluate": {"a": {"targeted_success": 0.5, "untargeted_success": 0.6}, "b": {"targeted_success": 0.0}}})
    >>> m["targeted_success"], m["certified"], m["transfer_success"]
    (0.5, {'5px': 0.7}, {'b': 0.0})
    """
    main = results["settings"]["model"]
    mine = results["evaluate"][main]
    return {
        "targeted_success": mine["targeted_success"],
        "untargeted_success": mine["untargeted_success"],
        "patch_area": results["attack"]["area"],
        "certified": {side: r["certified"] for side, r in results.get("certify", {}).items()},
        "transfer_success": {n: r["targeted_success"] for n, r in results["evaluate"].items() if n != main},
    }


def run_demo(out: Path, settings: DemoSettings | None = None, console: Console | None = None) -> Path:
    """Run the whole demo into ``out`` and return the report's path."""
    return Demo(Path(out), settings or DemoSettings(), console or Console(stderr=True)).run()
