"""`dcign-store info|verify|preview`, and the store read by plain Zarr, xarray and dask."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import zarr
from conftest import assert_one_line_error, store_tool
from PIL import Image


def test_info_summarises_factors_splits_and_counts(tiny_store):
    result = store_tool(["info", tiny_store])
    assert result.exit_code == 0, result.output
    for text in ("faces, 32x32", "minibatches of 4", "azimuth", "[-86, 86] degree",
                 "latents z1..z1", "intrinsic", "z4..end", "train  light", "3/3", "80 images"):
        assert text in result.output, text


def test_verify_passes_a_freshly_rendered_store(tiny_store):
    result = store_tool(["verify", tiny_store])
    assert result.exit_code == 0, result.output
    assert "OK: 20 minibatches" in result.output


@pytest.mark.parametrize("tamper, message", [
    (lambda g: g["train/light/factors"].__setitem__((0, 1, 0), 10.0), "changes"),
    (lambda g: g["train/azimuth/factors"].__setitem__((1, 1, 0),
                                                     g["train/azimuth/factors"][1, 0, 0]),
     "azimuth values repeat"),
    (lambda g: g["train/elevation/identity"].__setitem__((0, 2), 7), "identity changes"),
    (lambda g: g["test/intrinsic/identity"].__setitem__(
        (0, 0), int(g["train/intrinsic/identity"][0, 0])), "both train and test"),
    (lambda g: g["train/light/images"].__setitem__((2, 1), np.zeros((32, 32), np.uint8)),
     "blank image"),
    (lambda g: g["test/azimuth/complete"].__setitem__(1, False), "not complete"),
])
def test_verify_reports_each_broken_invariant(fresh_store, tamper, message):
    tamper(zarr.open_group(str(fresh_store), mode="r+"))
    result = store_tool(["verify", fresh_store])
    assert result.exit_code == 1
    assert message in result.output


def test_preview_writes_one_labelled_row_per_minibatch(tiny_store, tmp_path):
    out = tmp_path / "grid.png"
    result = store_tool(["preview", tiny_store, "--minibatch", "0,2", "--out", out])
    assert result.exit_code == 0, result.output
    grid = Image.open(out)
    assert grid.height == 8 * (32 + 2)  # 4 factors x 2 minibatches
    assert grid.width > 4 * 32


@pytest.mark.parametrize("args, needle", [
    (["info", "missing.zarr"], "no store at"),
    (["preview", "STORE", "--factor", "hair"], "unknown factor 'hair'"),
    (["preview", "STORE", "--minibatch", "9"], "minibatch 9 is not in the store"),
    (["preview", "STORE", "--minibatch", "x"], "comma-separated"),
])
def test_store_tool_bad_input_is_one_line(tiny_store, tmp_path, args, needle):
    args = [tiny_store if a == "STORE" else a for a in args]
    assert_one_line_error(store_tool([*args, *(["--out", tmp_path / "p.png"]
                                               if args[0] == "preview" else [])]), needle)


READ_WITHOUT_DCIGN = """
import sys, zarr, xarray, dask.array as da
root = zarr.open_group(sys.argv[1], mode="r")
images = root["train/light/images"]
assert images.shape == (3, 4, 32, 32) and images[:].dtype == "uint8"
assert root.attrs["dcign"]["factors"][2]["name"] == "light"
ds = xarray.open_zarr(sys.argv[1], group="train/light", consolidated=False)
assert ds["images"].dims == ("minibatch", "image", "y", "x")
assert int(da.from_zarr(sys.argv[1], component="train/light/identity").max().compute()) >= 0
assert not any(m.startswith("dcign") for m in sys.modules), "dcign was imported"
print("read", ds["factors"].shape)
"""


def test_plain_zarr_xarray_and_dask_read_the_store_without_dcign(tiny_store, tmp_path):
    pytest.importorskip("xarray")
    pytest.importorskip("dask")
    # -I: isolated mode, so neither the repository nor PYTHONPATH can supply dcign
    done = subprocess.run([sys.executable, "-I", "-c", READ_WITHOUT_DCIGN, str(tiny_store)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "read (3, 4, 3)" in done.stdout
