"""`patchscope study robustness`: the same patch measurements for several models, one table, one figure.

Writes OUT/study.json, OUT/study.png, OUT/report.html and every patch under OUT/patches/MODEL/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from patchscope.errors import PatchscopeError
from patchscope.validate import check_batch, check_fraction, check_int, check_positive

study_app = typer.Typer(no_args_is_help=True, help="Experiments that compare models.")


def register(app: typer.Typer) -> None:
    """Add ``study`` with its ``robustness`` command to ``app``."""
    app.add_typer(study_app, name="study")


@study_app.command()
def robustness(
    models: Annotated[str, typer.Option(help="comma-separated model names or checkpoints")] = "gtsrb-cnn,gtsrb-resnet,gtsrb-vit,gtsrb-vit-ssl,gtsrb-cnn-at",
    data: Annotated[str, typer.Option("--data", help="gtsrb:test | demo | npz:PATH[:SPLIT] | folder:PATH")] = "gtsrb:test",
    source: str = "stop",
    target: str = "yield",
    sizes: Annotated[str, typer.Option(help="patch areas, comma-separated")] = "0.02,0.05",
    steps: Annotated[int, typer.Option(help="optimisation steps per patch")] = 150,
    batch_size: int = 32,
    candidates: Annotated[int, typer.Option(help="places (on-object) or starts (sticker) tried per patch")] = 2,
    conditions: Annotated[int, typer.Option(help="viewing conditions from the default grid (1-33)")] = 9,
    certify_images: Annotated[int, typer.Option(help="images certified with PatchCleanser per model")] = 256,
    out: Annotated[Path, typer.Option(help="folder for study.json, study.png, report.html, patches/")] = Path("runs/study"),
    seed: int = 0,
    data_root: Annotated[Optional[Path], typer.Option("--data-root", help="folder holding gtsrb32.npz (default $PATCHSCOPE_DATA)")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
) -> None:
    """White-box success (sticker and on-object, each size), transfer in and out, propagation and certified accuracy per model."""
    from rich.console import Console

    from patchscope.cli import _device, _model_names, _print, check_out, recorded
    from patchscope.data import load_data
    from patchscope.eval.conditions import DEFAULT_GRID
    from patchscope.eval.report import Section, render_report
    from patchscope.eval.study import RobustnessStudy, StudySettings, study_figure, study_table
    from patchscope.io import write_json
    from patchscope.models import create_model

    try:
        areas = tuple(float(v) for v in sizes.split(",") if v.strip())
    except ValueError:
        raise PatchscopeError(f"--sizes {sizes!r}: give patch areas such as 0.02,0.05") from None
    if not areas:
        raise PatchscopeError(f"--sizes {sizes!r}: give at least one patch area, e.g. 0.02,0.05")
    check_int("conditions", conditions, 1, len(DEFAULT_GRID))
    check_positive("steps", steps, 10**7)
    check_batch("batch_size", batch_size)
    check_positive("candidates", candidates, 1024)
    check_positive("certify_images", certify_images)
    for area in areas:
        check_fraction("sizes", area)
    from patchscope.attacks.patch import patch_side

    check_out(out)
    dev = _device(device)
    names = _model_names(models)
    loaded = {n: create_model(n, dev) for n in names}
    images = load_data(data, data_root)
    for area in areas:
        patch_side(area, images.image_size)
    settings = StudySettings(sizes=areas, source=source, target=target, steps=steps, batch_size=batch_size, candidates=candidates, conditions=conditions,
                             certify_images=min(certify_images, len(images)), transfer_size=max(areas), seed=seed, device=dev)
    console = Console(stderr=True)
    config = {"models": names, "data": data, "data_hash": images.data_hash(), **{k: v for k, v in settings.__dict__.items()}}
    with recorded("study", config) as run:
        results = RobustnessStudy(loaded, images, settings, lambda t: console.print(f"[bold cyan]>[/] {t}"))()
        for model_name, patches in results.pop("patches").items():
            for key, patch in patches.items():
                patch.save(out / "patches" / model_name.replace("/", "_") / key.replace("@", "-"))
        write_json(out / "study.json", results)
        study_figure(results, out / "study.png")
        cmd = f"patchscope study robustness --models {','.join(names)} --data {data} --sizes {sizes} --steps {steps} --batch-size {batch_size} --candidates {candidates} --conditions {conditions} --certify-images {certify_images} --seed {seed}"
        text = (f"{source} -> {target} patches optimised on {results['source_images']['make']} {source} images and measured on {results['source_images']['measure']} others over "
                f"{conditions} viewing conditions; transfer uses each model's {max(areas):.0%} on-object patch; certified: PatchCleanser against {max(areas):.0%} patches on {settings.certify_images} images.")
        report = render_report([Section("Which models fear patches less?", text, [(out / "study.png", "White-box success per attack setting (red) and certified accuracy (blue)")], study_table(results), [cmd])],
                               out, "patchscope study: robustness", f"{len(names)} models on {data}")
        run.log({f"{n}.{k}": v for n, r in results["models"].items() for k, v in r.items() if not isinstance(v, dict)}
                | {f"{n}.white_box.{k}": v for n, r in results["models"].items() for k, v in r["white_box"].items()})
        run.artifact("study", out / "study.json")
        run.artifact("report", report)
    _print(results, as_json, lambda: _table(study_table(results), report))


def _table(table: dict, report: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(*table["columns"])
    for row in table["rows"]:
        t.add_row(*row)
    Console().print(t)
    typer.echo(f"report: {report}")
