"""`PatchAttack`: one universal patch, optimised with EOT, called as ``attack(images, labels)``.

Several candidates (places on the sign for ``on-object``, random starts for ``sticker``) are optimised
side by side in one batch for the first ``search_fraction`` of the steps; the best one goes on alone.
Long runs checkpoint atomically (patch, optimiser and generator state) every ``checkpoint_every``
steps and on SIGINT/SIGTERM, and ``resume`` continues to the same patch an uninterrupted run gives.
Under ``torch.distributed`` each rank takes its share of the global batch and gradients are summed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import signal
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast, overload

import torch
import torch.distributed as dist
from torch import nn

from patchscope.attacks.eot import (
    PLACEMENTS,
    ViewParams,
    ViewRanges,
    on_object_plan,
    paste,
    paste_planned,
    sample_view,
    view,
)
from patchscope.attacks.frozen import frozen
from patchscope.attacks.losses import LOSSES, attack_loss, non_printability, printable_colours, total_variation
from patchscope.attacks.patch import Patch, patch_side, shape_mask
from patchscope.attacks.registry import register_attack
from patchscope.distributed import rank_world
from patchscope.errors import Interrupted, PatchscopeError, interrupt_pending
from patchscope.io import atomic_path
from patchscope.progress import Update, progress_bar
from patchscope.validate import (
    MAX_BATCH,
    check_batch,
    check_choice,
    check_fraction,
    check_int,
    check_non_negative,
    check_positive,
    check_range,
    check_same_settings,
)

PRECISIONS = ("fp32", "bf16")


@dataclass
class AttackConfig:
    """Everything that decides a patch. ``target`` None means untargeted."""

    size: float = 0.05
    shape: str = "square"
    placement: str = "on-object"
    location: tuple[int, int] | None = None
    target: int | None = None
    loss: str = "sigmoid"
    kappa: float = 5.0
    optimizer: str = "adam"
    lr: float = 0.3
    steps: int = 300
    batch_size: int = 64
    candidates: int = 5
    restarts: int = 1  # random starts per place, optimised side by side until the search keeps the best one
    search_fraction: float = 0.3
    tv_weight: float = 0.0
    nps_weight: float = 0.0
    ranges: ViewRanges = field(default_factory=ViewRanges)
    seed: int = 0
    compile: bool = (
        False  # torch.compile the render+model+loss step (CUDA graphs on a GPU); same patch up to float rounding
    )
    precision: str = (
        "fp32"  # "bf16": the model runs under bf16 autocast (channels-last on a CPU); a nearby patch, not the same one
    )

    def __post_init__(self) -> None:
        check_fraction("size", self.size)
        check_choice("placement", self.placement, PLACEMENTS)
        check_choice("loss", self.loss, tuple(LOSSES))
        check_choice("optimizer", self.optimizer, ("adam", "sign"))
        check_choice("precision", self.precision, PRECISIONS)
        if isinstance(self.kappa, (int, float)) and self.kappa < 0:
            raise PatchscopeError(f"kappa {self.kappa}: the margin to win by cannot be negative", params=("kappa",))
        check_range("kappa", self.kappa, 0.0, 1e6)  # neither NaN nor inf, nor past what a float32 logit gap holds
        check_range("lr", self.lr, 0.0, 1e3)
        self.steps = check_positive("steps", self.steps, 10**7)
        self.batch_size = check_batch("batch_size", self.batch_size)
        self.candidates = check_positive("candidates", self.candidates, 1024)
        self.restarts = check_positive("restarts", self.restarts, 1024)
        if self.candidates * self.restarts * self.batch_size > MAX_BATCH * 16:
            raise PatchscopeError(
                f"batch_size x candidates x restarts must be <= {MAX_BATCH * 16} images per step, "
                f"got {self.batch_size} x {self.candidates} x {self.restarts}",
                params=("batch_size", "candidates", "restarts"),
            )
        check_range("search_fraction", self.search_fraction, 0.0, 1.0)
        check_non_negative("tv_weight", self.tv_weight)
        check_non_negative("nps_weight", self.nps_weight)
        self.seed = check_int("seed", self.seed, 0, 2**63 - 1)
        if self.target is not None:
            self.target = check_int("target", self.target, 0)
        if self.location is not None:
            if len(self.location) != 2:
                raise PatchscopeError(f"location must be (top, left), got {self.location!r}", params=("location",))
            self.location = (
                check_int("location top", self.location[0], 0),
                check_int("location left", self.location[1], 0),
            )

    def check_fits(self, image_size: int, side: int) -> None:
        """Refuse a fixed ``location`` that puts the ``side``-px patch (partly) off an ``image_size``-px image."""
        if self.location is not None and self.placement == "on-object":
            top, left = self.location
            free = image_size - side
            if top > free or left > free:
                raise PatchscopeError(
                    f"location must keep the {side}px patch on the {image_size}px image "
                    f"(top and left in 0..{free}), got {top},{left}",
                    params=("location",),
                )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def candidate_locations(n: int, free: int) -> torch.Tensor:
    """``n`` (top, left) starting places for on-object candidates, best guesses first: the centre, then
    the middles of the edges, then the corners of a grid at 20/50/80% of the free range (then random)."""
    ticks = torch.tensor([0.5, 0.2, 0.8]) * free
    grid = torch.cartesian_prod(ticks, ticks).round()
    order = ((grid - free / 2).abs().sum(1) + 1e-3 * torch.arange(len(grid))).argsort()
    grid = grid[order]
    if n > len(grid):
        extra = torch.randint(0, free + 1, (n - len(grid), 2), generator=torch.Generator().manual_seed(n)).float()
        grid = torch.cat([grid, extra])
    return grid[:n]


def classify(model: nn.Module, x: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """``model(x)`` as float32 logits; ``precision="bf16"`` runs it under bf16 autocast, with channels-last
    input on a CPU (oneDNN's fast bf16 convolutions, AMX where the CPU has it)."""
    if precision == "fp32":
        return model(x)
    if x.device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        return model(x).float()


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
    x = paste_planned(x, pix, plan) if plan is not None else paste(x, pix, mask, views)
    if not still:
        x = view(x, views)
    logits = classify(model, x, precision)
    losses = attack_loss(logits, y, target, loss, kappa).view(c, -1).sum(1) / batch
    hit = logits.argmax(1) == target if target is not None else logits.argmax(1) != y
    return losses, hit.view(c, -1).sum(1)


@functools.lru_cache(maxsize=2)
def _compiled_score(device_type: str) -> Any:
    """``score_views`` through ``torch.compile``, made once per process: on a GPU in CUDA graphs
    ("reduce-overhead"), which removes the launch cost of a step's many small kernels on 32-px models."""
    return torch.compile(score_views, mode="reduce-overhead" if device_type == "cuda" else "default", dynamic=False)


def check_target(model: nn.Module, target: int | None, labels: torch.Tensor) -> None:
    """A ``target`` class the model has, and not the class every attacked image already is."""
    classes = getattr(model, "classes", None)
    if target is None:
        return
    if classes is not None and target >= len(classes):
        raise PatchscopeError(f"target must be a class id in 0..{len(classes) - 1}, got {target}", params=("target",))
    if len(labels) and bool(
        (labels.detach().cpu().numpy() == target).all()
    ):  # numpy: no device sync inside the attack's trace
        name = f" ({classes[target]})" if classes is not None else ""
        raise PatchscopeError(
            f"target must differ from the class of the attacked images, got {target}{name} for both", params=("target",)
        )


class SignSGD(torch.optim.Optimizer):
    """Signed-gradient steps (the patch analogue of PGD): ``p -= lr * sign(grad)``."""

    def __init__(self, params: Any, lr: float) -> None:
        super().__init__(params, {"lr": lr})

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One signed step of every parameter with a gradient; ``closure``, if given, re-evaluates the loss first."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign(), alpha=-group["lr"])
        return loss


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
class PatchAttack:
    """Universal adversarial patch with EOT. The caller's model is left as it was (see :func:`frozen`).

    >>> import torch
    >>> from patchscope.models.archs import cnn
    >>> from patchscope.models.wrapper import Classifier
    >>> model = Classifier(cnn(num_classes=3, width=4), ["a", "b", "c"]).eval()
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
        self.target_model, self.cfg, self.device = model, config, torch.device(device)
        self.model: nn.Module = model  # while attacking: the frozen, BN-folded model (see :func:`frozen`)
        self.checkpoint, self.checkpoint_every, self.resume, self.progress = (
            checkpoint,
            checkpoint_every,
            resume,
            progress,
        )
        self.checkpoint_every = check_int("checkpoint_every", checkpoint_every, 0)
        self.identity = dict(identity or {})
        self.history: list[dict[str, float | None]] = []
        self._stop, self._stop_signal = False, int(signal.SIGINT)
        self._rank, self._world = 0, 1
        self._cache: dict[str, Any] = {}

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
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of the batch: (loss per candidate, successes per candidate) as sums / global batch."""
        c, cfg = len(patches), self.cfg
        mine = self._cached(f"mine{c}", locs, lambda: self._mine(c))
        rows, views = (idx, views) if mine is None else (idx[mine], views[mine])
        x, y, pix = images[rows], labels[rows], patches.repeat_interleave(len(rows) // c, 0)
        plan = None
        if cfg.placement == "on-object":  # the places stay for many steps: gather index and alpha made once
            plan = self._cached(
                f"plan{c}", locs, lambda: on_object_plan(mask, views.location, x.shape[-2], x.shape[-1])
            )
        args = (
            self.model,
            x,
            y,
            pix,
            mask,
            plan,
            views,
            c,
            cfg.target,
            cfg.loss,
            cfg.kappa,
            cfg.batch_size,
            cfg.precision,
            cfg.ranges.still,
        )
        if not (compiled and cfg.compile):
            return score_views(*args)
        with warnings.catch_warnings():  # the lru_cache'd helpers it traces (pixel grids, constant matrices) are pure
            warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")
            return _compiled_score(self.device.type)(*args)

    def _regulariser(self, patches: torch.Tensor) -> torch.Tensor | None:
        if not (self.cfg.tv_weight or self.cfg.nps_weight):
            return None
        reg = torch.zeros(len(patches), device=self.device)
        if self.cfg.tv_weight:
            reg = reg + self.cfg.tv_weight * total_variation(patches)
        if self.cfg.nps_weight:
            if "colours" not in self._cache:  # made once per attack, not copied to the device every step
                self._cache["colours"] = printable_colours().to(self.device)
            reg = reg + self.cfg.nps_weight * non_printability(patches, self._cache["colours"])
        return reg

    def _optimiser(self, patches: torch.Tensor) -> torch.optim.Optimizer:
        if self.cfg.optimizer == "sign":
            return SignSGD([patches], lr=self.cfg.lr)
        return torch.optim.Adam(
            [patches], lr=self.cfg.lr, fused=self.device.type == "cuda"
        )  # fused: one kernel a step on a GPU

    def _lr(self, step: int) -> float:
        return self.cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / self.cfg.steps)))

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
    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> Patch:
        """Optimise a patch on ``images`` (N, 3, H, W) in [0,1] with true ``labels`` (N,).

        Returns:
            The best candidate's :class:`Patch` (its config in ``meta["config"]``).
        """
        with frozen(self.target_model) as self.model:
            return self._optimise(images, labels)

    def _optimise(self, images: torch.Tensor, labels: torch.Tensor) -> Patch:
        cfg, dev = self.cfg, self.device
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[-1] != images.shape[-2] or len(images) == 0:
            raise PatchscopeError(f"the attack needs square RGB images (N, 3, H, H), got {tuple(images.shape)}")
        images, labels = images.to(dev), labels.to(dev)
        check_target(self.model, self.cfg.target, labels)
        self._rank, self._world = rank_world()
        self._cache = {}
        size = images.shape[-1]
        side = patch_side(cfg.size, size, cfg.shape)
        cfg.check_fits(size, side)
        mask = shape_mask(cfg.shape, side).to(dev)
        g = torch.Generator(device=dev).manual_seed(cfg.seed)
        patches, locs = self._start(size, side, g)
        start, chosen = 0, len(patches) == 1
        opt = self._optimiser(patches.requires_grad_())
        state = self._load()
        if state is not None:
            patches = state["patches"].to(dev).requires_grad_()
            locs, start, chosen = state["locations"].to(dev), int(state["step"]), bool(state["chosen"])
            opt = self._optimiser(patches)
            opt.load_state_dict(state["opt"])
            g.set_state(state["gen"].cpu() if dev.type == "cpu" else state["gen"])
            self.history = list(state.get("history", []))
        switch = 0 if chosen else max(1, round(cfg.search_fraction * cfg.steps))
        # No host syncs inside a step: the loss and success stay on the device and are read (in one copy)
        # only when the progress bar and history update, every 10 steps.
        with self._signals(), progress_bar(cfg.steps, "attack", self.progress and self._rank == 0) as update:
            update(advance=start)
            for step in range(start, cfg.steps):
                if not chosen and step == switch:
                    patches, locs = self._choose(images, labels, patches.detach(), mask, locs, side, g)
                    opt, chosen = self._optimiser(patches.requires_grad_()), True
                if cfg.compile and dev.type == "cuda":
                    torch.compiler.cudagraph_mark_step_begin()  # a new step: the graphs' outputs of the last one may go
                idx, views = self._views(len(images), locs, size, side, g)
                loss, hits = self._losses(images, labels, patches, mask, idx, views, locs)
                total, reg = loss.sum(), self._regulariser(patches)
                if reg is not None:
                    total = total + reg.sum() / self._world
                opt.zero_grad(set_to_none=True)
                total.backward()
                if self._world > 1:
                    dist.all_reduce(cast(torch.Tensor, patches.grad))  # backward() has just set it
                    dist.all_reduce(hits)
                for group in opt.param_groups:
                    group["lr"] = self._lr(step)
                opt.step()
                with torch.no_grad():
                    patches.clamp_(0, 1)
                if step % 10 == 0 or step == cfg.steps - 1:
                    self._record(step, total, hits, chosen, update)
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

    def _record(self, step: int, total: torch.Tensor, hits: torch.Tensor, chosen: bool, update: Update) -> None:
        """Read the loss and batch success (one copy off the device), refuse a non-finite loss, add a history
        entry and advance the progress bar."""
        cfg = self.cfg
        value, best = torch.stack([total.detach().float(), (hits.min() if chosen else hits.max()).float()]).tolist()
        if not math.isfinite(value):
            raise PatchscopeError(
                f"the attack's loss became NaN or inf at step {step}: the model produced non-finite outputs"
            )
        rate = best / cfg.batch_size
        self.history.append({"step": step, "loss": value, "batch_success": rate})
        update(advance=min(10, cfg.steps - step) if step % 10 == 0 else 0, loss=value, success=rate)

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
