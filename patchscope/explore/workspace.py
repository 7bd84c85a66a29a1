"""What the explorer's server keeps between requests, none of it tied to a page: loaded models (each with a lock, and
a second copy for certificates so a slow certificate never holds up a drag), the data, uploaded pictures (by the
hash of their bytes, in memory), clean-view certificates, and optimisation jobs. Every request names its model,
image and patch, so two pages (two tabs, two models) share nothing but these caches.

References, as a page sends them: an image is ``data:INDEX`` (the data set's INDEX-th image) or ``upload:TOKEN``; a
patch is ``blank``, ``zoo:MODEL/NAME``, ``given`` (the command line's ``--patch``), ``upload:TOKEN`` or ``job:ID``
(an optimised patch).

>>> ws = Workspace("demo")
>>> loaded = ws.model("gtsrb-cnn")
>>> image, label = ws.image(loaded, "data:0")
>>> tuple(image.shape), ws.patch(loaded, "zoo:gtsrb-cnn/stop-yield").side
((3, 32, 32), 10)
"""

from __future__ import annotations

import copy
import hashlib
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch

from patchscope.attacks.load import load_patch
from patchscope.attacks.patch import Patch
from patchscope.data import ImageSet, ImageStream, data_for
from patchscope.errors import PatchscopeError
from patchscope.explore.optimise import Optimised, OptimiseSettings, Progress, optimise_here
from patchscope.explore.picture import pil_to_uint8, read_upload
from patchscope.explore.scene import blank_patch, patch_from_rgba
from patchscope.models import create_model
from patchscope.models.wrapper import Classifier

K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """A small thread-safe least-recently-used map holding at most ``most`` entries.

    >>> c = Lru[str, int](2); c.put("a", 1); c.put("b", 2); c.put("c", 3)
    >>> c.get("a"), c.get("c")
    (None, 3)
    """

    def __init__(self, most: int) -> None:
        self.most, self.items, self.lock = most, OrderedDict[K, V](), threading.Lock()

    def get(self, key: K) -> V | None:
        with self.lock:
            if key not in self.items:
                return None
            self.items.move_to_end(key)
            return self.items[key]

    def put(self, key: K, value: V) -> None:
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.most:
                self.items.popitem(last=False)

    def values(self) -> list[V]:
        with self.lock:
            return list(self.items.values())


@dataclass
class Loaded:
    """A model the server holds: ``model`` for the views (under ``lock``), ``certifier`` a copy for certificates (under
    ``certify_lock``), and the data as this model takes it (read on first use)."""

    name: str
    model: Classifier
    certifier: Classifier
    lock: threading.Lock = field(default_factory=threading.Lock)
    certify_lock: threading.Lock = field(default_factory=threading.Lock)
    data: ImageSet | ImageStream | None = None

    @property
    def size(self) -> int:
        return int(self.model.input_size)


@dataclass
class Job:
    """An optimisation running in its own thread: its latest :class:`Progress`, then its result or its error."""

    id: str
    steps: int
    facts: dict[str, Any]
    data: str | None
    stop: threading.Event = field(default_factory=threading.Event)
    progress: Progress | None = None
    result: Optimised | None = None
    error: str | None = None
    saved: Any = None

    @property
    def state(self) -> str:
        if self.error is not None:
            return "failed"
        if self.result is None:
            return "running"
        return "stopped" if self.result.stopped else "done"


