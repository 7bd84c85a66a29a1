"""The page as a person uses it, in headless Chromium driven by Playwright: drag the zoo's patch off the bundled Stop
sign and back onto it and watch the top class change; upload a file that is not a picture and see the message while
the server keeps answering."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from patchscope.runs.store import RunStore
from tests.explore.conftest import get_json, served

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("chromium-headless-shell")
#: why these tests skip: `make test` installs neither a browser nor Playwright, CI's `.ci/run` installs both
NO_BROWSER = "needs Playwright (pip install 'patchscope[browser]') and Chromium on PATH; .ci/run installs both"

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None  # type: ignore[assignment]

pytest.importorskip("fastapi", reason="the explore extra (pip install 'patchscope[explore]') is not installed")
pytestmark = pytest.mark.skipif(sync_playwright is None or CHROMIUM is None, reason=NO_BROWSER)
WAIT_MS = 240_000  # a loaded 2-core machine takes its time over the first requests


@pytest.fixture(scope="module")
def browser() -> Iterator[tuple[Any, str]]:
    """Headless Chromium and the explorer's server (default model, data and patch) in its own process."""
    assert sync_playwright is not None and CHROMIUM is not None
    with served() as (_proc, url), sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield chromium, url
        chromium.close()


@pytest.fixture()
def page(browser: tuple[Any, str]) -> Iterator[tuple[Any, str, list[str]]]:
    """A fresh tab on the page, once it has shown its first view; yields it, the server's address and the page's
    script errors."""
    chromium, url = browser
    tab = chromium.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.goto(url)
    tab.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)
    tab.wait_for_selector("body[data-looks]", timeout=WAIT_MS)
    yield tab, url, errors
    tab.close()


def _top(tab: Any, which: str) -> str:
    return str(tab.inner_text(f"#{which}-top1"))


def _settle(tab: Any, which: str, text: str) -> None:
    """Wait until the page shows ``text`` as the ``which`` (clean, patched) view's top class."""
    tab.wait_for_function(
        "([id, text]) => document.getElementById(id).textContent === text", arg=[f"{which}-top1", text], timeout=WAIT_MS
    )


def _drag(tab: Any, start: tuple[float, float], end: tuple[float, float]) -> None:
    tab.mouse.move(*start)
    tab.mouse.down()
    tab.mouse.move(*end, steps=12)
    tab.mouse.up()


def test_dragging_the_zoo_patch_onto_the_stop_sign_turns_it_into_yield(page):
    tab, _url, errors = page
    assert tab.input_value("#patch") == "zoo:gtsrb-vit/stop-yield-small"
    assert tab.input_value("#model") == "gtsrb-vit"
    _settle(tab, "clean", "stop")
    box = tab.locator("#scene").bounding_box()
    f = box["width"] / 32  # screen pixels per image pixel
    home = (box["x"] + 14 * f, box["y"] + 18 * f)  # the patch's centre where it was made to sit
    corner = (box["x"] + 27 * f, box["y"] + 27 * f)
    _drag(tab, home, corner)
    _settle(tab, "patched", "stop")  # in the corner it does nothing
    _drag(tab, corner, home)
    _settle(tab, "patched", "yield")
    assert _top(tab, "clean") == "stop"
    assert "flipped" in (tab.get_attribute("#verdict", "class") or "")
    tab.wait_for_selector("body[data-certified]", timeout=WAIT_MS)  # the certificate came on its own
    assert "certified" in tab.inner_text("#cert-state")
    assert errors == []


def test_a_file_that_is_not_a_picture_shows_a_message_and_the_server_goes_on(page):
    tab, url, errors = page
    before = int(tab.get_attribute("body", "data-looks") or 0)
    tab.set_input_files("#upload-image", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"no"}])
    tab.wait_for_selector("#message:not([hidden])", timeout=WAIT_MS)
    assert "not a picture" in tab.inner_text("#message-text")
    tab.focus("#scene")
    tab.keyboard.press("ArrowLeft")  # the page still asks, and the server still answers
    tab.wait_for_function(f"Number(document.body.dataset.looks) > {before}", timeout=WAIT_MS)
    assert get_json(url + "api/options")["model"] == "gtsrb-vit"
    assert errors == []


def test_optimise_here_runs_from_the_page_and_is_saved_as_a_run(page):
    tab, _url, errors = page
    tab.select_option("#patch", "blank")
    tab.fill("#steps", "20")
    tab.select_option("#target", "13")  # yield
    tab.click("#optimise")
    tab.wait_for_selector("body[data-optimised='1']", timeout=WAIT_MS)
    assert tab.input_value("#patch").startswith("job:") and "done after 20 steps" in tab.inner_text("#opt-state")
    tab.click("#save")
    tab.wait_for_selector("#reproduce:not([hidden])", timeout=WAIT_MS)
    lines = tab.inner_text("#reproduce").splitlines()
    folder = Path(lines[0].split(" in ", 1)[1])
    assert (folder / "patch.safetensors").exists() and folder.parent.name == "explore"
    assert lines[1] == f"patchscope explore --model gtsrb-vit --data demo --patch {folder}"
    assert RunStore(os.environ["PATCHSCOPE_STORE"]).runs()[0].config["command"] == "explore"
    assert errors == []
