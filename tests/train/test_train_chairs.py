"""`dcign-train` on a chairs store: the factor table, not code, decides the batch types."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import assert_one_line_error, invoke
from PIL import Image

from dcign.render.cli import main as render_main
from dcign.shared.factors import FACE_FACTORS, chair_factors, regroup
from dcign.train.checkpoint import read_checkpoint
from dcign.train.cli import main as train_main
from dcign.train.data import default_ratio
from dcign.train.eval.cli import main as eval_main


@pytest.fixture(scope="module")
def grid_chairs(tmp_path_factory):
    store = tmp_path_factory.mktemp("chairs") / "chairs.zarr"
    rendered = invoke(render_main, ["chairs", "--size", "32", "--batch-size", "4", "--batches",
                                    "2", "--test-batches", "1", "--chairs", "20",
                                    "--test-chairs", "6", "--workers", "1", "--quiet",
                                    "--out", store])
    assert rendered.exit_code == 0, rendered.output
    return store


def train(*args):
    return CliRunner().invoke(train_main, [*map(str, args), "--no-progress"])


def test_the_default_ratio_is_the_papers_and_skips_factors_tied_to_no_latent():
    assert default_ratio(FACE_FACTORS) == [1, 1, 1, 10]
    assert default_ratio(chair_factors("grid")) == [1, 0, 10]  # elevation: stored only
    assert default_ratio(chair_factors("continuous")) == [1, 1, 10]


def test_dcign_trains_on_a_grid_chairs_store_with_default_options(grid_chairs, tmp_path):
    trained = train("--store", grid_chairs, "--out", tmp_path / "run", "--steps", 3)
    assert trained.exit_code == 0, trained.output
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_a_ratio_that_varies_a_factor_tied_to_no_latent_is_refused(grid_chairs, tmp_path):
    assert_one_line_error(train("--store", grid_chairs, "--out", tmp_path / "run", "--steps", 3,
                                "--ratio", "1:1:10"), "elevation", "no latent group")


def test_a_latent_group_of_two_gives_chairs_azimuth_two_latents_through_training_and_eval(
        grid_chairs, tmp_path):
    """A full turn is a circle, which one scalar cannot follow continuously: --latent-group
    azimuth=2 gives it z1 and z2, in training (both active in azimuth minibatches) and in
    evaluation (the novel view sets both; the view is named from both)."""
    result = invoke(train_main, ["--store", grid_chairs, "--out", tmp_path / "r", "--steps", 3,
                                 "--latent-group", "azimuth=2", "--no-progress"])
    assert result.exit_code == 0, result.output
    factors = {f["name"]: f["latents"] for f in
               read_checkpoint(tmp_path / "r" / "checkpoint.pt")["factors"]}
    assert factors == {"azimuth": [0, 2], "elevation": [2, 2], "intrinsic": [2, None]}
    evaluated = invoke(eval_main, ["--checkpoint", tmp_path / "r", "--store", grid_chairs,
                                   "--out", tmp_path / "e", "--samples", 100])
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["novel_view"]["scores"]["azimuth"]["latents"] == [0, 1]
    assert report["view_identification"]["azimuth"]["latents"] == [0, 1]
    with Image.open(tmp_path / "e" / "inferred_vs_true.png") as scatter:
        assert scatter.width > 1.5 * scatter.height, "z1 against z2 drawn beside z1 alone"
    compared = invoke(eval_main, ["--compare", tmp_path / "r", tmp_path / "r", "--store",
                                  grid_chairs, "--out", tmp_path / "c", "--samples", 100])
    assert compared.exit_code == 0, compared.output
    assert "view named azimuth: exact" in compared.output.splitlines()[0]


@pytest.mark.parametrize("group, words", [("intrinsic=2", "not a factor tied to a latent"),
                                          ("azimuth=two", "is not FACTOR=N"),
                                          ("azimuth=200", "leaves no latent for the object")])
def test_a_latent_group_that_cannot_be_is_one_line(grid_chairs, tmp_path, group, words):
    assert_one_line_error(invoke(train_main, ["--store", grid_chairs, "--out", tmp_path / "b",
                                              "--latent-group", group]), words)


def test_regrouping_lays_the_groups_out_again_in_table_order():
    faces = regroup(FACE_FACTORS, {"azimuth": 2})
    assert [f.latents for f in faces] == [(0, 2), (2, 3), (3, 4), (4, None)]
    assert regroup(FACE_FACTORS, {}) == FACE_FACTORS
