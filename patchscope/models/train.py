"""The zoo's training recipe: seeded, batched augmentation on the device, random occlusion squares.

Occlusion squares (one or two grey squares of 6-13 px, each with probability ``occlude_p``) teach the
models to tolerate the masks that PatchCleanser and derandomized smoothing apply. Their sides are given for a
32-px image and scale with the image (12-26 px at 64 px), so a recipe means the same at every resolution.
"""

from __future__ import annotations

import contextlib
import copy
import math
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, cast

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import patchscope
from patchscope.data import Batches, ImageSet, split_by_track
from patchscope.distributed import all_sum, my_indices, rank_world
from patchscope.errors import Interrupted, PatchscopeError
from patchscope.models.batching import forward_chunks, resolve_batch_size
from patchscope.models.registry import build_net, probe_net
from patchscope.models.resume import Resumed, TrainCheckpoint, TrainingParts
from patchscope.models.wrapper import Classifier, check_finite, nonfinite_rows
from patchscope.progress import progress_bar
from patchscope.validate import (
    check_batch,
    check_choice,
    check_int,
    check_non_negative,
    check_positive,
    check_probability,
    check_range,
    check_same_classes,
)


@dataclass
class Recipe:
    """Everything that decides a trained model, stored in its card."""

    arch: str
    epochs: int = 20
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    ema_decay: float = 0.999
    val_fraction: float = 0.05
    seed: int = 0
    rotate: float = 15.0
    translate: float = 0.1
    scale: tuple[float, float] = (0.9, 1.1)
    jitter: float = 0.3
    occlude_p: float = 0.5
    occlude_size: tuple[int, int] = (6, 13)  # sides on a 32-px image; scaled with the image side
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    patch_training: dict[str, Any] = field(default_factory=dict)
    teacher: str | None = None
    distill_weight: float = 0.5
    distill_temperature: float = 4.0
    precision: str = "fp32"  # "bf16": forward passes under bf16 autocast (weights, optimiser and EMA stay float32)

    def __post_init__(self) -> None:
        self.epochs = check_positive("epochs", self.epochs, 100_000)
        self.batch_size = check_batch("batch_size", self.batch_size)
        check_choice("optimizer", self.optimizer, ("sgd", "adamw"))
        check_range("lr", self.lr, 0.0, 100.0, low_open=True)
        check_non_negative("weight_decay", self.weight_decay)
        check_range("label_smoothing", self.label_smoothing, 0.0, 1.0)
        check_range("ema_decay", self.ema_decay, 0.0, 1.0, high_open=True)
        check_range("val_fraction", self.val_fraction, 0.0, 1.0, high_open=True)
        self.seed = check_int("seed", self.seed, 0, 2**63 - 1)
        check_range("rotate", self.rotate, 0.0, 180.0)
        check_range("translate", self.translate, 0.0, 0.5)
        check_range("jitter", self.jitter, 0.0, 1.0)
        check_probability("occlude_p", self.occlude_p)
        if len(self.scale) != 2 or not 0 < check_range("scale", self.scale[0], 0.0, 4.0) <= check_range(
            "scale", self.scale[1], 0.0, 4.0
        ):
            raise PatchscopeError(f"scale must be (low, high) with 0 < low <= high <= 4, got {self.scale!r}")
        if not isinstance(self.arch_kwargs, dict):
            raise PatchscopeError(
                f"arch_kwargs must be a JSON object of architecture options, got {self.arch_kwargs!r}",
                params=("arch_kwargs",),
            )
        check_probability("distill_weight", self.distill_weight)
        check_range("distill_temperature", self.distill_temperature, 0.0, 100.0, low_open=True)
        check_choice("precision", self.precision, ("fp32", "bf16"))

    @classmethod
    def for_arch(cls, arch: str, **overrides: Any) -> Recipe:
        """Defaults that suit ``arch`` (AdamW with warm-up for the ViT), then ``overrides``."""
        base: dict[str, Any] = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05} if arch == "vit" else {}
        base.update({k: v for k, v in overrides.items() if v is not None})
        if base.get("precision", "fp32") not in ("fp32", "bf16"):
            raise PatchscopeError(f"precision {base['precision']}: choose fp32 or bf16", params=("precision",))
        return cls(arch=arch, **base)


