"""What every command shares: option types, the device, the run store, loading models and patches, and the
translation of library errors (which name parameters) into this command line's flags (printing: :mod:`.output`).

Imports nothing of the other command modules; heavy libraries (torch, rich) load inside the functions that need them,
so ``patchscope runs`` and ``--help`` start fast.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import typer
from typer.core import TyperCommand

from patchscope.cli.output import printing
from patchscope.errors import PatchscopeError

if TYPE_CHECKING:
    from patchscope.registry import Registry

F = TypeVar("F", bound=Callable[..., Any])

DataOpt = Annotated[
    str,
    typer.Option(
        "--data",
        help="gtsrb:train | gtsrb:test | demo | npz:PATH[:SPLIT] | folder:PATH (sub-folders named by the model's "
        "class ids, names or WordNet ids); any of them with @N: resized to N x N, e.g. gtsrb:test@64",
    ),
]
RootOpt = Annotated[
    Path | None, typer.Option("--data-root", help="folder holding gtsrb32.npz (default $PATCHSCOPE_DATA)")
]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto (CUDA when present, else the CPU) | cpu | cuda | cuda:N")
]
ShapeOpt = Annotated[
    str,
    typer.Option(
        "--shape", help="square | circle | rect:W:H (e.g. rect:1:2, a bar twice as tall as wide) | PATH to a mask image"
    ),
]
LossOpt = Annotated[
    str,
    typer.Option(
        "--loss",
        help="sigmoid (a smooth count of the views not yet won; the strongest measured), "
        "ce (cross-entropy) or margin (the logit gap, capped at --kappa)",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
LimitOpt = Annotated[int | None, typer.Option(help="use only the first N images")]
ClassMapOpt = Annotated[
    Path | None,
    typer.Option(
        "--class-map",
        help='folder: data: a JSON file {"folder name": class id or name} for sub-folders not named by the '
        "model's class ids, names or WordNet ids",
    ),
]
SkipBadOpt = Annotated[
    bool,
    typer.Option(
        "--skip-bad", help="skip unreadable images (counted as skipped_images) instead of stopping at the first"
    ),
]
StoreOpt = Annotated[
    Path | None, typer.Option("--store", help="run database (default $PATCHSCOPE_STORE, else ~/.patchscope/runs.db)")
]

#: library parameters whose flag is not ``--`` plus the name with dashes
FLAGS = {
    "tv_weight": "--tv",
    "nps_weight": "--nps",
    "start": "--init",
    "clean_images": "--fit-data",
    "certifier": "--defense",
    "root": "--data-root",
}


@dataclass
class State:
    """Options of the root command that sub-commands read (set once per invocation)."""

    store: Path | None = None
    recording: bool = False  # a run of this invocation is in the store (an interrupt marks it so)


STATE = State()


def flag(param: str) -> str:
    """The command-line flag of a library parameter: ``batch_size`` -> ``--batch-size``, ``tv_weight`` -> ``--tv``."""
    return FLAGS.get(param, "--" + param.replace("_", "-"))


def translate(error: PatchscopeError, flags: Mapping[str, str] | None = None) -> str:
    """The error's message with each parameter it names (its first mention, unquoted) written as this CLI's flag
    (``flags`` spells some parameters its own way, e.g. an entry's options as ``--option KEY``).

    >>> error = PatchscopeError("steps and batch_size must be at least 1", params=("steps", "batch_size"))
    >>> translate(error), translate(error, {"steps": "--option steps"})
    ('--steps and --batch-size must be at least 1', '--option steps and --batch-size must be at least 1')
    """
    text = str(error)
    for param in getattr(error, "params", ()):
        pattern = rf"(?<![\w'\"./-]){re.escape(param)}(?![\w'\"-])"
        found = re.search(pattern, text)
        if found:
            text = text[: found.start()] + (flags or {}).get(param, flag(param)) + text[found.end() :]
    return text


#: the kinds of registered entries (``patchscope list KIND``)
REGISTRY_KINDS = ("archs", "attacks", "defenses", "certifiers")

BatchOpt = Annotated[
    int | None,
    typer.Option(
        help="images per forward pass (default: as many as fit the memory budget, 1 GiB on a CPU and half the free "
        "GPU memory; PATCHSCOPE_BATCH_BUDGET_MB sets it)"
    ),
]

OptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        "-o",
        metavar="KEY=VALUE",
        help="a defense/certifier option, e.g. quality=75; `patchscope list defenses` shows each option with its "
        "default (repeatable)",
    ),
]


def registry(kind: str) -> Registry:
    """The registry of ``kind`` (archs, attacks, defenses or certifiers), imported on first use."""
    from patchscope.attacks.registry import ATTACKS
    from patchscope.defenses.registry import CERTIFIERS, DEFENSES
    from patchscope.models.archs import ARCHS

    found = {"archs": ARCHS, "attacks": ATTACKS, "defenses": DEFENSES, "certifiers": CERTIFIERS}.get(kind)
    if found is None:
        raise PatchscopeError(f"unknown kind {kind!r}: choose from {', '.join(REGISTRY_KINDS)}")
    return found


def entry_options(kind: str, name: str, texts: Iterable[str] | None) -> dict[str, Any]:
    """``--option KEY=VALUE`` texts as the typed options of entry ``name`` of ``kind`` (read from its signature); an
    unknown entry, key or value is a :class:`PatchscopeError` naming ``--defense`` or ``--option``."""
    return registry(kind).parse(name, texts or [])


@contextlib.contextmanager
def option_errors(keys: Iterable[str]) -> Iterator[None]:
    """Library errors about the options ``keys`` (which have no flag of their own) spelt as ``--option KEY``."""
    spelt = {k: f"--option {k}" for k in keys}
    try:
        yield
    except PatchscopeError as e:
        if not set(e.params) & set(spelt):
            raise
        raise PatchscopeError(translate(e, spelt)) from None


class RegistryHelp(TyperCommand):
    """A command whose option help may name a registry's entries as ``{defenses}`` (``{archs}``, ``{attacks}``,
    ``{certifiers}``): filled in from the registry when the help is shown, so a new entry appears there with no
    change to the command, and the command starts without importing the registry."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        for param in self.params:
            text = getattr(param, "help", None) or ""
            for kind in (k for k in REGISTRY_KINDS if f"{{{k}}}" in text):
                text = text.replace(f"{{{kind}}}", ", ".join(registry(kind).list()))
                param.help = text  # type: ignore[attr-defined]
        super().format_help(ctx, formatter)


