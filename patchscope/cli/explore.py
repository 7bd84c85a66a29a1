"""`patchscope explore`: a local web page to place a patch on an image by hand and watch the model change its mind."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from patchscope.cli.common import DeviceOpt, resolve_device, store_path
from patchscope.errors import Interrupted, PatchscopeError

if TYPE_CHECKING:
    from patchscope.explore.app import ExploreSettings

app = typer.Typer()

#: the host names that keep the page on this machine
LOCAL = ("127.0.0.1", "localhost", "::1", "[::1]")
EXTRA = "explore needs its web extra (FastAPI, uvicorn): pip install 'patchscope[explore]'"


def _check_extra() -> None:
    """Refuse with one line when the ``explore`` extra is missing."""
    import importlib

    try:
        for name in ("fastapi", "uvicorn", "python_multipart"):  # python-multipart: the page's uploads
            importlib.import_module(name)
    except ImportError:
        raise PatchscopeError(EXTRA) from None


@app.command()
def explore(
    model: Annotated[
        str, typer.Option(help="the model the page opens with: a zoo name, tv:NAME, timm:NAME or a checkpoint")
    ] = "gtsrb-vit",
    data: Annotated[str, typer.Option(help="where the page's images come from (as --data elsewhere)")] = "demo",
    patch: Annotated[
        str | None, typer.Option(help="a patch the page offers first: a run folder, a patch file or zoo:NAME")
    ] = None,
    port: Annotated[int, typer.Option(help="the port to serve on (0: any free one)")] = 8765,
    host: Annotated[
        str, typer.Option(help="the address to serve on; any other than 127.0.0.1 lets other machines in")
    ] = "127.0.0.1",
    no_browser: Annotated[bool, typer.Option("--no-browser", help="print the address, open no browser")] = False,
    threads: Annotated[int, typer.Option(help="CPU threads per request (more helps 224 px models)")] = 1,
    device: DeviceOpt = "auto",
) -> None:
    """Drag a patch onto an image in the browser and watch the model.

    Serves a page on this machine (until Ctrl-C) that puts a patch on an image, shows the model's top 5 and heatmaps
    with and without it, PatchCleanser's verdict, and optimises the patch where it sits; saved optimisations are
    runs in the run store."""
    import torch

    from patchscope.validate import check_int

    _check_extra()
    from patchscope.explore.app import ExploreSettings
    from patchscope.explore.server import serve

    check_int("port", port, 0, 65535)
    torch.set_num_threads(check_int("threads", threads, 1, 256))
    given, name = _given(patch)
    settings = ExploreSettings(model, data, given, name, resolve_device(device), store_path(None), _hosts(host))
    _check_start(settings)

    def announce(url: str) -> None:
        typer.echo(f"patchscope explore: {url} (Ctrl-C stops it)")
        sys.stdout.flush()

    stopped_by = serve(settings, host, port, announce, open_browser=not no_browser)
    if stopped_by is not None:
        raise Interrupted("the page is no longer served; runs saved from it are in the run store", stopped_by)


def _given(patch: str | None) -> tuple[Any, str | None]:
    """The ``--patch`` loaded (a bad one is refused before the server starts) and its name."""
    if patch is None:
        return None, None
    from patchscope.attacks import load_patch

    return load_patch(patch), patch


def _hosts(host: str) -> tuple[str, ...]:
    """The host names the page answers to; a warning when it is served beyond this machine."""
    if host in LOCAL:
        return LOCAL
    typer.echo(
        f"patchscope: warning: --host {host} serves the page (no login) to every machine that reaches this one",
        err=True,
    )
    return ("*",) if host in ("0.0.0.0", "::", "") else (host, *LOCAL)


def _check_start(settings: ExploreSettings) -> None:
    """Load the first model and its data once, so a bad --model or --data is one line before anything is served."""
    from patchscope.data import data_for
    from patchscope.models import create_model

    data_for(settings.data, create_model(settings.model, settings.device))