AUGMENT_RANGES: dict[str, tuple[float, float]] = {
    "rotate": (0.0, 180.0),
    "translate": (0.0, 0.5),
    "jitter": (0.0, 1.0),
    "occlude_p": (0.0, 1.0),
}


def parse_augment(text: str) -> dict[str, Any]:
    """Recipe overrides for the augmentation, from ``"rotate=5,jitter=0.1,occlude_p=0.25,scale=0.95:1.05"``.

    >>> parse_augment("rotate=5, occlude_p=0")
    {'rotate': 5.0, 'occlude_p': 0.0}
    """
    out: dict[str, Any] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = (t.strip() for t in item.partition("="))
        if not sep or key not in (*AUGMENT_RANGES, "scale"):
            raise PatchscopeError(
                f"augment {item!r}: give KEY=VALUE with KEY one of {', '.join(AUGMENT_RANGES)}, scale",
                params=("augment",),
            )
        try:
            numbers = [float(v) for v in value.split(":")]
        except ValueError:
            raise PatchscopeError(f"augment {item!r}: {value!r} is not a number", params=("augment",)) from None
        if key == "scale":
            if len(numbers) != 2 or not 0 < numbers[0] <= numbers[1] <= 4:
                raise PatchscopeError(
                    f"augment {item!r}: give scale=LOW:HIGH with 0 < LOW <= HIGH <= 4, e.g. scale=0.95:1.05",
                    params=("augment",),
                )
            out[key] = (numbers[0], numbers[1])
            continue
        low, high = AUGMENT_RANGES[key]
        if len(numbers) != 1 or not low <= numbers[0] <= high:
            raise PatchscopeError(
                f"augment {item!r}: {key} takes one number in [{low:g}, {high:g}]", params=("augment",)
            )
        out[key] = numbers[0]
    return out


#: the image side that a recipe's ``occlude_size`` is given for
OCCLUSION_REFERENCE_SIDE = 32


def occlusion_sides(size: tuple[int, int], image_side: int) -> tuple[int, int]:
    """A recipe's occlusion sides (given for a 32-px image) on an ``image_side``-px image.

    >>> occlusion_sides((6, 13), 32), occlusion_sides((6, 13), 64)
    ((6, 13), (12, 26))
    """
    scale = image_side / OCCLUSION_REFERENCE_SIDE
    return max(1, round(size[0] * scale)), min(image_side, max(1, round(size[1] * scale)))


def occlude(
    x: torch.Tensor, p: float, size: tuple[int, int], generator: torch.Generator | None = None, value: float = 0.5
) -> torch.Tensor:
    """Paint one grey square of side in ``size`` at a random place on each image with probability ``p``.

    Batched: (N, C, H, W) in, same shape out, no per-image loop.
    """
    n, _, h, w = x.shape
    dev = x.device
    side = torch.randint(size[0], size[1] + 1, (n, 1, 1), generator=generator).to(dev)
    y0 = (torch.rand(n, 1, 1, generator=generator).to(dev) * (h - side + 1)).floor()
    x0 = (torch.rand(n, 1, 1, generator=generator).to(dev) * (w - side + 1)).floor()
    on = (torch.rand(n, 1, 1, generator=generator) < p).to(dev)
    mask = on & square_masks(y0, x0, side, h, w)
    return torch.where(mask.unsqueeze(1), torch.full_like(x, value), x)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft knowledge distillation (Hinton et al. 2015): KL(teacher || student) at ``temperature``, times T^2.

    Both (N, classes) logits; a scalar, zero when the two agree.

    >>> z = torch.tensor([[2.0, 0.0, -1.0]])
    >>> float(distill_loss(z, z, 4.0))
    0.0
    """
    t = temperature
    return (
        F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), reduction="batchmean", log_target=True)
        * t
        * t
    )


def square_masks(top: torch.Tensor, left: torch.Tensor, side: torch.Tensor | int, h: int, w: int) -> torch.Tensor:
    """(N, H, W) bool masks of squares from their sampled places: ``top``/``left`` (N, 1, 1), ``side`` (N, 1, 1) or int.

    >>> square_masks(torch.tensor([[[1]]]), torch.tensor([[[2]]]), 2, 4, 4)[0].int().tolist()
    [[0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]]
    """
    rows = torch.arange(h, device=top.device).view(1, h, 1)
    cols = torch.arange(w, device=top.device).view(1, 1, w)
    return (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)


def channel_stats(data: ImageSet) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of ``data`` in [0,1] (the normalisation stored in the card)."""
    x = data.images.float().div_(255)
    return x.mean((0, 2, 3)).tolist(), x.std((0, 2, 3)).tolist()


