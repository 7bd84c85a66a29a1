"""The `patchscope` command: a thin layer that parses options, calls the package and prints results.

Every user error becomes one line on stderr and exit status 2 (see :func:`main`).
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Optional

import typer

from patchscope.errors import PatchscopeError
from patchscope.memory import keep_freed_memory
from patchscope.validate import check_batch, check_fraction, check_positive

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Attack, explain, defend and certify image classifiers against adversarial patches.")

DataOpt = Annotated[str, typer.Option("--data", help="gtsrb:train | gtsrb:test | demo | npz:PATH[:SPLIT] | folder:PATH")]
RootOpt = Annotated[Optional[Path], typer.Option("--data-root", help="folder holding gtsrb32.npz (default $PATCHSCOPE_DATA)")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu or cuda")]
ShapeOpt = Annotated[str, typer.Option("--shape", help="square | circle | rect:W:H (e.g. rect:1:2, a bar twice as tall as wide) | PATH to a mask image")]
LossOpt = Annotated[str, typer.Option("--loss", help="ce (cross-entropy), margin (the logit gap, capped at --kappa) or sigmoid (a smooth count of the views not yet won)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


_STATE: dict[str, Any] = {"store": None, "recording": False}


@app.callback()
def _root(store: Annotated[Optional[Path], typer.Option("--store", help="run database (default $PATCHSCOPE_STORE, else ~/.patchscope/runs.db)")] = None) -> None:
    """Attack, explain, defend and certify image classifiers against adversarial patches."""
    _STATE["store"] = store


class _NoRun:
    """The run handle of a torchrun rank other than 0: records nothing (rank 0 records the run)."""

    def log(self, *args: Any, **kwargs: Any) -> None:
        pass

    def artifact(self, *args: Any, **kwargs: Any) -> None:
        pass


@contextlib.contextmanager
def recorded(kind: str, config: dict[str, object]) -> Iterator[Any]:
    """Record the enclosed command as a run in the store (rank 0 only under torchrun); yields its handle."""
    import os

    from patchscope.eval.store import record

    if int(os.environ.get("RANK", "0")) != 0:
        yield _NoRun()
        return
    with record(_STATE["store"], kind, config) as run:
        _STATE["recording"] = True
        yield run


def _device(name: str) -> str:
    import torch

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PatchscopeError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise PatchscopeError(f"--device {name!r}: use cpu or cuda")
    return name


def _warn_bf16(device: str) -> None:
    """One stderr line where bf16 was asked for on a device that only emulates it (it still runs)."""
    from patchscope.models.precision import bf16_native

    if not bf16_native(device):
        typer.echo(f"patchscope: warning: {device} has no bf16 units (AVX512-BF16 or AMX); bf16 is emulated there and slower than fp32", err=True)


@app.command()
def train(
    arch: Annotated[Optional[str], typer.Option(help="cnn | resnet | vit (taken from --init when fine-tuning)")] = None,
    data: DataOpt = "gtsrb:train",
    out: Annotated[Path, typer.Option(help="folder for NAME.safetensors and NAME.json")] = Path("models"),
    epochs: int = 20,
    batch_size: int = 128,
    lr: Annotated[Optional[float], typer.Option(help="peak learning rate (default: per arch)")] = None,
    seed: int = 0,
    name: Annotated[Optional[str], typer.Option(help="model name (default gtsrb-ARCH)")] = None,
    eval_data: Annotated[Optional[str], typer.Option(help="measure final accuracy on this data, e.g. gtsrb:test")] = None,
    arch_kwargs: Annotated[str, typer.Option(help='JSON of architecture options, e.g. \'{"width": 24}\'')] = "{}",
    data_root: RootOpt = None,
    device: DeviceOpt = "cpu",
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch")] = None,
    ema_decay: Annotated[Optional[float], typer.Option(help="weight EMA decay (default 0.999; lower for short runs)")] = None,
    init: Annotated[Optional[str], typer.Option(help="fine-tune this model (zoo name or checkpoint) instead of a fresh network")] = None,
    patch_training: Annotated[float, typer.Option(help="adversarial patch training: patch area (0 = off), Rao et al. 2020")] = 0.0,
    patch_steps: Annotated[int, typer.Option(help="signed-gradient steps per training patch")] = 5,
    mask_training: Annotated[Optional[str], typer.Option(help="grey out two PatchCleanser masks (p=0.75) for these patch areas, e.g. 0.024,0.048")] = None,
    mask_tries: Annotated[int, typer.Option(help="with --mask-training: train on the worst of N random mask pairs per image")] = 1,
    ablation_training: Annotated[Optional[str], typer.Option(help="derandomized smoothing's ablations: keep one random column band (column:B) or block (block:B) of each image, e.g. column:4")] = None,
    ssl: Annotated[Optional[str], typer.Option(help="self-supervised pretraining before fine-tuning: mae (ViT only)")] = None,
    ssl_epochs: Annotated[int, typer.Option(help="pretraining epochs")] = 8,
    ssl_data: Annotated[Optional[str], typer.Option(help="unlabelled pretraining images (default: --data)")] = None,
    teacher: Annotated[Optional[str], typer.Option(help="distil from this model's soft predictions (zoo name or checkpoint)")] = None,
    distill_weight: Annotated[float, typer.Option(help="with --teacher: share of the distillation loss")] = 0.5,
    precision: Annotated[str, typer.Option(help="fp32 | bf16 (forward passes under bf16 autocast: a ViT trains ~1.7x faster on a CPU with AVX512-BF16; slower where bf16 is emulated)")] = "fp32",
    augment: Annotated[Optional[str], typer.Option(help="override the recipe's augmentation, e.g. rotate=5,translate=0.05,jitter=0.1,occlude_p=0.25,scale=0.95:1.05 (defaults 15, 0.1, 0.3, 0.5, 0.9:1.1)")] = None,
) -> None:
    """Train a model with the zoo's recipe and write safetensors plus a model card.

    Adversarial patch training of a zoo model: ``patchscope train --init gtsrb-cnn --patch-training 0.05 --epochs 3 --name gtsrb-cnn-at``.
    A ViT distilled from the zoo ResNet: ``patchscope train --arch vit --teacher gtsrb-resnet --device cuda``.
    Last epochs on lighter augmentation: ``patchscope train --init gtsrb-vit --epochs 3 --lr 1e-4 --augment rotate=5,jitter=0.1,occlude_p=0.25``.
    """
    import torch

    from patchscope.data import load_data
    from patchscope.models import ARCHS, create_model, save_checkpoint
    from patchscope.models.train import Recipe, accuracy, parse_augment, train_model

    if name is not None and (not name or name.startswith(".") or Path(name).name != name or "\x00" in name):
        raise PatchscopeError(f"--name {name!r}: give a plain file name, without folders or a leading dot")
    name = name or (f"gtsrb-{arch}" if arch else None)
    check_out(out, *((f"{name}.safetensors", f"{name}.json") if name else ()))
    overrides = parse_augment(augment or "")

    if ssl not in (None, "mae"):
        raise PatchscopeError(f"unknown --ssl {ssl!r}: the one pretraining recipe is mae")
    if ssl and (init or (arch or "vit") != "vit"):
        raise PatchscopeError("--ssl mae pretrains a fresh ViT: use it with --arch vit and without --init")
    if not 0.0 <= distill_weight <= 1.0:
        raise PatchscopeError(f"--distill-weight {distill_weight}: give a share between 0 and 1")
    initial = create_model(init) if init else None
    teacher_model = create_model(teacher) if teacher else None
    if initial is not None:
        arch = arch or initial.card.get("arch")
        if arch != initial.card.get("arch"):
            raise PatchscopeError(f"--arch {arch} differs from --init {init}'s architecture {initial.card.get('arch')}")
    if arch is None:
        raise PatchscopeError("--arch is required (cnn, resnet or vit) unless --init names a model to fine-tune")
    if arch not in ARCHS:
        raise PatchscopeError(f"unknown --arch {arch!r}: choose from {', '.join(sorted(ARCHS))}")
    check_positive("epochs", epochs, 100_000)
    check_batch("batch_size", batch_size)
    try:
        kwargs = json.loads(arch_kwargs)
    except json.JSONDecodeError as e:
        raise PatchscopeError(f"--arch-kwargs is not JSON ({e})") from None
    if not isinstance(kwargs, dict):
        raise PatchscopeError(f"--arch-kwargs must be a JSON object such as '{{\"width\": 24}}', got {arch_kwargs!r}")
    if threads is not None:
        torch.set_num_threads(check_positive("threads", threads, 1024))
    dev = _device(device)
    train_data = load_data(data, data_root)
    held_out = load_data(eval_data, data_root) if eval_data else None
    name = name or f"gtsrb-{arch}"
    check_out(out, f"{name}.safetensors", f"{name}.json")
    if initial is not None:
        kwargs = dict(initial.card.get("arch_kwargs") or {})
    perturb = _training_perturbation(patch_training, patch_steps, mask_training, train_data.image_size, mask_tries, ablation_training)
    recipe = Recipe.for_arch(
        arch, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, arch_kwargs=kwargs, ema_decay=ema_decay, init=init,
        patch_training=perturb.describe() if perturb else None, teacher=teacher, distill_weight=distill_weight if teacher else None,
        precision=precision, **overrides,
    )
    if precision == "bf16":
        _warn_bf16(dev)
    weights = out / f"{name}.safetensors"
    with recorded("train", {"name": name, "data": data, "device": dev, "data_hash": train_data.data_hash(), "models": [name], "ssl": ssl, **recipe.__dict__}) as run:
        pretraining = None
        if ssl:
            initial, pretraining = _pretrain_mae(load_data(ssl_data, data_root) if ssl_data else train_data, train_data, kwargs, ssl_epochs, seed, dev, name)
        model, card = train_model(train_data, recipe, dev, name, initial=initial, perturb=perturb, teacher=teacher_model)
        if pretraining:
            card["pretraining"] = pretraining
        if held_out is not None:
            card["accuracy"][held_out.name] = accuracy(model, held_out, dev)
            card["accuracy_data_hash"] = {held_out.name: held_out.data_hash()}
        save_checkpoint(model.net, card, weights)
        summary = {"weights": str(weights), "val_accuracy": card["val_accuracy"], "accuracy": card["accuracy"], "train_seconds": card["train_seconds"]}
        run.log(summary)
        run.artifact("weights", weights)
    typer.echo(json.dumps(summary))


def _training_perturbation(patch_training: float, patch_steps: int, mask_training: str | None, image_size: int, mask_tries: int = 1, ablation_training: str | None = None) -> Any:
    """The batch perturbation of ``train``: adversarial patches, PatchCleanser masks, smoothing's ablations, or None."""
    from patchscope.attacks.patch import patch_side
    from patchscope.defenses.patch_training import AblationAugment, MaskAugment, PatchAdversary

    if sum(bool(v) for v in (patch_training, mask_training, ablation_training)) > 1:
        raise PatchscopeError("--patch-training, --mask-training and --ablation-training are separate recipes: pick one")
    if ablation_training:
        mode, _, band = ablation_training.partition(":")
        if mode not in ("column", "block") or not band.isdigit() or not 1 <= int(band) <= image_size:
            raise PatchscopeError(f"--ablation-training {ablation_training!r}: give column:B or block:B with 1 <= B <= {image_size}, e.g. column:4")
        return AblationAugment(int(band), mode, image_size)
    if patch_training:
        patch_side(patch_training, image_size)
        return PatchAdversary(area=patch_training, steps=patch_steps)
    if mask_training:
        try:
            areas = tuple(float(a) for a in mask_training.split(","))
        except ValueError:
            raise PatchscopeError(f"--mask-training {mask_training!r}: give patch areas such as 0.024,0.048") from None
        for a in areas:
            patch_side(a, image_size)
        if mask_tries < 1:
            raise PatchscopeError(f"--mask-tries {mask_tries}: need at least 1")
        return MaskAugment(areas, image_size, tries=mask_tries)
    return None


