"""Serve the explorer with uvicorn until a signal stops it: the socket bound first (a port in use is one line), the
address announced, the browser opened once the server answers, and the stopping signal handed back to the caller
(who says what was kept) instead of being raised again inside uvicorn.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
import webbrowser
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn

from patchscope.errors import PatchscopeError
from patchscope.explore.app import ExploreSettings, create_app

#: host names that only this machine reaches
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


class _Server(uvicorn.Server):
    """uvicorn's server, its graceful stop on SIGINT/SIGTERM kept, the signal noted (``stopped_by``) and not raised
    again once it has stopped (the command line says itself what the stop kept)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.stopped_by: int | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stopped_by = self.stopped_by or sig
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        before = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in before.items():
                signal.signal(sig, handler)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: any free port); a port in use or a host this machine does not
    have is one line naming them."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as e:
        raise PatchscopeError(f"host {host!r}: not an address of this machine ({e})", params=("host",)) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(64)
    except OSError as e:
        sock.close()
        raise PatchscopeError(
            f"port {port} on {host}: {e.strerror or e}; choose another port, or 0 for any free one", params=("port",)
        ) from None
    return sock


def address(host: str, sock: socket.socket) -> str:
    """The page's address for a person to open."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    shown = "[::1]" if shown in ("::", "::1") else shown
    return f"http://{shown}:{sock.getsockname()[1]}/"


def _open_when_up(server: _Server, url: str) -> None:
    deadline = time.monotonic() + 60
    while not server.started and not server.should_exit and time.monotonic() < deadline:
        time.sleep(0.05)
    if server.started:
        with contextlib.suppress(Exception):  # no browser is no reason to stop serving
            webbrowser.open(url)


def serve(
    settings: ExploreSettings, host: str, port: int, announce: Callable[[str], None], open_browser: bool = True
) -> int | None:
    """Serve the explorer on ``host``:``port`` until SIGINT or SIGTERM; returns that signal (None if the server
    stopped by itself). ``announce`` is told the page's address before the first request is answered."""
    sock = bind(host, port)
    config = uvicorn.Config(
        create_app(settings), log_level="warning", access_log=False, timeout_graceful_shutdown=3, lifespan="on"
    )
    server = _Server(config)
    url = address(host, sock)
    announce(url)
    if open_browser:
        threading.Thread(target=_open_when_up, args=(server, url), daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return server.stopped_by
