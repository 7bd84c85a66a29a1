"""`patchscope bench`: a model, a defended model or a certifier measured under the fixed patch-robustness protocol,
written as a robustness card (JSON with a schema name and version)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from patchscope.cli.common import (
    DataOptions,
    DeviceOpt,
    JsonOpt,
    OptionOpt,
    RegistryHelp,
    data_group,
    entry_options,
    note,
    option_errors,
    parse_floats,
    recorded,
    registry,
    resolve_device,
    resume_hint,
    translate,
)
from patchscope.cli.output import Col, print_table, show
from patchscope.errors import PatchscopeError
from patchscope.formatting import pct

app = typer.Typer()

CertifierOpt = Annotated[str | None, typer.Option(help="a certifier instead (certified accuracy too): {certifiers}")]
ProfileOpt = Annotated[
    str,
    typer.Option(help="quick (16 images, small budgets: a smoke test) | standard (500 images, the budgets to compare)"),
]
SharesOpt = Annotated[
    str | None, typer.Option(help="patch shares of the image area (default the protocol's: 0.01,0.02,0.05,0.1)")
]
ResumeOpt = Annotated[
    bool, typer.Option(help="continue an interrupted bench from OUT.progress (the shares it had finished)")
]


@app.command(cls=RegistryHelp)
@data_group("gtsrb:test", limit=None)
def bench(
    *,
    model: Annotated[str, typer.Option(help="model name or checkpoint")] = "gtsrb-cnn",
    defense: Annotated[str | None, typer.Option(help="an empirical defense around the model: {defenses}")] = None,
    certifier: CertifierOpt = None,
    option: OptionOpt = None,
    data_opts: DataOptions,
    profile: ProfileOpt = "quick",
    seed: int = 0,
    shares: SharesOpt = None,
    out: Annotated[Path, typer.Option(help="the robustness card (JSON)")] = Path("card.json"),
    resume: ResumeOpt = False,
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Measure patch robustness under protocol v1 as a card.

    At each share of the image area (0.01, 0.02, 0.05 and 0.1) a cascade of attacks (white-box per-image patches
    with a place search, a universal patch, gradient-free sparse-rs) runs on the images still standing; the budgets
    come from --profile. A certified image that an attack breaks fails the run (exit 1); gradient masking and robust
    accuracy rising with the share are flagged."""
    from patchscope.models import create_model
    from patchscope.workflows.bench import BenchCheckpoint, run_bench
    from patchscope.workflows.bench_checks import SelfCheckFailed
    from patchscope.workflows.bench_protocol import SHARES
    from patchscope.workflows.bench_protocol import profile as check_profile

    options, keys = _entry_options(defense, certifier, option)
    check_profile(profile)
    share_list = tuple(parse_floats(shares, "--shares", "0.01,0.05")) if shares is not None else SHARES
    _check_card_path(out)
    dev = resolve_device(device)
    net = create_model(model, dev)
    data = data_opts.cache().get(net)
    config: dict[str, Any] = {"model": model, "models": [model], "defense": defense, "certifier": certifier}
    config |= {"options": options, "data": data_opts.data, "profile": profile, "seed": seed, "shares": share_list}
    config |= {"device": dev, "out": str(out), "data_hash": data.data_hash()} | data_opts.recorded()
    given: dict[str, Any] = {"defense": defense, "certifier": certifier, "options": options, "seed": seed}
    given |= {"profile_name": profile, "shares": share_list, "device": dev, "progress": not as_json, "out": str(out)}
    given["checkpoint"] = ckpt = BenchCheckpoint(out.with_name(out.name + ".progress"), resume)
    try:
        with option_errors(keys), recorded("bench", config) as run, resume_hint():
            card = run_bench(net, data, model_name=model, data_spec=data_opts.data, **given)
            _write(card, out)
            ckpt.path.unlink(missing_ok=True)  # the card holds what it kept
            run.log(_metrics(card))
            run.artifact("card", out)
    except SelfCheckFailed as e:
        typer.echo(f"patchscope: error: {e}; no card was written", err=True)
        raise typer.Exit(1) from None
    for flag in card.results.flags:
        note(f"warning: {flag.message}")
    show(card.as_dict(), as_json, lambda: _table(card, out))