def _pretrain_mae(images: Any, labelled: Any, kwargs: dict[str, Any], epochs: int, seed: int, device: str, name: str) -> tuple[Any, dict[str, Any]]:
    from patchscope.models import Classifier, build_net
    from patchscope.models.ssl import MaeRecipe, pretrain_mae
    from patchscope.models.train import channel_stats

    if list(images.classes) != list(labelled.classes) or images.image_size != labelled.image_size:
        raise PatchscopeError("--ssl-data must have the same classes and image size as --data")
    mean, std = channel_stats(labelled)
    net = build_net("vit", len(labelled.classes), kwargs)
    card = pretrain_mae(images, net, mean, std, MaeRecipe(epochs=epochs, seed=seed), device)
    return Classifier(net, labelled.classes, labelled.image_size, mean, std, name), card


def _print(obj: object, as_json: bool, table: Callable[[], None] | None = None) -> None:
    if as_json or table is None:
        typer.echo(json.dumps(obj, indent=2))
    else:
        table()


def _model_names(models: str) -> list[str]:
    names = [m.strip() for m in models.split(",") if m.strip()]
    if not names:
        raise PatchscopeError("--models: give at least one model name")
    return names


class _DataCache:
    """Load each data spec once per input size."""

    def __init__(self, spec: str, root: Path | None, limit: int | None = None) -> None:
        self.spec, self.root, self.limit, self.cache = spec, root, limit, {}

    def get(self, size: int):  # type: ignore[no-untyped-def]
        from patchscope.data import load_data

        if size not in self.cache:
            self.cache[size] = load_data(self.spec, self.root, size).head(self.limit)
        return self.cache[size]


