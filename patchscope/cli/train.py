"""`patchscope train`: a model with the zoo's recipe (optionally patch, mask or ablation training, MAE, distilling)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from patchscope.cli.common import (
    DataOptions,
    DeviceOpt,
    JsonOpt,
    RegistryHelp,
    check_name,
    check_out,
    data_group,
    option_param,
    options_group,
    parse_floats,
    recorded,
    resolve_device,
    resume_hint,
    warn_bf16,
)
from patchscope.cli.output import key_value_table, print_json
from patchscope.errors import PatchscopeError
from patchscope.validate import check_batch, check_positive

app = typer.Typer()


@dataclass(frozen=True)
class Hardening:
    """The training perturbation's options (patches, masks or ablations), as :data:`hardening_group` passes them."""

    patch_training: float = 0.0
    patch_steps: int = 5
    mask_training: str | None = None
    mask_tries: int = 1
    ablation_training: str | None = None

    def perturbation(self, image_size: int) -> Any:
        """The batch perturbation these options ask for, or None."""
        from patchscope.defenses.patch_training import training_perturbation

        masks = self.mask_training
        areas = tuple(parse_floats(masks, "--mask-training", "0.024,0.048")) if masks else ()
        return training_perturbation(
            image_size,
            patch_training=self.patch_training,
            patch_steps=self.patch_steps,
            mask_training=areas,
            mask_tries=self.mask_tries,
            ablation_training=self.ablation_training,
        )


hardening_group = options_group(
    "hardening",
    Hardening,
    [
        option_param(
            "patch_training",
            Annotated[float, typer.Option(help="adversarial patch training: patch area (0 = off), Rao et al. 2020")],
            0.0,
        ),
        option_param("patch_steps", Annotated[int, typer.Option(help="signed-gradient steps per training patch")], 5),
        option_param(
            "mask_training",
            Annotated[
                str | None,
                typer.Option(help="grey out two PatchCleanser masks (p=0.75) for these patch areas, e.g. 0.024,0.048"),
            ],
            None,
        ),
        option_param(
            "mask_tries",
            Annotated[
                int, typer.Option(help="with --mask-training: train on the worst of N random mask pairs per image")
            ],
            1,
        ),
        option_param(
            "ablation_training",
            Annotated[
                str | None,
                typer.Option(
                    help="derandomized smoothing's ablations: keep one random column band "
                    "(column:B) or block (block:B) of each image, e.g. column:4"
                ),
            ],
            None,
        ),
    ],
)