def resolve_device(name: str) -> str:
    """:func:`patchscope.models.device.resolve_device`, its errors spelt with ``--device``."""
    from patchscope.models.device import resolve_device as resolve

    try:
        return resolve(name)
    except PatchscopeError as e:
        raise PatchscopeError(translate(e)) from None


def warn_bf16(device: str) -> None:
    """One stderr line where bf16 was asked for on a device that only emulates it (it still runs)."""
    from patchscope.models.precision import bf16_native

    if not bf16_native(device):
        typer.echo(
            f"patchscope: warning: {device} has no bf16 units (AVX512-BF16 "
            "or AMX); bf16 is emulated there and slower than fp32",
            err=True,
        )


def note(text: str) -> None:
    """One ``patchscope: TEXT`` line on stderr."""
    typer.echo(f"patchscope: {text}", err=True)


def main_process() -> bool:
    """Whether this process prints results and records the run: the only one, or rank 0 under torchrun."""
    return printing()


class _NoRun:
    """The run handle of a torchrun rank other than 0: records nothing (rank 0 records the run)."""

    def log(self, *args: Any, **kwargs: Any) -> None:
        pass

    def artifact(self, *args: Any, **kwargs: Any) -> None:
        pass


@contextlib.contextmanager
def resume_hint() -> Iterator[None]:
    """An interrupt that kept a checkpoint says how to continue: ``...; rerun with --resume``."""
    from patchscope.errors import Interrupted

    try:
        yield
    except Interrupted as e:
        kept = "checkpoint saved" in str(e)
        raise type(e)(f"{e}; rerun with --resume" if kept else str(e), e.signum) from None


@contextlib.contextmanager
def recorded(kind: str, config: dict[str, Any]) -> Iterator[Any]:
    """Record the enclosed command as a run in the store (rank 0 only under torchrun); yields its handle."""
    from patchscope.runs.store import record

    if not main_process():
        yield _NoRun()
        return
    with record(STATE.store, kind, config) as run:
        STATE.recording = True
        yield run


def store_path(option: Path | None) -> Path | None:
    """The run store a command reads: its own ``--store``, else the root's ``patchscope --store``, else the default."""
    return option if option is not None else STATE.store


def split_names(text: str, option: str = "--models") -> list[str]:
    """Comma-separated names, blanks dropped; at least one."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise PatchscopeError(f"{option}: give at least one name")
    return names


def parse_floats(text: str, option: str, example: str) -> list[float]:
    """Comma-separated numbers, e.g. ``--sizes 0.02,0.05``; at least one."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise PatchscopeError(f"{option} {text!r}: give comma-separated numbers such as {example}") from None
    if not values:
        raise PatchscopeError(f"{option}: give at least one number, e.g. {example}")
    return values


