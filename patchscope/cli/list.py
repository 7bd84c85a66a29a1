"""`patchscope list KIND` and `patchscope defenses`: the registered architectures, attacks, defenses and certifiers,
each with what it does and its options (type, default, what each does), read from the registry alone."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from patchscope.cli.common import REGISTRY_KINDS, JsonOpt, registry
from patchscope.cli.output import Col, print_table, show
from patchscope.formatting import value_text

app = typer.Typer()


@app.command("list")
def list_entries(
    kind: Annotated[str, typer.Argument(help=" | ".join(REGISTRY_KINDS), show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """List the registered entries of one kind, with their options.

    Each with what it does and its options with their types, defaults and docs."""
    rows = entries(kind)
    columns: list[Col | str] = ["name", Col("what it does", drop=1), "options: KEY=DEFAULT (TYPE)"]
    table = [[r["name"], r["summary"], _options_cell(r["options"])] for r in rows]
    show(rows, as_json, lambda: print_table(columns, table))


@app.command()
def defenses(as_json: JsonOpt = False) -> None:
    """List the defenses and certifiers, with their options.

    Each with its options (with defaults) and whether attacks need BPDA through it."""
    rows = [_defense_row(r, "defense") for r in entries("defenses")]
    rows += [_defense_row(r, "certifier") for r in entries("certifiers")]
    table: list[list[str]] = [
        [
            r["name"],
            r["kind"],
            {True: "yes", False: "no", None: "-"}[r["bpda"]],
            ", ".join(f"{k}={_default(v)}" for k, v in r["options"].items()) or "-",
            r["summary"],
        ]
        for r in rows
    ]
    columns: list[Col | str] = ["name", Col("kind", drop=1), "BPDA", "options (-o KEY=VALUE)", "what it does"]
    show(rows, as_json, lambda: print_table(columns, table))


def entries(kind: str) -> list[dict[str, Any]]:
    """Each entry of ``kind`` as ``{name, summary, meta, options: [{name, type, default, doc}]}``."""
    reg = registry(kind)
    out = []
    for name in reg.list():
        spec = reg.spec(name)
        options = [{"name": o.name, "type": o.type, "default": o.default, "doc": o.doc} for o in spec.options]
        out.append({"name": name, "summary": spec.summary, "meta": dict(spec.meta), "options": options})
    return out


def _defense_row(entry: dict[str, Any], kind: str) -> dict[str, Any]:
    """A row of `patchscope defenses`: name, kind, BPDA (None for a certifier), ``{option: default}``, summary."""
    options = {o["name"]: o["default"] for o in entry["options"]}
    bpda = entry["meta"].get("bpda")
    return {"name": entry["name"], "kind": kind, "bpda": bpda, "options": options, "summary": entry["summary"]}


def _options_cell(options: list[dict[str, Any]]) -> str:
    """One line per option: ``KEY=DEFAULT (TYPE): what it does``; ``-`` where there are none."""
    lines = [
        f"{o['name']}={_default(o['default'])} ({o['type']}){': ' + o['doc'] if o['doc'] else ''}" for o in options
    ]
    return "\n".join(lines) or "-"


def _default(value: Any) -> str:
    """A default as ``--option`` would take it: ``0.5``, ``true``, ``32,64`` (None: ``-``)."""
    return ",".join(value_text(v) for v in value) if isinstance(value, (list, tuple)) else value_text(value)
