"""The explorer's web server (FastAPI; the ``explore`` extra): the page and a thin JSON API over
:mod:`patchscope.explore`'s functions. Every request names its model, image and patch (see
:mod:`patchscope.explore.workspace`), so the page's state lives in the page; a bad request gets a JSON
``{"error": "one line"}`` and the server goes on.

>>> from fastapi.testclient import TestClient
>>> client = TestClient(create_app(ExploreSettings()), base_url="http://127.0.0.1")
>>> client.get("/api/options").json()["model"]
'gtsrb-vit'
"""

from __future__ import annotations

import base64
import contextlib
import math
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.middleware.trustedhost import TrustedHostMiddleware

from patchscope.attacks.patch import Patch, list_patches
from patchscope.defenses.patchcleanser import mask_positions
from patchscope.errors import PatchscopeError
from patchscope.explore.look import Look, look
from patchscope.explore.optimise import OptimiseSettings, save_run, upright_patch
from patchscope.explore.picture import heat_overlay, to_png
from patchscope.explore.scene import CAMERA_LIMITS, Camera, Placement, Scene, render_scene
from patchscope.explore.verdict import certify_view, defend_view, verdict
from patchscope.explore.workspace import Job, Loaded, Workspace, optimiser, store_folder
from patchscope.models import list_models
from patchscope.runs.store import store_for

#: the largest upload the server reads, in bytes
MAX_UPLOAD = 20 * 1024 * 1024
STATIC = Path(str(resources.files("patchscope.explore").joinpath("static")))


@dataclass(frozen=True)
class ExploreSettings:
    """What the server starts with: the page's first model, the data its images come from, the command line's patch
    (``given``, already loaded), the device, the run store's file (None: the default) and the host names it answers
    to (a guard against other sites' pages reaching it through a name that resolves to this machine)."""

    model: str = "gtsrb-vit"
    data: str = "demo"
    given: Patch | None = None
    given_name: str | None = None
    device: str = "cpu"
    store: Path | None = None
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "[::1]", "::1")


class PlacementIn(BaseModel):
    """The patch's centre as fractions of the image side, its scale and rotation (degrees)."""

    row: float = 0.5
    col: float = 0.5
    scale: float = 1.0
    rotation: float = 0.0


class CameraIn(BaseModel):
    rotation: float = 0.0
    yaw: float = 0.0
    distance: float = 1.0
    brightness: float = 1.0
    blur: float = 0.0


class SceneIn(BaseModel):
    model: str
    image: str
    patch: str
    placement: PlacementIn = Field(default_factory=PlacementIn)
    camera: CameraIn = Field(default_factory=CameraIn)


class CertifyIn(SceneIn):
    k: int = 6


class OptimiseIn(SceneIn):
    target: int | None = None
    steps: int = 100
    views: int = 8
    eot: bool = True


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _class(loaded: Loaded, i: int | None) -> dict[str, Any] | None:
    classes = loaded.model.classes
    return None if i is None else {"id": i, "name": classes[i] if 0 <= i < len(classes) else str(i)}


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


@dataclass
class Staged:
    """A request's scene, resolved: the model, the image and its label, the patch, where it sits, the views."""

    loaded: Loaded
    image: Any
    label: int | None
    patch: Patch
    placement: Placement
    scene: Scene


def stage(ws: Workspace, req: SceneIn) -> Staged:
    """Resolve a request's references and render its scene."""
    loaded = ws.model(req.model)
    image, label = ws.image(loaded, req.image)
    patch = ws.patch(loaded, req.patch)
    size = loaded.size
    p = req.placement
    placement = Placement(p.row * size, p.col * size, p.scale, p.rotation)
    scene = render_scene(image, patch, placement, Camera(**req.camera.model_dump()))
    return Staged(loaded, image, label, patch, placement, scene)


def look_json(staged: Staged, seen: Look) -> dict[str, Any]:
    """What the page shows of a :class:`Look`: the four pictures, both top-5, the layers."""
    s = staged.scene
    return {
        "size": staged.loaded.size,
        "clean": _uri(to_png(s.clean[0])),
        "patched": _uri(to_png(s.patched[0])),
        "clean_heat": _uri(to_png(heat_overlay(s.clean[0], seen.clean_heat))),
        "patched_heat": _uri(to_png(heat_overlay(s.patched[0], seen.patched_heat))),
        "clean_top": [asdict(g) for g in seen.clean_top],
        "patched_top": [asdict(g) for g in seen.patched_top],
        "flipped": seen.flipped,
        "heatmap": seen.heatmap,
        "heat_on_patch": list(seen.heat_on_patch),
        "layers": [{**asdict(layer), "grid": list(layer.grid)} for layer in seen.layers],
        "footprint_side": s.box_side(),
        "label": _class(staged.loaded, staged.label),
    }


