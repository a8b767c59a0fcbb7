"""`dcign-rerender`: one image in, a labelled strip of novel views out; bad input in one line."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import assert_one_line_error, train_run
from PIL import Image

from dcign.train.eval.rerender import GAP, LABEL_HEIGHT, TILE_MIN, load_gray, main
from dcign.train.synthetic import write_blob_store


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("rerender")
    store = write_blob_store(root / "blobs.zarr", 32, train_batches=2, test_batches=1)
    return {mode: train_run(store, root / mode, "--mode", mode, steps=2)
            for mode in ("dcign", "vae")}


def rerender(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def write_image(path, shape, mode="RGB"):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def test_a_colour_image_of_another_size_gives_a_strip_of_n_views_with_one_warning(runs,
                                                                                 tmp_path):
    image = write_image(tmp_path / "face.png", (50, 70, 3))
    result = rerender("--checkpoint", runs["dcign"], "--image", image, "--factor", "azimuth",
                      "--values", "-15:15:5", "--out", tmp_path / "strip.png")
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().splitlines() == [
        f"warning: {image} is 70×50; resized to the model's 32×32"]
    tiles = 2 + 5  # input, reconstruction, 5 views
    strip = Image.open(tmp_path / "strip.png")
    assert strip.size == (tiles * (TILE_MIN + GAP) - GAP, TILE_MIN + LABEL_HEIGHT)
    assert "5 views of azimuth, z1 from -15 to +15" in result.stdout


def test_the_first_tile_is_the_input_in_gray_and_the_views_differ_from_it(runs, tmp_path):
    image = write_image(tmp_path / "gray.png", (32, 32), "L")
    result = rerender("--checkpoint", runs["dcign"], "--image", image, "--factor", "light",
                      "--values", "0:1:2", "--out", tmp_path / "s.png")
    assert result.exit_code == 0 and result.stderr == ""  # model-sized: no warning
    strip = np.asarray(Image.open(tmp_path / "s.png"))
    first = strip[LABEL_HEIGHT:, :TILE_MIN]
    expected = np.asarray(Image.open(image).resize((TILE_MIN, TILE_MIN), Image.NEAREST))
    assert np.array_equal(first, expected)


def test_colour_is_converted_with_the_papers_gray_weights(tmp_path):
    pixel = np.array([[[200, 100, 50]]], np.uint8).repeat(8, 0).repeat(8, 1)
    Image.fromarray(pixel).save(tmp_path / "c.png")
    assert load_gray(tmp_path / "c.png", 8)[0, 0] == round(0.21 * 200 + 0.72 * 100 + 0.07 * 50)


def test_a_vae_run_sweeps_the_latent_given(runs, tmp_path):
    image = write_image(tmp_path / "f.png", (32, 32, 3))
    result = rerender("--checkpoint", runs["vae"], "--image", image, "--factor", "azimuth",
                      "--latent", 7, "--values", "-1:1:3", "--out", tmp_path / "s.png")
    assert result.exit_code == 0, result.output
    assert "z7" in result.stdout


def test_set_fixes_latents_before_the_sweep_and_the_sweep_wins_on_its_own(runs, tmp_path):
    image = write_image(tmp_path / "f.png", (32, 32), "L")

    def views(*extra):
        out = tmp_path / "s.png"
        result = rerender("--checkpoint", runs["dcign"], "--image", image, "--factor",
                          "azimuth", "--values", "0.5:0.5:1", *extra, "--out", out)
        assert result.exit_code == 0, result.output
        return np.asarray(Image.open(out))[:, 2 * (TILE_MIN + GAP):]

    plain = views()
    assert np.array_equal(views("--set", "z1=-4"), plain)  # the swept latent is the sweep's
    assert not np.array_equal(views("--set", "z3=4", "--set", "z2=-4"), plain)


@pytest.mark.parametrize("case, needle", [
    ("not an image", "is not a readable image"),
    ("missing image", "no image at"),
    ("bad values", "is not START:STOP:N"),
    ("zero views", "N must be at least 1"),
    ("unknown factor", "has no factor 'nose'"),
    ("vae without a latent", "give --latent N"),
    ("latent out of range", "the code has 200 latents"),
    ("missing checkpoint", "no checkpoint at"),
    ("bad set", "is not zN=V"),
    ("set out of range", "the code has latents z1 to z200"),
])
def test_bad_input_is_one_line_with_a_non_zero_exit(case, needle, runs, tmp_path):
    good = write_image(tmp_path / "ok.png", (32, 32, 3))
    (tmp_path / "text.png").write_text("this is not a picture")
    base = {"--checkpoint": runs["dcign"], "--image": good, "--factor": "azimuth",
            "--values": "-15:15:3", "--out": tmp_path / "s.png"}
    change = {
        "not an image": {"--image": tmp_path / "text.png"},
        "missing image": {"--image": tmp_path / "none.png"},
        "bad values": {"--values": "a:b:c"},
        "zero views": {"--values": "0:1:0"},
        "unknown factor": {"--factor": "nose"},
        "vae without a latent": {"--checkpoint": runs["vae"]},
        "latent out of range": {"--latent": "201"},
        "missing checkpoint": {"--checkpoint": tmp_path / "none"},
        "bad set": {"--set": "light=2"},
        "set out of range": {"--set": "z201=1"},
    }[case]
    args = [str(x) for k, v in (base | change).items() for x in (k, v)]
    assert_one_line_error(rerender(*args), needle)
    assert not (tmp_path / "s.png").exists()


def test_the_installed_command_reports_errors_in_one_line(tmp_path):
    exe = shutil.which("dcign-rerender", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("dcign-rerender is not installed in this environment")
    proc = subprocess.run([exe, "--checkpoint", tmp_path, "--image", "x.png", "--factor",
                           "azimuth", "--out", tmp_path / "s.png"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        f"Error: no checkpoint at {tmp_path / 'checkpoint.pt'}"]
