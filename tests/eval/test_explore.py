"""`dcign-explore` without a browser: what the page's events are answered from (`Explorer`,
the networks' own pixels as numpy arrays), the Gradio page's functions, bad input as one
line (in the page and on the command line), 127.0.0.1 only.
tests/eval/test_explore_browser.py drives the page itself."""

import io
import socket
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import assert_one_line_error, train_run
from PIL import Image

from dcign.shared.errors import DcignError
from dcign.train.eval import explore_model as em
from dcign.train.eval.explore import HOST, build_explorer, free_port, main
from dcign.train.synthetic import write_blob_store


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore")
    store = write_blob_store(root / "blobs.zarr", 32, train_batches=2, test_batches=1)
    return {"store": store, "root": root} | {
        mode: train_run(store, root / mode, "--mode", mode, steps=2) for mode in ("dcign", "vae")}


@pytest.fixture(scope="module")
def explorer(runs):
    return build_explorer(str(runs["dcign"]), str(runs["vae"]), str(runs["store"]),
                          folder=runs["root"])


@pytest.fixture(scope="module")
def page(explorer):
    from dcign.train.eval.explore_page import build_page

    return build_page(explorer)


def handler(page, name: str):
    """The page's function `name` (pick, upload, render, between, ...), as Gradio calls it."""
    return next(f.fn for f in page.fns.values() if f.name == name)