def certify_json(ws: Workspace, staged: Staged, req: CertifyIn) -> dict[str, Any]:
    """PatchCleanser on the scene: the clean view's certificate (kept while only the patch moves) and the patched
    view's answer, for the image's label (or the clean view's prediction)."""
    loaded, s = staged.loaded, staged.scene
    side = min(loaded.size, max(1, s.box_side()))
    with loaded.certify_lock:
        model = loaded.certifier
        with torch.no_grad():
            label = staged.label if staged.label is not None else int(model(s.clean).argmax(1)[0])
        key = (loaded.name, req.image, tuple(req.camera.model_dump().values()), side, req.k, label)
        kept = ws.certificates.get(key) is not None
        cert = ws.certificate(key, lambda: certify_view(model, s.clean, label, side, req.k))
        defended = defend_view(model, s.patched, side, req.k)
    starts, mask_side, _ = mask_positions(loaded.size, side, req.k)
    v = verdict(label, side, mask_side, len(starts) ** 2, cert, defended)
    return {
        "label": _class(loaded, v.label),
        "patch_side": v.patch_side,
        "mask_side": v.mask_side,
        "masks": v.masks,
        "certified": v.certified,
        "broken_by": [asdict(b) for b in v.broken_by] if v.broken_by else None,
        "defended": _class(loaded, v.defended),
        "recovered": v.defended == v.label,
        "case": v.case,
        "deciding": asdict(v.deciding) if v.deciding is not None else None,
        "passes": defended.passes if kept else v.passes,
        "kept": kept,
    }


def job_json(job: Job) -> dict[str, Any]:
    """An optimisation's state for the page (its patch is ``job:ID`` once it has one)."""
    out: dict[str, Any] = {"job": job.id, "state": job.state, "steps": job.steps, "error": job.error}
    if job.progress is not None:
        out |= {"step": job.progress.step, "loss": _finite(job.progress.loss), "success": job.progress.success}
    if job.result is not None:
        r = job.result
        out |= {
            "patch": f"job:{job.id}",
            "step": r.steps,
            "targeted_success": r.targeted_success,
            "untargeted_success": r.untargeted_success,
            "location": list(r.patch.location or ()),
            "side": r.patch.side,
        }
    if job.saved is not None:
        out |= {"run": job.saved.id, "folder": str(job.saved.folder), "commands": job.saved.commands}
    return out


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status_code=status)


