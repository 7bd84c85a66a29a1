"""What every command shares: option types, the device, the run store, loading models and patches, and the
translation of library errors (which name parameters) into this command line's flags (printing: :mod:`.output`).

Imports nothing of the other command modules; heavy libraries (torch, rich) load inside the functions that need them,
so ``patchscope runs`` and ``--help`` start fast.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, overload

import typer

from patchscope.cli.output import printing
from patchscope.errors import PatchscopeError

if TYPE_CHECKING:
    from patchscope.attacks import Patch, PerImagePatches

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


def translate(error: PatchscopeError) -> str:
    """The error's message with each parameter it names (its first mention, unquoted) written as this CLI's flag.

    >>> error = PatchscopeError("steps and batch_size must be at least 1", params=("steps", "batch_size"))
    >>> translate(error)
    '--steps and --batch-size must be at least 1'
    """
    text = str(error)
    for param in getattr(error, "params", ()):
        pattern = rf"(?<![\w'\"./-]){re.escape(param)}(?![\w'\"-])"
        found = re.search(pattern, text)
        if found:
            text = text[: found.start()] + flag(param) + text[found.end() :]
    return text


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


@overload
def load_patch_arg(path: Path | str, per_image: Literal[False] = False) -> Patch: ...


@overload
def load_patch_arg(path: Path | str, per_image: bool) -> Patch | PerImagePatches: ...


def load_patch_arg(path: Path | str, per_image: bool = False) -> Patch | PerImagePatches:
    """A universal patch (run folder, file or zoo name); with ``per_image``, a folder of per-image patches too."""
    from patchscope.attacks import load_patch

    if per_image and ((Path(path) / "patches.safetensors").exists() or Path(path).name == "patches.safetensors"):
        from patchscope.attacks.per_image import PerImagePatches

        return PerImagePatches.load(path)
    return load_patch(path)  # refuses per-image patches with one line


class DataCache:
    """``--data`` read once per model preparation, keeping the first ``limit`` images.

    ``get(model)``: a ``folder:`` tree is labelled by the model's classes (class id, name, WordNet id or
    ``--class-map``) and prepared as its card says (resize, centre crop), and a ``folder:`` tree or a large
    ``npz:`` file is streamed batch by batch; GTSRB, ``demo`` and small ``npz:`` files are loaded at the model's
    input size, as always. Every model after the first must share the first one's classes when a folder is read.
    ``get(size)``: the data at ``size`` px, a folder labelled by its sorted folder names.
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
        """The data for ``model`` (a classifier or ensemble; an int: a plain size)."""
        from patchscope.data import load_data

        if isinstance(model, int) or not self.spec.startswith(("folder:", "npz:")):
            size = model if isinstance(model, int) else int(model.input_size)
            if size not in self.cache:
                self.cache[size] = load_data(self.spec, self.root, size).head(self.limit)
            return self.cache[size]
        self.check_classes(model)
        key = (model.preprocess, tuple(model.classes))
        if key not in self.cache:
            self.cache[key] = self._open(model)
        return self.cache[key]

    def _open(self, model: Any) -> Any:
        from patchscope.data import load_class_map, open_data
        from patchscope.validate import check_optional_positive

        check_optional_positive("limit", self.limit)
        mapping = load_class_map(self.class_map) if self.class_map is not None else None
        data = open_data(
            self.spec,
            self.root,
            classes=model.classes,
            preprocess=model.preprocess,
            class_map=mapping,
            wnids=getattr(model, "wnids", None),
            skip_bad=self.skip_bad,
        )
        if len(data) == 0:
            raise PatchscopeError(f"--data {self.spec} holds no images")
        return data.head(self.limit)

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


def same_named(options: Mapping[str, Any], fn: Callable[..., Any], skip: Iterable[str] = ()) -> dict[str, Any]:
    """The command's ``options`` that ``fn`` takes under the same name (the CLI's flags are the library's parameters),
    except those in ``skip`` (passed another way).

    >>> def f(steps, seed=0, device="cpu"): ...
    >>> same_named({"steps": 3, "seed": 1, "out": "x", "device": "auto"}, f, skip=["device"])
    {'steps': 3, 'seed': 1}
    """
    names = set(inspect.signature(fn).parameters) - set(skip)
    return {k: v for k, v in options.items() if k in names}


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
