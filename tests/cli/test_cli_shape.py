"""The command line's shape: one registration style, short commands, `--device auto` everywhere, library errors in
flags, the root `--store`, and reproducing command lines that the CLI accepts."""

from __future__ import annotations

import ast
import inspect
import json
import shlex
import textwrap
from pathlib import Path

import pytest
import typer
from typer.main import get_command

import patchscope.cli as cli
from patchscope.cli.common import resolve_device, translate
from patchscope.errors import PatchscopeError
from patchscope.runs.reproduce import command_line
from tests.conftest import run_cli

COMMAND_MODULES = (
    "attack",
    "bench",
    "calibrate",
    "defend",
    "demo",
    "evaluate",
    "explain",
    "explore",
    "leaderboard",
    "list",
    "print_sheet",
    "report",
    "runs",
    "study",
    "train",
)


def _commands() -> list[tuple[str, object]]:
    """(name, callback) of every command, sub-commands included."""
    out = []
    for module in COMMAND_MODULES:
        sub = getattr(cli, module).app
        assert isinstance(sub, typer.Typer), module
        out += [
            (f"{sub.info.name or ''} {c.name or c.callback.__name__}".strip(), c.callback)
            for c in sub.registered_commands
        ]
    return out


def test_every_command_module_registers_its_app_on_the_root():
    root = get_command(cli.app)
    for module in COMMAND_MODULES:
        sub = getattr(cli, module).app
        names = [sub.info.name] if sub.info.name else [c.name or c.callback.__name__ for c in sub.registered_commands]
        assert all(n in root.commands for n in names), (module, names)  # type: ignore[attr-defined]
    assert {"runs", "study", "attack", "defend", "certify", "defenses", "list"} <= set(root.commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("name", "callback"), _commands(), ids=[n for n, _ in _commands()])
def test_no_command_function_is_long(name, callback):
    """The body (after the signature and docstring) is at most 40 lines: work lives in the library or small helpers."""
    fn = ast.parse(textwrap.dedent(inspect.getsource(callback))).body[0]
    body = fn.body[1:] if isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant) else fn.body  # type: ignore[attr-defined]
    lines = body[-1].end_lineno - body[0].lineno + 1
    assert lines <= 40, f"{name}: {lines} lines"


def test_every_device_option_defaults_to_auto():
    with_device = [(n, c) for n, c in _commands() if "device" in inspect.signature(c).parameters]
    assert len(with_device) >= 10
    for name, callback in with_device:
        assert inspect.signature(callback).parameters["device"].default == "auto", name


