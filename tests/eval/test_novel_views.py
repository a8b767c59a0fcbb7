"""The novel-view score's pieces: which view a factor value belongs to, and how a latent's
nearest class mean names a grid view (exact, within a step round the circle, or the mirror)."""

from __future__ import annotations

import numpy as np

from dcign.shared.factors import FACE_FACTORS, Factor, chair_factors, recorded_factors
from dcign.shared.store import StoreSpec
from dcign.train.eval.novel_views import Views, name_views, views_of

GRID = np.arange(0.0, 360.0, 12.0)


def _chairs_store_spec(generator: dict) -> StoreSpec:
    """A grid chairs store's spec as read back from its attributes."""
    spec = StoreSpec("chairs", 32, 4, chair_factors("grid"), generator, {})
    return StoreSpec.from_attrs(spec.to_attrs())


def test_a_grid_factor_has_a_view_per_grid_value_and_others_have_equal_bins():
    # a store's table, read back, has no grid: its generator record holds it
    recorded = {"grid": {"azimuth": GRID[::-1].tolist(), "elevation": [20.0, 30.0]}}
    azimuth, elevation, intrinsic = recorded_factors(_chairs_store_spec(recorded))
    assert azimuth.grid == tuple(GRID) and elevation.grid == (20.0, 30.0)
    assert not intrinsic.grid
    views = views_of(azimuth)
    assert views.count == 30 and views.of(np.array([0.0, 12.0, 348.0])).tolist() == [0, 1, 29]
    binned = views_of(recorded_factors(_chairs_store_spec({}))[0])
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


def test_the_grid_is_no_stored_field_and_a_table_entry_that_carries_one_keeps_it():
    azimuth = chair_factors("grid")[0]
    gridded = Factor.from_attrs(azimuth.to_attrs() | {"grid": [0.0, 180.0]})
    assert gridded.grid == (0.0, 180.0) and gridded == azimuth  # equality ignores the grid
    assert "grid" not in gridded.to_attrs()  # stores (and their pinned digests) unchanged
    spec = StoreSpec("chairs", 32, 4, (gridded,), {"grid": {"azimuth": GRID.tolist()}}, {})
    assert recorded_factors(spec)[0].grid == (0.0, 180.0)
    faces = StoreSpec("faces", 32, 4, FACE_FACTORS, {}, {})
    assert recorded_factors(faces) == FACE_FACTORS
    assert not any(f.grid for f in recorded_factors(faces))