def _entry_options(defense: str | None, certifier: str | None, texts: list[str] | None) -> tuple[dict[str, Any], Any]:
    """The defense's or certifier's ``--option`` values (an unknown name, key or value: one line), and its option
    names."""
    if defense is not None and certifier is not None:
        raise PatchscopeError("--defense and --certifier: give one of them")
    if defense is None and certifier is None:
        if texts:
            raise PatchscopeError("--option: options belong to a --defense or a --certifier; name one")
        return {}, ()
    kind, name = ("defenses", defense) if defense is not None else ("certifiers", certifier)
    try:
        spec = registry(kind).spec(str(name))
    except PatchscopeError as e:  # "unknown certifier 'x'" names --certifier here (certify's flag is --defense)
        raise PatchscopeError(translate(e, {"certifier": "--certifier"})) from None
    return entry_options(kind, str(name), texts), tuple(spec.defaults)


def _check_card_path(out: Path) -> None:
    """Refuse, before any work, a card path that cannot be written (a folder there, a read-only folder)."""
    from patchscope.io import check_output

    if out.name in ("", ".", ".."):
        raise PatchscopeError(f"--out {out}: give a file name for the card, e.g. card.json")
    check_output(out.parent, (out.name, out.name + ".progress"), "out")


def _write(card: Any, out: Path) -> None:
    """Write the card atomically, validated against its schema first where the jsonschema package is installed."""
    import importlib.util

    from patchscope.workflows.bench_card import validate_card

    if importlib.util.find_spec("jsonschema") is not None:
        validate_card(card.as_dict())
    card.save(out)


def _metrics(card: Any) -> dict[str, Any]:
    """What the run store keeps: per share, the clean, robust and certified accuracy."""
    found: dict[str, Any] = {}
    for r in card.results.shares:
        row = {"robust_accuracy": r.robust, "clean_accuracy": r.clean}
        found[pct(r.share)] = row | ({"certified_accuracy": r.certified} if r.certified is not None else {})
    return found | {"flags": len(card.results.flags), "profile": card.protocol.profile}


def _table(card: Any, out: Path) -> None:
    """The protocol's shares, then the seeded setting's (where there is one): one row per share, the accuracies and
    what each attack broke."""
    behind = card.model.defense or card.model.certifier
    what = card.model.name + (f" + {behind}" if behind else "")
    protocol = f"protocol {card.protocol.version}, {card.protocol.profile}"
    title = f"{what} on {card.data.images} images of {card.data.spec} ({protocol})"
    seeded = card.results.seeded
    _share_table(card.results.shares, card.model.certifier is not None, title, None if seeded else out)
    if seeded is not None:
        typer.echo()
        title = f"{seeded.setting}: class {seeded.source} turned into {seeded.target} (targeted; robust: not turned)"
        _share_table(seeded.shares, card.model.certifier is not None, title, out)


def _share_table(shares: Any, certified: bool, title: str, out: Path | None) -> None:
    """One row per share of ``shares``: the accuracies and what each attack broke (``out``: say where the card is)."""
    columns: list[Col | str] = [Col(h, justify="right") for h in ("share", "side", "clean", "robust")]
    columns += [Col("certified", justify="right")] if certified else []
    columns += [Col(f"{a.name} broke", justify="right", drop=1) for a in shares[0].attacks]
    rows = []
    for r in shares:
        row = [pct(r.share), f"{r.side}px", pct(r.clean), pct(r.robust)] + ([pct(r.certified)] if certified else [])
        rows.append(row + [f"{a.broken}/{a.attacked}" for a in r.attacks])
    print_table(columns, rows, title, caption=f"card written to {out}" if out is not None else None)
