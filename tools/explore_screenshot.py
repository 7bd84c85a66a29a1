"""Take the screenshot of `patchscope explore` that docs/explore.md shows: the bundled Stop sign, the zoo's small ViT
patch where it was made to sit, tilted 15 degrees, its certificate in; saved as a small palette PNG.

    python tools/explore_screenshot.py docs/explore.png

Needs the explore and browser extras and Chromium on PATH (Playwright drives it; no browser is downloaded).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

WIDTH = 1100  # the saved picture's width in pixels


def main(out: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("chromium-headless-shell")
    assert chromium, "no Chromium on PATH"
    server = subprocess.Popen(
        [sys.executable, "-m", "patchscope", "explore", "--port", "0", "--no-browser"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = re.search(r"(http://\S+/)", server.stdout.readline() if server.stdout else "")
        assert url, "the server did not say where it serves"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1360, "height": 940})
            page.goto(url.group(1))
            page.wait_for_selector("body[data-ready=true]", timeout=240_000)
            page.locator("[data-camera=tilt]").fill("15")
            page.wait_for_selector("body[data-certified]", timeout=240_000)
            page.wait_for_timeout(500)
            shot = Image.open(io.BytesIO(page.screenshot()))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=60)
    small = shot.resize((WIDTH, round(shot.height * WIDTH / shot.width)), Image.Resampling.LANCZOS)
    small.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"{out}: {out.stat().st_size // 1024} kB")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/explore.png"))
