"""`patchscope train`: a model with the zoo's recipe (optionally patch, mask or ablation training, MAE, distilling)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from patchscope.cli.common import (
    DataOptions,
    DeviceOpt,
    JsonOpt,
    RegistryHelp,
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
from patchscope.validate import check_positive

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


#: what to train and how: these options, by name, are the library's TrainSpec (built once the command runs, so that
#: the command line starts without importing the library)
spec_group = options_group(
    "spec",
    dict,
    [
        option_param(
            "arch", Annotated[str | None, typer.Option(help="{archs} (taken from --init when fine-tuning)")], None
        ),
        option_param("epochs", int, 20),
        option_param("batch_size", int, 128),
        option_param("lr", Annotated[float | None, typer.Option(help="peak learning rate (default: per arch)")], None),
        option_param("seed", int, 0),
        option_param(
            "arch_kwargs",
            Annotated[
                str,
                typer.Option(
                    help="JSON of architecture options, e.g. '{\"width\": 24}'; `patchscope list archs` shows them"
                ),
            ],
            "{}",
        ),
        option_param(
            "ema_decay",
            Annotated[float | None, typer.Option(help="weight EMA decay (default 0.999; lower for short runs)")],
            None,
        ),
        option_param(
            "init",
            Annotated[
                str | None,
                typer.Option(help="fine-tune this model (zoo name or checkpoint) instead of a fresh network"),
            ],
            None,
        ),
        option_param(
            "ssl",
            Annotated[str | None, typer.Option(help="self-supervised pretraining before fine-tuning: mae (ViT only)")],
            None,
        ),
        option_param("ssl_epochs", Annotated[int, typer.Option(help="pretraining epochs")], 8),
        option_param(
            "ssl_data",
            Annotated[str | None, typer.Option(help="unlabelled pretraining images (default: --data)")],
            None,
        ),
        option_param(
            "teacher",
            Annotated[
                str | None, typer.Option(help="distil from this model's soft predictions (zoo name or checkpoint)")
            ],
            None,
        ),
        option_param(
            "distill_weight",
            Annotated[float, typer.Option(help="with --teacher: share of the distillation loss")],
            0.5,
        ),
        option_param(
            "precision",
            Annotated[
                str,
                typer.Option(
                    help="fp32 | bf16 (forward passes under bf16 autocast: a ViT trains faster on a CPU with "
                    "AVX512-BF16; slower where bf16 is emulated)"
                ),
            ],
            "fp32",
        ),
        option_param(
            "augment",
            Annotated[
                str | None,
                typer.Option(
                    help="override the recipe's augmentation, e.g. rotate=5,translate=0.05,jitter=0.1,"
                    "occlude_p=0.25,scale=0.95:1.05 (defaults 15, 0.1, 0.3, 0.5, 0.9:1.1)"
                ),
            ],
            None,
        ),
    ],
)


@app.command(cls=RegistryHelp)
@data_group("gtsrb:train", limit=None, class_map=False)
@spec_group
@hardening_group
def train(
    *,
    data_opts: DataOptions,
    spec: dict[str, Any],
    out: Annotated[Path, typer.Option(help="folder for NAME.safetensors and NAME.json")] = Path("models"),
    name: Annotated[str | None, typer.Option(help="model name (default gtsrb-ARCH)")] = None,
    eval_data: Annotated[str | None, typer.Option(help="measure final accuracy on this data, e.g. gtsrb:test")] = None,
    device: DeviceOpt = "auto",
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch")] = None,
    hardening: Hardening,
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
    from patchscope.workflows.train import TrainPlace, TrainSpec, plan_training, run_training

    dev = _device(device, threads)
    place = TrainPlace(data_opts.data, out, name, eval_data, data_opts.data_root, data_opts.skip_bad, resume)
    plan = plan_training(TrainSpec(**spec), place, hardening.perturbation)
    if spec["precision"] == "bf16":
        warn_bf16(dev)
    with recorded("train", plan.config(dev)) as run, resume_hint():
        summary = run_training(plan, dev).as_dict()
        run.log(summary)
        run.artifact("weights", summary["weights"])
    print_json(summary, indent=None) if as_json else key_value_table(summary)


def _device(device: str, threads: int | None) -> str:
    """The device to train on; ``threads`` CPU threads for torch, where given."""
    import torch

    if threads is not None:
        torch.set_num_threads(check_positive("threads", threads, 1024))
    return resolve_device(device)