class Workspace:
    """The server's state. ``data``: the data spec images come from; ``given``: the command line's patch."""

    def __init__(self, data: str, device: str = "cpu", given: Patch | None = None, models: int = 3) -> None:
        self.data_spec, self.device, self.given = data, device, given
        self.models: Lru[str, Loaded] = Lru(models)
        self.uploads: Lru[str, Any] = Lru(32)
        self.certificates: Lru[tuple[Any, ...], Any] = Lru(64)
        self.jobs: Lru[str, Job] = Lru(16)
        self.loading = threading.Lock()

    def model(self, name: str) -> Loaded:
        """The model ``name`` (a zoo name, ``tv:``/``timm:`` name or checkpoint path), loaded on first use."""
        name = name.strip()
        if not name:
            raise PatchscopeError("choose a model: a zoo name, tv:NAME, timm:NAME or a checkpoint path")
        with self.loading:
            loaded = self.models.get(name)
            if loaded is None:
                model = create_model(name, self.device)
                loaded = Loaded(name, model, copy.deepcopy(model))
                self.models.put(name, loaded)
        return loaded

    def data(self, loaded: Loaded) -> ImageSet | ImageStream:
        """The data set as ``loaded``'s model takes it (read once per model)."""
        with self.loading:
            if loaded.data is None:
                loaded.data = data_for(self.data_spec, loaded.model)
            return loaded.data

    def labels_match(self, loaded: Loaded) -> bool:
        """Whether the data's labels are classes of the model (the same class list)."""
        return tuple(self.data(loaded).classes) == tuple(loaded.model.classes)

    def image(self, loaded: Loaded, ref: str) -> tuple[torch.Tensor, int | None]:
        """The image ``ref`` as the model takes it, float (3, S, S) in [0, 1], and its label where the data's labels
        are the model's classes (else None)."""
        kind, _, rest = ref.partition(":")
        if kind == "upload":
            picture = self._upload(rest, "image")
            return loaded.model.preprocess(picture).float() / 255, None
        if kind != "data" or not (rest.isascii() and rest.isdigit()):
            raise PatchscopeError(f"image {ref!r}: use data:INDEX or upload:TOKEN")
        data, index = self.data(loaded), int(rest)
        if index >= len(data):
            raise PatchscopeError(
                f"image {ref!r}: the data {self.data_spec} holds {len(data)} images (0..{len(data) - 1})"
            )
        if isinstance(data, ImageSet):
            pixels, label = data.images[index], int(data.labels[index])
        else:
            pixels, labels = next(data.subset(torch.tensor([index])).iter_uint8(1, workers=0))
            pixels, label = pixels[0], int(labels[0])
        return pixels.float() / 255, label if self.labels_match(loaded) else None

    def patch(self, loaded: Loaded, ref: str) -> Patch:
        """The patch ``ref`` for the model's image size."""
        kind, _, rest = ref.partition(":")
        if ref == "blank":
            return blank_patch(loaded.size)
        if kind == "zoo":
            return load_patch(ref).resized(loaded.size)
        if ref == "given" and self.given is not None:
            return self.given.resized(loaded.size)
        if kind == "upload":
            return patch_from_rgba(pil_to_uint8(self._upload(rest, "patch")), loaded.size)
        if kind == "job":
            job = self.jobs.get(rest)
            if job is None or job.result is None:
                raise PatchscopeError(f"patch {ref!r}: no finished optimisation of that name (the server keeps 16)")
            return job.result.patch.resized(loaded.size)
        raise PatchscopeError(f"patch {ref!r}: use blank, zoo:MODEL/NAME, upload:TOKEN or job:ID")

    def add_upload(self, data: bytes, kind: str) -> str:
        """Read an uploaded ``image`` or ``patch`` picture and keep it; returns its token."""
        picture = read_upload(data, alpha=kind == "patch", what=kind)
        token = f"{kind}-{hashlib.sha256(data).hexdigest()[:16]}"
        self.uploads.put(token, picture)
        return token

    def _upload(self, token: str, kind: str) -> Any:
        picture = self.uploads.get(token) if token.startswith(f"{kind}-") else None
        if picture is None:
            raise PatchscopeError(
                f"upload {token!r}: no such {kind} here (the server keeps the last 32): upload it again"
            )
        return picture

    def certificate(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        """The clean-view certificate for ``key``, made once by ``make`` (it does not change while the patch moves)."""
        found = self.certificates.get(key)
        if found is None:
            found = make()
            self.certificates.put(key, found)
        return found

    def start_job(self, loaded: Loaded, run: Callable[..., Optimised], facts: dict[str, Any], steps: int) -> Job:
        """Run ``run(model, on_progress=..., stop=...)`` on a copy of the model in a thread of its own."""
        if sum(j.state == "running" for j in self.jobs.values()) >= 2:
            raise PatchscopeError("two optimisations are running already: stop one or wait for it")
        job = Job(
            uuid.uuid4().hex[:12], steps, facts, self.data_spec if facts.get("image", "").startswith("data:") else None
        )
        model = copy.deepcopy(loaded.model)

        def work() -> None:
            try:
                job.result = run(model, on_progress=lambda p: setattr(job, "progress", p), stop=job.stop.is_set)
            except PatchscopeError as e:
                job.error = str(e)
            except Exception as e:  # noqa: BLE001  a job's failure is reported to its page, the server goes on
                job.error = f"the optimisation failed: {type(e).__name__}: {e}"

        self.jobs.put(job.id, job)
        threading.Thread(target=work, name=f"optimise-{job.id}", daemon=True).start()
        return job

    def stop_all(self) -> None:
        """Ask every running optimisation to stop (the server is shutting down)."""
        for job in self.jobs.values():
            job.stop.set()


def optimiser(image: torch.Tensor, label: int, start: Patch, settings: OptimiseSettings) -> Callable[..., Optimised]:
    """The job :meth:`Workspace.start_job` runs: :func:`optimise_here` of these arguments on the job's model copy."""

    def run(model: Classifier, **hooks: Any) -> Optimised:
        return optimise_here(model, image, label, start, settings, **hooks)

    return run


def store_folder(store: Path) -> Path:
    """Where the explorer's saved runs go: ``explore/`` beside the run store's file."""
    return store.parent / "explore"