@app.command()
def zoo(as_json: JsonOpt = False) -> None:
    """List the bundled models: parameters, input size, measured accuracy."""
    from rich.console import Console
    from rich.table import Table

    from patchscope.models import list_models, read_card, zoo_dir

    rows = []
    for name in list_models():
        card = read_card(zoo_dir() / f"{name}.safetensors")
        rows.append({"name": name, "arch": card["arch"], "params": card.get("params"), "input_size": card["input_size"], "accuracy": card.get("accuracy", {}), "val_accuracy": card.get("val_accuracy"), "data_hash": card.get("data_hash")})

    patches = _zoo_patches()

    def table() -> None:
        t = Table("model", "arch", "params", "input", "accuracy", "val accuracy")
        for r in rows:
            acc = ", ".join(f"{v:.2%} ({k})" for k, v in r["accuracy"].items()) or "-"
            t.add_row(r["name"], r["arch"], f"{r['params']:,}", f"{r['input_size']}px", acc, f"{r['val_accuracy']:.2%}" if r["val_accuracy"] is not None else "-")
        Console().print(t)
        if patches:
            pt = Table("patch (--patch zoo:NAME)", "area", "targeted", "untargeted", title="measured on the model's own gtsrb:test Stop images, 33 viewing conditions")
            for r in patches:
                pct = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
                pt.add_row(r["name"], pct(r["area"]), pct(r["targeted_success"]), pct(r["untargeted_success"]))
            Console().print(pt)

    _print({"models": rows, "patches": patches}, as_json, table)


def _zoo_patches() -> list[dict[str, Any]]:
    """The bundled patches with the success measured when they were made (``evaluate.json`` beside each)."""
    from patchscope.attacks import list_patches
    from patchscope.attacks.patch import patch_zoo_dir

    rows = []
    for name in list_patches():
        model = name.split("/")[0]
        path = patch_zoo_dir() / name / "evaluate.json"
        measured = json.loads(path.read_text())["models"].get(model, {}) if path.exists() else {}
        rows.append({"name": name, "area": measured.get("patch_area"), "targeted_success": measured.get("targeted_success"),
                     "untargeted_success": measured.get("untargeted_success"), "data": "gtsrb:test" if measured else None})
    return rows


