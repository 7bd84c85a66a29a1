"""`patchscope explain`: where the model looks, how its probabilities move, how the patch's signal grows.

Writes OUT/attention.png, OUT/propagation.png, OUT/anomaly.png and OUT/explain.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from patchscope.cli.common import (
    DataOptions,
    DeviceOpt,
    check_out,
    data_group,
    recorded,
    resolve_device,
)
from patchscope.cli.output import Col, print_table, print_text, show
from patchscope.errors import PatchscopeError
from patchscope.formatting import pct
from patchscope.validate import check_batch, check_optional_positive

if TYPE_CHECKING:
    from patchscope.explain.attention import Method

app = typer.Typer()


@app.command()
@data_group("gtsrb:test", limit="use at most N source-class images")
def explain(
    *,
    patch: Annotated[Path, typer.Option(help="a patch folder (from attack) or zoo:MODEL/NAME")],
    model: Annotated[str, typer.Option(help="model name or checkpoint path")] = "gtsrb-cnn",
    data_opts: DataOptions,
    source: Annotated[
        str | None, typer.Option(help="class the patch attacks (default: the patch's, else stop)")
    ] = None,
    index: Annotated[int, typer.Option(help="the source-class image shown in attention.png")] = 0,
    method: Annotated[str, typer.Option(help="heatmaps: auto (Grad-CAM) | gradcam | rollout (ViT)")] = "auto",
    out: Annotated[Path, typer.Option(help="folder for the figures and explain.json")] = Path("runs/explain"),
    batch_size: int = 256,
    device: DeviceOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="print the full JSON instead of a table")] = False,
) -> None:
    """Explain a patch: attention, propagation, abnormal activations.

    Where the model looks before and after the patch, how the patch's signal grows layer by layer, and which
    activations are abnormal."""
    from patchscope.attacks import load_patch
    from patchscope.explain.report import check_patch
    from patchscope.models import create_model

    if method not in ("auto", "gradcam", "rollout"):
        raise PatchscopeError(f"--method {method!r}: use auto, gradcam or rollout")
    check_batch("batch_size", batch_size)
    check_optional_positive("limit", data_opts.limit)
    check_out(out, "explain.json", "attention.png", "propagation.png", "anomaly.png")
    dev = resolve_device(device)
    the_patch = load_patch(patch)
    net = create_model(model, dev)
    check_patch(net, the_patch, net.input_size)
    cache = data_opts.cache()
    ds = cache.get(net)
    source = source if source is not None else the_patch.meta.get("source") or "stop"
    victims = _victims(ds, source, data_opts.limit, index, data_opts.data)
    head = {"patch": str(patch), "data": data_opts.data, "data_hash": victims.data_hash()}
    head["source"] = ds.classes[int(victims.labels[0])]
    config = {"model": model, "models": [model], **head, "index": index, "limit": data_opts.limit, "method": method}
    config |= {"device": dev, **data_opts.recorded()}
    with recorded("explain", config) as run:
        result = _explain(net, victims, the_patch, index, out, cast("Method", method), batch_size, dev, head)
        run.log(_headline(result))
        run.artifact("out", out)
    show(cache.note_skipped(result), as_json, lambda: _table(result, index))


def _victims(ds: Any, source: str | int, limit: int | None, index: int, data: str) -> Any:
    """The first ``limit`` images of the source class, in memory; ``index`` must pick one of them."""
    from patchscope.data import resolve_class

    src = resolve_class(source, ds.classes)
    victims = ds.of_class(src).head(limit).load()
    if len(victims) == 0:
        raise PatchscopeError(f"--data {data} holds no images of class {ds.classes[src]!r}")
    if not 0 <= index < len(victims):
        used = f"{len(victims)} {ds.classes[src]!r} images are used (0..{len(victims) - 1})"
        raise PatchscopeError(f"--index {index} is out of range: {used}")
    return victims


def _explain(
    net: Any,
    victims: Any,
    patch: Any,
    index: int,
    out: Path,
    method: Method,
    batch_size: int,
    device: str,
    head: dict[str, Any],
) -> dict[str, Any]:
    """:func:`~patchscope.explain.explain_patch`, its figures saved into ``out`` with ``explain.json`` (``head``
    first) beside them."""
    from patchscope.explain import explain_patch, save_explanation
    from patchscope.io import write_json

    found = explain_patch(net, victims.float_images(device), victims.labels, patch, index, method, batch_size)
    files = save_explanation(found, out)
    result = {"command": "explain", **head, **found.as_dict(), "files": [str(f) for f in files]}
    write_json(out / "explain.json", result)
    result["files"].append(str(out / "explain.json"))
    return result


def _headline(result: dict[str, Any]) -> dict[str, Any]:
    """The numbers a stored explain run keeps."""
    layers = result["layers"]
    return {
        "images": result["images"],
        "clean_accuracy": result["clean_accuracy"],
        "patched_accuracy": result["patched_accuracy"],
        "adversarial_share_first": layers[0]["adversarial_share"],
        "adversarial_share_last": layers[-1]["adversarial_share"],
        "natural_ratio_last": layers[-1]["natural_ratio"],
    }


def _table(result: dict[str, Any], index: int) -> None:
    def fmt(v: object) -> str:
        return "-" if v is None else f"{v:.3f}"

    rows = [
        [
            row["name"],
            "x".join(map(str, row["grid"])),
            fmt(row["adversarial_share"]),
            fmt(row["natural_ratio"]),
            fmt(row["max_z"]),
            fmt(one["max_z"]),
        ]
        for row, one in zip(result["layers"], result["single"]["layers"])
    ]
    title = (
        f"{result['model']} on {result['images']} {result['source']!r} images: "
        f"accuracy {pct(result['clean_accuracy'])} -> {pct(result['patched_accuracy'])}"
    )
    numbers = ("adversarial share", "natural ratio", "max_z")
    columns: list[Col | str] = ["layer", Col("grid", drop=2), *(Col(h, justify="right") for h in numbers)]
    print_table([*columns, Col(f"max_z (image {index})", drop=1, justify="right")], rows, title)
    files = [Path(f) for f in result["files"]]
    folders = {f.parent for f in files}
    names = ", ".join(f.name for f in files) if len(folders) == 1 else ", ".join(map(str, files))
    print_text(f"wrote {names}" + (f" in {folders.pop()}" if len(folders) == 1 else ""))