@app.command(cls=RegistryHelp)
@data_group("gtsrb:train", limit=None, class_map=False)
@hardening_group
def train(
    *,
    arch: Annotated[str | None, typer.Option(help="{archs} (taken from --init when fine-tuning)")] = None,
    data_opts: DataOptions,
    out: Annotated[Path, typer.Option(help="folder for NAME.safetensors and NAME.json")] = Path("models"),
    epochs: int = 20,
    batch_size: int = 128,
    lr: Annotated[float | None, typer.Option(help="peak learning rate (default: per arch)")] = None,
    seed: int = 0,
    name: Annotated[str | None, typer.Option(help="model name (default gtsrb-ARCH)")] = None,
    eval_data: Annotated[str | None, typer.Option(help="measure final accuracy on this data, e.g. gtsrb:test")] = None,
    arch_kwargs: Annotated[
        str,
        typer.Option(help="JSON of architecture options, e.g. '{\"width\": 24}'; `patchscope list archs` shows them"),
    ] = "{}",
    device: DeviceOpt = "auto",
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch")] = None,
    ema_decay: Annotated[
        float | None, typer.Option(help="weight EMA decay (default 0.999; lower for short runs)")
    ] = None,
    init: Annotated[
        str | None, typer.Option(help="fine-tune this model (zoo name or checkpoint) instead of a fresh network")
    ] = None,
    hardening: Hardening,
    ssl: Annotated[
        str | None, typer.Option(help="self-supervised pretraining before fine-tuning: mae (ViT only)")
    ] = None,
    ssl_epochs: Annotated[int, typer.Option(help="pretraining epochs")] = 8,
    ssl_data: Annotated[str | None, typer.Option(help="unlabelled pretraining images (default: --data)")] = None,
    teacher: Annotated[
        str | None, typer.Option(help="distil from this model's soft predictions (zoo name or checkpoint)")
    ] = None,
    distill_weight: Annotated[float, typer.Option(help="with --teacher: share of the distillation loss")] = 0.5,
    precision: Annotated[
        str,
        typer.Option(
            help="fp32 | bf16 (forward passes under bf16 autocast: a ViT trains faster on a CPU with "
            "AVX512-BF16; slower where bf16 is emulated)"
        ),
    ] = "fp32",
    augment: Annotated[
        str | None,
        typer.Option(
            help="override the recipe's augmentation, e.g. "
            "rotate=5,translate=0.05,jitter=0.1,occlude_p=0.25,scale=0.95:1.05 (defaults 15, 0.1, 0.3, 0.5, 0.9:1.1)"
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="continue from OUT/NAME.ckpt (kept after every epoch and on Ctrl-C)")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a model with the zoo's recipe; write weights and a card.

    Adversarial patch training of a zoo model:
    ``patchscope train --init gtsrb-cnn --patch-training 0.05 --epochs 3 --name gtsrb-cnn-at``.
    A ViT distilled from the zoo ResNet: ``patchscope train --arch vit --teacher gtsrb-resnet --device cuda``.
    Last epochs on lighter augmentation:
    ``patchscope train --init gtsrb-vit --epochs 3 --lr 1e-4 --augment rotate=5,jitter=0.1,occlude_p=0.25``.
    """
    import torch

    from patchscope.data import load_data
    from patchscope.models import create_model
    from patchscope.models.train import train_model

    if name is not None:
        check_out(out, f"{check_name(name)}.safetensors", f"{name}.json")
    _check_recipe(ssl, init, arch, epochs, batch_size, distill_weight)
    initial, tutor = create_model(init) if init else None, create_model(teacher) if teacher else None
    arch, kwargs = _architecture(arch, init, initial, arch_kwargs)
    if threads is not None:
        torch.set_num_threads(check_positive("threads", threads, 1024))
    dev = resolve_device(device)
    root, skip_bad = data_opts.data_root, data_opts.skip_bad
    train_data = load_data(data_opts.data, root, skip_bad=skip_bad)  # a new model's classes: the folder names, sorted
    held_out = _held_out(eval_data, root, skip_bad, train_data)
    name = name or f"gtsrb-{arch}"
    check_out(out, f"{name}.safetensors", f"{name}.json")
    perturb = hardening.perturbation(train_data.image_size)
    options: dict[str, Any] = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "ema_decay": ema_decay}
    options |= {"seed": seed, "init": init, "teacher": teacher, "precision": precision}
    recipe = _recipe(options, arch, kwargs, perturb, distill_weight if teacher else None, augment)
    if precision == "bf16":
        warn_bf16(dev)
    config = {"name": name, "data": data_opts.data, "device": dev, "models": [name]}
    config["data_hash"] = train_data.data_hash()
    with recorded("train", config | {"ssl": ssl} | recipe.__dict__) as run:
        if ssl:
            pretraining_data = load_data(ssl_data, root) if ssl_data else train_data
            initial, pretraining = _pretrain_mae(pretraining_data, train_data, kwargs, ssl_epochs, seed, dev, name)
        ckpt = _checkpoint(out / f"{name}.ckpt", resume, {"data_hash": config["data_hash"], "init": init, "ssl": ssl})
        with _kept_on_failure(ckpt):
            model, card = train_model(train_data, recipe, dev, name, **_parts(initial, perturb, tutor, ckpt))
        _finish_card(card, model, held_out, dev, pretraining if ssl else None)
        summary = _save(model, card, out / f"{name}.safetensors") | _skipped(skip_bad, train_data, held_out)
        ckpt.path.unlink(missing_ok=True)  # the model is written: the state that led to it is no longer needed
        run.log(summary)
        run.artifact("weights", summary["weights"])
    print_json(summary, indent=None) if as_json else key_value_table(summary)


def _parts(initial: Any, perturb: Any, teacher: Any, checkpoint: Any) -> dict[str, Any]:
    """``train_model``'s optional parts, by name."""
    return {"initial": initial, "perturb": perturb, "teacher": teacher, "checkpoint": checkpoint}


def _checkpoint(path: Path, resume: bool, identity: dict[str, Any]) -> Any:
    """The training checkpoint; ``identity`` (data, initial model, pretraining) must match to resume."""
    from patchscope.models.resume import TrainCheckpoint

    return TrainCheckpoint(path, resume, identity)


@contextmanager
def _kept_on_failure(ckpt: Any) -> Iterator[None]:
    """A checkpoint this run started is removed if the run fails (nothing half-written), kept on an interrupt (which
    then says how to resume)."""
    existed = ckpt.path.exists()
    try:
        with resume_hint():
            yield
    except Exception:
        if not existed:
            ckpt.path.unlink(missing_ok=True)
        raise


def _recipe(
    options: dict[str, Any], arch: str, kwargs: dict[str, Any], perturb: Any, distill: float | None, augment: str | None
) -> Any:
    """The training recipe: the arch's defaults, the command's ``options``, the augmentation overrides."""
    from patchscope.models.train import Recipe, parse_augment

    described = perturb.describe() if perturb else None
    return Recipe.for_arch(
        arch,
        **options,
        arch_kwargs=kwargs,
        patch_training=described,
        distill_weight=distill,
        **parse_augment(augment or ""),
    )


def _save(model: Any, card: dict[str, Any], weights: Path) -> dict[str, Any]:
    """Write the weights and card; the run's summary."""
    from patchscope.models import save_checkpoint

    save_checkpoint(model.net, card, weights)
    return {"weights": str(weights)} | {k: card[k] for k in ("val_accuracy", "accuracy", "train_seconds")}


def _check_recipe(
    ssl: str | None, init: str | None, arch: str | None, epochs: int, batch_size: int, distill_weight: float
) -> None:
    """Refuse option combinations no recipe has."""
    if ssl not in (None, "mae"):
        raise PatchscopeError(f"unknown --ssl {ssl!r}: the one pretraining recipe is mae")
    if ssl and (init or (arch or "vit") != "vit"):
        raise PatchscopeError("--ssl mae pretrains a fresh ViT: use it with --arch vit and without --init")
    if not 0.0 <= distill_weight <= 1.0:
        raise PatchscopeError(f"--distill-weight {distill_weight}: give a share between 0 and 1")
    check_positive("epochs", epochs, 100_000)
    check_batch("batch_size", batch_size)


def _architecture(arch: str | None, init: str | None, initial: Any, arch_kwargs: str) -> tuple[str, dict[str, Any]]:
    """The architecture and its options: the fine-tuned model's, else ``--arch`` with ``--arch-kwargs``."""
    from patchscope.models import ARCHS

    if initial is not None:
        arch = arch or initial.card.get("arch")
        if arch != initial.card.get("arch"):
            raise PatchscopeError(f"--arch {arch} differs from --init {init}'s architecture {initial.card.get('arch')}")
    if arch is None:
        raise PatchscopeError(f"--arch is required ({', '.join(ARCHS)}) unless --init names a model to fine-tune")
    ARCHS.spec(arch)  # an unknown one: "unknown --arch 'x': choose from ..."
    try:
        kwargs = json.loads(arch_kwargs)
    except json.JSONDecodeError as e:
        raise PatchscopeError(f"--arch-kwargs is not JSON ({e})") from None
    if not isinstance(kwargs, dict):
        raise PatchscopeError(f"--arch-kwargs must be a JSON object such as '{{\"width\": 24}}', got {arch_kwargs!r}")
    return arch, dict(initial.card.get("arch_kwargs") or {}) if initial is not None else kwargs


def _held_out(eval_data: str | None, root: Path | None, skip_bad: bool, train_data: Any) -> Any:
    """The ``--eval-data`` set (None without it); refused, before training, where its classes are not the training
    data's."""
    from patchscope.data import load_data

    held_out = load_data(eval_data, root, skip_bad=skip_bad) if eval_data else None
    if held_out is not None and tuple(held_out.classes) != tuple(train_data.classes):
        other = [c for c in held_out.classes if c not in train_data.classes] or list(held_out.classes)
        raise PatchscopeError(
            f"--eval-data {eval_data}: its classes differ from --data's (such as {other[0]!r}); the held-out "
            "accuracy would not mean the model's classes"
        )
    return held_out


def _finish_card(
    card: dict[str, Any], model: Any, held_out: Any, device: str, pretraining: dict[str, Any] | None
) -> None:
    """Add the pretraining record and the held-out accuracy to a new model's card."""
    from patchscope.models.train import accuracy

    if pretraining:
        card["pretraining"] = pretraining
    if held_out is not None:
        card["accuracy"][held_out.name] = accuracy(model, held_out, device)
        card["accuracy_data_hash"] = {held_out.name: held_out.data_hash()}


def _pretrain_mae(
    images: Any, labelled: Any, kwargs: dict[str, Any], epochs: int, seed: int, device: str, name: str
) -> tuple[Any, dict[str, Any]]:
    """A fresh ViT pretrained with MAE on ``images``, wrapped with ``labelled``'s classes and normalisation."""
    from patchscope.models import Classifier, build_net
    from patchscope.models.archs import ViT
    from patchscope.models.ssl import MaeRecipe, pretrain_mae
    from patchscope.models.train import channel_stats

    if list(images.classes) != list(labelled.classes) or images.image_size != labelled.image_size:
        raise PatchscopeError("--ssl-data must have the same classes and image size as --data")
    mean, std = channel_stats(labelled)
    net = cast(ViT, build_net("vit", len(labelled.classes), kwargs))  # the "vit" arch is a ViT
    card = pretrain_mae(images, net, mean, std, MaeRecipe(epochs=epochs, seed=seed), device)
    return Classifier(net, labelled.classes, labelled.image_size, mean, std, name), card


def _skipped(skip_bad: bool, *sets: Any) -> dict[str, int]:
    """``skipped_images`` (unreadable files left out of the training and held-out data), with ``--skip-bad``."""
    return {"skipped_images": sum(len(d.skipped) for d in sets if d is not None)} if skip_bad else {}
