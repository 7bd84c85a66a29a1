"""`patchscope attack`, `transfer` and `curve`: make patches, measure them across models and against their area."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from patchscope.cli.common import (
    DataCache,
    DataOptions,
    DeviceOpt,
    JsonOpt,
    LossOpt,
    RegistryHelp,
    ShapeOpt,
    check_out,
    data_group,
    entry_options,
    load_models,
    note,
    option_errors,
    option_param,
    options_group,
    parse_floats,
    recorded,
    registry,
    resolve_device,
    resume_hint,
    split_names,
    warn_bf16,
)
from patchscope.cli.output import Col, key_value_table, print_table, show
from patchscope.errors import PatchscopeError, errors_about
from patchscope.formatting import class_label, pct, value_text
from patchscope.recipe import AttackRecipe, recipe_default
from patchscope.validate import check_fraction

if TYPE_CHECKING:
    from patchscope.attacks import AttackConfig, Patch
    from patchscope.workflows.attack import AttackImages

app = typer.Typer()
#: the files besides the patch an attack writes into its --out folder
RUN = ("config.json", "metrics.json")


@dataclass(frozen=True)
class Recipe:
    """How an attack optimises, as the recipe flags give it: the library's recipe and a calibrated printer's file."""

    steps: AttackRecipe
    printer: Path | None = None

    def config(self, **patch: Any) -> AttackConfig:
        """The library's settings: this recipe with the patch's (``size``, ``shape``, ``placement``, ...)."""
        from patchscope.attacks import AttackConfig
        from patchscope.attacks.printer import PrinterModel

        printer = PrinterModel.load(self.printer) if self.printer is not None else None
        return AttackConfig.of(self.steps, **patch, printer=printer)

    def recorded(self) -> dict[str, Any]:
        """What a run records of the recipe beyond the library's settings: the printer file as given (its
        contents are in the settings), so that the run's command line names the file."""
        return {"printer": str(self.printer) if self.printer is not None else None}


def _recipe(tv: float, nps: float, printer: Path | None, **steps: Any) -> Recipe:
    """The recipe flags as the library's :class:`~patchscope.recipe.AttackRecipe` (``--tv``, ``--nps``: weights)."""
    return Recipe(AttackRecipe(tv_weight=tv, nps_weight=nps, **steps), printer)


def _step(name: str, annotation: Any = None) -> inspect.Parameter:
    """The option of the recipe setting ``name``, with the recipe's default."""
    default = recipe_default({"tv": "tv_weight", "nps": "nps_weight"}.get(name, name))
    return option_param(name, annotation or type(default), default)

    def recorded(self) -> dict[str, Any]:
        """What a run records of the recipe beyond the library's settings: the printer file as given (its
        contents are in the settings), so that the run's command line names the file."""
        return {"printer": str(self.printer) if self.printer is not None else None}


recipe_group = options_group(
    "recipe",
    _recipe,
    [
        _step("steps"),
        _step(
            "batch_size",
            Annotated[
                int,
                typer.Option(
                    help="images each step samples (split across torchrun ranks); the model takes them in passes "
                    "that fit the memory budget, 1 GiB on a CPU and half the free GPU memory "
                    "(PATCHSCOPE_BATCH_BUDGET_MB sets it), with the same patch"
                ),
            ],
        ),
        _step(
            "candidates",
            Annotated[int, typer.Option(help="places (on-object) or starts (sticker) optimised side by side")],
        ),
        _step(
            "restarts",
            Annotated[
                int,
                typer.Option(
                    help="random starts per place, side by side; the best is kept when the search ends (a bad "
                    "start can lose much of the success)"
                ),
            ],
        ),
        _step("lr"),
        _step("loss", LossOpt),
        _step(
            "kappa",
            Annotated[float, typer.Option(help="margin loss: the logit gap at which an image counts as won")],
        ),
        _step("optimizer", Annotated[str, typer.Option(help="adam | sign")]),
        _step("tv", Annotated[float, typer.Option(help="total-variation weight")]),
        _step("nps", Annotated[float, typer.Option(help="non-printability weight")]),
        option_param(
            "printer",
            Annotated[
                Path | None,
                typer.Option(
                    help="a printer file from `patchscope calibrate`: the patch is optimised as that printer makes it "
                    "(and --nps keeps it to the colours it was seen to make)"
                ),
            ],
            None,
        ),
        _step("seed"),
        _step(
            "compile",
            Annotated[
                bool,
                typer.Option(
                    "--compile",
                    help="torch.compile each step (CUDA graphs on a GPU): faster steps there, after a one-off "
                    "compilation",
                ),
            ],
        ),
        _step(
            "precision",
            Annotated[
                str,
                typer.Option(
                    help="fp32 | bf16 (the model under bf16 autocast: faster CNN steps on a GPU or a CPU with AMX; "
                    "slower than fp32 on a CPU without bf16 units)"
                ),
            ],
        ),
    ],
)

AttackOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        "-o",
        metavar="KEY=VALUE",
        help="an option of --attack, e.g. queries=500 for sparse-rs; `patchscope list attacks` shows each option "
        "with its default (repeatable)",
    ),
]


InitOpt = Annotated[
    str | None,
    typer.Option(
        help="--per-image: start every image's patch from this universal patch (run folder or zoo:NAME), at its "
        "place, shape and size"
    ),
]


@app.command(cls=RegistryHelp)
@data_group("gtsrb:train", limit="use at most N source images")
@recipe_group
def attack(
    *,
    model: Annotated[
        str, typer.Option(help="model name; several joined by commas attack their ensemble")
    ] = "gtsrb-cnn",
    data_opts: DataOptions,
    source: Annotated[str, typer.Option(help="class to attack (name or id)")] = "stop",
    target: Annotated[str | None, typer.Option(help="class to turn it into; '' for an untargeted patch")] = "yield",
    size: Annotated[float, typer.Option(help="patch area as a fraction of the image")] = 0.05,
    shape: ShapeOpt = "square",
    placement: Annotated[str, typer.Option(help="on-object | sticker")] = "on-object",
    location: Annotated[str | None, typer.Option(help="TOP,LEFT of an on-object patch (default: searched)")] = None,
    attack: Annotated[str, typer.Option("--attack", help="the attack: {attacks}")] = "universal",
    option: AttackOptionOpt = None,
    recipe: Recipe,
    out: Annotated[Path, typer.Option(help="run folder")] = Path("runs/attack"),
    resume: Annotated[bool, typer.Option(help="continue from OUT/checkpoint.pt")] = False,
    checkpoint_every: int = 50,
    per_image: Annotated[
        bool,
        typer.Option(
            "--per-image",
            help="--attack per-image: one patch for each source image, made on the images it is measured on (e.g. "
            "--data gtsrb:test): the strongest attacker; --batch-size is then the most rows per forward pass "
            "(fewer where the memory budget holds fewer)",
        ),
    ] = False,
    views: Annotated[int, typer.Option(help="--per-image: EOT views of each image per place and step")] = 8,
    init: InitOpt = None,
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Optimise a patch with EOT and save it in a run folder.

    A universal patch by default: patch.png, patch.safetensors, config.json, metrics.json (with --per-image or
    another per-image attack such as --attack sparse-rs: one patch per image, patches.safetensors and patches.png)."""
    from patchscope.distributed import join, leave
    from patchscope.workflows.attack import AttackImages

    name = _attack_name(attack, per_image)
    check_out(out, *_outputs(name))
    dev = resolve_device(device)
    rank = join(dev)
    net = load_models(model, dev)
    images = AttackImages.select(data_opts.cache().get(net), source, target, data_opts.limit)
    where = {"size": size, "shape": shape, "placement": placement, "location": _location(location, placement)}
    cfg = recipe.config(**where, target=images.target)
    if recipe.steps.precision == "bf16" and rank == 0:
        warn_bf16(dev)
    _note_overwrite(out, quiet=resume or rank != 0)
    config: dict[str, Any] = {"command": "attack", "model": model, "models": split_names(model, "--model")}
    config |= {"data": data_opts.data, "data_hash": images.data_hash, "device": dev, "attack": name}
    config |= data_opts.recorded() | cfg.as_dict() | images.named_classes() | recipe.recorded()
    run: dict[str, Any] = {"init": init, "views": views, "limit": data_opts.limit, "resume": resume, "out": out}
    run |= {"images": images, "net": net}
    options = _attack_options(name, option, config, run | {"checkpoint_every": checkpoint_every})
    try:
        _run_attack(net, images, cfg, config, out, rank, options, as_json)
    finally:
        leave()


def _attack_name(attack: str, per_image: bool) -> str:
    """The registered attack ``--attack`` and ``--per-image`` name (an unknown one: one line naming the choices)."""
    if per_image and attack not in ("universal", "per-image"):
        raise PatchscopeError(f"--per-image is --attack per-image: drop one of them (--attack {attack})")
    name = "per-image" if per_image else attack
    registry("attacks").spec(name)  # an unknown one: "unknown --attack 'x': choose from ..."
    return name


def _attack_options(name: str, texts: list[str] | None, config: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """The attack's own options: ``--option`` values over what the flags give (a universal attack: its checkpoint;
    a per-image one: its views and start patch); ``config`` records them."""
    given = entry_options("attacks", name, texts)
    if given:
        config["options"] = given
    if not registry("attacks").spec(name).takes("checkpoint"):
        return _per_image_options(name, config, run) | given
    if run["init"] is not None:
        raise PatchscopeError("--init starts per-image patches: add --per-image")
    images = run["images"]
    identity = {"model": config["model"], "data_hash": images.data_hash, "images": len(images.images)}  # resume: same
    out, every, resume = run["out"], run["checkpoint_every"], run["resume"]
    return {
        "checkpoint": out / "checkpoint.pt",
        "checkpoint_every": every,
        "resume": resume,
        "identity": identity | {"weights": _weights(run["net"])},  # the same name, other weights: another model
    } | given


def _per_image_options(name: str, config: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """A per-image attack's options (its views and start patch, where it takes them); ``config`` records what it
    will do."""
    from patchscope.attacks import load_patch
    from patchscope.distributed import active

    spec, init = registry("attacks").spec(name), run["init"]
    what = "--per-image" if name == "per-image" else f"--attack {name}"
    if run["resume"] or active():
        raise PatchscopeError(f"{what} runs in one process and has no checkpoints: drop --resume and torchrun")
    if init is not None and not spec.takes("start"):
        raise PatchscopeError(f"--init: {what} takes no start patch")
    start: Patch | None = load_patch(init) if init is not None else None
    if start is not None:
        start.meta["name"] = init  # its shape, size and place replace the options': record those
        config.update(
            size=start.area_fraction,
            shape=f"from --init ({start.side}px box)",
            location=list(start.location) if start.location else None,
            candidates=1,
            restarts=1,
        )
    config.update(per_image=True, limit=run["limit"])
    if not spec.takes("views"):
        return {}
    config.update(views=run["views"], init=init)
    return {"views": run["views"], "start": start}


def _run_attack(
    net: Any,
    images: AttackImages,
    cfg: Any,
    config: dict[str, Any],
    out: Path,
    rank: int,
    options: dict[str, Any],
    as_json: bool = False,
) -> None:
    """Attack, measure and write the run folder (rank 0), recorded as one run; an interrupt keeps the checkpoint.
    Prints the run's summary (``as_json``: as JSON)."""
    from patchscope.workflows.attack import run_attack

    with recorded("attack", config) as run:
        with (
            resume_hint(),
            option_errors(config.get("options", {})),
        ):  # main() prints the interrupt's line and exits 130 or 143; the store marks the run
            result = run_attack(
                net,
                images,
                cfg,
                attack=config["attack"],
                device=config["device"],
                meta={"model": config["model"], "data": config["data"]},
                **options,
            )
        if rank != 0:
            return
        summary = result.save(out, config)
        if config.get("skip_bad"):
            summary["skipped_images"] = len(images.images.skipped)
        run.log(summary)
        per_image = result.per_image
        run.artifact(
            "patches" if per_image else "patch", out / ("patches.safetensors" if per_image else "patch.safetensors")
        )
    title = f"{'per-image patches' if per_image else 'patch'} on {config['model']} ({_goal(config)})"
    show(summary, as_json, lambda: key_value_table(summary, title))


