"""`patchscope zoo` and `patchscope evaluate`: the bundled models and patches, clean accuracy and patch success."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from patchscope.cli.common import (
    BatchOpt,
    DataOptions,
    DeviceOpt,
    JsonOpt,
    data_group,
    recorded,
    resolve_device,
    split_names,
)
from patchscope.cli.output import Col, print_table, show
from patchscope.formatting import pct
from patchscope.validate import check_batch, check_optional_positive

app = typer.Typer()

PerSignLightingOpt = Annotated[
    bool,
    typer.Option(
        "--per-sign-lighting",
        help="also measure the patch under each sign's own lighting (the patch relit per sign, then the same "
        "conditions), beside its own colours",
    ),
]
LightingDataOpt = Annotated[
    str | None,
    typer.Option(
        help="--per-sign-lighting: the images of the typical sign lighting is fitted against (default --data), "
        "e.g. gtsrb:train"
    ),
]


@app.command()
def zoo(as_json: JsonOpt = False) -> None:
    """List the bundled models and patches, with measured accuracy.

    Each model's parameters, input size and accuracy; each patch's measured success."""
    rows, patches = _zoo_models(), _zoo_patches()

    def table() -> None:
        print_table(
            [
                "model",
                "arch",
                Col("params", drop=2, justify="right"),
                Col("input", drop=3, justify="right"),
                "accuracy",
                Col("val accuracy", drop=1, justify="right"),
            ],
            [
                [
                    r["name"],
                    r["arch"],
                    f"{r['params']:,}" if r["params"] is not None else "-",
                    f"{r['input_size']}px",
                    ", ".join(f"{pct(v)} ({k})" for k, v in r["accuracy"].items()) or "-",
                    pct(r["val_accuracy"]),
                ]
                for r in rows
            ],
        )
        if patches:
            typer.echo()
            print_table(
                ["patch (--patch zoo:NAME)", *(Col(h, justify="right") for h in ("area", "targeted", "untargeted"))],
                [
                    [r["name"], pct(r["area"]), pct(r["targeted_success"]), pct(r["untargeted_success"])]
                    for r in patches
                ],
                title="measured on the model's own gtsrb:test Stop images, 33 viewing conditions",
            )

    show({"models": rows, "patches": patches}, as_json, table)


def _zoo_models() -> list[dict[str, Any]]:
    """Each bundled model's card: architecture, size, measured accuracy."""
    from patchscope.models import list_models, read_card, zoo_dir

    rows = []
    for name in list_models():
        card = read_card(zoo_dir() / f"{name}.safetensors")
        rows.append(
            {
                "name": name,
                "arch": card["arch"],
                "params": card.get("params"),
                "input_size": card["input_size"],
                "accuracy": card.get("accuracy", {}),
                "val_accuracy": card.get("val_accuracy"),
                "data_hash": card.get("data_hash"),
            }
        )
    return rows


def _zoo_patches() -> list[dict[str, Any]]:
    """The bundled patches with the success measured when they were made (``evaluate.json`` beside each)."""
    from patchscope.attacks import list_patches, patch_zoo_dir

    rows = []
    for name in list_patches():
        path = patch_zoo_dir() / name / "evaluate.json"
        measured = json.loads(path.read_text())["models"].get(name.split("/")[0], {}) if path.exists() else {}
        rows.append(
            {
                "name": name,
                "area": measured.get("patch_area"),
                "targeted_success": measured.get("targeted_success"),
                "untargeted_success": measured.get("untargeted_success"),
                "data": "gtsrb:test" if measured else None,
            }
        )
    return rows


