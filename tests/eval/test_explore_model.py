"""`dcign-explore`'s model side, without a browser: sliders per factor (a circle of two
latents as one angle), encode, decode, interpolate, the baseline's same edit, and the
`dcign-rerender` command that re-renders the very pixels the page shows."""

import math
import shlex
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import train_run
from PIL import Image

from dcign.shared.errors import DcignError
from dcign.shared.factors import FACE_FACTORS, chair_factors, regroup
from dcign.shared.store import open_store
from dcign.train.eval import explore_model as em
from dcign.train.eval.rerender import GAP, LABEL_HEIGHT, TILE_MIN
from dcign.train.eval.rerender import main as rerender_main
from dcign.train.eval.trained import load_trained
from dcign.train.synthetic import write_blob_store


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore")
    store = write_blob_store(root / "blobs.zarr", 32, train_batches=2, test_batches=1)
    return {"store": store} | {mode: train_run(store, root / mode, "--mode", mode, steps=2)
                               for mode in ("dcign", "vae")}


def like_trained(factors, assigns=True, latent_size=200):
    """What `sliders` reads of a Trained: its factor table, code size and method."""
    return SimpleNamespace(factors=factors, model=SimpleNamespace(
        arch=SimpleNamespace(latent_size=latent_size)),
        method=SimpleNamespace(assigns_latents=assigns))


def test_faces_get_one_latent_slider_per_factor_and_none_for_the_identity():
    controls = em.sliders(like_trained(FACE_FACTORS))
    assert [(s.factor, s.latents, s.angle) for s in controls] == [
        ("azimuth", (0,), False), ("elevation", (1,), False), ("light", (2,), False)]
    assert all((s.low, s.high) == (-em.LATENT_RANGE, em.LATENT_RANGE) for s in controls)
    assert [s.label for s in controls] == ["azimuth (z1)", "elevation (z2)", "light (z3)"]


def test_chairs_azimuth_on_a_circle_of_two_latents_is_one_angle_slider_keeping_the_radius():
    table = regroup(chair_factors("grid"), {"azimuth": 2})
    (azimuth,) = em.sliders(like_trained(table))  # elevation is stored only: no slider
    assert (azimuth.factor, azimuth.latents, azimuth.angle) == ("azimuth", (0, 1), True)
    assert (azimuth.low, azimuth.high) == (0.0, 360.0)
    assert azimuth.label == "azimuth (angle of z1,z2)"
    code = np.zeros(200, np.float32)
    code[:2] = (3.0, 4.0)  # radius 5
    assert azimuth.value(code) == pytest.approx(math.degrees(math.atan2(4, 3)))
    turned = em.edited(code, [azimuth], {0: 180.0})
    assert turned[:2] == pytest.approx([-5.0, 0.0], abs=1e-5)
    assert np.array_equal(turned[2:], code[2:])
    assert azimuth.value(turned) == pytest.approx(180.0)


def test_a_group_of_two_that_is_not_a_full_turn_gets_a_slider_per_latent():
    table = regroup(FACE_FACTORS, {"light": 2})
    controls = em.sliders(like_trained(table))
    assert [(s.factor, s.latents) for s in controls] == [
        ("azimuth", (0,)), ("elevation", (1,)), ("light", (2,)), ("light", (3,))]


def test_a_run_that_ties_no_latent_needs_a_store_and_then_gets_the_latents_eval_judges(runs):
    vae = load_trained(runs["vae"], "cpu")
    with pytest.raises(DcignError, match="give --store"):
        em.sliders(vae)
    controls = em.sliders(vae, open_store(runs["store"]))
    assert [s.factor for s in controls] == ["azimuth", "elevation", "light"]
    assert all(len(s.latents) == 1 and 0 <= s.latents[0] < 200 for s in controls)


def test_with_a_store_a_slider_spans_the_held_out_codes_padded(runs):
    dcign = load_trained(runs["dcign"], "cpu")
    for s in em.sliders(dcign, open_store(runs["store"])):
        assert s.low <= -em.MIN_RANGE and s.high >= em.MIN_RANGE


def test_encode_decode_and_interpolate_meet_the_ends(runs):
    trained = load_trained(runs["dcign"], "cpu")
    images = open_store(runs["store"]).read_complete("test", "light").images[0]
    a, b = em.encode(trained, images[0]), em.encode(trained, images[1])
    assert a.shape == (200,) and a.dtype == np.float32
    assert np.array_equal(em.interpolate(a, b, 0.0), a)
    assert np.allclose(em.interpolate(a, b, 1.0), b)
    assert np.allclose(em.interpolate(a, b, 0.5), (a + b) / 2)
    out = em.decode(trained, a)
    assert out.shape == (32, 32) and out.dtype == np.uint8


