"""`dcign-explore`'s server and command, without a browser: the page's JSON calls answered
from the networks, bad input as one line (in the page and on the command line), 127.0.0.1
only. tests/eval/test_explore_browser.py drives the page itself."""

import base64
import io
import json
import re
import socket
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import assert_one_line_error, train_run
from PIL import Image

from dcign.shared.errors import DcignError
from dcign.train.eval import explore_model as em
from dcign.train.eval.explore import HOST, bind, build_explorer, main, serve
from dcign.train.synthetic import write_blob_store


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore")
    store = write_blob_store(root / "blobs.zarr", 32, train_batches=2, test_batches=1)
    return {"store": store, "root": root} | {
        mode: train_run(store, root / mode, "--mode", mode, steps=2) for mode in ("dcign", "vae")}


@pytest.fixture(scope="module")
def server(runs):
    explorer = build_explorer(str(runs["dcign"]), str(runs["vae"]), str(runs["store"]),
                              folder=runs["root"])
    http = serve(explorer, bind(0))
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://{HOST}:{http.server_address[1]}", explorer
    http.shutdown()
    http.server_close()


def call(base, path, body=None, raw=False):
    data = None if body is None else (body if raw else json.dumps(body).encode())
    request = urllib.request.Request(base + path, data=data, method="GET" if data is None
                                     else "POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def pixels(data_url):
    head, _, data = data_url.partition(",")
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))


def test_the_page_and_its_calls_show_the_networks_edit(server, runs):
    base, explorer = server
    status, page = call(base, "/")
    assert status == 200 and b"dcign-explore" in page
    assert not re.search(rb"(src|href)=.http|fetch\(.http|@import", page)  # self-contained
    status, body = call(base, "/api/info")
    info = json.loads(body)
    assert info["baseline"] == "vae" and info["held_out"] == 80
    assert [s["label"] for s in info["sliders"]] == ["azimuth (z1)", "elevation (z2)",
                                                     "light (z3)"]
    status, body = call(base, "/api/image", {"held_out": 5})
    image = json.loads(body)
    assert status == 200 and pixels(image["input"]).shape == (32, 32)
    assert np.array_equal(pixels(image["input"]), explorer.held_out[5])
    status, body = call(base, "/api/render", {"id": image["id"], "code": image["code"],
                                              "baseline_code": image["baseline_code"],
                                              "values": [0.5, -1.0, 2.0]})
    answer = json.loads(body)
    assert status == 200, answer
    code = np.asarray(image["code"], np.float32)
    edit = em.edited(code, explorer.controls, {0: 0.5, 1: -1.0, 2: 2.0})
    assert np.array_equal(pixels(answer["render"]), em.decode(explorer.main, edit))
    assert pixels(answer["baseline_render"]).shape == (32, 32)
    assert answer["latents"] == "z1=0.5  z2=-1  z3=2"
    assert answer["command"].startswith("dcign-rerender --checkpoint ")
    assert f"input-{image['id']}.png" in answer["command"]
    assert (runs["root"] / f"input-{image['id']}.png").is_file()
    b = json.loads(call(base, "/api/image", {"held_out": 6})[1])
    status, body = call(base, "/api/interpolate", {"a": image["code"], "b": b["code"], "t": 0})
    assert np.array_equal(pixels(json.loads(body)["render"]), pixels(image["recon"]))


def test_an_upload_is_read_gray_and_model_sized(server):
    base, _ = server
    buffer = io.BytesIO()
    Image.fromarray(np.full((50, 70, 3), 200, np.uint8)).save(buffer, format="JPEG")
    status, body = call(base, "/api/upload", buffer.getvalue(), raw=True)
    answer = json.loads(body)
    assert status == 200 and pixels(answer["input"]).shape == (32, 32)
    assert answer["label"] == "upload"


@pytest.mark.parametrize("path, body, needle", [
    ("/api/upload", b"this is not a picture", "the upload is not a readable image"),
    ("/api/image", {"held_out": 999}, "held-out image 999: choose 0 to 79"),
    ("/api/image", b"{", "the request is not JSON"),
    ("/api/render", {"id": "0" * 12, "code": [1.0], "values": [0, 0, 0]},
     "a code of 200 finite numbers"),
    ("/api/render", {"code": [0.0] * 200, "values": [0, 0, 0]}, "pick or upload an image"),
    ("/api/interpolate", {"a": [0.0] * 200, "b": [0.0] * 200, "t": 2}, "t 2: a number from 0"),
])
def test_bad_input_in_the_page_is_one_line(server, path, body, needle):
    base, _ = server
    status, answer = call(base, path, body, raw=isinstance(body, bytes))
    error = json.loads(answer)["error"]
    assert status == 400 and needle in error and "\n" not in error


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


def test_a_shipped_name_not_yet_shipped_is_one_line():
    assert_one_line_error(run("--checkpoint", "chairs64", "--port", 0, "--no-browser"),
                          "'chairs64' is not shipped yet")


def test_help_gives_examples_and_names_the_checkpoints_to_come():
    result = run("--help")
    assert result.exit_code == 0
    for needle in ("--checkpoint runs/faces64-dcign --baseline runs/faces64-vae",
                   "faces64, chairs64 will be named here", "127.0.0.1"):
        assert needle in " ".join(result.output.split()), needle


def test_without_a_store_the_page_takes_uploads_only(runs):
    explorer = build_explorer(str(runs["dcign"]), None, None, folder=runs["root"])
    assert explorer.info()["held_out"] == 0
    assert [(s.low, s.high) for s in explorer.controls] == [(-em.LATENT_RANGE,
                                                              em.LATENT_RANGE)] * 3
    with pytest.raises(DcignError, match="no held-out images: start dcign-explore with"):
        explorer.pick({"held_out": 0})


def test_a_baseline_of_another_size_is_one_line(runs, tmp_path):
    big = write_blob_store(tmp_path / "64.zarr", 64, 1, 1)
    other = train_run(big, tmp_path / "big", steps=1)
    assert_one_line_error(run("--checkpoint", runs["dcign"], "--baseline", other, "--port", 0,
                              "--no-browser"), "is a 64×64 gray 'blobs' network")


def test_a_colour_network_is_explored_in_colour(colour_faces, tmp_path):
    explorer = build_explorer(str(train_run(colour_faces, tmp_path / "rgb", steps=2)), None,
                              str(colour_faces), folder=tmp_path)
    image = explorer.pick({"held_out": 0})
    assert pixels(image["input"]).shape == (32, 32, 3)
    answer = explorer.render({"id": image["id"], "code": image["code"], "values": [1, 0, -1]})
    edit = em.edited(np.asarray(image["code"], np.float32), explorer.controls,
                     {0: 1, 1: 0, 2: -1})
    assert np.array_equal(pixels(answer["render"]), em.decode(explorer.main, edit))
    assert pixels(answer["render"]).shape == (32, 32, 3)
    buffer = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), (200, 30, 30), np.uint8)).save(buffer, format="PNG")
    upload = explorer.upload(buffer.getvalue())
    assert (pixels(upload["input"])[0, 0] == (200, 30, 30)).all()  # red kept, not grayed
