"""`PatchAttack`: one universal patch, optimised with EOT, called as ``attack(images, labels)``.

Several candidates (places on the sign for ``on-object``, random starts for ``sticker``) are optimised
side by side in one batch for the first ``search_fraction`` of the steps; the best one goes on alone.
Long runs checkpoint atomically (patch, optimiser and generator state) every ``checkpoint_every``
steps and on SIGINT/SIGTERM, and ``resume`` continues to the same patch an uninterrupted run gives.
Under ``torch.distributed`` each rank takes its share of the global batch and gradients are summed.
``batch_size`` is the optimisation's batch (what a step samples, so it decides the patch); the rows go through the
model in passes of as many as the memory budget holds (:func:`~patchscope.attacks.scoring.step_rows`), whose
gradients add up before the step: the same patch, up to float rounding, on a laptop and on a GPU.
"""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn

from patchscope.attacks.base import Attack
from patchscope.attacks.config import AttackConfig, candidate_locations
from patchscope.attacks.eot import ViewParams, on_object_plan, sample_view
from patchscope.attacks.losses import non_printability, printable_colours, total_variation
from patchscope.attacks.optim import cosine_lr, optimiser
from patchscope.attacks.patch import Patch, patch_side, shape_mask
from patchscope.attacks.registry import register_attack
from patchscope.attacks.scoring import Objective, render_rows, score, step_rows
from patchscope.distributed import rank_world
from patchscope.errors import Interrupted, PatchscopeError, interrupt_pending
from patchscope.io import atomic_path
from patchscope.validate import MAX_BATCH, check_int, check_same_settings


