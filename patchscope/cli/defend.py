"""`patchscope defend` and `certify`: empirical defenses against a patch, and certified accuracy. A defense's or
certifier's own options go as ``--option KEY=VALUE``, read from its registration (`patchscope list defenses`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from patchscope.cli.common import (
    STATE,
    BatchOpt,
    DataOptions,
    DeviceOpt,
    JsonOpt,
    OptionOpt,
    RegistryHelp,
    check_out,
    data_group,
    entry_options,
    option_errors,
    recorded,
    resolve_device,
    resume_hint,
    warn_bf16,
)
from patchscope.cli.output import key_value_table, show
from patchscope.errors import PatchscopeError, errors_about
from patchscope.validate import check_optional_positive, check_positive

app = typer.Typer()


@app.command(cls=RegistryHelp)
@data_group("gtsrb:test", limit="use the first N images (and at most N source images)")
def defend(
    *,
    defense: Annotated[str, typer.Option(help="the defense: {defenses}")],
    patch: Annotated[Path, typer.Option(help="a patch folder (from attack) or zoo:MODEL/NAME")],
    model: Annotated[str, typer.Option(help="model name or checkpoint")] = "gtsrb-cnn",
    data_opts: DataOptions,
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
    option: OptionOpt = None,
    fit_data: Annotated[str | None, typer.Option(help="clip: clean data to measure bounds on (default --data)")] = None,
    fit_limit: Annotated[int, typer.Option(help="clip: at most this many clean images for the bounds")] = 1024,
    batch_size: BatchOpt = None,
    seed: int = 0,
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Measure a patch through an empirical defense.

    Clean accuracy and the patch's success with and without the defense; --adaptive also attacks the defense
    itself."""
    from patchscope.attacks import load_patch
    from patchscope.defenses import defense_spec
    from patchscope.distributed import is_main, join
    from patchscope.models import create_model
    from patchscope.workflows.defend import defend_patch

    options, spec = entry_options("defenses", defense, option), defense_spec(defense)
    check_positive("fit_limit", fit_limit)
    check_out(out, "patch.safetensors", "patch.png")
    dev = resolve_device(device)
    join(dev)  # under torchrun: measurements split the images, the adaptive attack its batch; rank 0 writes
    net = create_model(model, dev)
    cache = data_opts.cache()
    ds = cache.get(net)
    fit = _fit_images(spec.takes("clean_images"), fit_data, data_opts, net, fit_limit, dev)
    config = {"model": model, "defense": defense, "data": data_opts.data, "adaptive": adaptive, "steps": steps}
    config |= {"attack_loss": attack_loss, "seed": seed, "models": [model], "patch": str(patch), "device": dev}
    config |= {"options": options} | data_opts.recorded() | {"data_hash": ds.head(data_opts.limit).data_hash()}
    given: dict[str, Any] = {"options": options, "fit_images": fit, "adaptive": adaptive, "limit": data_opts.limit}
    given |= {"steps": steps, "attack_batch_size": attack_batch_size, "attack_loss": attack_loss, "seed": seed}
    given |= {"source": source, "target": target, "conditions": conditions, "batch_size": batch_size}
    given["meta"] = {"model": model}
    with option_errors(spec.defaults), recorded("defend", config) as run:
        result = defend_patch(net, ds, load_patch(patch), defense, device=dev, progress=True, **given)
        summary = cache.note_skipped(_defense_summary(result, model, data_opts.data, patch, out))
        if out is not None and result.adaptive is not None and is_main():
            result.adaptive.patch.save(out)
            run.artifact("adaptive_patch", out)
        run.log(_flat(summary))
    show(summary, as_json, lambda: key_value_table(summary))


def _fit_images(needed: bool, fit_data: str | None, data: DataOptions, net: Any, limit: int, device: str) -> Any:
    """The clean images a fitted defense measures itself on: the first ``limit`` of ``--fit-data`` (or ``--data``),
    read for ``net`` as ``--data`` is."""
    if not needed:
        return None
    if fit_data is None:
        return data.cache().get(net).head(limit).float_images(device)
    with errors_about("fit_data"):
        return data.other(fit_data).cache().get(net).head(limit).float_images(device)


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


@app.command(cls=RegistryHelp)
@data_group("gtsrb:test")
def certify(
    *,
    defense: Annotated[str, typer.Option(help="the certifier: {certifiers}")],
    model: Annotated[str, typer.Option(help="model name or checkpoint")] = "gtsrb-cnn",
    patch_size: Annotated[float, typer.Option(help="square patch area as a fraction of the image")] = 0.05,
    data_opts: DataOptions,
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
    device: DeviceOpt = "auto",
    resume: Annotated[
        bool, typer.Option(help="continue an interrupted certification (its counts are kept after every chunk)")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Certified accuracy against any patch of a given size.

    PatchCleanser or derandomized smoothing, against any square patch of --patch-size anywhere. Folders (and large
    .npz files) are read batch by batch."""
    from patchscope.defenses import certifier_spec
    from patchscope.distributed import join
    from patchscope.models import create_model
    from patchscope.workflows.certify import certify as certify_data

    spec = certifier_spec(defense)
    with option_errors(spec.defaults):  # --bf16 on a certifier without the option: its options are --option KEY
        options = spec.check({**entry_options("certifiers", defense, option), **({"bf16": True} if bf16 else {})})
    check_optional_positive("limit", data_opts.limit)
    dev = resolve_device(device)
    join(dev)  # under torchrun: each rank certifies a share of the images; rank 0 prints and records
    if options.get("bf16"):
        warn_bf16(dev)
    net = create_model(model, dev)
    cache = data_opts.cache(data_opts.limit)
    ds = cache.get(net)
    config = {"model": model, "models": [model], "defense": defense, "patch_size": patch_size, "data": data_opts.data}
    config |= {"limit": data_opts.limit, "device": dev, "data_hash": ds.data_hash(), "options": options}
    config |= data_opts.recorded()
    ckpt = _certify_checkpoint(config, resume)
    with option_errors(spec.defaults), recorded("certify", config) as run, resume_hint():
        done = certify_data(net, ds, defense, patch_size, batch_size=batch_size, device=dev, checkpoint=ckpt, **options)
        result = {"model": model, "data": data_opts.data, **done.as_dict()}
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