def test_an_image_is_read_as_rerender_reads_it_and_junk_is_one_line(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    gray = em.read_image((tmp_path / "a.png").read_bytes(), 32)
    assert gray.shape == (32, 32) and gray.dtype == np.uint8
    with pytest.raises(DcignError, match="the upload is not a readable image"):
        em.read_image(b"not a picture", 32, name="the upload")


def test_the_baseline_takes_the_main_runs_first_latent_of_each_factor():
    main = em.sliders(like_trained(FACE_FACTORS))
    baseline = [em.Slider("azimuth", (17,), False, -3, 3), em.Slider("light", (5,), False, -3, 3)]
    main_code = np.arange(1, 201, dtype=np.float32)
    theirs = np.zeros(200, np.float32)
    same = em.same_edit(main, baseline, theirs, main_code)
    assert same[17] == main_code[0] and same[5] == main_code[2]
    assert np.count_nonzero(same) == 2  # nothing else of the baseline's code moves


def test_the_latent_text_reads_back_as_the_same_float32():
    for v in (0.1, -1.2345678, 3.0, 1e-7, -0.0):
        assert np.float32(float(em.latent_text(v))) == np.float32(v)
    assert em.latent_text(3.0) == "3" and em.latent_text(-1.5) == "-1.5"


@pytest.mark.parametrize("mode", ["dcign", "vae"])
def test_the_command_re_renders_the_very_pixels_of_the_edit(runs, mode, tmp_path):
    """The command the page shows, run as written, draws the edit the page drew."""
    trained = load_trained(runs[mode], "cpu")
    store = open_store(runs["store"])
    controls = em.sliders(trained, store)
    gray = store.read_complete("test", "azimuth").images[0, 1]
    (tmp_path / "in.png").write_bytes(em.png_bytes(gray))
    code = em.encode(trained, gray)
    edit = em.edited(code, controls, {0: 1.7, 1: -2.25, 2: 0.123456789})
    command = em.rerender_command(runs[mode] / "checkpoint.pt", tmp_path / "in.png", edit,
                                  controls, trained.method.assigns_latents,
                                  out=str(tmp_path / "edit.png"))
    args = shlex.split(command)
    assert args[0] == "dcign-rerender"
    result = CliRunner().invoke(rerender_main, args[1:])
    assert result.exit_code == 0, result.output
    strip = np.asarray(Image.open(tmp_path / "edit.png"))
    tile = strip[LABEL_HEIGHT:, 2 * (TILE_MIN + GAP):][:, :TILE_MIN]
    expected = np.asarray(Image.fromarray(em.decode(trained, edit)).resize(
        (TILE_MIN, TILE_MIN), Image.Resampling.NEAREST))
    assert np.array_equal(tile, expected)


def test_a_chairs_run_with_a_circle_turns_by_angle_and_its_command_redraws_it(tmp_path):
    from dcign.render.cli import main as render_main  # only this test renders (GL)

    store = tmp_path / "chairs.zarr"
    rendered = CliRunner().invoke(render_main, [
        "chairs", "--size", "32", "--batch-size", "4", "--batches", "2", "--test-batches", "1",
        "--chairs", "20", "--test-chairs", "6", "--workers", "1", "--quiet", "--out",
        str(store)])
    assert rendered.exit_code == 0, rendered.output
    trained = load_trained(train_run(store, tmp_path / "run", "--latent-group", "azimuth=2",
                                     steps=2), "cpu")
    (azimuth,) = controls = em.sliders(trained, open_store(store))  # elevation: stored only
    assert azimuth.angle and azimuth.latents == (0, 1)
    gray = open_store(store).read_complete("test", "azimuth").images[0, 0]
    (tmp_path / "in.png").write_bytes(em.png_bytes(gray))
    code = em.encode(trained, gray)
    edit = em.edited(code, controls, {0: azimuth.value(code) + 90})
    assert np.hypot(*edit[:2]) == pytest.approx(np.hypot(*code[:2]), rel=1e-5)
    command = em.rerender_command(tmp_path / "run", tmp_path / "in.png", edit, controls,
                                  out=str(tmp_path / "edit.png"))
    assert "--factor azimuth" in command and "--set z1=" in command and "--set z2=" in command
    result = CliRunner().invoke(rerender_main, shlex.split(command)[1:])
    assert result.exit_code == 0, result.output
    tile = np.asarray(Image.open(tmp_path / "edit.png"))[LABEL_HEIGHT:,
                                                         2 * (TILE_MIN + GAP):][:, :TILE_MIN]
    assert np.array_equal(tile, np.asarray(Image.fromarray(em.decode(trained, edit)).resize(
        (TILE_MIN, TILE_MIN), Image.Resampling.NEAREST)))
