"""`patchscope defend`, `certify` and `defenses`: empirical defenses against a patch, certified accuracy, and the
registered defenses and certifiers with their options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from patchscope.cli.common import (
    STATE,
    ClassMapOpt,
    DataCache,
    DataOpt,
    DeviceOpt,
    JsonOpt,
    RootOpt,
    SkipBadOpt,
    check_out,
    data_options,
    load_patch_arg,
    recorded,
    resolve_device,
    resume_hint,
    same_named,
    warn_bf16,
)
from patchscope.cli.output import Col, key_value_table, print_table, show
from patchscope.errors import PatchscopeError
from patchscope.validate import check_optional_positive, check_positive

app = typer.Typer()

OptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        "-o",
        help="any option of the defense as KEY=VALUE (repeatable), e.g. -o sigma=0.1; see `patchscope defenses`",
    ),
]


@app.command()
def defend(
    defense: Annotated[str, typer.Option(help="a registered defense (`patchscope defenses` lists them)")],
    patch: Annotated[Path, typer.Option(help="a patch folder (from attack) or zoo:MODEL/NAME")],
    model: Annotated[str, typer.Option(help="model name or checkpoint")] = "gtsrb-cnn",
    data: DataOpt = "gtsrb:test",
    source: Annotated[str | None, typer.Option(help="class the patch attacks (default: the patch's)")] = None,
    target: Annotated[str | None, typer.Option(help="class the patch aims for (default: the patch's)")] = None,
    adaptive: Annotated[
        bool, typer.Option(help="also optimise a new patch through the defense (BPDA where needed)")
    ] = False,
    steps: Annotated[int, typer.Option(help="steps of the adaptive attack")] = 200,
    attack_batch_size: Annotated[int, typer.Option(help="batch of the adaptive attack")] = 64,
    attack_loss: Annotated[
        str, typer.Option(help="objective of the adaptive attack: sigmoid | ce | margin")
    ] = "sigmoid",
    out: Annotated[Path | None, typer.Option(help="save the adaptive patch into this folder")] = None,
    conditions: Annotated[str, typer.Option(help="default (the viewing grid) | none | sweep")] = "default",
    limit: Annotated[int | None, typer.Option(help="use the first N images (and at most N source images)")] = None,
    option: OptionOpt = None,
    quality: Annotated[float | None, typer.Option(help="jpeg: quality 1-100")] = None,
    sigma: Annotated[float | None, typer.Option(help="blur (and any defense with a sigma option): sigma")] = None,
    kernel: Annotated[int | None, typer.Option(help="blur, median: odd kernel side")] = None,
    bits: Annotated[int | None, typer.Option(help="bits: colour depth 1-8")] = None,
    window: Annotated[int | None, typer.Option(help="lgs: window side")] = None,
    threshold: Annotated[float | None, typer.Option(help="lgs: window threshold on the gradient")] = None,
    smoothing: Annotated[float | None, typer.Option(help="lgs: smoothing factor")] = None,
    stages: Annotated[int | None, typer.Option(help="clip: how many early stages to clip")] = None,
    quantile: Annotated[float | None, typer.Option(help="clip: bound quantile over clean images")] = None,
    fit_data: Annotated[str | None, typer.Option(help="clip: clean data to measure bounds on (default --data)")] = None,
    fit_limit: Annotated[int, typer.Option(help="clip: at most this many clean images for the bounds")] = 1024,
    batch_size: int = 1024,
    seed: int = 0,
    data_root: RootOpt = None,
    class_map: ClassMapOpt = None,
    skip_bad: SkipBadOpt = False,
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Clean accuracy and patch success through an empirical defense; --adaptive attacks the defense itself."""
    from patchscope.defenses import defense_spec
    from patchscope.defenses.registry import check_options
    from patchscope.distributed import is_main, join
    from patchscope.models import create_model
    from patchscope.workflows.defend import defend_patch

    args = dict(locals())
    spec = defense_spec(defense)
    named = {k: args[k] for k in NAMED_OPTIONS}  # --kernel 3 and -o kernel=3 alike; one a defense lacks is refused
    options = check_options("defense", defense, spec.options, {**named, **spec.parse(option or [])})
    check_positive("fit_limit", fit_limit)
    check_out(out, "patch.safetensors", "patch.png")
    dev = resolve_device(device)
    join(dev)  # under torchrun: measurements split the images, the adaptive attack its batch; rank 0 writes
    net = create_model(model, dev)
    cache = DataCache(data, data_root, class_map=class_map, skip_bad=skip_bad)
    ds = cache.get(net)
    fit = _fit_images(spec.needs_clean_images, fit_data, cache, net, fit_limit, dev)
    config = {k: args[k] for k in ("model", "defense", "data", "adaptive", "steps", "attack_loss", "seed")}
    config |= {"models": [model], "patch": str(patch), "device": dev, "options": options}
    config |= data_options(class_map, skip_bad)
    config["data_hash"] = ds.head(limit).data_hash()
    extra = {"options": options, "fit_images": fit, "device": dev, "meta": {"model": model}, "progress": True}
    with recorded("defend", config) as run:
        kwargs = same_named(args, defend_patch, ("model", "data", "patch", "defense", *extra)) | extra
        result = defend_patch(net, ds, load_patch_arg(patch), defense, **kwargs)
        summary = cache.note_skipped(_defense_summary(result, model, data, patch, out))
        if out is not None and result.adaptive is not None and is_main():
            result.adaptive.patch.save(out)
            run.artifact("adaptive_patch", out)
        run.log(_flat(summary))
    show(summary, as_json, lambda: key_value_table(summary))