def _errors(app: FastAPI) -> None:
    """Every error a JSON ``{"error": ...}``: bad input 400, a malformed request 422, anything else 500 (and one line
    on the server's stderr); the server keeps serving."""

    @app.exception_handler(PatchscopeError)
    async def bad_input(_r: Request, e: PatchscopeError) -> JSONResponse:
        return _error(400, str(e))

    @app.exception_handler(RequestValidationError)
    async def malformed(_r: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(422, f"bad request: {where or 'body'}: {first.get('msg', 'invalid')}")

    @app.middleware("http")
    async def guard(r: Request, call: Callable[[Request], Awaitable[Response]]) -> Response:
        size = r.headers.get("content-length", "0")
        if size.isdigit() and int(size) > MAX_UPLOAD + 64 * 1024:
            return _error(413, f"the upload is {int(size) / 2**20:.1f} MB, over the limit of {MAX_UPLOAD // 2**20} MB")
        try:
            return await call(r)
        except Exception as e:  # noqa: BLE001  one request failed; the page hears why, the server goes on
            print(f"patchscope explore: {r.url.path}: {type(e).__name__}: {e}", file=sys.stderr)
            return _error(500, f"internal error: {type(e).__name__}: {e}")


async def _read(file: UploadFile) -> bytes:
    data = await file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise PatchscopeError(f"the upload is over the limit of {MAX_UPLOAD // 2**20} MB")
    if not data:
        raise PatchscopeError("the upload is empty")
    return data


def create_app(settings: ExploreSettings) -> FastAPI:
    """The explorer's app: the page at ``/``, its files under ``/static``, the JSON API under ``/api``."""
    ws = Workspace(settings.data, settings.device, settings.given)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        ws.stop_all()  # the server is going: running optimisations end at their next step

    app = FastAPI(title="patchscope explore", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.workspace = ws
    app.state.settings = settings
    hosts = ["*"] if "*" in settings.hosts else [h.strip("[]") for h in settings.hosts] + list(settings.hosts)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    _errors(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _page_routes(app, settings, ws)
    _scene_routes(app, ws)
    _job_routes(app, settings, ws)
    return app


def _page_routes(app: FastAPI, settings: ExploreSettings, ws: Workspace) -> None:
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/options")
    def options() -> dict[str, Any]:
        return {
            "model": settings.model,
            "models": list_models(),
            "data": settings.data,
            "patches": list_patches(),
            "given": settings.given_name,
            "camera_limits": CAMERA_LIMITS,
            "max_upload_mb": MAX_UPLOAD // 2**20,
        }

    @app.get("/api/images")
    def images(model: str) -> dict[str, Any]:
        loaded = ws.model(model)
        data = ws.data(loaded)
        return {
            "size": loaded.size,
            "classes": list(data.classes),
            "labels": data.labels.tolist(),
            "model_classes": list(loaded.model.classes),
            "labels_are_model_classes": ws.labels_match(loaded),
        }

    @app.get("/api/source")
    def source(model: str, image: str) -> Response:
        pixels, _ = ws.image(ws.model(model), image)
        return Response(to_png(pixels), media_type="image/png")

    @app.get("/api/patch")
    def patch(model: str, patch: str) -> dict[str, Any]:
        loaded = ws.model(model)
        p = ws.patch(loaded, patch)
        rgba = p.pixels.new_zeros(4, p.side, p.side)
        rgba[:3], rgba[3] = p.pixels, p.mask
        at = Placement.of(p, loaded.size)
        meta = {k: p.meta.get(k) for k in ("source", "target", "model") if isinstance(p.meta.get(k), str)}
        return {
            "png": _uri(to_png(rgba)),
            "side": p.side,
            "row": at.row / loaded.size,
            "col": at.col / loaded.size,
            **meta,
        }

    @app.post("/api/upload/{kind}")
    async def upload(kind: str, file: UploadFile = File(...)) -> dict[str, Any]:  # noqa: B008  FastAPI's idiom
        if kind not in ("image", "patch"):
            raise PatchscopeError(f"upload {kind!r}: upload an image or a patch")
        token = ws.add_upload(await _read(file), kind)
        return {"ref": f"upload:{token}"}


def _scene_routes(app: FastAPI, ws: Workspace) -> None:
    @app.post("/api/look")
    def look_route(req: SceneIn) -> dict[str, Any]:
        began = time.perf_counter()
        staged = stage(ws, req)
        with staged.loaded.lock:
            seen = look(staged.loaded.model, staged.scene)
        return {**look_json(staged, seen), "ms": round((time.perf_counter() - began) * 1e3, 1)}

    @app.post("/api/certify")
    def certify_route(req: CertifyIn) -> dict[str, Any]:
        began = time.perf_counter()
        out = certify_json(ws, stage(ws, req), req)
        return {**out, "ms": round((time.perf_counter() - began) * 1e3, 1)}


def _job_routes(app: FastAPI, settings: ExploreSettings, ws: Workspace) -> None:
    def job_of(job_id: str) -> Job:
        job = ws.jobs.get(job_id)
        if job is None:
            raise PatchscopeError(f"no optimisation {job_id!r} here (the server keeps the last 16)")
        return job

    @app.post("/api/optimise")
    def optimise(req: OptimiseIn) -> dict[str, Any]:
        staged = stage(ws, req)
        label = staged.label
        if label is None:
            with staged.loaded.lock, torch.no_grad():
                label = int(staged.loaded.model(staged.scene.clean).argmax(1)[0])
        opts = OptimiseSettings(req.target, req.steps, req.views, eot=req.eot)
        start = upright_patch(staged.patch, staged.placement, staged.loaded.size)
        loaded = staged.loaded
        facts: dict[str, Any] = {"model": loaded.name, "image": req.image, "start_patch": req.patch}
        facts |= {"source": (_class(loaded, label) or {})["name"], "source_id": label}
        facts |= {"target": (_class(loaded, req.target) or {}).get("name"), "target_id": req.target}
        if ws.data_spec and req.image.startswith("data:"):
            facts["data"] = ws.data_spec
        job = ws.start_job(loaded, optimiser(staged.image, label, start, opts), facts, req.steps)
        return job_json(job)

    @app.get("/api/optimise/{job_id}")
    def progress(job_id: str) -> dict[str, Any]:
        return job_json(job_of(job_id))

    @app.post("/api/optimise/{job_id}/stop")
    def stop(job_id: str) -> dict[str, Any]:
        job = job_of(job_id)
        job.stop.set()
        return job_json(job)

    @app.post("/api/optimise/{job_id}/save")
    def save(job_id: str) -> dict[str, Any]:
        job = job_of(job_id)
        if job.result is None:
            raise PatchscopeError("the optimisation has not finished: wait for it, or stop it first")
        if job.saved is None:
            store = store_for(settings.store)
            job.saved = save_run(job.result, store, store_folder(store.path), job.facts, job.data)
        return job_json(job)
