"""Train a model as ``patchscope train`` does: every option checked before any work, the data and models named, the
recipe, a checkpoint that resumes only with the same data, pretraining and initial weights, then the weights and card.

>>> import tempfile
>>> from pathlib import Path
>>> spec = TrainSpec(arch="cnn", arch_kwargs='{"width": 4}', epochs=1, batch_size=32)
>>> plan = plan_training(spec, TrainPlace("demo", Path(tempfile.mkdtemp()), name="tiny"))
>>> result = run_training(plan, progress=False)
>>> result.weights.name, sorted(result.as_dict())
('tiny.safetensors', ['accuracy', 'train_seconds', 'val_accuracy', 'weights'])
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from patchscope.data import ImageSet, load_data
from patchscope.errors import PatchscopeError, errors_about
from patchscope.io import check_output
from patchscope.models import ARCHS, Classifier, create_model, save_checkpoint
from patchscope.models.checkpoint import weights_fingerprint
from patchscope.models.resume import TrainCheckpoint
from patchscope.models.train import Perturb, Recipe, parse_augment, train_model
from patchscope.validate import check_batch, check_positive


@dataclass(frozen=True)
class TrainSpec:
    """What to train and how: the architecture (or the model to fine-tune), the recipe's settings, pretraining and a
    teacher. ``arch_kwargs`` and ``augment`` are the texts a user gives (JSON; ``rotate=5,jitter=0.1``)."""

    arch: str | None = None
    arch_kwargs: str = "{}"
    epochs: int = 20
    batch_size: int = 128
    lr: float | None = None
    seed: int = 0
    ema_decay: float | None = None
    precision: str = "fp32"
    augment: str | None = None
    init: str | None = None
    teacher: str | None = None
    distill_weight: float = 0.5
    ssl: str | None = None
    ssl_epochs: int = 8
    ssl_data: str | None = None


@dataclass(frozen=True)
class TrainPlace:
    """Where the images come from and the model goes: the data (``root``: GTSRB's folder; ``skip_bad``: leave out
    unreadable images), the held-out ``eval_data``, the ``out`` folder and model ``name`` (default ``gtsrb-ARCH``),
    and whether to continue from ``out/NAME.ckpt``."""

    data: str
    out: Path = Path("models")
    name: str | None = None
    eval_data: str | None = None
    root: Path | None = None
    skip_bad: bool = False
    resume: bool = False


@dataclass
class TrainPlan:
    """A training run, checked and ready: its data and models loaded, its recipe, what its checkpoint must match."""

    spec: TrainSpec
    place: TrainPlace
    name: str
    recipe: Recipe
    data: ImageSet
    held_out: ImageSet | None = None
    pretraining_data: ImageSet | None = None
    initial: Classifier | None = None
    teacher: Classifier | None = None
    perturb: Perturb | None = None
    identity: dict[str, Any] = field(default_factory=dict)

    def config(self, device: str) -> dict[str, Any]:
        """The settings a run store records (the run on ``device``)."""
        config = {"name": self.name, "data": self.place.data, "device": device, "models": [self.name]}
        return config | {"data_hash": self.identity["data_hash"], "ssl": self.spec.ssl} | self.recipe.__dict__


def plan_training(
    spec: TrainSpec, place: TrainPlace, perturbation: Callable[[int], Perturb | None] | None = None
) -> TrainPlan:
    """Check every setting and load what the run needs, before any training.

    Args:
        spec: the architecture, recipe, pretraining and teacher.
        place: the data, the held-out data, the output folder and name, resume.
        perturbation: the batch perturbation (patch, mask or ablation training) for the training images' side.
    Returns:
        The plan :func:`run_training` carries out. Bad settings raise :class:`PatchscopeError` naming the setting.
    """
    if place.name is not None:
        check_output(place.out, (f"{_plain(place.name)}.safetensors", f"{place.name}.json"))
    _check_spec(spec)
    initial = create_model(spec.init) if spec.init else None
    teacher = create_model(spec.teacher) if spec.teacher else None
    arch, kwargs = _architecture(spec, initial)
    data = load_data(place.data, place.root, skip_bad=place.skip_bad)  # a new model's classes: the folder names
    held_out = _held_out(place, data)
    name = place.name or f"gtsrb-{arch}"
    check_output(place.out, (f"{name}.safetensors", f"{name}.json"))
    perturb = perturbation(data.image_size) if perturbation else None
    recipe = _recipe(spec, arch, kwargs, perturb)
    identity: dict[str, Any] = {"data_hash": data.data_hash(), "init": spec.init, "ssl": spec.ssl}
    for role, model in (("init", initial), ("teacher", teacher)):
        if model is not None:  # resumed with other weights under the same name: refused
            identity[f"{role}_weights"] = weights_fingerprint(model)
    return TrainPlan(
        spec,
        place,
        name,
        recipe,
        data,
        held_out,
        _pretraining_data(spec, place, data),
        initial,
        teacher,
        perturb,
        identity,
    )


def run_training(plan: TrainPlan, device: str = "cpu", progress: bool = True) -> TrainResult:
    """Train (after MAE pretraining, with ``ssl``), measure on the held-out data, write ``NAME.safetensors`` and
    its card into the output folder. A checkpoint ``NAME.ckpt`` is kept after every epoch and on an interrupt,
    removed once the model is written, and removed where a run that made it fails.

    Args:
        plan: what :func:`plan_training` checked and loaded.
        device: where to train.
        progress: show a progress bar.
    Returns:
        The weights file and the new model's accuracies.
    """
    initial, pretraining = plan.initial, None
    if plan.pretraining_data is not None:
        initial, pretraining = _pretrain_mae(plan, device)
    ckpt = TrainCheckpoint(plan.place.out / f"{plan.name}.ckpt", plan.place.resume, plan.identity)
    with _kept_on_failure(ckpt):
        model, card = train_model(
            plan.data, plan.recipe, device, plan.name, progress, initial, plan.perturb, plan.teacher, ckpt
        )
    _finish_card(card, model, plan.held_out, device, pretraining)
    weights = plan.place.out / f"{plan.name}.safetensors"
    save_checkpoint(model.net, card, weights)
    ckpt.path.unlink(missing_ok=True)  # the model is written: the state that led to it is no longer needed
    skipped = sum(len(d.skipped) for d in (plan.data, plan.held_out) if d is not None)
    return TrainResult(
        weights, card["val_accuracy"], card["accuracy"], card["train_seconds"], skipped if plan.place.skip_bad else None
    )


@dataclass(frozen=True)
class TrainResult:
    """A trained model: its ``weights`` file (the card beside it), the accuracy on its validation images (None
    without any) and on each data set measured, the training time, and with ``skip_bad`` the unreadable images left
    out of the training and held-out data."""

    weights: Path
    val_accuracy: float | None
    accuracy: dict[str, float]
    train_seconds: float
    skipped_images: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The summary a person reads (``skipped_images`` only where images could be skipped)."""
        summary = {"weights": str(self.weights), "val_accuracy": self.val_accuracy, "accuracy": self.accuracy}
        summary["train_seconds"] = self.train_seconds
        return summary | ({} if self.skipped_images is None else {"skipped_images": self.skipped_images})


