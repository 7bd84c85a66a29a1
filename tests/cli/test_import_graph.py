"""The package's import graph: layers only import layers below them, and no module imports itself in a circle.

Every ``import`` counts, at module level or inside a function (a lazy import still ties the modules together).
"""

from __future__ import annotations

import ast
from pathlib import Path

import patchscope

ROOT = Path(patchscope.__file__).parent
#: lowest first; a module may import its own layer and the ones before it
LAYERS = (
    "base",
    "data",
    "models",
    "attacks",
    "defenses",
    "explain",
    "eval",
    "street",
    "runs",
    "workflows",
    "explore",
    "cli",
    "main",
)
BASE = {
    "patchscope",
    "patchscope.errors",
    "patchscope.io",
    "patchscope.progress",
    "patchscope.memory",
    "patchscope.distributed",
    "patchscope.validate",
    "patchscope.formatting",
    "patchscope.registry",
    "patchscope.recipe",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    if module in BASE:
        return 0
    if module == "patchscope.__main__":
        return LAYERS.index("main")
    return LAYERS.index(module.split(".")[1])


def imports(path: Path, modules: set[str]) -> set[str]:
    """The patchscope modules ``path`` imports (``from package import name``: the submodule if there is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("patchscope")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("patchscope"):
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules
            found |= subs or {node.module}
        elif isinstance(node, ast.Call) and _dynamic(
            node
        ):  # __import__("patchscope.x"), importlib.import_module("...")
            found.add(node.args[0].value)  # type: ignore[attr-defined]
    return found & modules


def _dynamic(call: ast.Call) -> bool:
    name = (
        call.func.id
        if isinstance(call.func, ast.Name)
        else call.func.attr
        if isinstance(call.func, ast.Attribute)
        else ""
    )
    first = call.args[0] if call.args else None
    return (
        name in ("__import__", "import_module")
        and isinstance(first, ast.Constant)
        and str(first.value).startswith("patchscope")
    )


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    return {m: imports(p, set(files)) - {m} for m, p in files.items()}


def test_every_module_has_a_layer():
    for m in graph():
        assert 0 <= layer(m) < len(LAYERS), m


def test_no_module_imports_a_higher_layer():
    wrong = [(m, i) for m, deps in graph().items() for i in deps if layer(i) > layer(m)]
    assert not wrong, wrong


def test_there_are_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(g[m]):
            assert state.get(d) != 1, " -> ".join([*path, m, d])
            if d not in state:
                visit(d, [*path, m])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [])


def test_command_modules_share_only_the_common_modules():
    g = graph()
    shared = {"patchscope.cli.common", "patchscope.cli.output"}  # options, loading, errors; printing
    commands = [m for m in g if m.startswith("patchscope.cli.") and m not in shared]
    assert len(commands) >= 8
    assert not {d for d in g["patchscope.cli.output"] if d.startswith("patchscope.cli")}  # printing stands alone
    assert {d for d in g["patchscope.cli.common"] if d.startswith("patchscope.cli")} <= {"patchscope.cli.output"}
    for m in commands:
        assert {d for d in g[m] if d.startswith("patchscope.cli")} <= shared, m
