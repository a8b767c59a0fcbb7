"""`dcign-explore` in a real browser: the installed command started on a free 127.0.0.1 port,
its Gradio page driven by Playwright on Debian's Chromium (no browser download; `.ci/run`
installs the package), sliders moved, an image uploaded, and the page's pixels (the PNG files
Gradio serves) checked against what the network's own decoding of the latents the page shows
gives, within seconds. Every request the page makes stays on 127.0.0.1.

The tiny run trains for seconds, so whether its light latent moves the brightness to one side
is the network's business; the test asks the network which way (and how far) the centroid
moves between the light slider's ends for the held-out image where it moves most, and checks
that the page shows that very move, and the very pixels, after a lossless PNG round-trip.
"""

import hashlib
import io
import os
import shutil
import subprocess
import threading
from contextlib import contextmanager
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


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore-browser")
    store = write_blob_store(root / "blobs.zarr", 32, train_batches=2, test_batches=1)
    return {"store": store, "root": root, "run": train_run(store, root / "dcign", steps=20)}


@contextmanager
def started_explorer(*args, wait_s: float = 60):
    """The installed dcign-explore with `args` on a free port: its address, until the block
    ends."""
    process = subprocess.Popen(
        [installed("dcign-explore"), *map(str, args), "--port", "0", "--no-browser"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=os.environ | {"OMP_NUM_THREADS": "1"})
    first = []
    reader = threading.Thread(target=lambda: first.append(process.stdout.readline()))
    reader.start()
    reader.join(wait_s)
    try:
        assert first and first[0].startswith("dcign-explore: http://127.0.0.1:"), (
            first, process.poll() is not None and process.stderr.read())
        yield first[0].split()[1]
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def chromium():
    """One Chromium for the module: Playwright's sync API runs one instance per thread."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


@contextmanager
def opened(browser, url: str):
    """A page showing `url` once it has drawn its first re-render, and every URL the page
    requested."""
    page = browser.new_page(viewport={"width": 1100, "height": 1000})
    page.set_default_timeout(20_000)
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(url)
    page.wait_for_function("(document.querySelector('#command textarea') || {}).value"
                           "?.startsWith('dcign-rerender')")
    yield page, requests
    page.close()


@pytest.fixture(scope="module")
def explorer_url(run):
    """The installed dcign-explore on a free port, until the module's tests end."""
    with started_explorer("--checkpoint", run["run"], "--store", run["store"]) as url:
        yield url


@pytest.fixture(scope="module")
def browser_page(chromium, explorer_url):
    """The page as it opens, and every URL it requested."""
    with opened(chromium, explorer_url) as (page, requests):
        yield page, explorer_url, requests


@pytest.fixture
def page(browser_page):
    return browser_page[0]


def text(page, elem_id: str) -> str:
    return page.input_value(f"#{elem_id} textarea")


def shown(page, elem_id: str) -> np.ndarray:
    """The image a Gradio picture shows, as the PNG file the server sent."""
    src = page.get_attribute(f"#{elem_id} img", "src")
    response = page.request.get(src)
    assert response.ok, src
    return np.asarray(Image.open(io.BytesIO(response.body())))


def upload(page, elem_id: str, path) -> None:
    """A file given to a Gradio upload button (its file chooser)."""
    with page.expect_file_chooser() as chooser:
        page.click(f"#{elem_id}")
    chooser.value.set_files(str(path))


def wait_text(page, elem_id: str, needle: str) -> None:
    page.wait_for_function("([id, needle]) => (document.querySelector(`#${id} textarea`) ||"
                           " {}).value?.includes(needle)", arg=[elem_id, needle])


def shown_code(page, code: np.ndarray) -> np.ndarray:
    """The code the page says it renders: the image's, with the latents it lists."""
    out = np.array(code, np.float32)
    for item in text(page, "latents").split():
        name, value = item.split("=")
        out[int(name[1:]) - 1] = np.float32(value)
    return out


def centroid_x(image: np.ndarray) -> float:
    """The brightness centroid's column."""
    weights = image.astype(float).sum(axis=0)
    return float((weights * np.arange(image.shape[1])).sum() / weights.sum())


def one_thread(function, *args):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the server runs: the same arithmetic, the same pixels
    try:
        return function(*args)
    finally:
        torch.set_num_threads(threads)


def decoded(trained, code) -> np.ndarray:
    return one_thread(em.decode, trained, code)


def encoded(trained, image) -> np.ndarray:
    return one_thread(em.encode, trained, image)


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal after the PNG round-trip, but for a gray level of float rounding at most."""
    return a.shape == b.shape and int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1


def test_the_first_view_shows_a_held_out_image_its_reconstruction_and_sliders(page):
    for picture in ("input", "recon", "render", "image-b", "between"):
        assert page.get_attribute(f"#{picture} img", "src").startswith("http://127.0.0.1:")
    labels = [page.inner_text(f"#slider-{k} [data-testid='block-info']") for k in range(3)]
    assert labels == ["azimuth (z1)", "elevation (z2)", "light (z3)"]
    assert text(page, "command").startswith("dcign-rerender --checkpoint ")
    assert page.locator("#error [role=alert]").count() == 0  # no error shown


def test_the_page_fetches_nothing_from_elsewhere(browser_page):
    page, url, requests = browser_page
    assert requests and url.startswith("http://127.0.0.1:")
    elsewhere = [r for r in requests if not r.startswith(url.rstrip("/"))
                 and not r.startswith(("data:", "blob:"))]
    assert not elsewhere, elsewhere


def test_the_light_slider_moves_the_brightness_as_the_latent_says(page, run):
    trained = load_trained(run["run"], "cpu")
    store = open_store(run["store"])
    images, labels = held_out_images(store)
    controls = em.sliders(trained, store)
    light = controls[2]
    # the held-out image whose brightness the light latent moves most, by the network's say
    moves = []
    for k in range(len(images)):
        code = encoded(trained, images[k])
        ends = [decoded(trained, em.edited(code, [light], {0: v})) for v in (light.low,
                                                                               light.high)]
        moves.append(centroid_x(ends[1]) - centroid_x(ends[0]))
    k = int(np.argmax(np.abs(moves)))
    digest = hashlib.sha256(images[k].tobytes()).hexdigest()[:12]
    page.fill("#held-out input", str(k))
    page.click("#pick")
    wait_text(page, "command", f"input-{digest}.png")
    assert text(page, "image-label") == labels[k]
    code = encoded(trained, images[k])
    at = {}
    for end in ("min", "max"):
        value = float(page.get_attribute("#slider-2 input[type=range]", end))
        page.fill("#slider-2 input[type=range]", str(value))
        wait_text(page, "latents", f"z3={em.latent_text(value)}")
        edit = shown_code(page, code)
        for s, v in zip(controls[:2], edit[:2], strict=True):  # the others stay where they were
            assert s.low <= v <= s.high
        at[end] = shown(page, "render")
        assert close(at[end], decoded(trained, edit)), (
            f"the page's render at light {end} is not the decode")
        assert f"--set z3={em.latent_text(value)}" in text(page, "command")
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
    upload(page, "upload", tmp_path / "mine.png")
    wait_text(page, "command", f"input-{digest}.png")
    assert text(page, "image-label") == "upload"
    assert np.array_equal(shown(page, "input"), gray)
    assert close(shown(page, "recon"), decoded(trained, encoded(trained, gray)))
    assert close(shown(page, "render"), decoded(trained, shown_code(page, encoded(trained,
                                                                                  gray))))


def test_the_interpolation_ends_at_each_image(page, run, tmp_path):
    trained = load_trained(run["run"], "cpu")
    page.fill("#held-out-b input", "3")
    page.click("#pick-b")
    wait_text(page, "between-caption", "image 3)")
    page.fill("#t input[type=range]", "0")
    wait_text(page, "between-caption", "t = 0 ")
    assert close(shown(page, "between"), shown(page, "recon"))
    gray = np.full((32, 32), 90, np.uint8)
    Image.fromarray(gray).save(tmp_path / "b.png")  # uploaded
    upload(page, "upload-b", tmp_path / "b.png")
    wait_text(page, "between-caption", "(upload)")
    page.fill("#t input[type=range]", "1")
    wait_text(page, "between-caption", "t = 1 (upload)")
    assert close(shown(page, "between"), decoded(trained, encoded(trained, gray)))


def test_an_unreadable_upload_is_one_line_in_the_page(page, tmp_path):
    (tmp_path / "junk.png").write_text("this is not a picture")
    upload(page, "upload", tmp_path / "junk.png")
    page.wait_for_selector("#error [role=alert]")
    assert page.inner_text("#error [role=alert]") == ("the upload is not a readable image "
                                                      "(UnidentifiedImageError)")


def test_with_no_arguments_the_page_opens_the_shipped_faces_model_on_faces_it_rendered(
        chromium):
    with started_explorer(wait_s=180) as url, opened(chromium, url) as (page, requests):
        assert text(page, "command").startswith("dcign-rerender --checkpoint faces64 ")
        assert text(page, "image-label") == "test/azimuth minibatch 0 image 0"
        face = shown(page, "input")
        assert face.shape[:2] == (64, 64) and face.std() > 10  # a rendered face, not a blank
        assert page.locator("#error [role=alert]").count() == 0
        assert all(r.startswith((url.rstrip("/"), "data:", "blob:")) for r in requests)
