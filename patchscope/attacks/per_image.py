"""`PerImageAttack`: one patch for each image, all optimised side by side with EOT.

The attacker who holds the very image (a per-image patch) is the strongest one a universal patch can be
compared with: where per-image patches of some size fail on an image under the viewing grid, no universal
patch of that size and place wins there either. Every step renders ``views`` random views of every image
for every candidate place, in chunks of ``batch_size`` rows whose gradients add up before one optimiser
step; each image keeps its best place when the search ends. No per-image Python loop: the rows are
(candidate, image, view) flattened, and each patch only ever sees its own image's rows.
"""

from __future__ import annotations

import torch
from torch import nn

from patchscope.attacks.base import Attack
from patchscope.attacks.config import AttackConfig, candidate_locations
from patchscope.attacks.eot import on_object_plan, sample_view
from patchscope.attacks.optim import cosine_lr, optimiser
from patchscope.attacks.patch import Patch, PerImagePatches, patch_side, shape_mask
from patchscope.attacks.registry import register_attack
from patchscope.attacks.scoring import Objective, render_rows, score, step_rows
from patchscope.errors import PatchscopeError
from patchscope.validate import check_positive


@register_attack("per-image")
class PerImageAttack(Attack):
    """One EOT patch per image; called as ``attack(images, labels) -> PerImagePatches``. The caller's model is left
    as it was (see :func:`~patchscope.attacks.frozen.frozen`).

    ``config`` is the universal attack's :class:`AttackConfig`; here ``batch_size`` is the most
    rendered rows per forward pass (memory, not the objective; fewer where the memory budget of
    :func:`~patchscope.attacks.scoring.step_rows` holds fewer) and ``views`` the EOT views of each image
    per candidate and step. ``start``: a universal patch every image's patch starts from, at its place
    (its shape, size and place replace the config's; no search). Random starts can stall on hard images
    where a bounded loss is flat; a universal patch's start cannot end below it by much on any image.
    Checkpoints and ``torch.distributed`` are the universal attack's alone.

    >>> import torch
    >>> from patchscope.models import create_model
    >>> model = create_model("gtsrb-cnn")
    >>> cfg = AttackConfig(size=0.1, target=1, steps=4, batch_size=32, candidates=2)
    >>> attack = PerImageAttack(model, cfg, views=2, progress=False)
    >>> out = attack(torch.rand(5, 3, 32, 32), torch.zeros(5, dtype=torch.long))
    >>> out.pixels.shape, out.location.shape
    (torch.Size([5, 3, 10, 10]), torch.Size([5, 2]))
    """

    title = "per-image attack"
    makes = "per-image patches"
    refuses = ("tv_weight", "nps_weight", "printer", "compile")

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
        super().__init__(model, config, device, progress)
        if start is not None and (
            start.placement != config.placement or (config.placement == "on-object" and start.location is None)
        ):
            raise PatchscopeError(
                f"start: a {start.placement} patch cannot start {config.placement} per-image patches", params=("start",)
            )
        self.views, self.start = views, start
        self._rows = config.batch_size  # rows per pass: at most batch_size, and what the memory budget holds (see run)

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
        objective = Objective(cfg.target, cfg.loss, cfg.kappa, cfg.precision)
        c, n = patches.shape[:2]
        rows = c * n * v
        pair = torch.arange(c * n, device=self.device).repeat_interleave(v)  # row -> (candidate, image), flattened
        img = pair % n
        views = sample_view(
            rows, cfg.ranges, images.shape[-1], patches.shape[-1], cfg.placement, places.view(-1, 2)[pair], g
        )
        flat = patches.view(c * n, *patches.shape[2:])
        losses, hits = torch.zeros(rows, device=self.device), torch.zeros(rows, device=self.device)
        for start in range(0, rows, self._rows):  # chunks of rows, for memory: each adds its gradient
            r = slice(start, min(start + self._rows, rows))
            vr = views[r]
            plan = None
            if cfg.placement == "on-object":
                plan = on_object_plan(mask, vr.location, images.shape[-2], images.shape[-1])
            with torch.set_grad_enabled(grad):
                x, y = images[img[r]], labels[img[r]]
                loss, won = score(self.model, render_rows(x, flat[pair[r]], mask, plan, vr), y, objective)
                if grad:
                    (loss.sum() / v).backward()
            losses[r], hits[r] = loss.detach(), won.float()
        return losses.view(c, n, v).mean(2), hits.view(c, n, v).sum(2)

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

    def run(self, images: torch.Tensor, labels: torch.Tensor) -> PerImagePatches:
        """Optimise one patch per image of ``images`` (N, 3, H, H) in [0,1] with true ``labels`` (N,).

        Returns:
            :class:`PerImagePatches`, patch n for image n.
        """
        cfg, dev = self.cfg, self.device
        size, n = images.shape[-1], len(images)
        self._rows = step_rows(self.model, size, dev, most=cfg.batch_size)
        g = self.generator()
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
        opt = optimiser(patches, cfg)
        chosen = len(places) == 1
        switch = 0 if chosen else max(1, round(cfg.search_fraction * cfg.steps))
        with self.bar(cfg.steps) as update:
            for step in range(cfg.steps):
                if self.stopped():
                    break
                if not chosen and step == switch:
                    patches, places = self._choose(images, labels, patches.detach(), mask, places, g)
                    opt, chosen = optimiser(patches.requires_grad_(), cfg), True
                opt.zero_grad(set_to_none=True)
                loss, hits = self._score(images, labels, patches, mask, places, g, grad=True)
                for group in opt.param_groups:
                    group["lr"] = cosine_lr(cfg, step)
                opt.step()
                with torch.no_grad():
                    patches.clamp_(0, 1)
                best = hits.max(0).values if not chosen else hits[0]
                self.record(step, cfg.steps, loss.mean(0).mean(), best.mean(), self.views, update)
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
