"""`dcign-explore` in a real browser: the installed command started on a free 127.0.0.1 port,
its page driven by Playwright on Debian's Chromium (no browser download; `.ci/run` installs
the package), sliders moved, an image uploaded, and the page's pixels checked against what
the network's own decoding of those latents gives, within seconds.

The tiny run trains for seconds, so whether its light latent moves the brightness to one side
is the network's business; the test asks the network which way (and how far) the centroid
moves between the light slider's ends for the held-out image where it moves most, and checks
that the page shows that very move, and the very pixels, after a lossless PNG round-trip.
"""

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import installed, train_run
from PIL import Image

from dcign.shared.store import open_store
from dcign.train.eval import explore_model as em
from dcign.train.eval.explore import held_out_images
from dcign.train.eval.trained import load_trained
from dcign.train.synthetic import write_blob_store

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             "/usr/bin/chromium") if p and Path(p).is_file()), None)
if os.environ.get("DCIGN_REQUIRE_BROWSER") != "1":  # .ci/run requires it: no skipping there
    pytest.importorskip("playwright.sync_api")
    pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install "
                                                             "chromium; .ci/run does)")
from playwright import sync_api  # noqa: E402

SCREENSHOT = os.environ.get("DCIGN_EXPLORE_SCREENSHOT")  # where to keep the first view


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore-browser")
    store = write_blob_store(root / "blobs.zarr", 32, train_batches=2, test_batches=1)
    return {"store": store, "root": root, "run": train_run(store, root / "dcign", steps=20)}


@pytest.fixture(scope="module")
def explorer_url(run):
    """The installed dcign-explore on a free port, until the module's tests end."""
    process = subprocess.Popen(
        [installed("dcign-explore"), "--checkpoint", run["run"], "--store", run["store"],
         "--port", "0", "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
    first = []
    reader = threading.Thread(target=lambda: first.append(process.stdout.readline()))
    reader.start()
    reader.join(60)
    try:
        assert first and first[0].startswith("dcign-explore: http://127.0.0.1:"), (
            first, process.poll() is not None and process.stderr.read())
        yield first[0].split()[1]
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def page(explorer_url):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(viewport={"width": 1100, "height": 1000})
        page.set_default_timeout(20_000)
        page.goto(explorer_url)
        page.wait_for_selector("body[data-ready='1']")
        yield page
        browser.close()


def shown(page, selector: str) -> np.ndarray:
    src = page.get_attribute(selector, "src")
    head, _, data = src.partition(",")
    assert head == "data:image/png;base64", head
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))


def centroid_x(image: np.ndarray) -> float:
    """The brightness centroid's column."""
    weights = image.astype(float).sum(axis=0)
    return float((weights * np.arange(image.shape[1])).sum() / weights.sum())