def jpeg(shape, value) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full(shape, value, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_the_explorer_gives_the_networks_edit(explorer, runs):
    info = explorer.info()
    assert info["baseline"] == "vae" and info["held_out"] == 80
    assert [s["label"] for s in info["sliders"]] == ["azimuth (z1)", "elevation (z2)",
                                                     "light (z3)"]
    image = explorer.pick({"held_out": 5.0})  # a number field's value
    assert image["input"].shape == (32, 32)
    assert np.array_equal(image["input"], explorer.held_out[5])
    answer = explorer.render({"id": image["id"], "code": image["code"],
                              "baseline_code": image["baseline_code"],
                              "values": [0.5, -1.0, 2.0]})
    code = np.asarray(image["code"], np.float32)
    edit = em.edited(code, explorer.controls, {0: 0.5, 1: -1.0, 2: 2.0})
    assert np.array_equal(answer["render"], em.decode(explorer.main, edit))
    assert answer["baseline_render"].shape == (32, 32)
    assert answer["latents"] == "z1=0.5  z2=-1  z3=2"
    assert answer["command"].startswith("dcign-rerender --checkpoint ")
    assert f"input-{image['id']}.png" in answer["command"]
    assert (runs["root"] / f"input-{image['id']}.png").is_file()
    b = explorer.pick({"held_out": 6})
    between = explorer.interpolate({"a": image["code"], "b": b["code"], "t": 0})
    assert np.array_equal(between["render"], image["recon"])


def test_the_gradio_page_renders_through_the_explorer(page, explorer):
    state, shown, recon, label, *rest = handler(page, "pick")(5)
    values, error = rest[:-1], rest[-1]
    assert np.array_equal(shown, explorer.held_out[5]) and error == ""
    assert label == explorer.held_out_labels[5] and len(values) == 3
    render, theirs, latents, command, timing, _ = handler(page, "render")(state, 0.5, -1, 2)
    edit = em.edited(np.asarray(state["code"], np.float32), explorer.controls,
                     {0: 0.5, 1: -1.0, 2: 2.0})
    assert np.array_equal(render, em.decode(explorer.main, edit))
    assert latents == "z1=0.5  z2=-1  z3=2" and command.startswith("dcign-rerender")
    second, image_b, _ = handler(page, "<lambda>")(6)
    mixed, caption, _ = handler(page, "between")(state, second, 0.0)
    assert np.array_equal(mixed, recon) and caption.startswith("t = 0 (test/")


def test_an_upload_is_read_gray_and_model_sized(page):
    state, shown, *_ = handler(page, "upload")(jpeg((50, 70, 3), 200))
    assert shown.shape == (32, 32) and state["label"] == "upload"


@pytest.mark.parametrize("name, args, needle", [
    ("upload", (b"this is not a picture",), "the upload is not a readable image"),
    ("pick", (999,), "held-out image 999: choose 0 to 79"),
    ("pick", (2.5,), "held-out image 2.5: choose 0 to 79"),
    ("render", (None, 0, 0, 0), "pick or upload an image first"),
    ("render", ({"id": "0" * 12, "code": [1.0], "values": [0, 0, 0], "baseline_code": None},
                0, 0, 0), "a code of 200 finite numbers"),
    ("between", ({"code": [0.0] * 200}, {"code": [0.0] * 200, "label": "x"}, 2),
     "t 2.0: a number from 0"),
])
def test_bad_input_in_the_page_is_one_line(page, name, args, needle):
    with pytest.warns(UserWarning, match=needle[:20]):  # gr.Warning: a toast in the page
        error = handler(page, name)(*args)[-1]
    assert needle in error and error.startswith('<div role="alert">') and "\n" not in error


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_a_port_in_use_is_one_line(runs):
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_one_line_error(run("--checkpoint", runs["dcign"], "--port", port, "--no-browser"),
                              f"port {port} on 127.0.0.1 is in use")


def test_a_store_that_does_not_match_the_checkpoint_is_one_line(runs, tmp_path):
    big = write_blob_store(tmp_path / "64.zarr", 64, 1, 1)
    assert_one_line_error(run("--checkpoint", runs["dcign"], "--store", big, "--port", 0,
                              "--no-browser"), "holds a 32×32 network", "64×64 images")


def test_a_baseline_that_ties_nothing_without_a_store_is_one_line(runs):
    assert_one_line_error(run("--checkpoint", runs["vae"], "--port", 0, "--no-browser"),
                          "give --store")


def test_a_checkpoint_that_is_neither_a_path_nor_a_shipped_name_is_one_line():
    assert_one_line_error(run("--checkpoint", "faces65", "--port", 0, "--no-browser"),
                          "no checkpoint at faces65")


def test_help_gives_examples_and_names_the_shipped_checkpoints():
    result = run("--help")
    assert result.exit_code == 0
    for needle in ("--checkpoint runs/faces64-dcign --baseline runs/faces64-vae",
                   "Shipped checkpoints: faces64, chairs64", "[default: faces64]", "127.0.0.1"):
        assert needle in " ".join(result.output.split()), needle


def test_without_a_store_the_page_takes_uploads_only(runs):
    explorer = build_explorer(str(runs["dcign"]), None, None, folder=runs["root"])
    assert explorer.info()["held_out"] == 0
    assert [(s.low, s.high) for s in explorer.controls] == [(-em.LATENT_RANGE,
                                                              em.LATENT_RANGE)] * 3
    with pytest.raises(DcignError, match="no held-out images: start dcign-explore with"):
        explorer.pick({"held_out": 0})


def test_a_port_is_checked_before_gradio_and_zero_is_a_free_one():
    port = free_port(0)
    assert 0 < port < 65536
    with socket.socket() as taken:
        taken.bind((HOST, port))
        taken.listen()
        with pytest.raises(DcignError, match=f"port {port} on 127.0.0.1 is in use"):
            free_port(port)


def test_a_baseline_of_another_size_is_one_line(runs, tmp_path):
    big = write_blob_store(tmp_path / "64.zarr", 64, 1, 1)
    other = train_run(big, tmp_path / "big", steps=1)
    assert_one_line_error(run("--checkpoint", runs["dcign"], "--baseline", other, "--port", 0,
                              "--no-browser"), "is a 64×64 gray 'blobs' network")


def test_a_colour_network_is_explored_in_colour(colour_faces, tmp_path):
    explorer = build_explorer(str(train_run(colour_faces, tmp_path / "rgb", steps=2)), None,
                              str(colour_faces), folder=tmp_path)
    image = explorer.pick({"held_out": 0})
    assert image["input"].shape == (32, 32, 3)
    answer = explorer.render({"id": image["id"], "code": image["code"], "values": [1, 0, -1]})
    edit = em.edited(np.asarray(image["code"], np.float32), explorer.controls,
                     {0: 1, 1: 0, 2: -1})
    assert np.array_equal(answer["render"], em.decode(explorer.main, edit))
    assert answer["render"].shape == (32, 32, 3)
    buffer = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), (200, 30, 30), np.uint8)).save(buffer, format="PNG")
    upload = explorer.upload(buffer.getvalue())
    assert (upload["input"][0, 0] == (200, 30, 30)).all()  # red kept, not grayed


def test_without_gradio_the_command_says_which_extra(runs, monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # an install without the explorer extra
    monkeypatch.delitem(sys.modules, "dcign.train.eval.explore_page", raising=False)
    assert_one_line_error(run("--checkpoint", runs["dcign"], "--port", 0, "--no-browser"),
                          "needs Gradio: pip install 'dcign[explorer]'")
