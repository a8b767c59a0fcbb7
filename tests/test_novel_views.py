"""The novel-view score's pieces: which view a factor value belongs to, and how a latent's
nearest class mean names a grid view (exact, within a step round the circle, or the mirror)."""

from __future__ import annotations

import numpy as np

from dcign.shared.factors import chair_factors
from dcign.train.eval.novel_views import Views, name_views, views_of

GRID = np.arange(0.0, 360.0, 12.0)


def test_a_grid_factor_has_a_view_per_grid_value_and_others_have_equal_bins():
    azimuth = chair_factors("grid")[0]
    views = views_of(azimuth, {"grid": {"azimuth": GRID.tolist()}})
    assert views.count == 30 and views.of(np.array([0.0, 12.0, 348.0])).tolist() == [0, 1, 29]
    binned = views_of(azimuth, {})
    assert binned.count == 20 and binned.of(np.array([0.0, 17.9, 18.0, 360.0])).tolist() == [
        0, 0, 1, 19]


def test_a_code_equal_to_the_angle_names_every_view_exactly():
    truth = np.repeat(np.arange(30), 4)
    result = name_views(GRID[truth], truth, GRID.copy(), Views(GRID, 0, 360, 30), True)
    assert result["exact"] == result["within_one_step"] == 1.0
    assert result["named_the_mirror_view"] == 0.0


def test_a_sine_code_names_the_front_back_reflection_not_the_mirror():
    truth = np.repeat(np.arange(30), 20)
    noise = np.random.default_rng(0).normal(0, 0.01, len(truth))
    sine = np.sin(np.radians(GRID[truth])) + noise  # sin a = sin(180° − a) = −sin(360° − a)
    result = name_views(sine, truth, np.sin(np.radians(GRID)), Views(GRID, 0, 360, 30), True)
    assert result["exact"] < 0.7 and result["named_the_front_back_reflection"] > 0.3
    assert result["named_the_mirror_view"] == 0.0


def test_a_folded_code_names_the_mirror_view_and_a_neighbour_across_zero_is_one_step():
    truth = np.arange(30)
    folded = np.abs(180.0 - GRID[truth])  # a view and its mirror code alike
    means = np.abs(180.0 - GRID)
    result = name_views(folded, truth, means, Views(GRID, 0, 360, 30), True)
    assert result["exact"] + result["named_the_mirror_view"] == 1.0
    assert result["named_the_mirror_view"] > 0.4
    one_off = name_views(np.array([GRID[29]]), np.array([0]), GRID.copy(),
                         Views(GRID, 0, 360, 30), True)
    assert one_off["exact"] == 0.0 and one_off["within_one_step"] == 1.0
