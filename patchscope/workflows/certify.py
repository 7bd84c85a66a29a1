"""Certified accuracy of a model on a data set against any square patch of a given area, with a registered certifier.

>>> from patchscope.data import load_data
>>> from patchscope.models import create_model
>>> data = load_data("demo").head(4)
>>> model = create_model("gtsrb-cnn")
>>> r = certify(model, data, "ds-column", 0.05, progress=False)
>>> r.images, r.patch_side, r.certified_accuracy <= r.defended_accuracy <= 1
(4, 7, True)
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from patchscope.attacks.patch import patch_side as side_of
from patchscope.data import ImageSet, ImageStream
from patchscope.defenses.registry import Certifier, create_certifier
from patchscope.distributed import all_max, all_sum, is_main, my_indices, rank_world
from patchscope.errors import Interrupted, PatchscopeError
from patchscope.io import write_json
from patchscope.models.batching import auto_batch_size
from patchscope.models.checkpoint import weights_fingerprint
from patchscope.progress import progress_bar
from patchscope.validate import check_batch, check_same_classes, check_same_settings


@dataclass
class CertifyResult:
    """What :func:`certify` measured; the accuracies are shares of ``images``."""

    certifier: str
    data_hash: str
    images: int
    patch_size: float
    patch_side: int
    clean_accuracy: float
    defended_accuracy: float
    certified_accuracy: float
    forward_passes_per_image: float
    batch_size: int
    seconds: float
    images_per_second: float
    device: str
    precision: str
    settings: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A flat JSON-ready dict: the certifier's settings (masks, band, ...) beside the numbers."""
        out = asdict(self)
        settings = out.pop("settings")
        out["defense"] = out.pop("certifier")
        return {**out, **settings}


def default_batch_size(device: str | torch.device, model: nn.Module | None = None, image_size: int = 32) -> int:
    """Masked or ablated images per forward pass: 256 on a CPU (small chunks stay in cache), 16384 on a GPU, and
    never more than the memory budget holds for ``model`` on ``image_size``-px images (:func:`auto_batch_size`)."""
    most = 256 if torch.device(device).type == "cpu" else 16384
    if model is None:
        return most
    return auto_batch_size(model, image_size, device, most=most)


@dataclass(frozen=True)
class CertifyCheckpoint:
    """Where :func:`certify` keeps its counts after every chunk (a small JSON file, written atomically), so that an
    interrupted certification resumes at the chunk where it stopped, to the counts of an uninterrupted run.

    Args:
        path: the checkpoint file.
        resume: continue from ``path`` if it exists (refused if a setting changed).
        identity: what else must match to resume (e.g. the model's name).
    """

    path: Path
    resume: bool = False
    identity: Mapping[str, Any] = field(default_factory=dict)

    def start(self, settings: dict[str, Any]) -> tuple[list[int], int, float]:
        """The counts, images (positions in the data) and seconds already done (none when not resuming or nothing
        is kept)."""
        if not (self.resume and self.path.exists()):
            return [0] * 5, 0, 0.0
        try:
            saved = json.loads(self.path.read_text())
            kept, counts, done = saved["settings"], [int(v) for v in saved["counts"]], int(saved["done"])
        except (OSError, ValueError, KeyError, TypeError):
            raise PatchscopeError(
                f"resume: {self.path} is not a certification checkpoint", params=("resume",)
            ) from None
        check_same_settings(kept, self.settings(settings))
        if len(counts) != 5 or not 0 <= done <= int(kept.get("images", 0)):
            raise PatchscopeError(f"resume: {self.path} is not a certification checkpoint", params=("resume",))
        return counts, done, float(saved.get("seconds", 0.0))

    def settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps({**settings, **{k: str(v) for k, v in self.identity.items()}}, default=str))

    def keep(self, settings: dict[str, Any], counts: torch.Tensor, done: int, seconds: float) -> None:
        state = {"settings": self.settings(settings), "counts": counts.tolist(), "done": done, "seconds": seconds}
        write_json(self.path, state)

    def images_certified(self) -> int:
        """Images the kept checkpoint counts (0 when there is none)."""
        try:
            return int(json.loads(self.path.read_text())["counts"][4])
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return 0


