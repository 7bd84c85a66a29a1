"""One registry for every pluggable kind: architectures, attacks, defenses and certifiers (timm-style).

An entry is a class or factory registered under a kebab-case name; its options are the keyword parameters of its
signature (less the ones the caller always supplies, such as ``model``), each with a type, a default and the one-line
description of the docstring's ``Args:`` section. A registry with a ``package`` imports every module of it the first
time it is read, so adding an entry is one module with a decorated class.

>>> shapes = Registry("shape")
>>> @shapes.register("unit-square", corners=4)
... def square(side: float = 1.0, filled: bool = True) -> str:
...     '''A square of ``side``.
...
...     Args:
...         side: the side length.
...         filled: paint the inside too.
...     '''
...     return f"square {side} {filled}"
>>> shapes.list(), shapes.spec("unit-square").summary, shapes.spec("unit-square").meta["corners"]
(['unit-square'], 'A square of side.', 4)
>>> shapes.spec("unit-square").options[0]
OptionSpec(name='side', type='float', default=1.0, doc='the side length.')
>>> shapes.create("unit-square", **shapes.parse("unit-square", ["side=2", "filled=no"]))
'square 2.0 False'
"""

from __future__ import annotations

import builtins
import fnmatch
import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from patchscope.errors import PatchscopeError

B = TypeVar("B", bound=Callable[..., Any])

#: parameters the caller of an entry always supplies: never options
RESERVED = ("self", "model", "config", "device", "bpda", "clean_images", "image_size", "patch_side")
#: how every registered name is spelt (kebab-case)
NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
_SCALARS = ("bool", "int", "float", "str", "Path")


@dataclass(frozen=True)
class OptionSpec:
    """One option of a registered entry.

    Attributes:
        name: the keyword parameter.
        type: its type as text (the annotation, else the default's type), e.g. ``float`` or ``tuple[int, ...]``.
        default: its default (None where it has none).
        doc: its one-line description from the docstring's ``Args:`` section ('' where there is none).
    """

    name: str
    type: str
    default: Any
    doc: str

    def convert(self, value: str) -> Any:
        """``value`` (text) as this option's type: bool, int, float, text, path or a comma-separated tuple.

        >>> OptionSpec("bits", "int", 4, "").convert("3"), OptionSpec("widths", "tuple", (8, 16), "").convert("4,8")
        (3, (4, 8))
        """
        base = _base_type(self.type, self.default)
        if base == "tuple":
            items = [v.strip() for v in value.split(",") if v.strip()]
            element = _base_type("", self.default[0]) if self.default else _element_type(self.type)
            return tuple(_convert_scalar(element, v) for v in items)
        return _convert_scalar(base, value)


def _base_type(text: str, default: Any) -> str:
    """The conversion an option takes: its annotation's where that is one type (``int``, ``float | None``), else its
    default's type."""
    kinds = [t for t in re.split(r"\s*\|\s*", text) if t and t != "None"]
    named = kinds[0] if len(kinds) == 1 else ""
    if named.startswith(("tuple", "list")):
        return "tuple"
    if named in _SCALARS:
        return named
    if default is not None:
        return "tuple" if isinstance(default, (tuple, list)) else type(default).__name__
    return named or "str"


def _element_type(text: str) -> str:
    found = re.search(r"\[(\w+)", text)
    return found.group(1) if found else "str"


def _convert_scalar(kind: str, value: str) -> Any:
    """``value`` as ``kind`` (bool, int, float, str, Path); ValueError where it is not one."""
    if kind == "bool":
        if value.lower() not in (*_TRUE, *_FALSE):
            raise ValueError(value)
        return value.lower() in _TRUE
    converters: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str, "Path": Path}
    if kind not in converters:
        raise TypeError(kind)
    return converters[kind](value)


