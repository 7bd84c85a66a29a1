"""The ``defend`` and ``certify`` commands, added to the main app by :func:`register`.

Helpers of :mod:`patchscope.cli` are imported inside the commands (that module imports this one).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from patchscope.errors import PatchscopeError
from patchscope.validate import check_batch, check_positive

DataOpt = Annotated[str, typer.Option("--data", help="gtsrb:train | gtsrb:test | demo | npz:PATH[:SPLIT] | folder:PATH")]
RootOpt = Annotated[Optional[Path], typer.Option("--data-root", help="folder holding gtsrb32.npz (default $PATCHSCOPE_DATA)")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu or cuda")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]

#: defenses whose cleaning step has no useful gradient: adaptive attacks go through them with BPDA
NEEDS_BPDA = ("median", "bits", "lgs")


def _show(obj: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(obj, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    def rows(prefix: str, d: dict[str, Any]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for k, v in d.items():
            key = f"{prefix}{k}"
            out += rows(f"{key}.", v) if isinstance(v, dict) else [(key, f"{v:.4g}" if isinstance(v, float) else str(v))]
        return out

    t = Table("key", "value")
    for k, v in rows("", obj):
        t.add_row(k, v)
    Console().print(t)


def _brief(metrics: dict[str, Any]) -> dict[str, Any]:
    """Patch metrics without the per-condition list."""
    return {k: v for k, v in metrics.items() if k != "conditions"}


def _adaptive_config(patch: Any, target: int | None, steps: int, batch_size: int, seed: int) -> Any:
    """An :class:`AttackConfig` for a new patch with the given patch's size, shape, placement and location."""
    from patchscope.attacks import AttackConfig, is_named_shape, patch_side

    made = patch.meta.get("config", {}) if isinstance(patch.meta.get("config"), dict) else {}
    n = patch.image_size
    shape = made["shape"] if is_named_shape(made.get("shape")) else "square"
    size = float(made.get("size", patch.side**2 / n**2))
    if patch_side(size, n, shape) != patch.side:
        shape, size = "square", patch.side**2 / n**2
    location = tuple(patch.location) if patch.placement == "on-object" and patch.location is not None else None
    return AttackConfig(size=size, shape=shape, placement=patch.placement, location=location, target=target, steps=steps, batch_size=batch_size, seed=seed)