def _count(
    cert: Certifier,
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    batch_size: int,
    update: Callable[..., Any],
    totals: torch.Tensor,
    after_chunk: Callable[[torch.Tensor], None] = lambda _: None,
) -> torch.Tensor:
    """Add to ``(5,)`` long ``totals`` the counts over ``batches``: clean, defended, certified, model passes,
    images read; ``after_chunk(totals)`` runs after each chunk (before the progress update, which may interrupt)."""
    for x, y in batches:  # a stream reads one chunk at a time
        counts = cert.counts(model, x, y, batch_size)
        totals[:3] += counts.stacked()
        totals[3] += counts.passes
        totals[4] += len(y)
        after_chunk(totals)
        update(advance=len(y))
    return totals


@contextlib.contextmanager
def _kept(checkpoint: CertifyCheckpoint | None, total: int) -> Iterator[None]:
    """An interrupt inside says how many images the kept checkpoint counts (nothing when none is kept)."""
    try:
        yield
    except Interrupted as e:
        if checkpoint is None or not checkpoint.path.exists():
            raise
        done = f"{checkpoint.images_certified():,} of {total:,} images certified"
        raise Interrupted(f"{done}; checkpoint saved to {checkpoint.path}", e.signum) from None


def certify(
    model: nn.Module,
    data: ImageSet | ImageStream,
    certifier: str,
    patch_size: float,
    *,
    batch_size: int | None = None,
    device: str | torch.device = "cpu",
    chunk: int = 256,
    progress: bool = True,
    checkpoint: CertifyCheckpoint | None = None,
    **options: Any,
) -> CertifyResult:
    """Clean, defended and certified accuracy of ``model`` on ``data`` against any square patch of area ``patch_size``.

    Args:
        model: the classifier, on ``device``.
        data: the images (their size must be the model's input size), in memory or streamed from disk: a stream
            is read one ``chunk`` at a time, and images it skips as unreadable count nowhere.
        certifier: a registered certifier (:func:`~patchscope.defenses.registry.list_certifiers`).
        patch_size: the patch's area as a fraction of the image, 0 < patch_size < 1.
        batch_size: masked or ablated images per forward pass (default: :func:`default_batch_size`).
        device: where the images go.
        chunk: images handed to the certifier at a time (fewer where each image needs many forward passes, so that
            the progress moves at least every ~64k passes).
        progress: show a progress bar.
        checkpoint: keep the counts after every chunk (:class:`CertifyCheckpoint`) and, with its ``resume``, continue
            from them; an interrupt then says how many images are certified (one process only, not under torchrun).
        options: the certifier's options (``k``, ``bf16``, ``band``).

    Under ``torch.distributed`` every rank calls it with the same arguments, certifies every world-th chunk of
    images (each exactly as one process does) and gets the summed counts (the seconds are the slowest rank's).

    Returns:
        A :class:`CertifyResult`.
    """
    _check_certify_inputs(data, patch_size, batch_size)
    check_same_classes(getattr(model, "classes", None), data.classes, data.name)
    batch_size = batch_size or default_batch_size(device, model, data.image_size)
    side = side_of(patch_size, data.image_size)
    cert = create_certifier(certifier, data.image_size, side, device, **options)
    per_image = max(int(cert.settings.get("full_map_passes", 1)), 1)
    chunk = max(1, min(chunk, batch_size, 65536 // per_image))
    mine = my_indices(len(data), chunk)  # under torch.distributed: every world-th chunk is this rank's
    share = data.subset(mine) if len(mine) < len(data) else data
    if checkpoint is not None and rank_world()[1] > 1:
        raise PatchscopeError("checkpoint: certification keeps progress in one process only", params=("resume",))
    settings = {"certifier": certifier, "patch_size": patch_size, "images": len(data)}
    settings |= {"data_hash": data.data_hash(), "options": {k: v for k, v in sorted(options.items())}}
    settings["weights"] = weights_fingerprint(model)  # resume with other weights under the same name: refused
    totals, seconds = _count_all(cert, model, share, settings, chunk, batch_size, device, checkpoint, progress)
    return _certify_result(certifier, data, patch_size, side, cert, totals, seconds, batch_size, device)


def _check_certify_inputs(data: ImageSet | ImageStream, patch_size: float, batch_size: int | None) -> None:
    """Raise :class:`PatchscopeError` (naming the option) on what :func:`certify` cannot certify."""
    if not 0 < patch_size < 1:
        raise PatchscopeError(
            f"patch_size {patch_size} must be a fraction of the image area, 0 < size < 1", params=("patch_size",)
        )
    if batch_size is not None and batch_size < 1:
        raise PatchscopeError("batch_size must be at least 1", params=("batch_size",))
    if batch_size is not None:
        check_batch("batch_size", batch_size)
    if len(data) == 0:
        raise PatchscopeError(f"data {data.name} holds no images", params=("data",))


def _count_all(
    cert: Certifier,
    model: nn.Module,
    share: ImageSet | ImageStream,
    settings: dict[str, Any],
    chunk: int,
    batch_size: int,
    device: str | torch.device,
    checkpoint: CertifyCheckpoint | None,
    progress: bool,
) -> tuple[torch.Tensor, float]:
    """This rank's ``share`` of the images through ``cert`` ``chunk`` at a time (resumed from and kept in
    ``checkpoint``): the counts (clean, defended, certified, passes, images read) summed over the ranks, and the
    slowest rank's seconds."""
    counts, done, spent = checkpoint.start(settings) if checkpoint is not None else ([0] * 5, 0, 0.0)
    totals = torch.tensor(counts, dtype=torch.long, device=device)
    started = time.perf_counter() - spent
    rest = share.subset(torch.arange(done, len(share))) if done else share

    def after_chunk(t: torch.Tensor) -> None:  # every chunk but the last covers ``chunk`` positions of the data
        nonlocal done
        done = min(done + chunk, len(share))
        if checkpoint is not None:
            checkpoint.keep(settings, t, done, time.perf_counter() - started)

    bar = progress_bar(len(share), f"certify {settings['certifier']}", progress and is_main())
    with torch.inference_mode(), bar as update, _kept(checkpoint, len(share)):
        if done:
            update(advance=done)  # the images a resumed run counted before
        _count(cert, model, rest.iter_batches(chunk, device), batch_size, update, totals, after_chunk)
    all_sum(totals)  # clean, defended, certified, passes, images read: exact sums over the ranks
    return totals, all_max(time.perf_counter() - started)


def _certify_result(
    certifier: str,
    data: ImageSet | ImageStream,
    patch_size: float,
    side: int,
    cert: Certifier,
    totals: torch.Tensor,
    seconds: float,
    batch_size: int,
    device: str | torch.device,
) -> CertifyResult:
    """The :class:`CertifyResult` of the summed ``totals`` (clean, defended, certified, passes, images read)."""
    seen, passes = int(totals[4]), int(totals[3])
    if seen == 0:
        raise PatchscopeError(f"data {data.name}: none of its images could be read", params=("data",))
    clean, defended, certified = (int(v) / seen for v in totals[:3].cpu())
    return CertifyResult(
        certifier,
        data.data_hash(),
        seen,
        patch_size,
        side,
        clean,
        defended,
        certified,
        round(passes / seen, 2),
        batch_size,
        round(seconds, 3),
        round(seen / max(seconds, 1e-9), 2),
        str(device),
        cert.precision,
        dict(cert.settings),
    )
