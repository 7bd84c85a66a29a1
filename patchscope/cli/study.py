"""`patchscope study robustness`: the same patch measurements for several models, one table, one figure.

Writes OUT/study.json, OUT/study.png, OUT/report.html and every patch under OUT/patches/MODEL/.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from patchscope.cli.common import (
    DataOptions,
    DeviceOpt,
    LossOpt,
    check_out,
    data_group,
    parse_floats,
    recorded,
    resolve_device,
    split_names,
)
from patchscope.cli.output import Col, print_table, show
from patchscope.recipe import AttackRecipe, flat_settings
from patchscope.validate import check_fraction, check_int, check_positive

app = typer.Typer(name="study", no_args_is_help=True, help="Experiments that compare models.")


@app.command()
@data_group("gtsrb:test", limit=None)
def robustness(
    *,
    models: Annotated[
        str, typer.Option(help="comma-separated model names or checkpoints")
    ] = "gtsrb-cnn,gtsrb-resnet,gtsrb-vit,gtsrb-vit-ssl,gtsrb-cnn-at",
    data_opts: DataOptions,
    source: str = "stop",
    target: str = "yield",
    sizes: Annotated[str, typer.Option(help="patch areas, comma-separated")] = "0.02,0.05",
    steps: Annotated[int, typer.Option(help="optimisation steps per patch")] = 150,
    batch_size: int = 32,
    candidates: Annotated[int, typer.Option(help="places (on-object) or starts (sticker) tried per patch")] = 2,
    loss: LossOpt = "sigmoid",
    conditions: Annotated[int, typer.Option(help="viewing conditions from the default grid (1-33)")] = 9,
    certify_images: Annotated[int, typer.Option(help="images certified with PatchCleanser per model")] = 256,
    out: Annotated[Path, typer.Option(help="folder for study.json, study.png, report.html, patches/")] = Path(
        "runs/study"
    ),
    seed: int = 0,
    device: DeviceOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
) -> None:
    """Compare models: white-box, transfer, propagation, certified.

    Per model: white-box success (sticker and on-object, each size), transfer in and out, propagation and certified
    accuracy."""
    from rich.console import Console

    from patchscope.attacks import patch_side
    from patchscope.models import create_model
    from patchscope.workflows.study import RobustnessStudy, StudySettings, save_study, study_metrics, study_table

    areas = tuple(parse_floats(sizes, "--sizes", "0.02,0.05"))
    recipe = AttackRecipe(steps=steps, batch_size=batch_size, candidates=candidates, loss=loss, seed=seed)
    _check_settings(areas, conditions, certify_images)
    check_out(out, "study.json", "study.png", "report.html")
    dev = resolve_device(device)
    names = split_names(models)
    loaded = {n: create_model(n, dev) for n in names}
    images = _study_images(data_opts, loaded)
    for area in areas:
        patch_side(area, images.image_size)
    settings = StudySettings(areas, source=source, target=target, recipe=recipe, transfer_size=max(areas), device=dev)
    settings = replace(settings, conditions=conditions, certify_images=min(certify_images, len(images)))
    console = Console(stderr=True)
    with recorded(
        "study", {"models": names, "data": data_opts.data, "data_hash": images.data_hash(), **flat_settings(settings)}
    ) as run:
        results = RobustnessStudy(
            loaded, images, settings, lambda t: console.print(f"[bold cyan]>[/] {t}", soft_wrap=True)
        )()
        report = save_study(results, out, data_opts.data)
        run.log(study_metrics(results))
        run.artifact("study", out / "study.json")
        run.artifact("report", report)
    show(results.as_dict(), as_json, lambda: _table(study_table(results), report))


def _study_images(data: DataOptions, models: dict[str, Any]) -> Any:
    """The study's images in memory: a folder labelled by the first model's classes (the others must share them)
    and prepared for it; other data as it is stored."""
    from patchscope.data import load_data

    if not data.data.startswith("folder:"):
        return load_data(data.data, data.data_root)
    cache = data.cache()
    for model in models.values():
        cache.check_classes(model)
    return cache.get(next(iter(models.values()))).load()


def _check_settings(areas: tuple[float, ...], conditions: int, certify_images: int) -> None:
    """Refuse, before any model loads, settings the study would refuse later."""
    from patchscope.eval.conditions import DEFAULT_GRID

    check_int("conditions", conditions, 1, len(DEFAULT_GRID))
    check_positive("certify_images", certify_images)
    for area in areas:
        check_fraction("sizes", area)


#: study columns that a narrow terminal leaves out, the first of them first (the others always show)
OPTIONAL = ("heat-map mass on patch, clean -> patched", "patch share first -> last", "transfer in", "transfer out")


def _table(table: dict[str, Any], report: Path) -> None:
    """The comparison table (on a narrow terminal, without the columns in :data:`OPTIONAL`), then the report's path."""
    drop = {h: len(OPTIONAL) - i for i, h in enumerate(OPTIONAL)}
    columns = [Col(h, drop=drop.get(h, 0), justify="left" if h == "model" else "right") for h in table["columns"]]
    print_table(columns, table["rows"])
    typer.echo(f"report: {report}")