def decoded(trained, code) -> np.ndarray:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the server decodes: the same arithmetic, the same pixels
    try:
        return em.decode(trained, code)
    finally:
        torch.set_num_threads(threads)


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal after the PNG round-trip, but for a gray level of float rounding at most."""
    return a.shape == b.shape and int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1


def test_the_first_view_shows_a_held_out_image_its_reconstruction_and_sliders(page):
    assert page.get_attribute("#input", "src").startswith("data:image/png")
    assert page.get_attribute("#recon", "src").startswith("data:image/png")
    labels = page.locator("#sliders label").all_inner_texts()
    assert labels == ["azimuth (z1)", "elevation (z2)", "light (z3)"]
    assert page.input_value("#command").startswith("dcign-rerender --checkpoint ")
    assert page.inner_text("#error") == ""
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT, full_page=True)


def test_the_light_slider_moves_the_brightness_as_the_latent_says(page, run):
    trained = load_trained(run["run"], "cpu")
    store = open_store(run["store"])
    images, labels = held_out_images(store)
    light = em.sliders(trained, store)[2]
    # the held-out image whose brightness the light latent moves most, by the network's say
    moves = []
    for k in range(len(images)):
        code = em.encode(trained, images[k])
        ends = [decoded(trained, em.edited(code, [light], {0: v})) for v in (light.low,
                                                                               light.high)]
        moves.append(centroid_x(ends[1]) - centroid_x(ends[0]))
    k = int(np.argmax(np.abs(moves)))
    page.fill("#held-out", str(k))
    page.click("#pick")
    page.wait_for_function(f"document.getElementById('input').src.length > 0 && "
                           f"typeof image !== 'undefined' && image.label === '{labels[k]}'")
    code = np.asarray(page.evaluate("image.code"), np.float32)
    at = {}
    for end in ("min", "max"):
        value = float(page.get_attribute("#slider-2", end))
        page.fill("#slider-2", str(value))
        page.wait_for_function("(v) => { const d = document.getElementById('render').dataset;"
                               " return d.values && JSON.parse(d.values)[2] === v; }", arg=value)
        values = json.loads(page.get_attribute("#render", "data-values"))
        expected = decoded(trained, em.edited(code, em.sliders(trained, store),
                                              dict(enumerate(values))))
        at[end] = shown(page, "#render")
        assert close(at[end], expected), f"the page's render at light {end} is not the decode"
        assert f"z3={em.latent_text(value)}" in page.inner_text("#latents")
        assert f"--set z3={em.latent_text(value)}" in page.input_value("#command")
    page_move = centroid_x(at["max"]) - centroid_x(at["min"])
    assert np.sign(page_move) == np.sign(moves[k]) != 0
    assert page_move == pytest.approx(moves[k], abs=0.05)


def test_an_uploaded_image_is_shown_gray_and_reconstructed(page, run, tmp_path):
    trained = load_trained(run["run"], "cpu")
    rgb = np.zeros((48, 60, 3), np.uint8)
    rgb[10:30, 15:45] = (250, 180, 40)  # a colour blob, another size than the model's
    Image.fromarray(rgb).save(tmp_path / "mine.png")
    gray = em.read_image((tmp_path / "mine.png").read_bytes(), trained.image_size)
    digest = hashlib.sha256(gray.tobytes()).hexdigest()[:12]
    page.set_input_files("#upload", str(tmp_path / "mine.png"))
    page.wait_for_selector(f"#recon[data-id='{digest}']")
    assert np.array_equal(shown(page, "#input"), gray)
    assert close(shown(page, "#recon"), decoded(trained, em.encode(trained, gray)))
    page.wait_for_selector(f"#render[data-id='{digest}']")
    assert f"input-{digest}.png" in page.input_value("#command")


def test_the_interpolation_ends_at_each_image(page, run, tmp_path):
    trained = load_trained(run["run"], "cpu")
    page.fill("#held-out-b", "3")
    page.click("#pick-b")
    page.fill("#t", "0")
    page.wait_for_selector("#between[data-t='0']")
    assert close(shown(page, "#between"), shown(page, "#recon"))
    Image.fromarray(np.full((32, 32), 90, np.uint8)).save(tmp_path / "b.png")  # uploaded
    page.set_input_files("#upload-b", str(tmp_path / "b.png"))
    page.wait_for_function("second.label === 'upload'")
    page.fill("#t", "1")
    page.wait_for_selector("#between[data-t='1']")
    gray = np.full((32, 32), 90, np.uint8)
    assert close(shown(page, "#between"), decoded(trained, em.encode(trained, gray)))


def test_an_unreadable_upload_is_one_line_in_the_page(page, tmp_path):
    (tmp_path / "junk.png").write_text("this is not a picture")
    page.set_input_files("#upload", str(tmp_path / "junk.png"))
    page.wait_for_function("document.getElementById('error').textContent.length > 0")
    assert page.inner_text("#error") == "the upload is not a readable image " \
                                        "(UnidentifiedImageError)"