def _plain(name: str) -> str:
    """A plain file name: no folders, no leading dot."""
    if not name or name.startswith(".") or Path(name).name != name or "\x00" in name:
        raise PatchscopeError(
            f"name {name!r}: give a plain file name, without folders or a leading dot", params=("name",)
        )
    return name


def _check_spec(spec: TrainSpec) -> None:
    """Refuse option combinations no recipe has."""
    if spec.ssl not in (None, "mae"):
        raise PatchscopeError(f"unknown ssl {spec.ssl!r}: the one pretraining recipe is mae", params=("ssl",))
    if spec.ssl and (spec.init or (spec.arch or "vit") != "vit"):
        raise PatchscopeError(
            "ssl mae pretrains a fresh ViT: use it with arch vit and without init", params=("ssl", "arch", "init")
        )
    if not 0.0 <= spec.distill_weight <= 1.0:
        raise PatchscopeError(
            f"distill_weight {spec.distill_weight}: give a share between 0 and 1", params=("distill_weight",)
        )
    check_positive("epochs", spec.epochs, 100_000)
    check_batch("batch_size", spec.batch_size)


def _architecture(spec: TrainSpec, initial: Classifier | None) -> tuple[str, dict[str, Any]]:
    """The architecture and its options: the fine-tuned model's, else ``arch`` with ``arch_kwargs``."""
    arch = spec.arch
    if initial is not None:
        arch = arch or initial.card.get("arch")
        if arch != initial.card.get("arch"):
            found = initial.card.get("arch")
            raise PatchscopeError(
                f"arch {arch} differs from init {spec.init}'s architecture {found}", params=("arch", "init")
            )
    if arch is None:
        raise PatchscopeError(
            f"arch is required ({', '.join(ARCHS)}) unless init names a model to fine-tune", params=("arch", "init")
        )
    ARCHS.spec(arch)  # an unknown one: "unknown --arch 'x': choose from ..."
    try:
        kwargs = json.loads(spec.arch_kwargs)
    except json.JSONDecodeError as e:
        raise PatchscopeError(f"arch_kwargs is not JSON ({e})", params=("arch_kwargs",)) from None
    if not isinstance(kwargs, dict):
        raise PatchscopeError(
            f"arch_kwargs must be a JSON object such as '{{\"width\": 24}}', got {spec.arch_kwargs!r}",
            params=("arch_kwargs",),
        )
    return arch, dict(initial.card.get("arch_kwargs") or {}) if initial is not None else kwargs