def test_auto_picks_cuda_only_when_there_is_one(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(PatchscopeError, match="--device 'cuda': CUDA is not available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cpu") == "cpu"


@pytest.mark.parametrize(
    ("message", "params", "expected"),
    [
        (
            "kappa -1.0: the margin to win by cannot be negative",
            ("kappa",),
            "--kappa -1.0: the margin to win by cannot be negative",
        ),
        ("k 0: need at least one mask per axis", ("k",), "--k 0: need at least one mask per axis"),
        (
            "tv_weight, nps_weight and compile are the universal attack's only",
            ("tv_weight", "nps_weight", "compile"),
            "--tv, --nps and --compile are the universal attack's only",
        ),
        (
            "kernel does not apply to defense 'bits' (its options: bits)",
            ("kernel", "defense", "bits"),
            "--kernel does not apply to --defense 'bits' (its options: --bits)",
        ),
        ("patch runs/p: no patch.safetensors there", ("patch",), "--patch runs/p: no patch.safetensors there"),
        ("gtsrb:test: set root or PATCHSCOPE_DATA", ("root",), "gtsrb:test: set --data-root or PATCHSCOPE_DATA"),
        ("device 'tpu': use auto, cpu, cuda or cuda:N", ("device",), "--device 'tpu': use auto, cpu, cuda or cuda:N"),
        ("a 9px patch does not fit", (), "a 9px patch does not fit"),
    ],
)
def test_library_errors_come_out_in_flags(message, params, expected):
    assert translate(PatchscopeError(message, params=params)) == expected


def test_library_messages_name_parameters_not_flags():
    """The data, model, attack, defense, explain and evaluation layers never spell a flag: only the CLI does."""
    root = Path(cli.__file__).parent.parent
    offenders = []
    for path in root.rglob("*.py"):
        if path.relative_to(root).parts[0] not in (
            "data",
            "models",
            "attacks",
            "defenses",
            "explain",
            "eval",
            "street",
            "runs",
            "workflows",
        ):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "PatchscopeError" and node.args:
                text = ast.unparse(node.args[0])
                if " --" in text or text.lstrip("f'\"").startswith("--"):
                    offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, offenders


def test_a_library_error_reaches_the_user_as_a_flag(tiny_model_path, tmp_path):
    r = run_cli(
        "attack",
        "--model",
        str(tiny_model_path),
        "--data",
        "demo",
        "--kappa",
        "-1",
        "--steps",
        "1",
        "--out",
        str(tmp_path / "a"),
    )
    assert (
        r.returncode == 2
        and r.stderr.strip() == "patchscope: error: --kappa -1.0: the margin to win by cannot be negative"
    )
    r = run_cli(
        "certify",
        "--model",
        str(tiny_model_path),
        "--defense",
        "ds-column",
        "--option",
        "k=3",
        "--data",
        "demo",
        "--limit",
        "2",
    )
    assert r.returncode == 2 and "--option k: certifier 'ds-column' has no such option (its options: band)" in r.stderr


def test_the_root_store_option_is_the_one_runs_reads(tmp_path):
    from patchscope.runs.store import RunStore

    mine, other = tmp_path / "mine.db", tmp_path / "other.db"
    store = RunStore(mine)
    store.finish(store.start("attack", {"seed": 7}), {"success": 0.5})
    listed = run_cli("--store", str(mine), "runs", "list", "--json", env={"PATCHSCOPE_STORE": str(other)})
    assert listed.returncode == 0, listed.stderr
    out = json.loads(listed.stdout)
    assert out["store"] == str(mine) and [r["kind"] for r in out["runs"]] == ["attack"]
    shown = run_cli("--store", str(mine), "runs", "show", "1", "--json", env={"PATCHSCOPE_STORE": str(other)})
    assert shown.returncode == 0 and json.loads(shown.stdout)["config"] == {"seed": 7}
    assert not other.exists()


def _parses(line: str) -> None:
    """``line`` parses as a patchscope command (options and values checked by the CLI's own parser, nothing runs)."""
    args = shlex.split(line)[1:]
    group = get_command(cli.app)
    ctx = group.make_context("patchscope", list(args))
    rest = [*ctx._protected_args, *ctx.args]
    while rest:
        name, cmd, rest = group.resolve_command(ctx, rest)  # type: ignore[attr-defined]
        ctx = cmd.make_context(name, rest, parent=ctx)
        if not hasattr(cmd, "resolve_command"):
            break
        group, rest = cmd, [*ctx._protected_args, *ctx.args]


def test_reproducing_command_lines_are_accepted_by_the_cli():
    lines = [
        command_line(
            "attack",
            {"model": "gtsrb-cnn", "data": "demo", "tv_weight": 0.1, "compile": True, "out": Path("runs/my patch")},
        ),
        command_line(
            "defend", {"model": "gtsrb-cnn", "defense": "median", "patch": "p", "adaptive": True, "as_json": True}
        ),
        command_line("study robustness", {"models": ["a", "b"], "sizes": (0.02, 0.05), "certify_images": 8}),
        command_line("certify", {"defense": "patchcleanser", "patch_size": 0.05, "limit": 4, "as_json": True}),
    ]
    for line in lines:
        _parses(line)
    with pytest.raises(Exception, match="No such option: --no-such-option"):  # click's UsageError (typer may vendor it)
        _parses(command_line("attack", {"no_such_option": 1}))


@pytest.mark.parametrize(("name", "callback"), _commands(), ids=[n for n, _ in _commands()])
def test_each_command_says_what_it_does_in_one_short_whole_sentence(name, callback):
    """The root's command list shows a docstring's first paragraph: one sentence that fits an 80-column terminal."""
    first = (inspect.getdoc(callback) or "").split("\n\n")[0]
    assert "\n" not in first and first.endswith(".") and len(first) <= 64, f"{name}: {first!r}"


def test_flags_show_no_value_placeholder_in_help(monkeypatch):
    from tests.cli._contract import invoke

    monkeypatch.setenv("COLUMNS", "200")
    shown = invoke("attack", "--help")
    assert shown.code == 0
    lines = {line.split()[1]: line for line in shown.out.splitlines() if line.startswith("│ --")}
    for flag in ("--compile", "--per-image", "--resume", "--json", "--skip-bad", "--help"):
        assert "<bool>" not in lines[flag], lines[flag]
    assert "<int>" in lines["--steps"]  # options that take a value still say which
    listed = invoke("--help").out
    assert "<bool>" not in listed and all(len(line) <= 200 for line in listed.splitlines())


def test_a_help_body_reflows_to_the_terminal_instead_of_keeping_the_source_line_breaks(monkeypatch):
    """A docstring's later paragraphs are wrapped at the terminal's width: at 80 columns no help line ends short
    while the next line of the same paragraph goes on, and at 300 columns each paragraph is one line."""
    from tests.cli._contract import invoke

    paragraph = " ".join((inspect.getdoc(cli.attack.attack) or "").split("\n\n")[1].split())
    monkeypatch.setenv("COLUMNS", "300")
    assert any(line.strip() == paragraph for line in invoke("attack", "--help").out.splitlines())
    monkeypatch.setenv("COLUMNS", "80")
    body = invoke("attack", "--help").out.split("╭─")[0].splitlines()
    words = [line.strip() for line in body if line.strip()]
    assert " ".join(words[2:]) == paragraph and all(len(w) > 50 for w in words[2:-1]), words


def _cli_functions() -> list[tuple[str, str, int]]:
    """(file, function, lines including the signature) of every function in patchscope/cli."""
    found = []
    for path in sorted(Path(cli.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((path.name, node.name, node.end_lineno - node.lineno + 1))  # type: ignore[operator]
    return found


def test_no_function_in_the_cli_is_over_60_lines():
    functions = _cli_functions()
    assert len(functions) > 50
    long = {(f, n): lines for f, n, lines in functions if lines > 60}
    assert not long, long


def test_cli_help_states_no_measured_numbers():
    """Help says what an option does, not how much faster it measured (such numbers go stale)."""
    import re

    from typer.main import get_command

    root = get_command(cli.app)
    stale = re.compile(r"\d\s*x\b|\d+\s*%|\d\s*s of|\bpoints\b")
    texts = []
    for command in _walk(root):
        texts += [(command.name, getattr(p, "help", None) or "") for p in command.params]
    assert len(texts) > 100
    assert [(n, t) for n, t in texts if stale.search(t)] == []


def _walk(command):
    yield command
    for sub in getattr(command, "commands", {}).values():
        yield from _walk(sub)