#: defense options with a flag of their own (any option also goes as ``-o KEY=VALUE``)
NAMED_OPTIONS = ("quality", "sigma", "kernel", "bits", "window", "threshold", "smoothing", "stages", "quantile")


def _fit_images(needed: bool, fit_data: str | None, cache: DataCache, net: Any, limit: int, device: str) -> Any:
    """The clean images a fitted defense measures itself on: the first ``limit`` of ``--fit-data`` (or ``--data``),
    read for ``net`` as ``--data`` is."""
    if not needed:
        return None
    if fit_data:
        class_map = cache.class_map if fit_data.startswith("folder:") else None
        cache = DataCache(fit_data, cache.root, None, class_map, cache.skip_bad)
    return cache.get(net).head(limit).float_images(device)


def _defense_summary(result: Any, model: str, data: str, patch: Path, out: Path | None) -> dict[str, Any]:
    """The printed result: the library's, with the model, data and patch as given on the command line."""
    body = result.as_dict()
    summary = {"model": model, "defense": body.pop("defense"), "data": data, **body}
    summary["patch"] = {"path": str(patch), **summary["patch"]}
    if out is not None and "adaptive" in summary:
        summary["adaptive"]["out"] = str(out)
    return summary


def _flat(obj: dict[str, Any]) -> dict[str, Any]:
    from patchscope.runs.store import flatten

    return flatten(obj)