def load_models(spec: str, device: str) -> Any:
    """The model named by ``spec``; several joined by commas: their ensemble."""
    from patchscope.models import Ensemble, create_model

    members = [create_model(n, device) for n in split_names(spec, "--model")]
    return members[0] if len(members) == 1 else Ensemble(members).eval()


class DataCache:
    """``--data`` read once per model preparation (:func:`~patchscope.data.data_for` decides how: in memory or
    streamed, labelled and prepared as the model says), keeping the first ``limit`` images. Every model after the
    first must share the first one's classes when a folder is read. ``get(size)``: the data at ``size`` px, a folder
    labelled by its sorted folder names.
    """

    def __init__(
        self,
        spec: str,
        root: Path | None,
        limit: int | None = None,
        class_map: Path | None = None,
        skip_bad: bool = False,
    ) -> None:
        self.spec, self.root, self.limit = spec, root, limit
        self.class_map, self.skip_bad = class_map, skip_bad
        self.cache: dict[Any, Any] = {}
        self.first: Any = None  # the model whose classes label a folder
        if class_map is not None and not spec.startswith("folder:"):
            raise PatchscopeError(f"--class-map {class_map}: it names the sub-folders of folder: data, not {spec!r}")

    def get(self, model: Any) -> Any:
        """The data for ``model`` (a classifier or ensemble; an int: a plain size), as
        :func:`~patchscope.data.data_for` reads it, first ``limit`` images."""
        from patchscope.data import data_for, load_class_map
        from patchscope.validate import check_optional_positive

        if isinstance(model, int) or not self.spec.startswith(("folder:", "npz:")):
            key: Any = model if isinstance(model, int) else int(model.input_size)
        else:
            self.check_classes(model)
            key = (model.preprocess, tuple(model.classes))
        if key not in self.cache:
            check_optional_positive("limit", self.limit)
            mapping = load_class_map(self.class_map) if self.class_map is not None else None
            data = data_for(self.spec, model, self.root, class_map=mapping, skip_bad=self.skip_bad)
            if len(data) == 0:
                raise PatchscopeError(f"--data {self.spec} holds no images")
            self.cache[key] = data.head(self.limit)
        return self.cache[key]

    def check_classes(self, model: Any) -> None:
        """Refuse a model whose classes differ from the first model's when a folder is labelled by them."""
        if not self.spec.startswith("folder:"):
            return
        if self.first is None:
            self.first = model
        elif tuple(model.classes) != tuple(self.first.classes):
            raise PatchscopeError(
                f"--data {self.spec}: {model.name} and {self.first.name} have different classes "
                f"({len(model.classes)} and {len(self.first.classes)}); a folder is labelled by one model's "
                "classes: use models that share them"
            )

    def skipped(self) -> int:
        """How many unreadable images were skipped so far (``--skip-bad``), over every model's reading."""
        files: set[str] = set()
        for data in self.cache.values():
            found = getattr(data, "skipped", ())
            files.update(found if not isinstance(found, dict) else found.keys())
        return len(files)

    def note_skipped(self, result: dict[str, Any]) -> dict[str, Any]:
        """``result`` with ``skipped_images`` added when ``--skip-bad`` was given."""
        return {**result, "skipped_images": self.skipped()} if self.skip_bad else result


def data_options(class_map: Path | None, skip_bad: bool) -> dict[str, Any]:
    """The data options a run records, only those given (a run without them records what it always did)."""
    return {k: v for k, v in (("class_map", str(class_map) if class_map else None), ("skip_bad", skip_bad)) if v}


@dataclass(frozen=True)
class DataOptions:
    """The data options of a command (``--data``, ``--limit``, ``--data-root``, ``--class-map``, ``--skip-bad``), as
    :func:`data_group` passes them."""

    data: str
    limit: int | None = None
    data_root: Path | None = None
    class_map: Path | None = None
    skip_bad: bool = False

    def cache(self, limit: int | None = None) -> DataCache:
        """A :class:`DataCache` of ``--data`` keeping the first ``limit`` images (None: all)."""
        return DataCache(self.data, self.data_root, limit, self.class_map, self.skip_bad)

    def other(self, spec: str) -> DataOptions:
        """Other data read the same way (the class map applies to a folder only).

        >>> DataOptions("folder:a", class_map=Path("m.json")).other("demo").class_map is None
        True
        """
        return replace(self, data=spec, class_map=self.class_map if spec.startswith("folder:") else None)

    def recorded(self) -> dict[str, Any]:
        """The data options a run records besides ``data``: only those given."""
        return data_options(self.class_map, self.skip_bad)


