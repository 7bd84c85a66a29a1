"""One call for `patchscope explain`: attention, propagation and anomalies of a patch, figures and JSON.

>>> import torch, tempfile, pathlib
>>> from patchscope.attacks import Patch
>>> from patchscope.models import Classifier
>>> from patchscope.models.archs import cnn
>>> m = Classifier(cnn(num_classes=3, width=4, hidden=8), ["a", "b", "c"]).eval()
>>> p = Patch(torch.rand(3, 7, 7), torch.ones(7, 7), "on-object", (12, 12))
>>> x, y = torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)
>>> r = explain_patch(m, x, y, p, 1, pathlib.Path(tempfile.mkdtemp()))
>>> [row["name"] for row in r["layers"]]
['stage0', 'stage1', 'stage2']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from patchscope.attacks.patch import Patch
from patchscope.errors import PatchscopeError
from patchscope.explain.attention import Method, default_layer, explain_attention, is_token_model
from patchscope.explain.figures import anomaly_figure, attention_figure, propagation_figure
from patchscope.explain.propagation import apply_patch, patch_footprint, trace_layers
from patchscope.models.wrapper import Classifier

FIGURES = ("attention.png", "propagation.png", "anomaly.png")


def check_patch(model: Classifier, patch: Patch, image_size: int) -> None:
    """Raise :class:`PatchscopeError` unless the patch, the model and the images share one size."""
    if patch.image_size != model.input_size:
        raise PatchscopeError(
            f"the patch was made for {patch.image_size}px images but {model.name} takes {model.input_size}px",
            params=("patch",),
        )
    if image_size != model.input_size:
        raise PatchscopeError(f"the images are {image_size}px but {model.name} takes {model.input_size}px")


def _top(probs: torch.Tensor, classes: torch.Tensor, names: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {"class": names[int(c)], "id": int(c), "prob": round(float(p), 6)} for p, c in zip(probs.cpu(), classes.cpu())
    ]


def explain_patch(
    model: Classifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    patch: Patch,
    index: int,
    out: Path,
    method: Method = "auto",
    batch_size: int = 256,
) -> dict[str, Any]:
    """Explain ``patch`` on ``images`` (N, 3, H, W) in [0, 1], write the three figures into ``out``,
    and return the JSON-ready result: aggregate ``layers`` over all N, ``single`` for ``images[index]``.

    The single image's ``max_z`` uses the clean maxima of all N images as reference.
    """
    n = len(images)
    if n == 0:
        raise PatchscopeError("no images to explain")
    if not 0 <= index < n:
        raise PatchscopeError(f"index {index} is out of range: there are {n} images (0..{n - 1})", params=("index",))
    check_patch(model, patch, int(images.shape[-1]))
    dev = images.device
    names = tuple(getattr(model, "classes", ())) or tuple(str(i) for i in range(int(labels.max()) + 1))
    fp = patch_footprint(patch, dev)
    patched = apply_patch(images, patch)
    traces = trace_layers(model, images, patched, fp, batch_size)
    one = trace_layers(model, images[index : index + 1], patched[index : index + 1], fp, batch_size)
    rows = [t.summary() for t in traces]
    single_rows = [s.summary(reference=t) for s, t in zip(one, traces)]

    clean_in, patched_in, before, after = [], [], [], []
    for start in range(0, n, batch_size):
        a = explain_attention(model, images[start : start + batch_size], patched[start : start + batch_size], method)
        ci, pi = a.mass_inside(fp)
        clean_in.append(ci)
        patched_in.append(pi)
        before.append(a.before.classes[:, 0])
        after.append(a.after.classes[:, 0])
    pred_before, pred_after = torch.cat(before), torch.cat(after)
    y = labels.to(dev)
    a1 = explain_attention(model, images[index : index + 1], patched[index : index + 1], method)

    heat_method = "rollout" if method == "rollout" else "gradcam"
    heat_label = "attention rollout" if heat_method == "rollout" else f"Grad-CAM, {default_layer(model)}"
    out.mkdir(parents=True, exist_ok=True)
    attention_figure(
        images[index],
        patched[index],
        a1.clean[0],
        a1.patched[0],
        (a1.before.probs[0], a1.before.classes[0]),
        (a1.after.probs[0], a1.after.classes[0]),
        names,
        out / "attention.png",
        fp,
        int(labels[index]),
        heat_label,
    )
    title = f"{model.name}: {n} images"
    propagation_figure(
        rows,
        out / "propagation.png",
        single_rows,
        f"How the patch's signal grows layer by layer ({title}, dashed: image {index})",
    )
    anomaly_figure(rows, out / "anomaly.png", single_rows, f"Abnormal activations ({title}, dots: image {index})")

    target = patch.meta.get("target")
    tgt = names.index(target) if target in names else None
    return {
        "model": model.name,
        "images": n,
        "footprint": {
            "placement": "on-object",
            "location": list(patch.location) if patch.location else None,
            "side": patch.side,
            "pixels": int(fp.sum()),
        },
        "heatmap": {
            "method": heat_method,
            "layer": None if heat_method == "rollout" else default_layer(model),
            "tokens": is_token_model(model),
        },
        "clean_accuracy": float((pred_before == y).float().mean()),
        "patched_accuracy": float((pred_after == y).float().mean()),
        "target": target,
        "target_rate": float((pred_after == tgt).float().mean()) if tgt is not None else None,
        "attention_in_patch": {
            "clean": float(torch.cat(clean_in).mean()),
            "patched": float(torch.cat(patched_in).mean()),
        },
        "layers": rows,
        "single": {
            "index": index,
            "label": names[int(labels[index])],
            "before": _top(a1.before.probs[0], a1.before.classes[0], names),
            "after": _top(a1.after.probs[0], a1.after.classes[0], names),
            "attention_in_patch": dict(zip(("clean", "patched"), (float(v[0]) for v in a1.mass_inside(fp)))),
            "layers": single_rows,
        },
        "files": [str(out / f) for f in FIGURES],
    }