def score_views(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    pix: torch.Tensor,
    mask: torch.Tensor,
    plan: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    views: ViewParams,
    c: int,
    target: int | None,
    loss: str,
    kappa: float,
    batch: int,
    precision: str = "fp32",
    still: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render the patched views of ``x`` (c * B, 3, H, W), classify, score: (loss per candidate summed over its
    rows / ``batch``, successes per candidate). ``plan``: an on-object paste's :func:`on_object_plan`, else None.
    ``still`` (the ranges' :attr:`ViewRanges.still`): the camera and light change nothing, so only paste."""
    rows = render_rows(x, pix, mask, plan, views, still)
    losses, hit = score(model, rows, y, Objective(target, loss, kappa, precision))
    return losses.view(c, -1).sum(1) / batch, hit.view(c, -1).sum(1)


@functools.lru_cache(maxsize=2)
def _compiled_score(device_type: str) -> Any:
    """``score_views`` through ``torch.compile``, made once per process: on a GPU in CUDA graphs
    ("reduce-overhead"), which removes the launch cost of a step's many small kernels on 32-px models."""
    return torch.compile(score_views, mode="reduce-overhead" if device_type == "cuda" else "default", dynamic=False)


def attack_settings(config: AttackConfig, identity: dict[str, Any] | None = None) -> dict[str, Any]:
    """What decides a patch, as a checkpoint stores it: the config (less ``compile``) and the identity (JSON values).

    >>> settings = attack_settings(AttackConfig(size=0.05), {"model": "m"})
    >>> settings["size"], settings["model"], "compile" in settings
    (0.05, 'm', False)
    """
    made = {k: v for k, v in config.as_dict().items() if k != "compile"}
    made["location"] = list(made["location"]) if made["location"] is not None else None
    return {**json.loads(json.dumps(made, default=str)), **{k: str(v) for k, v in (identity or {}).items()}}


class AttackInterrupted(Interrupted):
    """Raised after a SIGINT/SIGTERM once the checkpoint (if any) is safely on disk; ``signum`` says which signal."""


@register_attack("universal")
class PatchAttack(Attack):
    """Universal adversarial patch with EOT. The caller's model is left as it was (see :func:`frozen`).

    >>> import torch
    >>> from patchscope.models import create_model
    >>> model = create_model("gtsrb-cnn")
    >>> cfg = AttackConfig(size=0.1, target=1, steps=3, batch_size=4, candidates=2)
    >>> attack = PatchAttack(model, cfg, progress=False)
    >>> patch = attack(torch.rand(8, 3, 32, 32), torch.zeros(8, dtype=torch.long))
    >>> patch.pixels.shape, patch.placement
    (torch.Size([3, 10, 10]), 'on-object')
    """

    def __init__(
        self,
        model: nn.Module,
        config: AttackConfig,
        device: str | torch.device = "cpu",
        checkpoint: Path | None = None,
        checkpoint_every: int = 50,
        resume: bool = False,
        progress: bool = True,
        identity: dict[str, Any] | None = None,
    ) -> None:
        """``identity``: what else must match for ``resume`` to continue a checkpoint (e.g. model name, data hash)."""
        super().__init__(model, config, device, progress)
        self.checkpoint, self.resume = checkpoint, resume
        self.checkpoint_every = check_int("checkpoint_every", checkpoint_every, 0)
        self.identity = dict(identity or {})
        self._stop, self._stop_signal = False, int(signal.SIGINT)
        self._rank, self._world = 0, 1
        self._cache: dict[str, Any] = {}
        self._rows = MAX_BATCH * 16  # rows per pass through the model: what the memory budget holds (see run)

    # -- the pieces of one step ------------------------------------------------------------------
    def _start(self, image_size: int, side: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random start patches and their places: ``restarts`` starts at each of the candidate places
        (one place where ``location`` fixes it on the object), place-major."""
        cfg = self.cfg
        places = cfg.candidates if cfg.location is None or cfg.placement == "sticker" else 1
        n = places * cfg.restarts
        patches = torch.rand(n, 3, side, side, generator=g, device=self.device)
        if cfg.location is not None:
            locs = torch.tensor([cfg.location], dtype=torch.float32, device=self.device).expand(n, 2)
        else:
            locs = candidate_locations(places, image_size - side).to(self.device).repeat_interleave(cfg.restarts, 0)
        return patches, locs.clone()

    def _views(
        self, n_images: int, locs: torch.Tensor, image_size: int, side: int, g: torch.Generator
    ) -> tuple[torch.Tensor, ViewParams]:
        """Sample the global batch (image indices and views), tiled once per candidate."""
        b, c = self.cfg.batch_size, len(locs)
        idx = torch.randint(n_images, (b,), generator=g, device=self.device)
        views = sample_view(b, self.cfg.ranges, image_size, side, self.cfg.placement, None, g)
        if c > 1:  # (one candidate: tiling is the identity)
            views, idx = views[torch.arange(b, device=self.device).repeat(c)], idx.repeat(c)
        if self.cfg.placement == "on-object":
            views.location = self._cached("rows", locs, lambda: locs.repeat_interleave(b, 0))
        return idx, views

    def _cached(self, key: str, locs: torch.Tensor, make: Any) -> Any:
        """``make()``, remade only when the candidates' places ``locs`` (a tensor kept while they stay) change."""
        hit = self._cache.get(key)
        if hit is None or hit[0] is not locs:
            hit = self._cache[key] = (locs, make())
        return hit[1]

    def _mine(self, c: int) -> torch.Tensor | None:
        """This rank's rows of the (c * batch) global batch, candidate-major; None when it has them all."""
        if self._world == 1:
            return None
        b = self.cfg.batch_size
        return torch.arange(c * b, device=self.device).view(c, b).chunk(self._world, 1)[self._rank].reshape(-1)

    def _losses(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        patches: torch.Tensor,
        mask: torch.Tensor,
        idx: torch.Tensor,
        views: ViewParams,
        locs: torch.Tensor,
        compiled: bool = True,
        grad: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of the batch: (loss per candidate, successes per candidate) as sums / global batch, in
        the passes of :meth:`_passes`. With ``grad`` each pass's loss is backpropagated into the patches' gradient
        before the next pass runs (its graph freed), and the losses come back detached."""
        c = len(patches)
        mine = self._cached(f"mine{c}", locs, lambda: self._mine(c))
        rows, views = (idx, views) if mine is None else (idx[mine], views[mine])
        passes = self._passes(c, len(rows) // c)
        if len(passes) == 1:  # the whole share at once
            return self._pass(images, labels, patches, mask, rows, views, locs, (compiled, grad), "")
        loss = torch.zeros(c, device=self.device)
        hits = torch.zeros(c, dtype=torch.long, device=self.device)
        grid = torch.arange(len(rows), device=self.device).view(c, -1)
        for group, cols in passes:
            sel = grid[group, cols].reshape(-1)
            key = f":{group.start}:{cols.stop - cols.start}"  # passes of the same shape share a paste plan
            part = self._pass(images, labels, patches[group], mask, rows[sel], views[sel], locs, (compiled, grad), key)
            loss[group] += part[0]
            hits[group] += part[1]
        return loss, hits

    def _passes(self, c: int, per: int) -> list[tuple[slice, slice]]:
        """The passes through the model of a share of ``c`` candidates x ``per`` rows: blocks (candidates, rows) of
        at most ``self._rows`` rows (one row at least), each candidate's rows in one pass where they fit."""
        if c * per <= self._rows:
            return [(slice(0, c), slice(0, per))]
        group = min(c, self._rows)
        cols = max(1, self._rows // group)
        return [
            (slice(g, min(g + group, c)), slice(j, min(j + cols, per)))
            for g in range(0, c, group)
            for j in range(0, per, cols)
        ]

    def _pass(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        patches: torch.Tensor,
        mask: torch.Tensor,
        rows: torch.Tensor,
        views: ViewParams,
        locs: torch.Tensor,
        mode: tuple[bool, bool],
        key: str,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass: ``rows`` (image indices, candidate-major) with ``patches`` pasted, scored (``mode``: compiled,
        backpropagated). ``key`` names the pass's shape, for its cached paste plan."""
        (compiled, grad), c, cfg = mode, len(patches), self.cfg
        printed = cfg.printer.apply(patches) if cfg.printer is not None else patches  # as the printer makes it
        x, y, pix = images[rows], labels[rows], printed.repeat_interleave(len(rows) // c, 0)
        plan = None
        if cfg.placement == "on-object":  # the places stay for many steps: gather index and alpha made once
            plan = self._cached(
                f"plan{c}{key}", locs, lambda: on_object_plan(mask, views.location, x.shape[-2], x.shape[-1])
            )
        scoring = (cfg.target, cfg.loss, cfg.kappa, cfg.batch_size, cfg.precision, cfg.ranges.still)
        args = (self.model, x, y, pix, mask, plan, views, c, *scoring)
        if not (compiled and cfg.compile):
            loss, hits = score_views(*args)
        else:
            if self.device.type == "cuda":
                torch.compiler.cudagraph_mark_step_begin()  # a new pass: the graphs' outputs of the last one may go
            with warnings.catch_warnings():  # the lru_cache'd helpers it traces (pixel grids, matrices) are pure
                warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")
                loss, hits = _compiled_score(self.device.type)(*args)
        if grad:
            loss.sum().backward()
            loss = loss.detach()
        return loss, hits

    def _regulariser(self, patches: torch.Tensor) -> torch.Tensor | None:
        if not (self.cfg.tv_weight or self.cfg.nps_weight):
            return None
        reg = torch.zeros(len(patches), device=self.device)
        if self.cfg.tv_weight:
            reg = reg + self.cfg.tv_weight * total_variation(patches)
        if self.cfg.nps_weight:
            printer = self.cfg.printer
            if "colours" not in self._cache:  # made once per attack, not copied to the device every step
                self._cache["colours"] = (printer.colours() if printer else printable_colours()).to(self.device)
            printed = (
                printer.apply(patches) if printer is not None else patches
            )  # near what the printer was seen to make
            reg = reg + self.cfg.nps_weight * non_printability(printed, self._cache["colours"])
        return reg

    def _regularise(self, patches: torch.Tensor) -> torch.Tensor:
        """Backpropagate this rank's share of the regulariser into the patches' gradient; its value (0 without)."""
        reg = self._regulariser(patches)
        if reg is None:
            return torch.zeros((), device=self.device)
        share = reg.sum() / self._world
        share.backward()
        return share.detach()

    def _optimiser(self, patches: torch.Tensor) -> torch.optim.Optimizer:
        return optimiser(patches, self.cfg, fused=self.device.type == "cuda")  # fused: one kernel a step on a GPU

    def _lr(self, step: int) -> float:
        return cosine_lr(self.cfg, step)

    # -- checkpoints -------------------------------------------------------------------------------
    def _save(self, state: dict[str, Any]) -> None:
        if self.checkpoint is None or self._rank != 0:
            return
        with atomic_path(self.checkpoint) as tmp:
            torch.save(state, tmp)

    def _load(self) -> dict[str, Any] | None:
        if not (self.resume and self.checkpoint is not None and self.checkpoint.exists()):
            return None
        try:
            state = torch.load(self.checkpoint, map_location=self.device, weights_only=True)
        except Exception as e:  # noqa: BLE001  any unreadable checkpoint is the user's file problem
            raise PatchscopeError(
                f"resume: checkpoint {self.checkpoint} is unreadable ({e.__class__.__name__})", params=("resume",)
            ) from None
        if not isinstance(state, dict) or not {"patches", "locations", "step", "chosen", "opt", "gen"} <= set(state):
            raise PatchscopeError(
                f"resume: checkpoint {self.checkpoint} is not an attack checkpoint", params=("resume",)
            )
        self._check_same(state)
        return state

    def _shaping(self) -> dict[str, Any]:
        return attack_settings(self.cfg, self.identity)

    def _check_same(self, state: dict[str, Any]) -> None:
        """Refuse to continue a checkpoint made with other settings (one line naming the first difference)."""
        saved = state.get("shaping")
        if saved is None:
            return  # a checkpoint from before settings were stored: nothing to compare
        try:
            saved = json.loads(saved)
        except (TypeError, ValueError):
            raise PatchscopeError(
                f"resume: checkpoint {self.checkpoint} has unreadable settings", params=("resume",)
            ) from None
        check_same_settings(saved, self._shaping())  # the config's order, then the identity's

    def _restore(
        self, state: dict[str, Any], g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, int, bool, torch.optim.Optimizer]:
        """A checkpoint's patches, places, step, whether the search is over and optimiser; ``g`` and the history
        continue from it."""
        dev = self.device
        patches = state["patches"].to(dev).requires_grad_()
        opt = self._optimiser(patches)
        opt.load_state_dict(state["opt"])
        g.set_state(state["gen"].cpu() if dev.type == "cpu" else state["gen"])
        self.history = list(state.get("history", []))
        return patches, state["locations"].to(dev), int(state["step"]), bool(state["chosen"]), opt

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        def stop(signum: int, frame: Any) -> None:
            self._stop, self._stop_signal = True, signum

        try:
            old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: no handlers
            old = {}
        pending = interrupt_pending()
        if pending is not None:  # a signal came before these handlers and its exception was lost: stop at once
            self._stop, self._stop_signal = True, pending
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    # -- the loop ----------------------------------------------------------------------------------
    def run(self, images: torch.Tensor, labels: torch.Tensor) -> Patch:
        """Optimise a patch on ``images`` (N, 3, H, W) in [0,1] with true ``labels`` (N,).

        Returns:
            The best candidate's :class:`Patch` (its config in ``meta["config"]``).
        """
        cfg, dev = self.cfg, self.device
        self._rank, self._world = rank_world()
        self._cache = {}
        size = images.shape[-1]
        self._rows = step_rows(self.model, size, dev, most=MAX_BATCH * 16)
        side = patch_side(cfg.size, size, cfg.shape)
        cfg.check_fits(size, side)
        mask = shape_mask(cfg.shape, side).to(dev)
        g = self.generator()
        patches, locs = self._start(size, side, g)
        start, chosen = 0, len(patches) == 1
        opt = self._optimiser(patches.requires_grad_())
        state = self._load()
        if state is not None:
            patches, locs, start, chosen, opt = self._restore(state, g)
        switch = 0 if chosen else max(1, round(cfg.search_fraction * cfg.steps))
        # No host syncs inside a step: the loss and success stay on the device and are read (in one copy)
        # only when the progress bar and history update, every 10 steps.
        with self._signals(), self.bar(cfg.steps, self._rank == 0) as update:
            update(advance=start)
            for step in range(start, cfg.steps):
                if not chosen and step == switch:
                    patches, locs = self._choose(images, labels, patches.detach(), mask, locs, side, g)
                    opt, chosen = self._optimiser(patches.requires_grad_()), True
                idx, views = self._views(len(images), locs, size, side, g)
                opt.zero_grad(set_to_none=True)
                loss, hits = self._losses(images, labels, patches, mask, idx, views, locs, grad=True)
                total = loss.sum() + self._regularise(patches)
                if self._world > 1:
                    dist.all_reduce(cast(torch.Tensor, patches.grad))  # backward() has just set it
                    dist.all_reduce(hits)
                for group in opt.param_groups:
                    group["lr"] = self._lr(step)
                opt.step()
                with torch.no_grad():
                    patches.clamp_(0, 1)
                self.record(step, cfg.steps, total, hits.min() if chosen else hits.max(), cfg.batch_size, update)
                self._after_step(step + 1, patches, locs, chosen, opt, g)
        if not chosen:
            patches, locs = self._choose(images, labels, patches.detach(), mask, locs, side, g)
        location = None
        if cfg.placement == "on-object":
            top, left = locs[0].round().tolist()
            location = (int(top), int(left))
        return Patch(
            patches[0].detach().clamp(0, 1), mask.cpu(), cfg.placement, location, size, {"config": cfg.as_dict()}
        )

    def _after_step(
        self,
        done: int,
        patches: torch.Tensor,
        locs: torch.Tensor,
        chosen: bool,
        opt: torch.optim.Optimizer,
        g: torch.Generator,
    ) -> None:
        """Save a checkpoint when one is due (every ``checkpoint_every`` steps, or on a stop); then honour a stop."""
        if self.checkpoint is not None and (
            self._stop or (self.checkpoint_every and done % self.checkpoint_every == 0)
        ):
            self._save(
                {
                    "shaping": json.dumps(self._shaping()),
                    "step": done,
                    "patches": patches.detach(),
                    "locations": locs,
                    "chosen": chosen,
                    "opt": opt.state_dict(),
                    "gen": g.get_state(),
                    "history": self.history,
                }
            )
        if self._stop:
            kept = (
                f"checkpoint saved to {self.checkpoint} (resume continues from it)"
                if self.checkpoint is not None and self._rank == 0
                else "nothing kept"
            )
            raise AttackInterrupted(f"attack interrupted at step {done} of {self.cfg.steps}; {kept}", self._stop_signal)

    @torch.no_grad()
    def _choose(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        patches: torch.Tensor,
        mask: torch.Tensor,
        locs: torch.Tensor,
        side: int,
        g: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep the candidate with the most successes (then the lowest loss) on a fresh batch."""
        idx, views = self._views(len(images), locs, images.shape[-1], side, g)
        loss, hits = self._losses(images, labels, patches, mask, idx, views, locs, compiled=False)
        if self._world > 1:
            dist.all_reduce(loss)
            dist.all_reduce(hits)
        best = int(torch.argmax(hits.float() * 1e3 - loss))
        return patches[best : best + 1].clone(), locs[best : best + 1].clone()