def defend(
    defense: Annotated[str, typer.Option(help="jpeg | blur | median | bits | lgs | clip")],
    patch: Annotated[Path, typer.Option(help="a patch folder (from attack) or zoo:MODEL/NAME")],
    model: Annotated[str, typer.Option(help="model name or checkpoint")] = "gtsrb-cnn",
    data: DataOpt = "gtsrb:test",
    source: Annotated[Optional[str], typer.Option(help="class the patch attacks (default: the patch's)")] = None,
    target: Annotated[Optional[str], typer.Option(help="class the patch aims for (default: the patch's)")] = None,
    adaptive: Annotated[bool, typer.Option(help="also optimise a new patch through the defense (BPDA where needed)")] = False,
    steps: Annotated[int, typer.Option(help="steps of the adaptive attack")] = 200,
    attack_batch_size: Annotated[int, typer.Option(help="batch of the adaptive attack")] = 64,
    out: Annotated[Optional[Path], typer.Option(help="save the adaptive patch into this folder")] = None,
    conditions: Annotated[str, typer.Option(help="default (the viewing grid) | none | sweep")] = "default",
    limit: Annotated[Optional[int], typer.Option(help="use the first N images (and at most N source images)")] = None,
    quality: Annotated[Optional[float], typer.Option(help="jpeg: quality 1-100")] = None,
    sigma: Annotated[Optional[float], typer.Option(help="blur: sigma in pixels")] = None,
    kernel: Annotated[Optional[int], typer.Option(help="blur, median: odd kernel side")] = None,
    bits: Annotated[Optional[int], typer.Option(help="bits: colour depth 1-8")] = None,
    window: Annotated[Optional[int], typer.Option(help="lgs: window side")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="lgs: window threshold on the gradient")] = None,
    smoothing: Annotated[Optional[float], typer.Option(help="lgs: smoothing factor")] = None,
    stages: Annotated[Optional[int], typer.Option(help="clip: how many early stages to clip")] = None,
    quantile: Annotated[Optional[float], typer.Option(help="clip: bound quantile over clean images")] = None,
    fit_data: Annotated[Optional[str], typer.Option(help="clip: clean data to measure bounds on (default --data)")] = None,
    fit_limit: Annotated[int, typer.Option(help="clip: at most this many clean images for the bounds")] = 1024,
    batch_size: int = 1024,
    seed: int = 0,
    data_root: RootOpt = None,
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
) -> None:
    """Clean accuracy and patch success through an empirical defense; --adaptive attacks the defense itself."""
    from patchscope.cli import _DataCache, _device, _load_patch, _patch_metrics, check_out, recorded
    from patchscope.eval.store import flatten
    from patchscope.data import resolve_class
    from patchscope.defenses import EMPIRICAL, create_defense
    from patchscope.models import create_model
    from patchscope.models.train import accuracy

    if defense not in EMPIRICAL:
        raise PatchscopeError(f"unknown --defense {defense!r}: choose from {', '.join(EMPIRICAL)}")
    check_positive("steps", steps, 10**7)
    check_batch("attack_batch_size", attack_batch_size)
    check_batch("batch_size", batch_size)
    check_positive("fit_limit", fit_limit)
    if limit is not None:
        check_positive("limit", limit)
    check_out(out)
    dev = _device(device)
    net = create_model(model, dev)
    the_patch = _load_patch(patch)
    ds = _DataCache(data, data_root).get(net.input_size)
    clean_set = ds.head(limit)
    src = source if source is not None else the_patch.meta.get("source")
    if src is None:
        raise PatchscopeError("--source: which class does the patch attack? (name or id)")
    victims = ds.of_class(resolve_class(src, ds.classes)).head(limit)
    tgt_name = target if target is not None else the_patch.meta.get("target")
    tgt = resolve_class(tgt_name, ds.classes) if tgt_name is not None else None
    fit_images = None
    if defense == "clip":
        fit_set = (_DataCache(fit_data, data_root).get(net.input_size) if fit_data else ds).head(fit_limit)
        fit_images = fit_set.float_images(dev)
    options = {"quality": quality, "sigma": sigma, "kernel": kernel, "bits": bits, "window": window, "threshold": threshold, "smoothing": smoothing, "stages": stages, "quantile": quantile}
    wanted = {"jpeg": ("quality",), "blur": ("sigma", "kernel"), "median": ("kernel",), "bits": ("bits",), "lgs": ("window", "threshold", "smoothing"), "clip": ("stages", "quantile")}[defense]
    stray = [k for k, v in options.items() if v is not None and k not in wanted]
    if stray:
        raise PatchscopeError(f"--{stray[0]} does not apply to --defense {defense} (its options: {', '.join('--' + w for w in wanted)})")
    defended = create_defense(defense, net, bpda=defense in NEEDS_BPDA, clean_images=fit_images, **{k: options[k] for k in wanted})

    with recorded("defend", {"model": model, "models": [model], "defense": defense, "patch": str(patch), "data": data, "adaptive": adaptive, "steps": steps, "seed": seed, "device": dev, "data_hash": clean_set.data_hash(), "options": {k: v for k, v in options.items() if v is not None}}) as run:
        result: dict[str, Any] = {"model": model, "defense": defense, "data": data, "data_hash": clean_set.data_hash(), "images": len(clean_set), "source_images": len(victims),
                                  "clean_accuracy": accuracy(net, clean_set, dev, batch_size), "defended_clean_accuracy": accuracy(defended, clean_set, dev, batch_size)}
        src_name, tgt_arg = ds.classes[int(victims.labels[0])] if len(victims) else str(src), (ds.classes[tgt] if tgt is not None else None)
        result["patch"] = {"path": str(patch), "undefended": _brief(_patch_metrics(net, victims, the_patch, src_name, tgt_arg, conditions, batch_size, dev)),
                           "defended": _brief(_patch_metrics(defended, victims, the_patch, src_name, tgt_arg, conditions, batch_size, dev))}
        if adaptive:
            from patchscope.attacks import PatchAttack

            cfg = _adaptive_config(the_patch, tgt, steps, attack_batch_size, seed)
            started = time.time()
            new = PatchAttack(defended, cfg, dev)(victims.float_images(), victims.labels)
            new.meta.update({"model": model, "defense": defense, "source": src_name, "target": tgt_arg, "data": data, "adaptive": True})
            result["adaptive"] = {"steps": steps, "bpda": defense in NEEDS_BPDA, "seconds": round(time.time() - started, 1),
                                  "undefended": _brief(_patch_metrics(net, victims, new, src_name, tgt_arg, conditions, batch_size, dev)),
                                  "defended": _brief(_patch_metrics(defended, victims, new, src_name, tgt_arg, conditions, batch_size, dev))}
            if out is not None:
                new.save(out)
                result["adaptive"]["out"] = str(out)
                run.artifact("adaptive_patch", out)
        run.log(flatten(result))
    _show(result, as_json)


