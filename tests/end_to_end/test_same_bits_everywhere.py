"""Same seed, same data on every machine: what the renderer computes on the CPU does not
depend on the BLAS kernel, its threads or numpy's SIMD paths, and a store begun on one kind of
machine is extended and repaired on another.

Each "machine" is this one in a subprocess with OpenBLAS told to use another CPU's kernel
(OPENBLAS_CORETYPE), with one thread, and numpy without its AVX2/AVX-512 paths (see
tests/machines.py). Before the embedded face model was shipped as data and the per-face
arithmetic made portable, the first two of these gave other faces under each kernel.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, assert_one_line_error, content_digest, garble, render, shard_file
from machines import (
    EDGE_MEAN_DIFFERENCE,
    EDGE_PIXEL_FRACTION,
    LABEL_ARRAYS,
    WITHOUT_AVX,
    cpu_variants,
    edge_pixel_differences,
    run_cli,
    run_python,
    scene_digests,
    store_images,
)

from dcign.render.objects.embedded_face import derive_embedded_model
from dcign.render.objects.embedded_face_data import EMBEDDED_FINGERPRINT, load_embedded_model

RENDER = "dcign.render.cli"
VARIANTS = cpu_variants()
MACHINES_SCRIPT = str(Path(__file__).parents[1] / "machines.py")


def render_faces(out: Path, env: dict[str, str], *args: str) -> None:
    done = run_cli(RENDER, ["faces", *TINY, *args, "--out", out], env)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_shipped_face_model_is_what_its_definition_derives_up_to_rounding():
    shipped, derived = load_embedded_model(), derive_embedded_model()
    assert shipped.fingerprint() == EMBEDDED_FINGERPRINT
    for name in ("shape_mean", "shape_basis", "shape_std", "albedo_mean", "albedo_basis",
                 "albedo_std"):
        a, b = getattr(shipped, name), getattr(derived, name)
        assert np.allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max()), name
    assert np.array_equal(shipped.triangles, derived.triangles)


def test_a_damaged_shipped_model_is_refused_in_one_line(tmp_path, monkeypatch):
    from dcign.render.objects import embedded_face_data
    from dcign.shared.errors import ModelFileError

    good = load_embedded_model()
    arrays = {name: getattr(good, name) for name in embedded_face_data._ARRAYS}
    arrays["shape_std"] = arrays["shape_std"] * np.float32(1.001)
    np.savez(tmp_path / "model.npz", **arrays)
    monkeypatch.setattr(embedded_face_data, "EMBEDDED_MODEL_FILE", tmp_path / "model.npz")
    embedded_face_data.load_embedded_model.cache_clear()
    try:
        with pytest.raises(ModelFileError, match="not the one this dcign shipped"):
            embedded_face_data.load_embedded_model()
    finally:
        embedded_face_data.load_embedded_model.cache_clear()


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_face_model_and_every_scene_are_identical_on_another_cpu(variant):
    """Meshes, poses and lights of faces and chairs, hashed before GL sees them."""
    done = run_python([MACHINES_SCRIPT], VARIANTS[variant])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == scene_digests()


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_faces_store_is_byte_identical_on_another_cpu(tmp_path, tiny_store, variant):
    render_faces(tmp_path / "faces.zarr", VARIANTS[variant])
    assert content_digest(tmp_path / "faces.zarr") == content_digest(tiny_store)


@pytest.mark.slow
def test_a_store_begun_on_one_cpu_is_extended_and_repaired_on_others_and_verifies(
        tmp_path, tiny_store):
    first, second, third = VARIANTS.values()
    out = tmp_path / "faces.zarr"
    render_faces(out, first, "--batches", "2", "--test-batches", "1")
    render_faces(out, second)  # grows to TINY's counts
    garble(shard_file(out, "train", "light", "images"), 1)
    repaired = run_cli(RENDER, ["repair", out, "--workers", "1", "--quiet"], third)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    verified = run_cli("dcign.shared.store_cli", ["verify", out], first)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert content_digest(out) == content_digest(tiny_store)


@pytest.mark.slow
def test_llvmpipe_without_avx_moves_a_few_edge_pixels_and_nothing_else(tmp_path, tiny_store):
    """The one difference left between machines is GL's own: llvmpipe compiles its shaders for
    the CPU, and without AVX (so without FMA) rounds some vertex positions otherwise."""
    out = tmp_path / "faces.zarr"
    render_faces(out, WITHOUT_AVX)
    assert (content_digest(out, arrays=LABEL_ARRAYS)
            == content_digest(tiny_store, arrays=LABEL_ARRAYS))
    fraction, mean = edge_pixel_differences(store_images(out), store_images(tiny_store))
    assert fraction <= EDGE_PIXEL_FRACTION and mean <= EDGE_MEAN_DIFFERENCE, (fraction, mean)


def test_a_faces_store_made_with_the_old_model_is_not_extended(tmp_path, tiny_store):
    """Stores of generator version 2 hold faces of a machine-dependent model: refused."""
    import zarr

    old = tmp_path / "old.zarr"
    shutil.copytree(tiny_store, old)
    root = zarr.open_group(str(old), mode="r+")
    attrs = dict(root.attrs["dcign"])
    attrs["generator"] = attrs["generator"] | {"version": 2}
    root.attrs["dcign"] = attrs
    result = render([*TINY, "--batches", "4", "--out", old])
    assert_one_line_error(result, "made differently", "version 2 (store) vs 3")
