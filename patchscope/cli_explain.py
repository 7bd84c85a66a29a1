"""`patchscope explain`: where the model looks, how its probabilities move, how the patch's signal grows.

Writes OUT/attention.png, OUT/propagation.png, OUT/anomaly.png and OUT/explain.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from patchscope.errors import PatchscopeError
from patchscope.validate import check_batch, check_positive


def register(app: typer.Typer) -> None:
    """Add the ``explain`` command to ``app``."""

    @app.command()
    def explain(
        patch: Annotated[Path, typer.Option(help="a patch folder (from attack) or zoo:MODEL/NAME")],
        model: Annotated[str, typer.Option(help="model name or checkpoint path")] = "gtsrb-cnn",
        data: Annotated[str, typer.Option("--data", help="gtsrb:train | gtsrb:test | demo | npz:PATH[:SPLIT] | folder:PATH")] = "gtsrb:test",
        source: Annotated[Optional[str], typer.Option(help="class the patch attacks (default: the patch's, else stop)")] = None,
        index: Annotated[int, typer.Option(help="the source-class image shown in attention.png")] = 0,
        limit: Annotated[Optional[int], typer.Option(help="use at most N source-class images")] = None,
        method: Annotated[str, typer.Option(help="heatmaps: auto (Grad-CAM) | gradcam | rollout (ViT)")] = "auto",
        out: Annotated[Path, typer.Option(help="folder for the figures and explain.json")] = Path("runs/explain"),
        batch_size: int = 256,
        data_root: Annotated[Optional[Path], typer.Option("--data-root", help="folder holding gtsrb32.npz (default $PATCHSCOPE_DATA)")] = None,
        device: Annotated[str, typer.Option("--device", help="cpu or cuda")] = "cpu",
        as_json: Annotated[bool, typer.Option("--json", help="print the full JSON instead of a table")] = False,
    ) -> None:
        """Explain a patch: attention before/after, layer-by-layer propagation, abnormal activations."""
        from patchscope.cli import _device, _load_patch, _print, check_out, recorded
        from patchscope.data import load_data, resolve_class
        from patchscope.explain import explain_patch
        from patchscope.explain.report import check_patch
        from patchscope.io import write_json
        from patchscope.models import create_model

        if method not in ("auto", "gradcam", "rollout"):
            raise PatchscopeError(f"--method {method!r}: use auto, gradcam or rollout")
        check_batch("batch_size", batch_size)
        if limit is not None:
            check_positive("limit", limit)
        check_out(out)
        dev = _device(device)
        the_patch = _load_patch(patch)
        net = create_model(model, dev)
        check_patch(net, the_patch, net.input_size)
        ds = load_data(data, data_root, net.input_size)
        src = resolve_class(source if source is not None else the_patch.meta.get("source") or "stop", ds.classes)
        victims = ds.of_class(src).head(limit)
        if len(victims) == 0:
            raise PatchscopeError(f"--data {data} holds no images of class {ds.classes[src]!r}")
        if not 0 <= index < len(victims):
            raise PatchscopeError(f"--index {index} is out of range: {len(victims)} {ds.classes[src]!r} images are used (0..{len(victims) - 1})")
        config = {"model": model, "models": [model], "patch": str(patch), "data": data, "data_hash": victims.data_hash(), "source": ds.classes[src], "index": index, "limit": limit, "method": method, "device": dev}
        with recorded("explain", config) as run:
            result = explain_patch(net, victims.float_images(dev), victims.labels, the_patch, index, out, method, batch_size)  # type: ignore[arg-type]
            result = {"command": "explain", "patch": str(patch), "data": data, "data_hash": victims.data_hash(), "source": ds.classes[src], **result}
            write_json(out / "explain.json", result)
            result["files"].append(str(out / "explain.json"))
            layers = result["layers"]
            run.log({"images": result["images"], "clean_accuracy": result["clean_accuracy"], "patched_accuracy": result["patched_accuracy"],
                     "adversarial_share_first": layers[0]["adversarial_share"], "adversarial_share_last": layers[-1]["adversarial_share"],
                     "natural_ratio_last": layers[-1]["natural_ratio"]})
            run.artifact("out", out)

        def table() -> None:
            from rich.console import Console
            from rich.table import Table

            def fmt(v: object) -> str:
                return "-" if v is None else f"{v:.3f}"

            t = Table("layer", "grid", "adversarial share", "natural ratio", "max_z", f"max_z (image {index})",
                      title=f"{result['model']} on {result['images']} {result['source']!r} images: accuracy {result['clean_accuracy']:.0%} -> {result['patched_accuracy']:.0%}")
            for row, one in zip(result["layers"], result["single"]["layers"]):
                t.add_row(row["name"], "x".join(map(str, row["grid"])), fmt(row["adversarial_share"]), fmt(row["natural_ratio"]), fmt(row["max_z"]), fmt(one["max_z"]))
            Console().print(t)
            typer.echo(f"wrote {', '.join(result['files'])}")

        _print(result, as_json, table)
