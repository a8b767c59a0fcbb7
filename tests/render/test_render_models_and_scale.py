"""`--model` with Basel Face Model files, and paper-scale requests that are interrupted."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.io
import zarr
from conftest import TINY, assert_one_line_error, render, store_tool

from dcign.render.objects.embedded_face_data import load_embedded_model
from dcign.render.writer import local_pool
from dcign.shared.store import open_store

SHAPE_COMPONENTS, ALBEDO_COMPONENTS = 10, 6  # a few are enough; keeps the files small


def _flat_basis(basis: np.ndarray, k: int) -> np.ndarray:
    return basis[:k].reshape(k, -1).T  # (3N, k) columns, as both BFM files store them


@pytest.fixture(scope="module")
def bfm2009_file(tmp_path_factory):
    """The embedded model written in BFM 2009's layout: 1-based clockwise triangles, 0-255
    texture, standard deviations."""
    m = load_embedded_model()
    path = tmp_path_factory.mktemp("bfm") / "01_MorphableModel.mat"
    scipy.io.savemat(path, {
        "shapeMU": m.shape_mean.reshape(-1, 1) * 1000.0,
        "shapePC": _flat_basis(m.shape_basis, SHAPE_COMPONENTS),
        "shapeEV": m.shape_std[:SHAPE_COMPONENTS, None] * 1000.0,
        "texMU": m.albedo_mean.reshape(-1, 1) * 255.0,
        "texPC": _flat_basis(m.albedo_basis, ALBEDO_COMPONENTS),
        "texEV": m.albedo_std[:ALBEDO_COMPONENTS, None] * 255.0,
        "tl": (m.triangles[:, [0, 2, 1]] + 1).astype(np.float64),
    })
    return path


@pytest.fixture(scope="module")
def bfm2017_file(tmp_path_factory):
    """The embedded model in BFM 2017's layout: variances, 0-based (3, T) cells."""
    m = load_embedded_model()
    path = tmp_path_factory.mktemp("bfm") / "model2017-1_bfm_nomouth.h5"
    with h5py.File(path, "w") as f:
        f["shape/model/mean"] = m.shape_mean.reshape(-1)
        f["shape/model/pcaBasis"] = _flat_basis(m.shape_basis, SHAPE_COMPONENTS)
        f["shape/model/pcaVariance"] = m.shape_std[:SHAPE_COMPONENTS] ** 2
        f["shape/representer/points"] = m.shape_mean.T
        f["shape/representer/cells"] = m.triangles.T.astype(np.uint32)
        f["color/model/mean"] = m.albedo_mean.reshape(-1)
        f["color/model/pcaBasis"] = _flat_basis(m.albedo_basis, ALBEDO_COMPONENTS)
        f["color/model/pcaVariance"] = m.albedo_std[:ALBEDO_COMPONENTS] ** 2
    return path


@pytest.mark.parametrize("model_file", ["bfm2009_file", "bfm2017_file"])
def test_faces_render_from_a_basel_model_file(tmp_path, model_file, request):
    path = request.getfixturevalue(model_file)
    out = tmp_path / "basel.zarr"
    result = render([*TINY, "--vary", "azimuth,intrinsic", "--model", path, "--out", out])
    assert result.exit_code == 0, result.output
    assert store_tool(["verify", out]).exit_code == 0
    spec = open_store(out).spec
    assert spec.model["source"] == str(path.resolve())
    assert spec.model["shape_components"] == SHAPE_COMPONENTS
    images = zarr.open_group(str(out), mode="r")["train/azimuth/images"][:]
    assert images[:, :, 12:20, 12:20].mean() > 40  # a lit face in the middle, on black


def test_basel_2009_and_2017_files_of_one_model_render_the_same_faces(tmp_path, bfm2009_file,
                                                                      bfm2017_file):
    stores = {}
    for name, path in (("2009", bfm2009_file), ("2017", bfm2017_file)):
        stores[name] = tmp_path / f"{name}.zarr"
        assert render([*TINY, "--vary", "light", "--model", path, "--out",
                       stores[name]]).exit_code == 0
    a, b = (zarr.open_group(str(s), mode="r")["train/light/images"][:].astype(int)
            for s in stores.values())
    assert np.abs(a - b).mean() < 1.0  # same faces; only float rounding may differ


def test_a_store_made_from_another_model_file_is_refused(fresh_store, bfm2009_file):
    assert_one_line_error(render([*TINY, "--model", bfm2009_file, "--out", fresh_store]),
                          "model", "--overwrite")


def test_the_papers_light_only_command_sizes_the_store_and_resumes_after_an_interrupt(
        tmp_path, monkeypatch):
    """`--vary light --batches 12000`, interrupted after its first shard, then resumed."""
    out = tmp_path / "light.zarr"
    small = ["--size", "16", "--batch-size", "4", "--test-batches", "1", "--workers", "1",
             "--quiet"]
    done = []

    def interrupt_after_one_shard(recipe, url, task, settings):
        if done:
            raise KeyboardInterrupt
        done.append(real(recipe, url, task, settings))
        return done[-1]

    real = local_pool.render_shard
    monkeypatch.setattr(local_pool, "render_shard", interrupt_after_one_shard)
    result = render(["--vary", "light", "--batches", "12000", *small, "--out", out])
    assert result.exit_code == 130 and "rerun the same command to resume" in result.output
    arrays = open_store(out).arrays("train", "light")
    per_shard = arrays.per_shard
    assert len(arrays) == 12000 and arrays.completed().sum() == per_shard == 100
    monkeypatch.setattr(local_pool, "render_shard", real)
    resumed = render(["--vary", "light", "--batches", "150", *small, "--out", out])
    assert resumed.exit_code == 0 and "rendered 51 minibatches" in resumed.output  # 50 + 1 test
    assert arrays.completed()[:150].all() and not arrays.completed()[150:].any()