@app.command()
def evaluate(
    models: Annotated[str, typer.Option(help="comma-separated model names")] = "gtsrb-cnn",
    data: DataOpt = "gtsrb:test",
    patch: Annotated[Optional[Path], typer.Option(help="a patch folder (from attack) or zoo:MODEL/NAME")] = None,
    source: Annotated[Optional[str], typer.Option(help="class the patch attacks (name or id)")] = None,
    target: Annotated[Optional[str], typer.Option(help="class the patch aims for; omit for untargeted")] = None,
    conditions: Annotated[str, typer.Option(help="default (the viewing grid) | none | sweep")] = "default",
    limit: Annotated[Optional[int], typer.Option(help="use only the first N images")] = None,
    batch_size: int = 1024,
    data_root: RootOpt = None,
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
) -> None:
    """Clean accuracy of each model; with --patch, its success over viewing conditions too."""
    from rich.console import Console
    from rich.table import Table

    from patchscope.models import create_model
    from patchscope.models.train import accuracy

    dev = _device(device)
    if limit is not None:
        check_positive("limit", limit)
    check_batch("batch_size", batch_size)
    names = _model_names(models)
    loaded = {n: create_model(n, dev) for n in names}
    cache = _DataCache(data, data_root, limit)
    the_patch = _load_patch(patch, per_image=True) if patch is not None else None
    result: dict[str, dict[str, object]] = {}
    config = {"models": names, "data": data, "patch": str(patch) if patch else None, "source": source, "target": target, "conditions": conditions, "limit": limit, "device": dev}
    with recorded("evaluate", config) as run:
        for name, model in loaded.items():
            ds = cache.get(model.input_size)
            entry: dict[str, object] = {"clean_accuracy": accuracy(model, ds, dev, batch_size), "clean_images": len(ds), "data_hash": ds.data_hash()}
            if the_patch is not None:
                entry.update(_patch_metrics(model, ds, the_patch, source, target, conditions, batch_size, dev))
            result[name] = entry
        run.log({"models": result})

    def table() -> None:
        t = Table("model", "images", "clean accuracy", *(("targeted", "untargeted", "target conf.") if the_patch else ()))
        for n, e in result.items():
            extra = (f"{e['targeted_success']:.1%}" if e.get("targeted_success") is not None else "-", f"{e['untargeted_success']:.1%}", f"{e['target_confidence']:.3f}") if the_patch else ()
            t.add_row(n, str(e["clean_images"]), f"{e['clean_accuracy']:.2%}", *extra)
        Console().print(t)

    _print({"data": data, "models": result}, as_json, table)


def _load_patch(path: Path | str, per_image: bool = False):  # type: ignore[no-untyped-def]
    """A universal patch (run folder, file or zoo name); with ``per_image``, a folder of per-image patches too."""
    from patchscope.attacks import load_patch

    if per_image and ((Path(path) / "patches.safetensors").exists() or Path(path).name == "patches.safetensors"):
        from patchscope.attacks.per_image import PerImagePatches

        return PerImagePatches.load(path)
    return load_patch(path)  # refuses per-image patches with one line


def _patch_metrics(model, ds, patch, source, target, conditions, batch_size, dev):  # type: ignore[no-untyped-def]
    from patchscope.data import resolve_class
    from patchscope.eval import DEFAULT_GRID, patch_success, sweep_conditions

    if patch.image_size != model.input_size:
        raise PatchscopeError(f"the patch was made for {patch.image_size}px images but {model.name} takes {model.input_size}px")
    src = source if source is not None else patch.meta.get("source")
    if src is None:
        raise PatchscopeError("--source: which class does the patch attack? (name or id)")
    tgt = target if target is not None else patch.meta.get("target")
    t = resolve_class(tgt, ds.classes) if tgt is not None else None
    victims = ds.of_class(src)
    if len(victims) == 0:
        raise PatchscopeError(f"the data holds no images of class {src!r}")
    from patchscope.attacks.per_image import PerImagePatches

    if isinstance(patch, PerImagePatches):  # the first len(patch) source images, exactly those attacked
        victims = victims.head(len(patch))
        if len(victims) != len(patch) or victims.data_hash() != patch.images_hash:
            raise PatchscopeError(f"these {len(patch)} per-image patches were made for other images ({patch.meta.get('data')}, class {patch.meta.get('source')}): evaluate them on their attack's --data and --source")
    grid = {"default": DEFAULT_GRID, "none": [{}], "sweep": sweep_conditions()}.get(conditions)
    if grid is None:
        raise PatchscopeError(f"--conditions {conditions!r}: use default, none or sweep")
    out = patch_success(model, victims.float_images(), victims.labels, patch, t, grid, batch_size, dev)
    out["source_clean_accuracy"] = out.pop("clean_accuracy")  # the source images over the grid; clean_accuracy stays the whole data's
    if t is None:
        out["targeted_success"] = None
    out["source"], out["target"] = ds.classes[victims.labels[0]], ds.classes[t] if t is not None else None
    return out


