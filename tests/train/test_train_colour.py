"""Colour through training and evaluation (issue 22 item 4): a colour faces store and a
colour chairs store train 3 steps and evaluate through the real CLIs; both architectures
take the store's channel count; the loss sums over channels; figures are in colour; and a
checkpoint and a store of other colours are refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import assert_one_line_error, invoke, train_run
from PIL import Image

from dcign.train.checkpoint import read_checkpoint
from dcign.train.cli import main as train_main
from dcign.train.data import network_input, network_output
from dcign.train.dataset import MinibatchDataset
from dcign.train.eval.cli import main as eval_main
from dcign.train.model import DCIGN, architecture_for
from dcign.train.objective import reconstruction_nats

FAST = ["--sweep", "-3:3:3", "--traversal-images", "2", "--samples", "200"]


def run_eval(*args):
    return CliRunner().invoke(eval_main, [str(a) for a in args])


def _colourful(path) -> float:
    """The largest |R - B| in a PNG (a gray figure's tiles have 0)."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    return float(np.abs(pixels[..., 0] - pixels[..., 2]).max())


@pytest.fixture(scope="module")
def colour_runs(tmp_path_factory, colour_faces, colour_chairs):
    root = tmp_path_factory.mktemp("colour-runs")
    return {"faces": (colour_faces, train_run(colour_faces, root / "faces", steps=3)),
            "chairs": (colour_chairs[1], train_run(colour_chairs[1], root / "chairs", steps=3))}


@pytest.mark.parametrize("kind", ["faces", "chairs"])
def test_a_colour_store_trains_3_steps_and_evaluates_with_colour_figures(colour_runs, kind,
                                                                         tmp_path):
    store, run = colour_runs[kind]
    arch = read_checkpoint(run / "checkpoint.pt")["arch"]
    assert arch["dec_channels"][-1] == 3
    assert _colourful(run / "reconstructions.png") > 5  # gray: exactly 0
    result = run_eval("--checkpoint", run, "--store", store, "--out", tmp_path / "report", *FAST)
    assert result.exit_code == 0, result.output
    traversal = tmp_path / "report" / "traversal_intrinsic.png"
    assert _colourful(traversal) > 5  # the input tiles, at least, are in colour


def test_both_architectures_take_the_channel_count():
    for name, size in (("paper150", 150), ("small", 32)):
        arch = architecture_for(name, size, channels=3)
        with torch.device("meta"):
            net = DCIGN(arch)
            assert net.encoder[0].in_channels == 3
            out = net.decode(torch.zeros(2, arch.latent_size))
        assert tuple(out.shape) == (2, 3, size, size)
        assert architecture_for(name, size) == architecture_for(name, size, channels=1)
        assert architecture_for(name, size).to_dict() == architecture_for(name, size).to_dict()
    assert "channels" not in architecture_for("small", 32).to_dict()  # gray records as before


def test_the_loss_sums_bernoulli_terms_over_every_pixel_and_channel():
    logits = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    per_channel = sum(reconstruction_nats(logits[:, c:c + 1], x[:, c:c + 1]) for c in range(3))
    assert torch.allclose(reconstruction_nats(logits, x), per_channel)


def test_the_network_reads_and_writes_a_stores_rgb_images(colour_faces):
    item = MinibatchDataset(colour_faces)[0]
    assert tuple(item["images"].shape) == (4, 3, 32, 32)
    images = np.random.default_rng(0).integers(0, 256, (2, 5, 5, 3), dtype=np.uint8)
    x = network_input(torch.from_numpy(images))
    assert tuple(x.shape) == (2, 3, 5, 5)
    assert np.array_equal(network_output(x), images)
    gray = images[..., 0]
    assert np.array_equal(network_output(network_input(torch.from_numpy(gray))), gray)


def test_a_checkpoint_and_a_store_of_other_colours_are_refused_in_one_line(
        colour_runs, tiny_store, colour_faces, tmp_path):
    _, run = colour_runs["faces"]
    assert_one_line_error(run_eval("--checkpoint", run, "--store", tiny_store, *FAST),
                          "trained on rgb images", "has gray images")
    gray_run = train_run(tiny_store, tmp_path / "gray", steps=1)
    assert_one_line_error(
        invoke(train_main, ["--store", colour_faces, "--out", gray_run, "--resume",
                            "--steps", "2", "--no-progress"]),
        "holds a small 32×32 network; this run builds small 32×32×3")


def test_rerender_of_a_colour_network_shows_the_input_in_colour(colour_runs, tmp_path):
    from dcign.train.eval.rerender import LABEL_HEIGHT, TILE_MIN
    from dcign.train.eval.rerender import main as rerender_main

    store, run = colour_runs["faces"]
    face = MinibatchDataset(store, "test")[0]["images"][0]  # (3, 32, 32) in [0, 1]
    image = tmp_path / "face.png"
    pixels = network_output(face[None])[0]
    Image.fromarray(pixels).save(image)
    result = CliRunner().invoke(rerender_main, [str(a) for a in (
        "--checkpoint", run, "--image", image, "--factor", "azimuth", "--values", "-3:3:3",
        "--out", tmp_path / "strip.png")])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "strip.png") as strip:
        assert strip.mode == "RGB"
        first = np.asarray(strip)[LABEL_HEIGHT:, :TILE_MIN]
    expected = np.asarray(Image.fromarray(pixels).resize((TILE_MIN, TILE_MIN), Image.NEAREST))
    assert np.array_equal(first, expected)