@app.command()
def certify(
    defense: Annotated[str, typer.Option(help="a registered certifier (`patchscope defenses` lists them)")],
    model: Annotated[str, typer.Option(help="model name or checkpoint")] = "gtsrb-cnn",
    patch_size: Annotated[float, typer.Option(help="square patch area as a fraction of the image")] = 0.05,
    data: DataOpt = "gtsrb:test",
    limit: Annotated[int | None, typer.Option(help="use only the first N images")] = None,
    k: Annotated[int | None, typer.Option("--k", help="patchcleanser: masks per axis (default 6)")] = None,
    band: Annotated[
        int | None,
        typer.Option(help="ds: kept band width in px (default 1/8 of the image side for columns, 3/8 for blocks)"),
    ] = None,
    option: OptionOpt = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            help="masked or ablated images per forward pass (default 256 on "
            "a CPU, where small chunks stay in cache; 16384 on a GPU)"
        ),
    ] = None,
    bf16: Annotated[
        bool,
        typer.Option(
            "--bf16",
            help="patchcleanser: bfloat16 autocast, faster on a GPU or a "
            "CPU with bf16 units; near-ties are redone in float32",
        ),
    ] = False,
    data_root: RootOpt = None,
    class_map: ClassMapOpt = None,
    skip_bad: SkipBadOpt = False,
    device: DeviceOpt = "auto",
    resume: Annotated[
        bool, typer.Option(help="continue an interrupted certification (its counts are kept after every chunk)")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Certified accuracy against any square patch of --patch-size: PatchCleanser or derandomized smoothing.
    Folders (and large .npz files) are read batch by batch."""
    from patchscope.defenses import certifier_spec
    from patchscope.defenses.registry import check_options
    from patchscope.distributed import join
    from patchscope.models import create_model
    from patchscope.workflows.certify import certify as certify_data

    spec = certifier_spec(defense)
    options = check_options(
        "certifier", defense, spec.options, {"k": k, "band": band, "bf16": bf16 or None, **spec.parse(option or [])}
    )
    check_optional_positive("limit", limit)
    dev = resolve_device(device)
    join(dev)  # under torchrun: each rank certifies a share of the images; rank 0 prints and records
    if options.get("bf16"):
        warn_bf16(dev)
    net = create_model(model, dev)
    cache = DataCache(data, data_root, limit, class_map, skip_bad)
    ds = cache.get(net)
    config = {
        "model": model,
        "models": [model],
        "defense": defense,
        "patch_size": patch_size,
        "data": data,
        "limit": limit,
        "device": dev,
        "data_hash": ds.data_hash(),
        "options": options,
        **data_options(class_map, skip_bad),
    }
    ckpt = _certify_checkpoint(config, resume)
    with recorded("certify", config) as run, resume_hint():
        done = certify_data(net, ds, defense, patch_size, batch_size=batch_size, device=dev, checkpoint=ckpt, **options)
        result = {"model": model, "data": data, **done.as_dict()}
        run.log(_flat(result))
    if ckpt is not None:
        ckpt.path.unlink(missing_ok=True)  # the result is recorded: the counts that led to it are no longer needed
    show(cache.note_skipped(result), as_json, lambda: key_value_table(result))


def _certify_checkpoint(config: dict[str, Any], resume: bool) -> Any:
    """Where a certification keeps its counts: beside the run store, one file per model, data, limit and certifier
    (the other settings must match to resume); none under torchrun."""
    import hashlib
    import json

    from patchscope.distributed import active
    from patchscope.runs.store import default_store_path
    from patchscope.workflows.certify import CertifyCheckpoint

    if active():
        if resume:
            raise PatchscopeError("--resume: certification keeps its progress in one process only; drop torchrun")
        return None
    key = json.dumps([config[k] for k in ("model", "data", "limit", "defense")] + [config.get("class_map")])
    folder = (STATE.store or default_store_path()).parent / "checkpoints"
    name = f"certify-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"
    return CertifyCheckpoint(folder / name, resume, {"model": config["model"]})


@app.command()
def defenses(as_json: JsonOpt = False) -> None:
    """List the registered defenses and certifiers: their options (with defaults) and whether attacks need BPDA."""
    from patchscope.defenses import certifier_spec, defense_spec, list_certifiers, list_defenses

    rows: list[dict[str, Any]] = [
        {
            "name": n,
            "kind": "defense",
            "bpda": defense_spec(n).bpda,
            "options": defense_spec(n).options,
            "summary": defense_spec(n).summary,
        }
        for n in list_defenses()
    ]
    rows += [
        {
            "name": n,
            "kind": "certifier",
            "bpda": None,
            "options": certifier_spec(n).options,
            "summary": certifier_spec(n).summary,
        }
        for n in list_certifiers()
    ]
    table: list[list[str]] = [
        [
            str(r["name"]),
            str(r["kind"]),
            {True: "yes", False: "no", None: "-"}[r["bpda"]],
            ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "-",
            str(r["summary"]),
        ]
        for r in rows
    ]
    columns: list[Col | str] = ["name", Col("kind", drop=1), "BPDA", "options (-o KEY=VALUE)", "what it does"]
    show(rows, as_json, lambda: print_table(columns, table))
