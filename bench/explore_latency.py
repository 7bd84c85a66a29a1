"""Server time of one update of `patchscope explore`'s page: the patch moved, then prediction and heatmap again.

    python bench/explore_latency.py --models gtsrb-cnn,gtsrb-resnet,gtsrb-vit --threads 2 --json

One update is what the page's server does when the patch moves: render the clean and the patched view
(:func:`render_scene`), then the top-5, the heatmaps and the layer shares of both (:func:`look`); "http" is
the same through the page's own endpoint (FastAPI's test client: JSON in, four PNGs and the numbers out),
when the ``explore`` extra is installed. The certificate (PatchCleanser on both views) is its own request
and timed apart. The patch moves by one pixel each repetition (the view tilted 10 degrees), on the first bundled
Stop sign, with the model's zoo Stop -> Yield patch (a model without one, e.g. ``tv:resnet50:random``: a random 5%
patch, the sign resized to the model's input). Run by hand; never part of the unit suite.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from patchscope.attacks import Patch, list_patches, load_patch, patch_side
from patchscope.data import load_data
from patchscope.explore import Camera, Placement, certify_scene, look, render_scene
from patchscope.models import create_model


def _times(fn: Callable[[int], object], reps: int, warm: int = 3) -> list[float]:
    out = []
    for i in range(warm + reps):
        t = time.perf_counter()
        fn(i)
        if i >= warm:
            out.append((time.perf_counter() - t) * 1e3)
    return out


def _summary(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {"median_ms": round(statistics.median(ms), 1), "p90_ms": round(ordered[int(0.9 * (len(ms) - 1))], 1)}


def _http(name: str, patch: str, image: int, reps: int) -> dict[str, float] | None:
    try:
        from fastapi.testclient import TestClient

        from patchscope.explore.app import ExploreSettings, create_app
    except ImportError:
        return None
    client = TestClient(create_app(ExploreSettings(model=name, data="demo")), base_url="http://127.0.0.1")
    body = {"model": name, "image": f"data:{image}", "patch": f"zoo:{patch}", "camera": {"yaw": 10.0}}

    def one(i: int) -> None:
        placed = {"row": 0.5, "col": 0.3 + 0.01 * (i % 20), "scale": 1.0, "rotation": 0.0}
        r = client.post("/api/look", json={**body, "placement": placed})
        assert r.status_code == 200, r.text

    return _summary(_times(one, reps))


def bench(name: str, reps: int) -> dict[str, object]:
    model = create_model(name)
    data = load_data("demo", size=model.input_size)
    first_stop = int((data.labels == 14).nonzero()[0])
    image = data.float_images()[first_stop]
    own = [p for p in list_patches() if p.startswith(f"{name}/")]
    size = model.input_size
    if own:
        patch_name = f"{name}/stop-yield" if f"{name}/stop-yield" in own else own[0]
        patch = load_patch(f"zoo:{patch_name}").resized(size)
    else:  # a model without zoo patches (tv:, timm:): a random 5% patch at its input size
        patch_name, side = "", patch_side(0.05, size)
        pixels = torch.rand(3, side, side, generator=torch.Generator().manual_seed(0))
        patch = Patch(pixels, torch.ones(side, side), "on-object", (0, 0), size, {"source": "stop"})

    def update(i: int) -> None:
        placed = Placement(size / 2, size * 0.3 + i % 20, 1.0, 0.0)
        look(model, render_scene(image, patch, placed, Camera(yaw=10.0)))

    scene = render_scene(image, patch, Placement.of(patch, size), Camera())
    return {
        "model": name,
        "patch": patch_name,
        "update": _summary(_times(update, reps)),
        "render_only": _summary(
            _times(lambda i: render_scene(image, patch, Placement.of(patch, size), Camera()), reps)
        ),
        "certify": _summary(_times(lambda i: certify_scene(model, scene, 14), max(3, reps // 5), warm=1)),
        "http": _http(name, patch_name, first_stop, reps) if patch_name else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="gtsrb-cnn,gtsrb-resnet,gtsrb-vit")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [bench(m, args.reps) for m in args.models.split(",")]
    if args.json:
        print(json.dumps({"threads": args.threads, "torch": torch.__version__, "rows": rows}, indent=2))
        return
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