def _goal(config: dict[str, Any]) -> str:
    """``stop (14) -> yield (13)``, or ``stop (14), untargeted`` (the ids where the config has them)."""
    source = class_label(config["source"], config.get("source_id"))
    target = config["target"]
    return (
        f"{source} -> {class_label(target, config.get('target_id'))}" if target is not None else f"{source}, untargeted"
    )


def _note_overwrite(out: Path, quiet: bool) -> None:
    if (out / "patch.safetensors").exists() and not quiet:
        note(f"note: overwriting the patch in {out}")


def _outputs(name: str) -> tuple[str, ...]:
    """The files attack ``name`` writes into its --out folder."""
    patch = ("patch.safetensors", "patch.png") if name == "universal" else ("patches.safetensors", "patches.png")
    return (*patch, *RUN)


def _weights(net: Any) -> str:
    from patchscope.models.checkpoint import weights_fingerprint

    return weights_fingerprint(net)


def _location(text: str | None, placement: str = "on-object") -> tuple[int, int] | None:
    if text is None:
        return None
    if placement == "sticker":
        raise PatchscopeError(
            f"--location {text}: a sticker goes somewhere new on every view; --location fixes an on-object patch's "
            "place (--placement on-object)"
        )
    try:
        top, left = (int(v) for v in text.split(","))
    except ValueError:
        raise PatchscopeError(f"--location {text!r}: give TOP,LEFT in pixels, e.g. 4,12") from None
    for side, value in (("top", top), ("left", left)):
        if value < 0:
            raise PatchscopeError(f"--location {text}: {side} must be >= 0, got {value}")
    return top, left