@app.command()
def attack(
    model: Annotated[str, typer.Option(help="model name; several joined by commas attack their ensemble")] = "gtsrb-cnn",
    data: DataOpt = "gtsrb:train",
    source: Annotated[str, typer.Option(help="class to attack (name or id)")] = "stop",
    target: Annotated[Optional[str], typer.Option(help="class to turn it into; '' for an untargeted patch")] = "yield",
    size: Annotated[float, typer.Option(help="patch area as a fraction of the image")] = 0.05,
    shape: ShapeOpt = "square",
    placement: Annotated[str, typer.Option(help="on-object | sticker")] = "on-object",
    location: Annotated[Optional[str], typer.Option(help="TOP,LEFT of an on-object patch (default: searched)")] = None,
    steps: int = 300,
    batch_size: Annotated[int, typer.Option(help="global batch (split across torchrun ranks)")] = 64,
    candidates: Annotated[int, typer.Option(help="places (on-object) or starts (sticker) optimised side by side")] = 5,
    restarts: Annotated[int, typer.Option(help="random starts per place, side by side; the best is kept when the search ends (a bad start can cost 50 points)")] = 1,
    lr: float = 0.3,
    loss: LossOpt = "ce",
    kappa: Annotated[float, typer.Option(help="margin loss: the logit gap at which an image counts as won")] = 5.0,
    optimizer: Annotated[str, typer.Option(help="adam | sign")] = "adam",
    tv: Annotated[float, typer.Option(help="total-variation weight")] = 0.0,
    nps: Annotated[float, typer.Option(help="non-printability weight")] = 0.0,
    seed: int = 0,
    out: Annotated[Path, typer.Option(help="run folder")] = Path("runs/attack"),
    resume: Annotated[bool, typer.Option(help="continue from OUT/checkpoint.pt")] = False,
    checkpoint_every: int = 50,
    limit: Annotated[Optional[int], typer.Option(help="use at most N source images")] = None,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile each step (CUDA graphs on a GPU): steps 2-5x faster there after 20-60 s of compiling")] = False,
    precision: Annotated[str, typer.Option(help="fp32 | bf16 (the model under bf16 autocast: CNN steps ~2-3x faster on a GPU or a CPU with AMX; slower than fp32 on a CPU without bf16 units)")] = "fp32",
    per_image: Annotated[bool, typer.Option("--per-image", help="one patch for each source image, made on the images it is measured on (e.g. --data gtsrb:test): the strongest attacker; --batch-size is then rows per forward pass")] = False,
    views: Annotated[int, typer.Option(help="--per-image: EOT views of each image per place and step")] = 8,
    init: Annotated[Optional[str], typer.Option(help="--per-image: start every image's patch from this universal patch (run folder or zoo:NAME), at its place, shape and size")] = None,
    data_root: RootOpt = None,
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
) -> None:
    """Optimise a universal patch with EOT and write patch.png, patch.safetensors, config.json, metrics.json
    (with --per-image: one patch per image, patches.safetensors and patches.png)."""
    import time

    from patchscope.attacks import AttackConfig, AttackInterrupted, PatchAttack
    from patchscope.data import resolve_class

    check_out(out)
    dev = _device(device)
    rank = _maybe_distributed(dev)
    net = _attack_model(model, dev)
    ds = _DataCache(data, data_root).get(net.input_size)
    src = resolve_class(source, ds.classes)
    tgt = resolve_class(target, ds.classes) if target else None
    victims = ds.of_class(src).head(limit)
    if len(victims) == 0:
        raise PatchscopeError(f"--data {data} holds no images of class {ds.classes[src]!r}")
    loc = _location(location)
    cfg = AttackConfig(size=size, shape=shape, placement=placement, location=loc, target=tgt, loss=loss, kappa=kappa, optimizer=optimizer, lr=lr, steps=steps, batch_size=batch_size, candidates=candidates, restarts=restarts, tv_weight=tv, nps_weight=nps, seed=seed, compile=compile, precision=precision)
    if precision == "bf16" and rank == 0:
        _warn_bf16(dev)
    if out.exists() and (out / "patch.safetensors").exists() and not resume and rank == 0:
        typer.echo(f"patchscope: note: overwriting the patch in {out}", err=True)
    config = {"command": "attack", "model": model, "models": _model_names(model), "data": data, "data_hash": ds.data_hash(), "source": ds.classes[src], "target": ds.classes[tgt] if tgt is not None else None, "device": dev, **cfg.as_dict()}
    if per_image:
        import torch.distributed as dist

        if resume or (dist.is_available() and dist.is_initialized()):
            raise PatchscopeError("--per-image runs in one process and has no checkpoints: drop --resume and torchrun")
        start = _load_patch(init) if init is not None else None
        if start is not None:
            start.meta["name"] = init  # its shape, size and place replace the options': record those
            config.update(size=start.area_fraction, shape=f"from --init ({start.side}px box)", location=list(start.location) if start.location else None, candidates=1, restarts=1)
        return _attack_per_image(net, cfg, views, victims, ds, src, tgt, {**config, "per_image": True, "views": views, "limit": limit, "init": init}, out, dev, start)
    if init is not None:
        raise PatchscopeError("--init starts per-image patches: add --per-image")
    with recorded("attack", config) as run:
        started = time.time()
        runner = PatchAttack(net, cfg, dev, checkpoint=out / "checkpoint.pt", checkpoint_every=checkpoint_every, resume=resume,
                             identity={"model": model, "data_hash": ds.data_hash(), "images": len(victims)})
        try:
            patch = runner(victims.float_images(), victims.labels)
        except AttackInterrupted as e:
            raise AttackInterrupted(f"{e}; rerun with --resume" if "checkpoint saved" in str(e) else str(e), e.signum) from None
        if rank != 0:
            return
        summary = _finish_attack(net, patch, victims, ds, src, tgt, model, data, dev, runner.history, time.time() - started, config, out)
        run.log(summary)
        run.artifact("patch", out / "patch.safetensors")
    _print(summary, True)


