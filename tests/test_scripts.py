"""The scripts beside the package (docs/runs, tools, bench) cannot drift from it unseen: every ``patchscope`` name a
Python script imports exists, and every ``patchscope COMMAND --flag`` a shell script runs names a real command and
flag."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
import typer.main

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("docs/runs", "tools", "bench")


def _files(suffix: str) -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob(f"*{suffix}"))


def _imports(path: Path) -> list[tuple[str, str | None, int]]:
    """``(module, name or None, line)`` for each patchscope import of ``path``, at any depth."""
    found: list[tuple[str, str | None, int]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("patchscope"):
            found += [(node.module or "", a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names if a.name.startswith("patchscope")]
    return found


def _resolves(module: str, name: str | None) -> bool:
    mod = importlib.import_module(module)
    if name is None or hasattr(mod, name):
        return True
    try:
        importlib.import_module(f"{module}.{name}")
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("path", _files(".py"), ids=lambda p: str(p.relative_to(ROOT)))
def test_python_scripts_import_names_that_exist(path: Path) -> None:
    missing = [f"line {line}: from {m} import {n}" for m, n, line in _imports(path) if not _resolves(m, n)]
    assert not missing, missing


# `patchscope CMD`, `.venv/bin/patchscope CMD`, or a variable holding it (`$P CMD`, `$PS CMD`), then the rest of the
# command up to the next shell operator
INVOCATION = re.compile(r"(?:\bpatchscope|\$\{?PS?\}?)(?:[ \t]+--store[ \t]+\S+)?[ \t]+([a-z]+)\b([^;|&>}\n]*)")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def _commands() -> dict[str, set[str]]:
    from patchscope.cli import app

    root = typer.main.get_command(app)
    commands = getattr(root, "commands", {})
    assert commands, "the root command lists no subcommands"
    return {name: {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)} for name, cmd in commands.items()}


def _invocations(path: Path) -> list[tuple[str, list[str]]]:
    text = re.sub(r"\\\n", " ", path.read_text())  # one logical line per command
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return [(m.group(1), FLAG.findall(m.group(2))) for m in INVOCATION.finditer(text)]


@pytest.mark.parametrize("path", _files(".sh"), ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_scripts_run_commands_and_flags_that_exist(path: Path) -> None:
    commands = _commands()
    wrong = []
    for command, flags in _invocations(path):
        if command not in commands:
            wrong.append(f"unknown command {command!r}")
            continue
        wrong += [f"{command} {flag}" for flag in flags if flag not in commands[command] | {"--help"}]
    assert not wrong, wrong


def test_the_invocation_pattern_finds_commands_and_flags(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text('P=".venv/bin/patchscope --store x.db"\n$P attack --model m \\\n  --size 0.1 > out.json\n')
    assert _invocations(script) == [("attack", ["--model", "--size"])]
