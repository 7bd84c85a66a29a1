"""`PerImageAttack`: one patch for each image, all optimised side by side with EOT.

The attacker who holds the very image (a per-image patch) is the strongest one a universal patch can be
compared with: where per-image patches of some size fail on an image under the viewing grid, no universal
patch of that size and place wins there either. Every step renders ``views`` random views of every image
for every candidate place, in chunks of ``batch_size`` rows whose gradients add up before one optimiser
step; each image keeps its best place when the search ends. No per-image Python loop: the rows are
(candidate, image, view) flattened, and each patch only ever sees its own image's rows.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from patchscope.attacks.eot import on_object_plan, paste, paste_planned, sample_view, view
from patchscope.attacks.frozen import frozen
from patchscope.attacks.losses import attack_loss
from patchscope.attacks.patch import Patch, patch_side, shape_mask
from patchscope.attacks.registry import register_attack
from patchscope.attacks.universal import AttackConfig, SignSGD, candidate_locations, check_target, classify
from patchscope.errors import PatchscopeError
from patchscope.io import atomic_path
from patchscope.progress import progress_bar
from patchscope.validate import check_positive

FILE = "patches.safetensors"


@dataclass
class PerImagePatches:
    """``pixels`` (N, 3, s, s) in [0,1], one patch for image n of the attacked set; ``mask`` (s, s);
    ``location`` (N, 2) (top, left) for on-object patches, else None; ``images_hash`` names the images
    (in order) they belong to, so that an evaluation on other images is refused."""

    pixels: torch.Tensor
    mask: torch.Tensor
    placement: str = "on-object"
    location: torch.Tensor | None = None
    image_size: int = 32
    images_hash: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def side(self) -> int:
        return int(self.pixels.shape[-1])

    @property
    def area_fraction(self) -> float:
        return float(self.mask.sum()) / self.image_size**2

    def save(self, folder: Path) -> None:
        """Write ``patches.safetensors`` and ``patches.png`` (the first 64 patches side by side, RGBA)."""
        tensors = {
            "pixels": self.pixels.detach().float().cpu().contiguous(),
            "mask": self.mask.float().cpu().contiguous(),
        }
        if self.location is not None:
            tensors["location"] = self.location.detach().float().cpu().contiguous()
        meta = {
            "placement": self.placement,
            "image_size": str(self.image_size),
            "images_hash": self.images_hash,
            "meta": json.dumps(self.meta),
        }
        with atomic_path(folder / FILE) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        self._sheet(folder / "patches.png")

    def _sheet(self, path: Path, columns: int = 16) -> None:
        from PIL import Image

        shown = self.pixels[:64].detach().cpu()
        n, s = len(shown), self.side
        rows = math.ceil(n / columns)
        sheet = torch.zeros(4, rows * (s + 1), min(n, columns) * (s + 1))
        for i in range(n):  # at most 64 small tiles for a picture, not a hot path
            top, left = (i // columns) * (s + 1), (i % columns) * (s + 1)
            sheet[:3, top : top + s, left : left + s] = shown[i]
            sheet[3, top : top + s, left : left + s] = self.mask.cpu()
        img = Image.fromarray(sheet.mul(255).round().byte().permute(1, 2, 0).numpy(), "RGBA")
        with atomic_path(path) as tmp:
            img.resize((img.width * 4, img.height * 4), Image.Resampling.NEAREST).save(tmp, format="PNG")

    @classmethod
    def load(cls, path: str | Path) -> PerImagePatches:
        """Load from a run folder or a ``patches.safetensors`` file."""
        path = Path(path)
        file = path / FILE if path.is_dir() else path
        try:
            t = load_file(str(file))
            with safe_open(str(file), "pt") as fh:
                meta = fh.metadata() or {}
            out = cls(
                t["pixels"],
                t["mask"],
                meta.get("placement", "on-object"),
                t.get("location"),
                int(meta.get("image_size", 32)),
                meta.get("images_hash", ""),
                json.loads(meta.get("meta", "{}")),
            )
        except (SafetensorError, KeyError, ValueError, OSError, TypeError) as e:
            raise PatchscopeError(
                f"patch {file}: not a patchscope per-image patch file ({str(e).splitlines()[0][:120]})",
                params=("patch",),
            ) from None
        pixels, n = out.pixels, len(out.pixels)
        if pixels.ndim != 4 or n == 0:
            raise PatchscopeError(
                f"patch {file}: pixels must be (N, 3, S, S) with N >= 1, got shape {tuple(pixels.shape)}",
                params=("patch",),
            )
        for i in (0, n - 1):  # the shared checks of one patch, on the first and the last
            loc = (
                (int(out.location[i, 0]), int(out.location[i, 1]))
                if out.location is not None and tuple(out.location.shape) == (n, 2)
                else None
            )
            try:
                Patch(pixels[i], out.mask, out.placement, loc, out.image_size).check()
            except PatchscopeError as e:
                raise PatchscopeError(f"patch {file}: {e}", params=("patch",)) from None
        if not bool(torch.isfinite(pixels).all()) or float(pixels.min()) < 0 or float(pixels.max()) > 1:
            raise PatchscopeError(f"patch {file}: pixels must be finite numbers in [0, 1]", params=("patch",))
        if out.location is not None:
            free = out.image_size - out.side
            if tuple(out.location.shape) != (n, 2) or bool(((out.location < 0) | (out.location > free)).any()):
                raise PatchscopeError(
                    f"patch {file}: location must be (N, 2) places in 0..{free}, got shape {tuple(out.location.shape)}",
                    params=("patch",),
                )
        return out


@register_attack("per-image")
class PerImageAttack:
    """One EOT patch per image; called as ``attack(images, labels) -> PerImagePatches``. The caller's model is left
    as it was (see :func:`~patchscope.attacks.frozen.frozen`).

    ``config`` is the universal attack's :class:`AttackConfig`; here ``batch_size`` is the number of
    rendered rows per forward pass (memory, not the objective) and ``views`` the EOT views of each image
    per candidate and step. ``start``: a universal patch every image's patch starts from, at its place
    (its shape, size and place replace the config's; no search). Random starts can stall on hard images
    where a bounded loss is flat; a universal patch's start cannot end below it by much on any image.
    Checkpoints and ``torch.distributed`` are the universal attack's alone.

    >>> import torch
    >>> from patchscope.models.archs import cnn
    >>> from patchscope.models.wrapper import Classifier
    >>> model = Classifier(cnn(num_classes=3, width=4), ["a", "b", "c"]).eval()
    >>> cfg = AttackConfig(size=0.1, target=1, steps=4, batch_size=32, candidates=2)
    >>> attack = PerImageAttack(model, cfg, views=2, progress=False)
    >>> out = attack(torch.rand(5, 3, 32, 32), torch.zeros(5, dtype=torch.long))
    >>> out.pixels.shape, out.location.shape
    (torch.Size([5, 3, 10, 10]), torch.Size([5, 2]))
    """

    def __init__(
        self,
        model: nn.Module,
        config: AttackConfig,
        views: int = 8,
        device: str | torch.device = "cpu",
        progress: bool = True,
        start: Patch | None = None,
    ) -> None:
        check_positive("views", views, 4096)
        if config.tv_weight or config.nps_weight or config.compile:
            raise PatchscopeError(
                "per-image patches: tv_weight, nps_weight and compile are the universal attack's only",
                params=("tv_weight", "nps_weight", "compile"),
            )
        if start is not None and (
            start.placement != config.placement or (config.placement == "on-object" and start.location is None)
        ):
            raise PatchscopeError(
                f"start: a {start.placement} patch cannot start {config.placement} per-image patches", params=("start",)
            )
        self.target_model, self.cfg, self.views, self.device, self.progress = (
            model,
            config,
            views,
            torch.device(device),
            progress,
        )
        self.model: nn.Module = model  # while attacking: the frozen, BN-folded model
        self.start = start
        self.history: list[dict[str, float | None]] = []

    def _places(self, n: int, image_size: int, side: int) -> torch.Tensor:
        """(c, n, 2) starting places: every image starts at each candidate place (one where ``location`` fixes it)."""
        cfg = self.cfg
        if cfg.placement == "sticker":
            return torch.zeros(cfg.restarts, n, 2, device=self.device)
        if cfg.location is not None:
            base = torch.tensor([cfg.location], dtype=torch.float32)
        else:
            base = candidate_locations(cfg.candidates, image_size - side)
        return base.repeat_interleave(cfg.restarts, 0).to(self.device)[:, None, :].expand(-1, n, 2).contiguous()

    def _score(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        patches: torch.Tensor,
        mask: torch.Tensor,
        places: torch.Tensor,
        g: torch.Generator,
        grad: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Render ``views`` fresh views of every (candidate, image), classify in chunks; with ``grad``, the
        patches' gradients accumulate. Returns the (c, n) loss (mean over views) and hit count."""
        cfg, v = self.cfg, self.views
        c, n = patches.shape[:2]
        rows = c * n * v
        pair = torch.arange(c * n, device=self.device).repeat_interleave(v)  # row -> (candidate, image), flattened
        img = pair % n
        views = sample_view(
            rows, cfg.ranges, images.shape[-1], patches.shape[-1], cfg.placement, places.view(-1, 2)[pair], g
        )
        flat = patches.view(c * n, *patches.shape[2:])
        losses, hits = torch.zeros(rows, device=self.device), torch.zeros(rows, device=self.device)
        for start in range(0, rows, cfg.batch_size):  # chunks of rows, for memory: each adds its gradient
            r = slice(start, min(start + cfg.batch_size, rows))
            vr = views[r]
            with torch.set_grad_enabled(grad):
                pix = flat[pair[r]]
                if cfg.placement == "on-object":
                    x = paste_planned(
                        images[img[r]], pix, on_object_plan(mask, vr.location, images.shape[-2], images.shape[-1])
                    )
                else:
                    x = paste(images[img[r]], pix, mask, vr)
                logits = classify(self.model, view(x, vr), cfg.precision)
                loss = attack_loss(logits, labels[img[r]], cfg.target, cfg.loss, cfg.kappa)
                if grad:
                    (loss.sum() / v).backward()
            won = logits.argmax(1) == cfg.target if cfg.target is not None else logits.argmax(1) != labels[img[r]]
            losses[r], hits[r] = loss.detach(), won.float()
        return losses.view(c, n, v).mean(2), hits.view(c, n, v).sum(2)

    def _optimiser(self, patches: torch.Tensor) -> torch.optim.Optimizer:
        if self.cfg.optimizer == "sign":
            return SignSGD([patches], lr=self.cfg.lr)
        return torch.optim.Adam([patches], lr=self.cfg.lr)

    @torch.no_grad()
    def _choose(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        patches: torch.Tensor,
        mask: torch.Tensor,
        places: torch.Tensor,
        g: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image, keep the candidate with the most wins (then the lowest loss) on fresh views."""
        loss, hits = self._score(images, labels, patches, mask, places, g, grad=False)
        best = (hits * 1e3 - loss).argmax(0)  # (n,)
        n = torch.arange(patches.shape[1], device=self.device)
        return patches[best, n][None].clone(), places[best, n][None].clone()

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> PerImagePatches:
        """Optimise one patch per image of ``images`` (N, 3, H, H) in [0,1] with true ``labels`` (N,).

        Returns:
            :class:`PerImagePatches`, patch n for image n.
        """
        with frozen(self.target_model) as self.model:
            return self._optimise(images, labels)

    def _optimise(self, images: torch.Tensor, labels: torch.Tensor) -> PerImagePatches:
        cfg, dev = self.cfg, self.device
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[-1] != images.shape[-2] or len(images) == 0:
            raise PatchscopeError(f"the attack needs square RGB images (N, 3, H, H), got {tuple(images.shape)}")
        images, labels = images.to(dev), labels.to(dev)
        check_target(self.model, cfg.target, labels)
        size, n = images.shape[-1], len(images)
        g = torch.Generator(device=dev).manual_seed(cfg.seed)
        if self.start is not None:
            if self.start.image_size != size:
                raise PatchscopeError(
                    f"start: the patch was made for {self.start.image_size}px images, these are {size}px",
                    params=("start",),
                )
            mask, side = self.start.mask.to(dev), self.start.side
            loc = torch.tensor(self.start.location or (0, 0), dtype=torch.float32, device=dev)
            places = loc.view(1, 1, 2).expand(1, n, 2).contiguous()
            patches = self.start.pixels.to(dev).clamp(0, 1).expand(1, n, 3, side, side).clone().requires_grad_()
        else:
            side = patch_side(cfg.size, size, cfg.shape)
            cfg.check_fits(size, side)
            mask = shape_mask(cfg.shape, side).to(dev)
            places = self._places(n, size, side)
            patches = torch.rand(len(places), n, 3, side, side, generator=g, device=dev).requires_grad_()
        opt = self._optimiser(patches)
        chosen = len(places) == 1
        switch = 0 if chosen else max(1, round(cfg.search_fraction * cfg.steps))
        with progress_bar(cfg.steps, "per-image attack", self.progress) as update:
            for step in range(cfg.steps):
                if not chosen and step == switch:
                    patches, places = self._choose(images, labels, patches.detach(), mask, places, g)
                    opt, chosen = self._optimiser(patches.requires_grad_()), True
                opt.zero_grad(set_to_none=True)
                loss, hits = self._score(images, labels, patches, mask, places, g, grad=True)
                for group in opt.param_groups:
                    group["lr"] = cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / cfg.steps)))
                opt.step()
                with torch.no_grad():
                    patches.clamp_(0, 1)
                if step % 10 == 0 or step == cfg.steps - 1:
                    best = hits.max(0).values if not chosen else hits[0]
                    value, rate = torch.stack([loss.mean(0).mean(), best.mean() / self.views]).tolist()
                    if not math.isfinite(value):
                        raise PatchscopeError(
                            f"the attack's loss became NaN or inf at step {step}: the model produced non-finite outputs"
                        )
                    self.history.append({"step": step, "loss": value, "batch_success": rate})
                    update(advance=min(10, cfg.steps - step) if step % 10 == 0 else 0, loss=value, success=rate)
        if not chosen:
            patches, places = self._choose(images, labels, patches.detach(), mask, places, g)
        location = places[0].round() if cfg.placement == "on-object" else None
        return PerImagePatches(
            patches[0].detach().clamp(0, 1),
            mask.cpu(),
            cfg.placement,
            location,
            size,
            meta={
                "config": cfg.as_dict(),
                "views": self.views,
                "init": self.start.meta.get("name") if self.start else None,
            },
        )