@app.command()
@data_group("gtsrb:test", limit="use at most N source images")
def transfer(
    *,
    patches: Annotated[str, typer.Option(help="comma-separated patch folders")],
    models: Annotated[str, typer.Option(help="comma-separated model names")] = "gtsrb-cnn,gtsrb-resnet,gtsrb-vit",
    data_opts: DataOptions,
    source: str = "stop",
    target: Annotated[str | None, typer.Option()] = "yield",
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Success of every patch on every model: a transfer matrix.

    Measured over the default viewing grid. Each model sees the images at its own input size, and a patch made at
    another size is resized with them (same share, same place)."""
    from patchscope.attacks import load_patch
    from patchscope.data import resolve_class
    from patchscope.distributed import join
    from patchscope.eval import transfer_matrix
    from patchscope.models import create_model

    dev = resolve_device(device)
    join(dev)  # under torchrun: each rank measures a share of the images; rank 0 prints
    loaded = {n: create_model(n, dev) for n in split_names(models)}
    ps = {p: load_patch(p) for p in split_names(patches, "--patches")}
    cache = data_opts.cache()
    for m in loaded.values():
        cache.check_classes(m)  # a folder is labelled by the first model's classes: the others must share them
    mine = {
        n: cache.get(m).of_class(source).head(data_opts.limit).load() for n, m in loaded.items()
    }  # each at its own size
    victims = next(iter(mine.values()))
    t = resolve_class(target, victims.classes) if target else None
    images = {n: v.float_images() for n, v in mine.items()}
    matrix = transfer_matrix(loaded, ps, images, victims.labels, t, device=dev)
    result = cache.note_skipped(matrix.as_dict())
    title = f"{'targeted' if t is not None else 'untargeted'} success on {len(victims)} {source!r} images"
    show(result, as_json, lambda: _matrix_table(matrix.success, list(loaded), title))


def _matrix_table(matrix: dict[str, dict[str, float]], models: list[str], title: str) -> None:
    """One row per patch, one column per model: its success there."""
    columns: list[Col | str] = ["patch", *(Col(m, justify="right") for m in models)]
    print_table(columns, [[p, *(pct(row[m]) for m in models)] for p, row in matrix.items()], title)


@app.command()
@data_group(
    "gtsrb:train", data_help="images the patches are made on", limit="at most N images to make and to measure on"
)
def curve(
    *,
    model: Annotated[str, typer.Option(help="model name (several joined by commas: their ensemble)")] = "gtsrb-cnn",
    data_opts: DataOptions,
    eval_data: Annotated[str, typer.Option(help="images the patches are measured on")] = "gtsrb:test",
    sizes: Annotated[str, typer.Option(help="comma-separated area fractions")] = "0.02,0.04,0.06,0.08,0.1,0.12",
    placements: Annotated[str, typer.Option(help="on-object, sticker or both")] = "on-object,sticker",
    source: str = "stop",
    target: Annotated[str | None, typer.Option()] = "yield",
    steps: int = 300,
    batch_size: int = 64,
    candidates: int = 5,
    loss: LossOpt = "sigmoid",
    shape: ShapeOpt = "square",
    seed: int = 0,
    out: Annotated[Path, typer.Option(help="folder for curve.json and area.png")] = Path("runs/curve"),
    device: DeviceOpt = "auto",
    resume: Annotated[
        bool, typer.Option(help="continue from OUT/checkpoints (kept until the curve is written)")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Success against patch area, and A90 (the area reaching 90%).

    One attack per size; A90 is the smallest area reaching 90% success, interpolated between the sizes."""
    from patchscope.distributed import join
    from patchscope.eval.curves import area_curves
    from patchscope.workflows.attack import AttackImages

    check_out(out, "curve.json", "area.png")
    dev = resolve_device(device)
    join(dev)  # under torchrun: each attack splits its batch and each measurement its images; rank 0 writes
    size_list = [check_fraction("sizes", v) for v in parse_floats(sizes, "--sizes", "0.02,0.05")]
    cfg = _curve_config(placements, shape=shape, loss=loss, steps=steps, batch_size=batch_size, candidates=candidates)
    net = load_models(model, dev)
    caches = [data_opts.other(d).cache() for d in (data_opts.data, eval_data)]
    make = AttackImages.select(caches[0].get(net), source, target, data_opts.limit)
    with errors_about("eval_data"):
        test = AttackImages.select(caches[1].get(net), source, target, data_opts.limit)
    cfg = replace(cfg, target=make.target, seed=seed)
    head: dict[str, Any] = {"model": model, "data": data_opts.data, "eval_data": eval_data, "source": make.source_name}
    head |= {"target": make.target_name, "steps": steps, "loss": loss, "shape": shape}
    head |= data_opts.recorded()
    with recorded("curve", {**head, "sizes": size_list, "placements": placements, "seed": seed, "device": dev}) as run:
        with resume_hint():
            where = split_names(placements, "--placements")
            found = area_curves(
                net, make.images, test.images, size_list, where, cfg, model, dev, out / "checkpoints", resume
            )
        found.save(out, head)
        result = found.as_dict()
        run.log({p: {"a90": r["a90"], "points": r["points"]} for p, r in result.items()})
        run.artifact("curve", out / "curve.json")
    show({**head, **result, **_skipped(caches, data_opts.skip_bad)}, as_json, lambda: _curve_table(head, result))


def _curve_table(head: dict[str, Any], result: dict[str, Any]) -> None:
    """One table per placement: each size's success, and A90 under it."""
    for i, (placement, curve) in enumerate(result.items()):
        if i:
            typer.echo()
        a90 = curve["a90"]
        print_table(
            [
                *(Col(h, justify="right") for h in ("size", "area", "side", "success")),
                Col("location", drop=3),
                Col("target conf.", drop=1, justify="right"),
                Col("clean accuracy", drop=2, justify="right"),
            ],
            [
                [
                    value_text(r["size"], "size"),
                    pct(r["area"]),
                    f"{r['side']}px",
                    pct(r["success"]),
                    value_text(r["location"]),
                    pct(r["target_confidence"]),
                    pct(r["clean_accuracy"]),
                ]
                for r in curve["rows"]
            ],
            title=f"{placement} patches on {head['model']} ({_goal(head)})",
            caption=f"A90 (smallest area reaching 90%): {pct(a90) if a90 is not None else 'not reached'}",
        )


def _skipped(caches: list[DataCache], skip_bad: bool) -> dict[str, int]:
    """``skipped_images`` over all of ``caches``, with ``--skip-bad``."""
    return {"skipped_images": sum(c.skipped() for c in caches)} if skip_bad else {}


def _curve_config(placements: str, **settings: Any) -> Any:
    """The curve's attack settings, refused before any work if any placement would refuse them."""
    from patchscope.attacks import AttackConfig

    cfg = AttackConfig(**settings)
    for p in split_names(placements, "--placements"):
        replace(cfg, placement=p)
    return cfg
