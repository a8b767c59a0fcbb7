"""The README's picture of `dcign-explore`, as a user first sees it: the installed command
started on a free port, its Gradio page opened in Debian's Chromium by Playwright (as the
browser test does), and the page captured once it has drawn its first re-render.

    python docs/explore_screenshot.py --out docs/explore.png   # what `dcign-explore` opens on
    python docs/explore_screenshot.py --checkpoint runs/faces64-dcign \\
        --baseline runs/faces64-vae --store datasets/faces64.zarr --out docs/explore-vae.png
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--baseline")
    parser.add_argument("--store")
    parser.add_argument("--out", default="docs/explore.png")
    parser.add_argument("--colours", type=int, default=96, help="palette size of the PNG")
    args = parser.parse_args()
    command = [str(Path(sys.executable).with_name("dcign-explore")), "--port", "0",
               "--no-browser"]
    for flag in ("checkpoint", "baseline", "store"):
        if getattr(args, flag):
            command += [f"--{flag}", getattr(args, flag)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().split()[1]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"))
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(url)
            page.wait_for_function("(document.querySelector('#between-caption textarea') || "
                                   "{}).value?.startsWith('t = ')", timeout=60_000)
            shot = page.screenshot(full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    image = Image.open(io.BytesIO(shot)).convert("RGB").quantize(args.colours)
    image.save(args.out, optimize=True)
    print(f"{args.out}: {image.width}×{image.height}, {Path(args.out).stat().st_size} bytes")


if __name__ == "__main__":
    main()
