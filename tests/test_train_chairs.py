"""`dcign-train` on a chairs store: the factor table, not code, decides the batch types."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import assert_one_line_error, invoke

from dcign.render.cli import main as render_main
from dcign.shared.factors import FACE_FACTORS, chair_factors
from dcign.train.cli import main as train_main
from dcign.train.data import default_ratio


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