def _finish_attack(net, patch, victims, ds, src, tgt, model, data, dev, history, seconds, config, out):  # type: ignore[no-untyped-def]
    """Measure the new patch on (up to 256 of) the attack's own images and write the run folder."""
    from patchscope.eval import DEFAULT_GRID, patch_success
    from patchscope.io import write_json

    patch.meta.update({"model": model, "source": ds.classes[src], "target": ds.classes[tgt] if tgt is not None else None, "data": data, "data_hash": ds.data_hash()})
    check = patch_success(net, victims.head(256).float_images(), victims.head(256).labels, patch, tgt, DEFAULT_GRID, device=dev)
    metrics = {"attack_images": len(victims), "seconds": round(seconds, 1), "patch_area": patch.area_fraction, "patch_side": patch.side, "location": patch.location,
               "train_targeted_success": check["targeted_success"] if tgt is not None else None, "train_untargeted_success": check["untargeted_success"],
               "train_clean_accuracy": check["clean_accuracy"], "history": history}
    patch.save(out)
    write_json(out / "config.json", config)
    write_json(out / "metrics.json", metrics)
    (out / "checkpoint.pt").unlink(missing_ok=True)
    return {"out": str(out), **{k: v for k, v in metrics.items() if k != "history"}}


def _attack_per_image(net, cfg, views, victims, ds, src, tgt, config, out, dev, start):  # type: ignore[no-untyped-def]
    """``attack --per-image``: optimise, measure on the same images over the default grid, write the run folder."""
    import time

    from patchscope.attacks.per_image import PerImageAttack
    from patchscope.eval import DEFAULT_GRID, patch_success
    from patchscope.io import write_json

    with recorded("attack", config) as run:
        started = time.time()
        runner = PerImageAttack(net, cfg, views, dev, start=start)
        images = victims.float_images()
        patches = runner(images, victims.labels)
        seconds = time.time() - started
        patches.images_hash = victims.data_hash()
        patches.meta.update({"model": config["model"], "source": ds.classes[src], "target": ds.classes[tgt] if tgt is not None else None, "data": config["data"], "data_hash": ds.data_hash()})
        check = patch_success(net, images, victims.labels, patches, tgt, DEFAULT_GRID, device=dev)
        metrics = {"attack_images": len(victims), "seconds": round(seconds, 1), "patch_area": patches.area_fraction, "patch_side": patches.side, "per_image": True,
                   "targeted_success": check["targeted_success"] if tgt is not None else None, "untargeted_success": check["untargeted_success"],
                   "source_clean_accuracy": check["clean_accuracy"], "history": runner.history}
        patches.save(out)
        write_json(out / "config.json", config)
        write_json(out / "metrics.json", metrics)
        summary = {"out": str(out), **{k: v for k, v in metrics.items() if k != "history"}}
        run.log(summary)
        run.artifact("patches", out / "patches.safetensors")
    _print(summary, True)


def _location(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        top, left = (int(v) for v in text.split(","))
    except ValueError:
        raise PatchscopeError(f"--location {text!r}: give TOP,LEFT in pixels, e.g. 4,12") from None
    return top, left


def _attack_model(spec: str, dev: str):  # type: ignore[no-untyped-def]
    from patchscope.models import Ensemble, create_model

    names = _model_names(spec)
    members = [create_model(n, dev) for n in names]
    return members[0] if len(members) == 1 else Ensemble(members).eval()


def _maybe_distributed(dev: str) -> int:
    """Join the torchrun process group when launched by torchrun; return this process's rank."""
    import os

    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.startswith("cuda") else "gloo")
    return dist.get_rank()