@torch.no_grad()
def accuracy(
    model: torch.nn.Module, data: Batches, device: str | torch.device = "cpu", batch_size: int | None = None
) -> float:
    """Top-1 accuracy of ``model`` on ``data`` (in memory or streamed), over the images actually read.

    ``batch_size`` None: as many images per pass as the memory budget holds (:func:`auto_batch_size`); a pass
    that runs out of memory is redone in smaller chunks (the same numbers). Under ``torch.distributed`` every rank
    calls it with the same arguments, reads every world-th batch and returns the accuracy over all of them (counts
    summed: equal to one process's).
    """
    batch_size = resolve_batch_size(model, batch_size, int(getattr(data, "image_size", 32)), device)
    if len(data) == 0:
        raise PatchscopeError(f"{data.name}: accuracy needs at least one image")
    check_same_classes(getattr(model, "classes", None), data.classes, data.name)
    model.eval()
    counts = torch.zeros(3, dtype=torch.long, device=device)  # right, non-finite, read
    for x, y in _my_batches(data, batch_size, device):
        logits = forward_chunks(model, x, batch_size)
        counts += torch.stack([(logits.argmax(1) == y).sum(), nonfinite_rows(logits), counts.new_tensor(len(y))])
    correct, bad, seen = all_sum(counts)
    check_finite(bad, getattr(model, "name", "the model"))
    return int(correct) / max(int(seen), 1)