def certify(
    defense: Annotated[str, typer.Option(help="patchcleanser | ds-column | ds-block")],
    model: Annotated[str, typer.Option(help="model name or checkpoint")] = "gtsrb-cnn",
    patch_size: Annotated[float, typer.Option(help="square patch area as a fraction of the image")] = 0.05,
    data: DataOpt = "gtsrb:test",
    limit: Annotated[Optional[int], typer.Option(help="use only the first N images")] = None,
    k: Annotated[int, typer.Option("--k", help="patchcleanser: masks per axis")] = 6,
    band: Annotated[Optional[int], typer.Option(help="ds: kept band width (default 4 columns, 12 for blocks)")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="masked or ablated images per forward pass (default 256 on a CPU, where small chunks stay in cache; 16384 on a GPU)")] = None,
    bf16: Annotated[bool, typer.Option("--bf16", help="patchcleanser: bfloat16 autocast, faster on a GPU or a CPU with bf16 units; near-ties are redone in float32")] = False,
    data_root: RootOpt = None,
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
) -> None:
    """Certified accuracy against any square patch of --patch-size: PatchCleanser or derandomized smoothing."""
    import torch

    from patchscope.attacks import patch_side
    from patchscope.cli import _DataCache, _device, _warn_bf16, recorded
    from patchscope.validate import check_fraction
    from patchscope.eval.store import flatten
    from patchscope.defenses import CERTIFIED, ablation_set, ds_certify, ds_delta, ds_predict, ds_prediction_map, mask_positions, mask_set, pc_counts
    from patchscope.models import create_model
    from patchscope.progress import progress_bar

    if defense not in CERTIFIED:
        raise PatchscopeError(f"unknown --defense {defense!r}: choose from {', '.join(CERTIFIED)}")
    check_fraction("patch_size", patch_size)
    if batch_size is not None:
        check_batch("batch_size", batch_size)
    if limit is not None:
        check_positive("limit", limit)
    dev = _device(device)
    if bf16 and defense == "patchcleanser":
        _warn_bf16(dev)
    batch_size = batch_size or (256 if dev == "cpu" else 16384)
    net = create_model(model, dev)
    n = net.input_size
    side = patch_side(patch_size, n)
    info: dict[str, Any] = {}
    if defense == "patchcleanser":
        _, m, s = mask_positions(n, side, k)
        regions = mask_set(n, side, k, dev)
        info = {"k": k, "masks": len(regions), "mask_side": m, "mask_stride": s, "full_map_passes": len(regions) * (len(regions) + 1) // 2}
    else:
        mode = defense.removeprefix("ds-")
        b = band if band is not None else (4 if mode == "column" else 12)
        regions = ablation_set(n, b, mode, dev)
        delta = ds_delta(side, b, mode)
        info = {"band": b, "ablations": len(regions), "delta": delta}
    ds = _DataCache(data, data_root, limit).get(n)
    if len(ds) == 0:
        raise PatchscopeError(f"--data {data} holds no images")
    with recorded("certify", {"model": model, "models": [model], "defense": defense, "patch_size": patch_size, "data": data, "limit": limit, "device": dev, "data_hash": ds.data_hash(), **info}) as run:
        totals = torch.zeros(3, dtype=torch.long, device=dev)  # clean, defended, certified
        per_image = info.get("full_map_passes", len(regions))  # images per chunk: a progress line at least every ~64k passes
        passes, chunk = 0, max(1, min(256, batch_size, 65536 // max(per_image, 1)))
        started = time.perf_counter()
        with torch.inference_mode(), progress_bar(len(ds), f"certify {defense}") as update:
            for x, y in ds.batches(chunk, dev):
                if defense == "patchcleanser":
                    counts, chunk_passes = pc_counts(net, x, y, regions, batch_size, bf16, len(net.classes))
                    totals += counts
                    passes += chunk_passes
                else:
                    votes, per_image = ds_prediction_map(net, x, regions, batch_size)
                    passes += per_image * len(y)
                    robust, certified = ds_predict(votes), ds_certify(votes, y, delta)
                    totals += torch.stack([(net(x).argmax(1) == y).sum(), (robust == y).sum(), certified.sum()])
                update(advance=len(y))
        clean, defended, cert = (int(v) for v in totals.cpu())
        seconds = time.perf_counter() - started
        result = {"model": model, "defense": defense, "data": data, "data_hash": ds.data_hash(), "images": len(ds), "patch_size": patch_size, "patch_side": side, **info,
                  "clean_accuracy": clean / len(ds), "defended_accuracy": defended / len(ds), "certified_accuracy": cert / len(ds),
                  "forward_passes_per_image": round(passes / len(ds), 2), "batch_size": batch_size, "seconds": round(seconds, 3), "images_per_second": round(len(ds) / max(seconds, 1e-9), 2), "device": dev,
                  "precision": "bf16" if bf16 and defense == "patchcleanser" else "fp32"}
        run.log(flatten(result))
    _show(result, as_json)


def register(app: typer.Typer) -> None:
    """Add ``defend`` and ``certify`` to ``app``."""
    app.command("defend")(defend)
    app.command("certify")(certify)