@app.command()
@data_group("gtsrb:test")
def evaluate(
    *,
    models: Annotated[str, typer.Option(help="comma-separated model names")] = "gtsrb-cnn",
    data_opts: DataOptions,
    patch: Annotated[Path | None, typer.Option(help="a patch folder (from attack) or zoo:MODEL/NAME")] = None,
    source: Annotated[
        str | None, typer.Option(help="class the patch attacks (name or id; default: the patch's)")
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(help="class the patch aims for (name or id; default: the patch's own target); '' for untargeted"),
    ] = None,
    conditions: Annotated[str, typer.Option(help="default (the viewing grid) | none | sweep")] = "default",
    per_sign_lighting: PerSignLightingOpt = False,
    lighting_data: LightingDataOpt = None,
    batch_size: BatchOpt = None,
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Clean accuracy, and a patch's success over viewing conditions.

    Clean accuracy of each model; with --patch, the patch's success too, measured on the source class's images
    only; with --per-sign-lighting, also under each sign's own lighting. Folders (and large .npz files) are read
    batch by batch."""
    from patchscope.attacks import load_patch
    from patchscope.distributed import join
    from patchscope.models import create_model

    dev = resolve_device(device)
    join(dev)  # under torchrun: each rank measures a share of the images; rank 0 prints and records
    check_optional_positive("limit", data_opts.limit)
    if batch_size is not None:
        check_batch("batch_size", batch_size)
    names = split_names(models)
    loaded = {n: create_model(n, dev) for n in names}
    cache = data_opts.cache(data_opts.limit)
    the_patch = load_patch(patch, per_image=True) if patch is not None else None
    result: dict[str, dict[str, object]] = {}
    config = {
        "models": names,
        "data": data_opts.data,
        "patch": str(patch) if patch else None,
        "source": source,
        "target": target,
        "conditions": conditions,
        **({"per_sign_lighting": True, "lighting_data": lighting_data} if per_sign_lighting else {}),
        "limit": data_opts.limit,
        "device": dev,
        **data_opts.recorded(),
    }
    for model in loaded.values():
        cache.check_classes(model)  # a folder is labelled by the first model's classes: the others must share them
    with recorded("evaluate", config) as run:
        for name, model in loaded.items():
            ds = cache.get(model)
            reference = _lighting_data(data_opts, lighting_data, model, ds) if per_sign_lighting and the_patch else None
            result[name] = _evaluate_one(model, ds, the_patch, source, target, conditions, batch_size, dev, reference)
        run.log({"models": result})
    printed = cache.note_skipped({"data": data_opts.data, "models": result})
    show(printed, as_json, lambda: _evaluate_table(result, the_patch is not None))


def _evaluate_one(
    model: Any,
    ds: Any,
    patch: Any,
    source: str | None,
    target: str | None,
    conditions: str,
    batch_size: int | None,
    device: str,
    reference: Any = None,
) -> dict[str, Any]:
    """One model's clean accuracy on ``ds`` (streamed when it is a stream) and, with a patch, its success; with a
    lighting ``reference`` (data), also under each sign's own lighting."""
    from patchscope.eval.patch_metrics import compare_lighting, measure_patch
    from patchscope.models.train import accuracy

    row: dict[str, Any] = {"clean_accuracy": accuracy(model, ds, device, batch_size)}
    row |= {"clean_images": len(ds) - len(getattr(ds, "skipped", ())), "data_hash": ds.data_hash()}
    args = (source, target, conditions, batch_size, device)
    if patch is not None and reference is not None:
        row.update(compare_lighting(model, ds, patch, reference, *args).as_dict())
    elif patch is not None:
        row.update(measure_patch(model, ds, patch, *args, progress=True).as_dict())
    return row


def _lighting_data(data_opts: DataOptions, spec: str | None, model: Any, ds: Any) -> Any:
    """The data the typical sign is measured on: ``spec`` read as --data is, else the evaluated data ``ds``."""
    return data_opts.other(spec).cache().get(model) if spec else ds


def _evaluate_table(result: dict[str, dict[str, Any]], patched: bool) -> None:
    """One row per model: its clean accuracy and, with a patch, the patch's success on it (and under each sign's own
    lighting, where it was measured)."""
    lit = patched and any("per_sign_lighting" in e for e in result.values())
    rows = [
        [
            n,
            str(e["clean_images"]),
            pct(e["clean_accuracy"]),
            *([pct(e.get("targeted_success")), pct(e["untargeted_success"])] if patched else []),
            *(_lit_cells(e.get("per_sign_lighting", {})) if lit else []),
            *([pct(e["target_confidence"])] if patched else []),
        ]
        for n, e in result.items()
    ]
    numbers = ["clean accuracy", *(["targeted", "untargeted"] if patched else [])]
    numbers += ["targeted, per-sign light", "untargeted, per-sign light"] if lit else []
    print_table(
        [
            "model",
            Col("images", drop=1, justify="right"),
            *(Col(h, justify="right") for h in numbers),
            *([Col("target conf.", drop=2, justify="right")] if patched else []),
        ],
        rows,
    )


def _lit_cells(lit: dict[str, Any]) -> list[str]:
    return [pct(lit.get("targeted_success")), pct(lit.get("untargeted_success"))]
