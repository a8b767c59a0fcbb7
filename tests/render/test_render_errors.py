"""Bad input to `dcign-render`: one line, non-zero exit, no traceback, store untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
import zarr
from conftest import TINY, assert_one_line_error, render, tree_digest


@pytest.mark.parametrize("args, needle", [
    (["--vary", "nose"], "unknown factor 'nose'"),
    (["--vary", "light,colour"], "unknown factor 'colour'"),
    (["--batches", "0"], "--batches"),
    (["--batches", "-3"], "--batches"),
    (["--test-batches", "0"], "--test-batches"),
    (["--batch-size", "0"], "--batch-size"),
    (["--size", "0"], "--size"),
    (["--workers", "0"], "--workers"),
])
def test_bad_options_are_refused_before_the_store_is_touched(fresh_store, args, needle):
    before = tree_digest(fresh_store)
    assert_one_line_error(render([*TINY, *args, "--out", fresh_store]), needle)
    assert tree_digest(fresh_store) == before


@pytest.mark.parametrize("args, needle", [
    (["--size", "24"], "image size 32 (store) vs 24"),
    (["--seed", "5"], "seed 0 (store) vs 5"),
    (["--batch-size", "5"], "batch size 4 (store) vs 5"),
])
def test_a_store_made_with_other_settings_is_refused(fresh_store, args, needle):
    before = tree_digest(fresh_store)
    assert_one_line_error(render([*TINY, *args, "--out", fresh_store]), needle, "--overwrite")
    assert tree_digest(fresh_store) == before


def test_a_store_made_with_another_model_is_refused(fresh_store):
    group = zarr.open_group(str(fresh_store), mode="r+")
    attrs = group.attrs["dcign"]
    attrs["model"]["fingerprint"] = "0" * 16
    group.attrs["dcign"] = attrs
    before = tree_digest(fresh_store)
    assert_one_line_error(render([*TINY, "--out", fresh_store]), "model")
    assert tree_digest(fresh_store) == before


def test_a_store_of_another_schema_is_refused_and_left_untouched(fresh_store):
    group = zarr.open_group(str(fresh_store), mode="r+")
    group.attrs["dcign"] = group.attrs["dcign"] | {"schema_version": 99}
    before = tree_digest(fresh_store)
    assert_one_line_error(render([*TINY, "--out", fresh_store]), "schema 99")
    assert tree_digest(fresh_store) == before


def test_an_output_path_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    assert_one_line_error(render([*TINY, "--out", target]), "not a store")
    assert target.read_text() == "keep me"


def test_a_directory_that_is_not_a_store_is_never_overwritten(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG")
    for extra in ([], ["--overwrite"]):
        assert_one_line_error(render([*TINY, *extra, "--out", folder]), "not a dcign store")
    assert (folder / "a.png").read_bytes() == b"\x89PNG"


def test_a_zarr_store_that_is_not_a_dcign_dataset_is_refused(tmp_path):
    other = tmp_path / "other.zarr"
    zarr.open_group(str(other), mode="w").create_array("x", shape=(2,), dtype="int8")
    before = tree_digest(other)
    assert_one_line_error(render([*TINY, "--overwrite", "--out", other]), "not a dcign dataset")
    assert tree_digest(other) == before


def test_an_unwritable_output_path_is_refused(tmp_path):
    """A folder without write permission; for root, who ignores permissions, /sys, where
    the kernel refuses new entries to everyone."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        try:
            (locked / "probe").mkdir()
            target = Path("/sys/dcign-test.zarr")
        except PermissionError:
            target = locked / "faces.zarr"
        assert_one_line_error(render([*TINY, "--out", target]), "cannot create")
        assert not target.exists()
    finally:
        locked.chmod(0o700)


def test_an_output_path_under_a_file_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(render([*TINY, "--out", blocker / "faces.zarr"]), "cannot create")


@pytest.mark.parametrize("name, content", [
    ("01_MorphableModel.mat", b"MATLAB 5.0 MAT-file, truncated"),
    ("model2017.h5", b"not hdf5 at all"),
    ("face.obj", b"v 0 0 0"),
])
def test_a_corrupt_or_unknown_model_file_is_refused(tmp_path, name, content):
    model = tmp_path / name
    model.write_bytes(content)
    out = tmp_path / "faces.zarr"
    assert_one_line_error(render([*TINY, "--model", model, "--out", out]), name)
    assert not out.exists()


def test_a_missing_model_file_is_refused(tmp_path):
    assert_one_line_error(render([*TINY, "--model", tmp_path / "nope.mat", "--out",
                                  tmp_path / "f.zarr"]), "nope.mat")


def test_an_unavailable_gl_platform_names_the_packages_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr("dcign.render.renderer.platform._platform_works", lambda platform: False)
    monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)
    result = render([*TINY, "--out", tmp_path / "f.zarr"])
    assert_one_line_error(result, "libegl1", "libosmesa6")


def test_overwrite_keeps_a_store_made_with_the_same_settings(fresh_store):
    """--overwrite replaces only a store made differently (as its help says): with the same
    settings nothing is rendered again, and a larger request extends the store."""
    before = tree_digest(fresh_store / "train")
    result = render([*TINY, "--overwrite", "--out", fresh_store])
    assert result.exit_code == 0, result.output
    assert "rendered 0 minibatches" in result.stdout and "20 were already there" in result.stdout
    assert "made with these settings: its minibatches are kept" in result.stderr
    assert tree_digest(fresh_store / "train") == before
    grown = render([*TINY, "--overwrite", "--batches", "4", "--out", fresh_store])
    assert grown.exit_code == 0 and "20 were already there" in grown.stdout, grown.output