#: ``--limit``'s help where a command says nothing of its own
LIMIT_HELP = "use only the first N images"


def options_group(name: str, build: Callable[..., Any], params: list[inspect.Parameter]) -> Callable[[F], F]:
    """Decorator: replace a command's parameter ``name`` by the typer options ``params`` (declared once, shared by
    many commands) and call the command with ``build(**their values)`` in its place. ``--help`` lists each option.

    >>> p = inspect.Parameter("steps", inspect.Parameter.KEYWORD_ONLY, default=3, annotation=int)
    >>> @options_group("opts", dict, [p])
    ... def cmd(opts: dict, seed: int = 0) -> None:
    ...     print(opts, seed)
    >>> list(inspect.signature(cmd).parameters), cmd(steps=5, seed=1)
    {'steps': 5} 1
    (['steps', 'seed'], None)
    """

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn, eval_str=True)
        if name not in signature.parameters:
            raise TypeError(f"{fn.__name__} has no parameter {name!r}")
        flat: list[inspect.Parameter] = []
        for p in signature.parameters.values():
            flat += params if p.name == name else [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)]
        own = [p.name for p in params]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            group = build(**{k: kwargs.pop(k) for k in own})
            return fn(**kwargs, **{name: group})

        command.__signature__ = signature.replace(parameters=flat)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in flat} | {"return": signature.return_annotation}
        return cast(F, command)

    return decorate


def option_param(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    """One typer option of an :func:`options_group`: ``name`` (``--name`` unless ``annotation`` says otherwise)."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def data_group(
    default: str, *, data_help: str | None = None, limit: str | None = LIMIT_HELP, class_map: bool = True
) -> Callable[[F], F]:
    """Decorator: the command's ``DataOptions`` parameter becomes ``--data`` (default ``default``; ``data_help``: its
    own help), ``--limit`` (``limit``: its help; None: no such option), ``--data-root``, ``--class-map`` (unless
    ``class_map`` is False) and ``--skip-bad``."""
    data_opt = DataOpt if data_help is None else Annotated[str, typer.Option("--data", help=data_help)]
    params = [option_param("data", data_opt, default)]
    if limit is not None:
        params.append(option_param("limit", Annotated[int | None, typer.Option(help=limit)], None))
    params.append(option_param("data_root", RootOpt, None))
    if class_map:
        params.append(option_param("class_map", ClassMapOpt, None))
    params.append(option_param("skip_bad", SkipBadOpt, False))
    return options_group("data_opts", DataOptions, params)


def check_name(name: str) -> str:
    """A plain file name (``--name``): no folders, no leading dot."""
    if not name or name.startswith(".") or Path(name).name != name or "\x00" in name:
        raise PatchscopeError(f"--name {name!r}: give a plain file name, without folders or a leading dot")
    return name


def check_out(out: Path | None, *names: str) -> None:
    """Refuse, before any work, an ``--out`` folder that cannot be written (see :func:`patchscope.io.check_output`);
    ``names`` are file names the command will put inside (plain names, no folders)."""
    from patchscope.io import check_output

    if out is not None:
        check_output(out, names)


def command_name(argv: list[str]) -> str:
    """The command an argument list runs, for messages: ``attack``, ``runs list``, ``study robustness``."""
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


def on_signal(signum: int, frame: object) -> None:
    """SIGINT/SIGTERM handler: raise :class:`~patchscope.errors.Interrupted` (and note it, so that long loops raise
    again if this raise is swallowed inside a finaliser)."""
    from patchscope.errors import Interrupted, interrupt_pending, note_interrupt

    if interrupt_pending() is not None:  # a repeat while the first unwinds: raised inside a clean-up it would only
        return  # be printed as an ignored exception; long loops raise the first again (raise_if_interrupted)
    note_interrupt(signum)
    raise Interrupted("", signum)


def install_signal_handlers() -> None:
    """Route SIGINT and SIGTERM to :func:`on_signal` where nobody else has claimed them."""
    import signal

    for sig, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
        if signal.getsignal(sig) is default:
            signal.signal(sig, on_signal)


def interrupt_line(error: BaseException, command: str) -> str:
    """The one line an interrupt prints: the command, the signal, what was kept, and whether the run was recorded."""
    from patchscope.errors import Interrupted

    name = error.signal_name if isinstance(error, Interrupted) else "SIGINT"
    detail = str(error) if isinstance(error, Interrupted) and str(error) else "no results were written"
    recorded_note = "; the run is recorded as interrupted" if STATE.recording else ""
    return f"patchscope: {command} interrupted by {name}: {detail}{recorded_note}"
