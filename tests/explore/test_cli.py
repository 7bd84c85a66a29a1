"""`patchscope explore` as a user starts it: it serves on this machine and says where, Ctrl-C stops it with one line;
a missing extra, a bad model, a port in use or a bad patch is one line and exit 2 before anything is served."""

from __future__ import annotations

import signal
import socket
import sys

import pytest

from tests.cli._contract import invoke
from tests.explore.conftest import get_json, served

pytest.importorskip("fastapi", reason="the explore extra (pip install 'patchscope[explore]') is not installed")
pytest.importorskip("uvicorn", reason="the explore extra (pip install 'patchscope[explore]') is not installed")


def test_it_serves_on_this_machine_until_ctrl_c_which_prints_one_line():
    with served("--model", "gtsrb-cnn") as (proc, url):
        assert url.startswith("http://127.0.0.1:")
        options = get_json(url + "api/options")
        assert options["model"] == "gtsrb-cnn" and options["data"] == "demo"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [
        "patchscope: explore interrupted by SIGINT: the page is no longer served; runs saved from it are in "
        "the run store"
    ], err


def test_without_the_extra_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if it were not installed
    r = invoke("explore", "--no-browser")
    assert r.code == 2 and r.err_lines == [
        "patchscope: error: explore needs its web extra (FastAPI, uvicorn): pip install 'patchscope[explore]'"
    ]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["--patch", "no/such/run"], "--patch no/such/run: no patch.safetensors there"),
        (["--data", "nope"], "unknown data 'nope'"),
        (["--port", "70000"], "--port must be"),
        (["--threads", "0"], "--threads must be"),
    ],
)
def test_bad_options_are_one_line_before_anything_is_served(args: list[str], words: str):
    r = invoke("explore", "--no-browser", *args)
    assert r.code == 2 and len(r.err_lines) == 1 and words in r.err_lines[0], r.err


def test_a_port_in_use_is_one_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = invoke("explore", "--no-browser", "--model", "gtsrb-cnn", "--port", str(port))
    assert r.code == 2 and len(r.err_lines) == 1 and f"--port {port} on 127.0.0.1: " in r.err_lines[0], r.err
    assert "choose another port" in r.err_lines[0]


def test_serving_beyond_this_machine_warns_and_answers_any_host_name(capsys: pytest.CaptureFixture[str]):
    from patchscope.cli.explore import _hosts

    assert _hosts("0.0.0.0") == ("*",)
    assert "--host 0.0.0.0 serves the page (no login)" in capsys.readouterr().err
    assert "127.0.0.1" in _hosts("127.0.0.1") and capsys.readouterr().err == ""