def _my_batches(
    data: Batches, batch_size: int, device: str | torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``data``'s batches, or under ``torch.distributed`` this rank's (every world-th, the same images per batch)."""
    if rank_world()[1] == 1:
        return data.iter_batches(batch_size, device)
    mine = my_indices(len(data), batch_size)
    if not len(mine):
        return iter(())
    return data.subset(mine).iter_batches(batch_size, device)


Perturb = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


def train_model(
    data: ImageSet,
    recipe: Recipe,
    device: str | torch.device = "cpu",
    name: str = "model",
    progress: bool = True,
    initial: Classifier | None = None,
    perturb: Perturb | None = None,
    teacher: Classifier | None = None,
    checkpoint: TrainCheckpoint | None = None,
) -> tuple[Classifier, dict[str, Any]]:
    """Train a classifier on ``data`` with ``recipe``; returns the EMA model and its card.

    ``initial`` fine-tunes a copy of that model (its normalisation kept) instead of a fresh network;
    ``perturb(model, x, y, generator)`` rewrites each augmented batch, e.g. a
    :class:`patchscope.defenses.PatchAdversary` for adversarial patch training. ``teacher`` adds
    :func:`distill_loss` against its logits on the same batch, weighted ``recipe.distill_weight``.
    ``checkpoint`` keeps the whole state after every epoch (and, with ``resume``, continues from it to the same
    model); an interrupt (:class:`Interrupted`) then says which epoch the kept checkpoint holds.

    >>> from patchscope.data import load_data
    >>> model, card = train_model(load_data("demo").head(64), Recipe.for_arch("cnn", epochs=1), progress=False)
    >>> card["recipe"]["arch"]
    'cnn'
    """
    torch.manual_seed(recipe.seed)
    g = torch.Generator().manual_seed(recipe.seed)
    train_set, val_set = split_by_track(data, recipe.val_fraction, recipe.seed)
    model, teacher, stats = _start_model(data, train_set, recipe, device, name, initial, teacher)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema_decay), use_buffers=True)
    augment = K.AugmentationSequential(
        K.RandomAffine(recipe.rotate, (recipe.translate, recipe.translate), recipe.scale, p=1.0),
        K.ColorJiggle(recipe.jitter, recipe.jitter, recipe.jitter, p=0.8),
    ).to(device)
    steps_per_epoch = math.ceil(len(train_set) / recipe.batch_size)
    opt, sched = _optimiser(model, recipe, steps_per_epoch * recipe.epochs)
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=recipe.precision == "bf16")
    parts, settings = TrainingParts(model, ema, opt, sched, g), asdict(recipe)
    done = checkpoint.restore(parts, settings) if checkpoint is not None else Resumed()
    history, start = done.history, time.time() - done.seconds
    with progress_bar(recipe.epochs * steps_per_epoch, f"train {name}", progress) as update, _kept(checkpoint, history):
        if done.epoch:
            update(advance=done.epoch * steps_per_epoch)  # the epochs a resumed run trained before
        for epoch in range(done.epoch, recipe.epochs):
            step = partial(_batch_loss, recipe=recipe, g=g, autocast=autocast, perturb=perturb, teacher=teacher)
            _train_epoch(parts, train_set, augment, recipe, device, step, partial(update, epoch=epoch + 1))
            val = accuracy(ema.module, val_set, device) if len(val_set) else None  # no validation image: no number
            history.append({"epoch": epoch + 1, "val_accuracy": val})
            if checkpoint is not None:
                checkpoint.save(parts, settings, epoch + 1, history, time.time() - start)
            update(advance=0, epoch=epoch + 1, val=val)
    seconds = time.time() - start
    final = cast(Classifier, ema.module)  # the averaged copy of ``model``
    final.eval()
    card = _card(final, data, recipe, name, stats, (len(train_set), len(val_set)), history, seconds, device)
    final.card = card
    return final, card


def _train_epoch(
    parts: TrainingParts,
    train_set: ImageSet,
    augment: torch.nn.Module,
    recipe: Recipe,
    device: str | torch.device,
    loss_of: Callable[[Classifier, torch.Tensor, torch.Tensor], torch.Tensor],
    update: Callable[..., None],
) -> None:
    """One pass over ``train_set`` in a random order (``parts.generator``), one optimiser step per batch; ``loss_of``
    gives a batch's loss, ``update`` shows progress every 20 steps."""
    model, g, ema = cast(Classifier, parts.model), parts.generator, cast(AveragedModel, parts.average)
    steps_per_epoch = math.ceil(len(train_set) / recipe.batch_size)
    model.train()
    order = torch.randperm(len(train_set), generator=g)
    for i in range(steps_per_epoch):
        idx = order[i * recipe.batch_size : (i + 1) * recipe.batch_size]
        x, y = _augmented_batch(train_set, idx, augment, recipe, g, device)
        loss = loss_of(model, x, y)
        parts.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        parts.optimiser.step()
        parts.schedule.step()
        ema.update_parameters(model)
        if i % 20 == 0:
            update(advance=min(20, steps_per_epoch - i), loss=float(loss.detach()))


def _start_model(
    data: ImageSet,
    train_set: ImageSet,
    recipe: Recipe,
    device: str | torch.device,
    name: str,
    initial: Classifier | None,
    teacher: Classifier | None,
) -> tuple[Classifier, Classifier | None, tuple[list[float], list[float]]]:
    """The model to train (a copy of ``initial`` or a fresh ``recipe.arch`` network) on ``device``, and the
    teacher there in eval mode, and the normalisation (channel means and deviations); either model's classes must
    be the data's."""
    for role, other in (("initial", initial), ("teacher", teacher)):
        if other is not None and list(other.classes) != list(data.classes):
            raise PatchscopeError(
                f"the {role} model's {len(other.classes)} classes differ from the data's {len(data.classes)}"
            )
    if teacher is not None:
        teacher = teacher.to(device).eval()
    if initial is not None:
        mean, std = initial.mean.flatten().tolist(), initial.std.flatten().tolist()
        net = copy.deepcopy(initial.net).requires_grad_(
            True
        )  # every weight of the copy trains, whatever the caller froze
    else:
        mean, std = channel_stats(train_set)
        net = build_net(recipe.arch, len(data.classes), recipe.arch_kwargs)
        probe_net(net, data.image_size, len(data.classes), f"a {recipe.arch} with arch_kwargs {recipe.arch_kwargs}")
    return Classifier(net, data.classes, data.image_size, mean, std, name).to(device), teacher, (mean, std)


def _augmented_batch(
    train_set: ImageSet,
    idx: torch.Tensor,
    augment: torch.nn.Module,
    recipe: Recipe,
    g: torch.Generator,
    device: str | torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``idx`` of ``train_set`` on ``device``, augmented and occluded (twice) as ``recipe`` says, and labels."""
    x = train_set.images[idx].to(device).float().div_(255)
    y = train_set.labels[idx].to(device)
    sides = occlusion_sides(recipe.occlude_size, x.shape[-1])
    x = occlude(occlude(augment(x).clamp_(0, 1), recipe.occlude_p, sides, g), recipe.occlude_p, sides, g)
    return x, y


def _batch_loss(
    model: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    recipe: Recipe,
    g: torch.Generator,
    autocast: torch.autocast,
    perturb: Perturb | None,
    teacher: Classifier | None,
) -> torch.Tensor:
    """The training loss on one batch: cross-entropy after ``perturb``, mixed with distillation from ``teacher``."""
    if perturb is not None:
        # the perturbation's forward passes (worst-of-N masks, training patches) at the recipe's precision
        with autocast:
            x = perturb(model, x, y, g)
    with autocast:
        logits = model(x).float()
    loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
    if teacher is not None:
        with torch.no_grad(), autocast:
            soft = teacher(x).float()
        w = recipe.distill_weight
        loss = (1 - w) * loss + w * distill_loss(logits, soft, recipe.distill_temperature)
    return loss


def _card(
    final: Classifier,
    data: ImageSet,
    recipe: Recipe,
    name: str,
    stats: tuple[list[float], list[float]],
    sizes: tuple[int, int],
    history: list[dict[str, float | None]],
    seconds: float,
    device: str | torch.device,
) -> dict[str, Any]:
    """The trained model's card: what it is (``stats``: its normalisation), what it was trained on (``sizes``: train
    and validation images), how."""
    return {
        "name": name,
        "arch": recipe.arch,
        "arch_kwargs": recipe.arch_kwargs,
        "classes": list(data.classes),
        "input_size": data.image_size,
        "mean": stats[0],
        "std": stats[1],
        "params": final.num_params,
        "recipe": asdict(recipe),
        "data": data.name,
        "data_hash": data.data_hash(),
        "train_images": sizes[0],
        "val_images": sizes[1],
        "val_split": "by track",
        "val_accuracy": history[-1]["val_accuracy"] if history else None,
        "history": history,
        "train_seconds": round(seconds, 1),
        "device": str(
            torch.cuda.get_device_name() if str(device).startswith("cuda") else platform.processor() or "cpu"
        ),
        "patchscope": patchscope.__version__,
        "torch": torch.__version__,
        "accuracy": {},
    }


@contextlib.contextmanager
def _kept(checkpoint: TrainCheckpoint | None, history: list[dict[str, float | None]]) -> Iterator[None]:
    """An interrupt inside says what the checkpoint holds: the epochs done (nothing when none is kept)."""
    try:
        yield
    except Interrupted as e:
        if checkpoint is None or not history or not checkpoint.path.exists():
            raise
        raise Interrupted(
            f"checkpoint saved to {checkpoint.path} after epoch {history[-1]['epoch']}", e.signum
        ) from None


def _optimiser(
    model: torch.nn.Module, recipe: Recipe, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if recipe.optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=recipe.lr, betas=(0.9, 0.99))
    else:
        opt = torch.optim.SGD(groups, lr=recipe.lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=max(total_steps, 1), pct_start=0.15)
    return opt, sched