def _recipe(spec: TrainSpec, arch: str, kwargs: dict[str, Any], perturb: Any) -> Recipe:
    """The training recipe: the arch's defaults, the spec's settings, the augmentation overrides."""
    options: dict[str, Any] = {"epochs": spec.epochs, "batch_size": spec.batch_size, "lr": spec.lr}
    options["ema_decay"] = spec.ema_decay
    options |= {"seed": spec.seed, "init": spec.init, "teacher": spec.teacher, "precision": spec.precision}
    return Recipe.for_arch(
        arch,
        **options,
        arch_kwargs=kwargs,
        patch_training=perturb.describe() if perturb else None,
        distill_weight=spec.distill_weight if spec.teacher else None,
        **parse_augment(spec.augment or ""),
    )


def _held_out(place: TrainPlace, data: ImageSet) -> ImageSet | None:
    """The ``eval_data`` set (None without it); refused, before training, where its classes are not the training
    data's."""
    if not place.eval_data:
        return None
    with errors_about("eval_data"):
        held_out = load_data(place.eval_data, place.root, skip_bad=place.skip_bad)
    if tuple(held_out.classes) != tuple(data.classes):
        other = [c for c in held_out.classes if c not in data.classes] or list(held_out.classes)
        raise PatchscopeError(
            f"eval_data {place.eval_data}: its classes differ from those of data (such as {other[0]!r}); the "
            "held-out accuracy would not mean the model's classes",
            params=("eval_data", "data"),
        )
    return held_out


def _pretraining_data(spec: TrainSpec, place: TrainPlace, data: ImageSet) -> ImageSet | None:
    """With ``ssl``: the unlabelled pretraining images (``ssl_data``, else the training data), checked."""
    if not spec.ssl:
        return None
    if not spec.ssl_data:
        return data
    with errors_about("ssl_data"):
        images = load_data(spec.ssl_data, place.root)
    if list(images.classes) != list(data.classes) or images.image_size != data.image_size:
        raise PatchscopeError("ssl_data must have the same classes and image size as data", params=("ssl_data", "data"))
    return images


def _pretrain_mae(plan: TrainPlan, device: str) -> tuple[Classifier, dict[str, Any]]:
    """A fresh ViT pretrained with MAE, wrapped with the training data's classes and normalisation; its record."""
    from patchscope.models import build_net
    from patchscope.models.archs import ViT
    from patchscope.models.ssl import MaeRecipe, pretrain_mae
    from patchscope.models.train import channel_stats

    labelled, images = plan.data, cast(ImageSet, plan.pretraining_data)
    mean, std = channel_stats(labelled)
    net = cast(ViT, build_net("vit", len(labelled.classes), plan.recipe.arch_kwargs))  # the "vit" arch is a ViT
    recipe = MaeRecipe(epochs=plan.spec.ssl_epochs, seed=plan.spec.seed)
    card = pretrain_mae(images, net, mean, std, recipe, device)
    return Classifier(net, labelled.classes, labelled.image_size, mean, std, plan.name), card


@contextlib.contextmanager
def _kept_on_failure(ckpt: TrainCheckpoint) -> Iterator[None]:
    """A checkpoint this run started is removed if the run fails (nothing half-written), kept on an interrupt."""
    existed = ckpt.path.exists()
    try:
        yield
    except Exception:
        if not existed:
            ckpt.path.unlink(missing_ok=True)
        raise


def _finish_card(
    card: dict[str, Any], model: Classifier, held_out: ImageSet | None, device: str, pretraining: dict[str, Any] | None
) -> None:
    """Add the pretraining record and the held-out accuracy to a new model's card."""
    from patchscope.models.train import accuracy

    if pretraining:
        card["pretraining"] = pretraining
    if held_out is not None:
        card["accuracy"][held_out.name] = accuracy(model, held_out, device)
        card["accuracy_data_hash"] = {held_out.name: held_out.data_hash()}