@dataclass(frozen=True)
class Spec:
    """One registered entry.

    Attributes:
        kind: the registry's kind (``defense``, ...).
        name: the registered name.
        build: the class or factory.
        meta: what the registration said besides the name (e.g. ``bpda`` for defenses), over the registry's defaults.
        summary: the first line of its docstring, without reST markup.
        options: its options, in signature order.
    """

    kind: str
    name: str
    build: Callable[..., Any]
    meta: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""
    options: tuple[OptionSpec, ...] = ()

    @property
    def defaults(self) -> dict[str, Any]:
        """``{option: default}``, in signature order."""
        return {o.name: o.default for o in self.options}

    def takes(self, param: str) -> bool:
        """Whether ``build`` has a parameter ``param`` (an option or a reserved one such as ``clean_images``)."""
        return param in inspect.signature(self.build).parameters

    def check(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` as a dict, refusing any keyword ``build`` does not take (one line naming the parameter)."""
        params = inspect.signature(self.build).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return dict(options)
        stray = [k for k in options if k not in params or params[k].kind is inspect.Parameter.POSITIONAL_ONLY]
        if stray:
            names = [o.name for o in self.options]
            its = f"its options: {', '.join(names)}" if names else "it takes no options"
            raise PatchscopeError(
                f"{stray[0]} does not apply to {self.kind} {self.name!r} ({its})", params=(stray[0], self.kind, *names)
            )
        return dict(options)

    def parse(self, texts: Iterable[str]) -> dict[str, Any]:
        """``KEY=VALUE`` texts as ``{KEY: value}``, each value converted to its option's type (a dash in a key
        stands for an underscore); unknown keys and bad values raise a :class:`PatchscopeError` about ``option``."""
        by_name = {o.name: o for o in self.options}
        out: dict[str, Any] = {}
        for text in texts:
            key, sep, value = (t.strip() for t in text.partition("="))
            key = key.replace("-", "_")
            example = f"{self.options[0].name}={self.options[0].default}" if self.options else "KEY=VALUE"
            if not sep or not key:
                raise PatchscopeError(f"option {text!r}: give KEY=VALUE, e.g. {example}", params=("option",))
            if key not in by_name:
                its = f"its options: {', '.join(by_name)}" if by_name else "it takes no options"
                raise PatchscopeError(
                    f"option {key}: {self.kind} {self.name!r} has no such option ({its})", params=("option",)
                )
            out[key] = _parse_value(by_name[key], value)
        return out


def _parse_value(option: OptionSpec, value: str) -> Any:
    try:
        return option.convert(value)
    except ValueError:
        raise PatchscopeError(
            f"option {option.name}={value!r}: not a valid {_base_type(option.type, option.default)}", params=("option",)
        ) from None
    except TypeError:
        raise PatchscopeError(
            f"option {option.name}: a {option.type} cannot be given as text", params=("option",)
        ) from None


class Registry:
    """Named entries of one kind, each a class or factory with the options its signature declares.

    Args:
        kind: what an entry is, in messages (``defense``: "unknown defense 'x'").
        package: a package whose every module is imported the first time the registry is read (its modules
            register themselves); None: entries register where the registry is defined.
        reserved: parameter names that are never options (the caller supplies them).
        meta: defaults of the registration's metadata (e.g. ``{"bpda": False}``).
    """

    def __init__(
        self,
        kind: str,
        package: str | None = None,
        reserved: Iterable[str] = RESERVED,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.kind, self.package, self.reserved = kind, package, tuple(reserved)
        self.defaults = dict(meta or {})
        self._entries: dict[str, Spec] = {}
        self._discovered = package is None

    def register(self, name: str, **meta: Any) -> Callable[[B], B]:
        """Decorator: make a class or factory available as ``create(name, ...)``; ``meta`` is kept on its spec.

        Registering a name twice for a different object raises ValueError, as does a name not in kebab-case.
        """
        if not NAME.fullmatch(name):
            raise ValueError(f"{self.kind} name {name!r} is not kebab-case (lowercase words joined by '-')")

        def add(build: B) -> B:
            old = self._entries.get(name)
            if old is not None and old.build is not build:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Spec(
                self.kind,
                name,
                build,
                MappingProxyType({**self.defaults, **meta}),
                summary(build),
                self._options(build),
            )
            return build

        return add

    def remove(self, name: str) -> None:
        """Forget ``name`` (a plugin unloaded, a test's entry); nothing if it is not registered."""
        self._entries.pop(name, None)

    def list(self, pattern: str | None = None) -> builtins.list[str]:
        """The registered names, sorted; only those matching the shell-style ``pattern`` when given (``ds-*``)."""
        self._discover()
        return sorted(n for n in self._entries if pattern is None or fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def spec(self, name: str) -> Spec:
        """The registration of ``name``; an unknown name raises a :class:`PatchscopeError` listing the known ones."""
        self._discover()
        if name not in self._entries:
            raise PatchscopeError(
                f"unknown {self.kind} {name!r}: choose from {', '.join(self.list())}", params=(self.kind,)
            )
        return self._entries[name]

    def name_of(self, build: Callable[..., Any]) -> str | None:
        """The name ``build`` is registered under (None if it is not)."""
        return next((n for n, s in self._entries.items() if s.build is build), None)

    def create(self, name: str, *args: Any, **options: Any) -> Any:
        """``build(*args, **options)`` of entry ``name``; a keyword it does not take is refused, naming it."""
        spec = self.spec(name)
        return spec.build(*args, **spec.check(options))

    def parse(self, name: str, texts: Iterable[str]) -> dict[str, Any]:
        """``KEY=VALUE`` texts as the typed options of entry ``name`` (see :meth:`Spec.parse`)."""
        return self.spec(name).parse(texts)

    def _options(self, build: Callable[..., Any]) -> tuple[OptionSpec, ...]:
        docs = arg_docs(build)
        out = []
        for p in inspect.signature(build).parameters.values():
            if p.name in self.reserved or p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                continue
            default = None if p.default is p.empty else p.default
            if p.annotation is not p.empty:
                kind = p.annotation if isinstance(p.annotation, str) else inspect.formatannotation(p.annotation)
            else:
                kind = type(default).__name__ if default is not None else "str"
            out.append(OptionSpec(p.name, kind, default, docs.get(p.name, "")))
        return tuple(out)

    def _discover(self) -> None:
        """Import every module of the package once, so that their decorators have run."""
        if self._discovered or self.package is None:
            return
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{self.package}.{info.name}")
        self._discovered = True


def plain(text: str) -> str:
    """``text`` without reST roles and literals.

    >>> plain("wraps a :class:`~patchscope.models.Classifier` at ``quality``")
    'wraps a patchscope.models.Classifier at quality'
    """
    return re.sub(r":\w+:`~?([^`]+)`", r"\1", text).replace("``", "")


def summary(build: Callable[..., Any]) -> str:
    """The first sentence of ``build``'s docstring (its first line, or as far as the first sentence reaches into the
    paragraph), without reST markup.

    >>> def f():
    ...     '''One patch per image; called as
    ...     ``attack(x)``. Then more.'''
    >>> summary(f)
    'One patch per image; called as attack(x).'
    """
    paragraph = " ".join((inspect.getdoc(build) or "").split("\n\n")[0].split())
    return plain(re.split(r"(?<=\.) (?=[A-Z])", paragraph)[0])


def arg_docs(build: Callable[..., Any]) -> dict[str, str]:
    """``{parameter: description}`` from the ``Args:`` sections of ``build``'s docstring (and its ``__init__``'s, for
    a class), each description joined into one line, without reST markup.

    >>> def f(a, b):
    ...     '''Adds.
    ...
    ...     Args:
    ...         a: the first,
    ...             over two lines.
    ...         b (int): the second.
    ...     '''
    >>> arg_docs(f)
    {'a': 'the first, over two lines.', 'b': 'the second.'}
    """
    texts = [inspect.getdoc(build) or ""]
    init = getattr(build, "__init__", None) if isinstance(build, type) else None
    if init is not None and init is not object.__init__ and init.__doc__:
        texts.append(inspect.cleandoc(init.__doc__))
    out: dict[str, str] = {}
    for text in texts:
        lines = text.split("\n")
        starts = [i for i, line in enumerate(lines) if line.strip() == "Args:"]
        for start in starts[:1]:
            out |= _entries(lines[start + 1 :], len(lines[start]) - len(lines[start].lstrip()))
    return out


def _entries(lines: list[str], indent: int) -> dict[str, str]:
    """The ``name: text`` entries of an ``Args:`` block whose header is indented by ``indent``."""
    out: dict[str, list[str]] = {}
    step: int | None = None
    for line in lines:
        depth = len(line) - len(line.lstrip())
        if line.strip() and depth <= indent:
            break  # the section ends at the next line as shallow as its header
        if not line.strip():
            continue
        step = depth if step is None else step
        found = re.match(r"\*{0,2}(\w+)(?:\s*\([^)]*\))?:\s*(.*)", line.strip())
        if depth == step and found:
            out[found.group(1)] = [found.group(2)]
        elif out:
            out[list(out)[-1]].append(line.strip())
    return {k: plain(" ".join(v)) for k, v in out.items()}