@app.command()
def transfer(
    patches: Annotated[str, typer.Option(help="comma-separated patch folders")],
    models: Annotated[str, typer.Option(help="comma-separated model names")] = "gtsrb-cnn,gtsrb-resnet,gtsrb-vit",
    data: DataOpt = "gtsrb:test",
    source: str = "stop",
    target: Annotated[Optional[str], typer.Option()] = "yield",
    limit: Optional[int] = None,
    data_root: RootOpt = None,
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
) -> None:
    """Transfer matrix: success of every patch on every model over the default viewing grid."""
    from patchscope.data import resolve_class
    from patchscope.eval import transfer_matrix
    from patchscope.models import create_model

    dev = _device(device)
    loaded = {n: create_model(n, dev) for n in _model_names(models)}
    patch_names = [p.strip() for p in patches.split(",") if p.strip()]
    if not patch_names:
        raise PatchscopeError("--patches: give at least one patch folder or zoo:MODEL/NAME")
    ps = {p: _load_patch(Path(p) if not p.startswith("zoo:") else p) for p in patch_names}
    ds = _DataCache(data, data_root, None).get(next(iter(loaded.values())).input_size)
    victims = ds.of_class(source).head(limit)
    t = resolve_class(target, ds.classes) if target else None
    matrix = transfer_matrix(loaded, ps, victims.float_images(), victims.labels, t, device=dev)

    def table() -> None:
        from rich.console import Console
        from rich.table import Table

        grid = Table("patch", *loaded, title=f"{'targeted' if t is not None else 'untargeted'} success on {len(victims)} {source!r} images")
        for p, row in matrix.items():
            grid.add_row(p, *(f"{row[m]:.1%}" for m in loaded))
        Console().print(grid)

    _print({"metric": "targeted_success" if t is not None else "untargeted_success", "matrix": matrix}, as_json, table)


@app.command()
def curve(
    model: Annotated[str, typer.Option(help="model name (several joined by commas: their ensemble)")] = "gtsrb-cnn",
    data: Annotated[str, typer.Option(help="images the patches are made on")] = "gtsrb:train",
    eval_data: Annotated[str, typer.Option(help="images the patches are measured on")] = "gtsrb:test",
    sizes: Annotated[str, typer.Option(help="comma-separated area fractions")] = "0.02,0.04,0.06,0.08,0.1,0.12",
    placements: Annotated[str, typer.Option(help="on-object, sticker or both")] = "on-object,sticker",
    source: str = "stop",
    target: Annotated[Optional[str], typer.Option()] = "yield",
    steps: int = 300,
    batch_size: int = 64,
    candidates: int = 5,
    loss: LossOpt = "ce",
    shape: ShapeOpt = "square",
    limit: Annotated[Optional[int], typer.Option(help="at most N images to make and to measure on")] = None,
    seed: int = 0,
    out: Annotated[Path, typer.Option(help="folder for curve.json and area.png")] = Path("runs/curve"),
    data_root: RootOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Success against patch area (one attack per size) and A90, the smallest area reaching 90%."""
    from patchscope.attacks import AttackConfig
    from patchscope.data import resolve_class
    from patchscope.eval.curves import area_curve
    from patchscope.eval.figures import area_figure
    from patchscope.io import write_json

    check_out(out)
    dev = _device(device)
    try:
        size_list = [float(v) for v in sizes.split(",") if v.strip()]
    except ValueError:
        raise PatchscopeError(f"--sizes {sizes!r}: give comma-separated fractions like 0.02,0.05") from None
    if not size_list:
        raise PatchscopeError(f"--sizes {sizes!r}: give at least one area fraction, e.g. 0.02,0.05")
    for v in size_list:
        check_fraction("sizes", v)
    for p in _model_names(placements):
        AttackConfig(placement=p, loss=loss, steps=steps, batch_size=batch_size, candidates=candidates, seed=seed)  # refuse bad settings before any work
    net = _attack_model(model, dev)
    make = _DataCache(data, data_root).get(net.input_size)
    test = _DataCache(eval_data, data_root).get(net.input_size)
    src = resolve_class(source, make.classes)
    tgt = resolve_class(target, make.classes) if target else None
    mk, ts = make.of_class(src).head(limit), test.of_class(src).head(limit)
    result: dict[str, object] = {"model": model, "data": data, "eval_data": eval_data, "source": make.classes[src], "target": make.classes[tgt] if tgt is not None else None, "steps": steps, "loss": loss, "shape": shape}
    with recorded("curve", {**result, "sizes": size_list, "placements": placements, "seed": seed, "device": dev}) as run:
        for placement in _model_names(placements):
            cfg = AttackConfig(shape=shape, placement=placement, target=tgt, loss=loss, steps=steps, batch_size=batch_size, candidates=candidates, seed=seed)
            result[placement] = area_curve(net, (mk.float_images(), mk.labels), (ts.float_images(), ts.labels), size_list, cfg, device=dev)
        curves = {f"{model} {p}": result[p]["points"] for p in _model_names(placements)}  # type: ignore[index]
        area_figure(curves, out / "area.png")
        write_json(out / "curve.json", result)
        run.log({p: {"a90": result[p]["a90"], "points": result[p]["points"]} for p in _model_names(placements)})  # type: ignore[index]
        run.artifact("curve", out / "curve.json")
    _print(result, True)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="report folder")] = Path("demo-report"),
    steps: Annotated[int, typer.Option(help="attack steps")] = 150,
    size: Annotated[float, typer.Option(help="patch area fraction")] = 0.08,
    quick: Annotated[bool, typer.Option(help="a tiny budget that only checks every stage runs")] = False,
    device: DeviceOpt = "cpu",
) -> None:
    """The whole story on the bundled models and data: attack, measure, explain, defend, certify, report."""
    from dataclasses import replace

    from patchscope.eval.demo import DemoSettings, quick_settings, run_demo

    check_out(out)
    dev = _device(device)
    check_fraction("size", size)
    check_positive("steps", steps, 10**6)
    settings = quick_settings(dev) if quick else replace(DemoSettings(device=dev), steps=steps, size=size)
    with recorded("demo", {"out": str(out), **settings.__dict__}) as run:
        path = run_demo(out, settings)
        run.artifact("report", path)
    typer.echo(f"report: {path.resolve()}")


@app.command()
def report(
    runs: Annotated[str, typer.Option(help="comma-separated run ids from `patchscope runs list`")],
    out: Annotated[Path, typer.Option(help="report folder")] = Path("report"),
) -> None:
    """One self-contained HTML page from stored runs: their settings, metrics and figures."""
    from patchscope.eval.report import runs_report
    from patchscope.eval.store import store_for

    check_out(out)
    store = store_for(_STATE["store"])
    path = runs_report([store.get(r.strip()) for r in runs.split(",") if r.strip()], out)
    typer.echo(f"report: {path.resolve()}")


__import__("patchscope.cli_runs").cli_runs.register(app)  # `patchscope runs list|show|compare`
__import__("patchscope.cli_explain").cli_explain.register(app)  # `patchscope explain`
__import__("patchscope.cli_defend").cli_defend.register(app)  # `patchscope defend`, `patchscope certify`
__import__("patchscope.cli_study").cli_study.register(app)  # `patchscope study robustness`


def check_out(out: Path | None, *names: str) -> None:
    """Refuse, before any work, an ``--out`` folder that cannot be written: a file, or under a read-only folder;
    ``names`` are file names the command will put inside (each must be a plain name, no folders)."""
    import os

    for name in names:
        if not name or name.startswith(".") or Path(name).name != name or "\x00" in name:
            raise PatchscopeError(f"--name {name.split('.')[0] if name.startswith('.') else Path(name).stem!r}: give a plain file name, without folders or a leading dot")
    if out is None:
        return
    if out.exists() and not out.is_dir():
        raise PatchscopeError(f"--out {out}: a file is there; give a folder")
    for name in names:
        if (out / name).is_dir():
            raise PatchscopeError(f"--out {out}: {name} there is a folder, not a file")
    existing = out.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise PatchscopeError(f"--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PatchscopeError(f"--out {out}: {existing} is not writable")


def _flags(message: str) -> str:
    """Library errors name parameters (``batch_size must be >= 1``); say the option instead (``--batch-size``)."""
    import re

    m = re.match(r"^([a-z][a-z0-9_]*)( must | is | has )", message) or re.match(r"^(arch_kwargs|resume)\b", message)
    if m is None or m.group(1) in ("the", "a", "an", "model", "target", "mask", "pixels"):
        return message
    return "--" + m.group(1).replace("_", "-") + message[m.end(1):]


def _command_name(argv: list[str]) -> str:
    words, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--store":
            skip = True
        elif not a.startswith("-"):
            words.append(a)
            if a not in ("runs", "study") or len(words) == 2:
                break
    return " ".join(words) or "patchscope"


def _on_signal(signum: int, frame: object) -> None:
    from patchscope.errors import Interrupted, note_interrupt

    note_interrupt(signum)  # if this raise is swallowed (inside a finaliser), the next progress update raises again
    raise Interrupted("", signum)


def _interrupt_line(e: BaseException, command: str) -> str:
    from patchscope.errors import Interrupted

    name = e.signal_name if isinstance(e, Interrupted) else "SIGINT"
    detail = str(e) if isinstance(e, Interrupted) and str(e) else "no results were written"
    recorded_note = "; the run is recorded as interrupted" if _STATE.get("recording") else ""
    return f"patchscope: {command} interrupted by {name}: {detail}{recorded_note}"


def main() -> None:
    """Entry point: run the app. A :class:`PatchscopeError` becomes one line and exit status 2; SIGINT and SIGTERM
    one line saying what was interrupted and kept, and exit status 130 or 143."""
    import signal
    import warnings

    from patchscope.errors import Interrupted, clear_interrupt

    keep_freed_memory()  # reuse freed host memory: page faults were half of a CPU mask-training step
    warnings.filterwarnings("ignore", category=UserWarning)  # torch's notes would break the one-line contract
    warnings.filterwarnings("ignore", category=FutureWarning)
    command = _command_name(sys.argv[1:])
    _STATE["recording"] = False
    clear_interrupt()
    for sig, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
        if signal.getsignal(sig) is default:
            signal.signal(sig, _on_signal)
    try:
        status = app(standalone_mode=False)
    except PatchscopeError as e:
        print(f"patchscope: error: {_flags(str(e))}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as e:
        print(_interrupt_line(e, command), file=sys.stderr)
        sys.exit(e.exit_status)
    except (typer.Abort, KeyboardInterrupt) as e:
        print(_interrupt_line(e, command), file=sys.stderr)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code if hasattr(e, "exit_code") else 0)
    except typer.TyperException as e:  # usage errors: unknown option, bad value (help already shown if empty)
        if e.format_message():
            print(f"patchscope: error: {' '.join(e.format_message().split())}", file=sys.stderr)
        sys.exit(2)
    if status == 130:  # typer turned a KeyboardInterrupt into this status
        print(_interrupt_line(KeyboardInterrupt(), command), file=sys.stderr)
        sys.exit(130)
    if isinstance(status, int) and status:
        sys.exit(status)
