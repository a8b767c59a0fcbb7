"""Refactoring never changes the data: tiny faces and chairs stores rendered by the real CLIs
hold exactly the pinned attributes and labels, their renderer is given exactly the pinned
scenes, and their images are the pinned images up to what another rasteriser may move.

What is pinned exactly is what every machine computes alike (docs: README, "Same data on every
machine"): the attributes, the factor values, identities and completion marks, and every mesh,
pose and light handed to GL (tests/machines.py records them without GL). The pixels are
pinned exactly too, but only between runs on one machine
(tests/end_to_end/test_same_bits_everywhere.py):
another GL rasteriser (llvmpipe on a CPU without AVX, another Mesa, a GPU driver) may move a
triangle edge by a pixel, so against the committed images (tests/data) a few edge pixels may
differ, never the picture.

A deliberate change to the images (a new generator version) updates these pins and the images
in tests/data in the same commit, with the reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import content_digest, invoke
from machines import (
    EDGE_MEAN_DIFFERENCE,
    EDGE_PIXEL_FRACTION,
    LABEL_ARRAYS,
    edge_pixel_differences,
    scene_digests,
    store_images,
)

from dcign.render.cli import main as render_main

DATA = Path(__file__).parents[1] / "data"
FACES_LABELS = "291be1ae17ad07be0a8290467d79e5d9fd9369d64004efd99dc8011eab2bad4f"
CHAIRS_LABELS = "9637c25990cbce52c6c72058ec1532f9ade090a7141b9c4d11eff2d0a1a79d6e"
SCENES = {"face_model": "c2c2cd1d0f413bc8",
          "faces": "4aaec64e00d2606dbcd060638560f19249cf1ce4b392199db432444c6778dbf6",
          "chairs": "105f762ebf618dffb53cfe796140bfc03c63b5cb92a367b24abfb04cef9404a7"}
TINY_CHAIRS = ["chairs", "--size", "32", "--batch-size", "4", "--batches", "2",
               "--test-batches", "1", "--chairs", "40", "--test-chairs", "10", "--workers", "1",
               "--quiet"]


def pinned_images(name: str) -> dict[str, np.ndarray]:
    with np.load(DATA / f"tiny_{name}_images.npz") as data:
        return {key: data[key] for key in data.files}


def assert_pinned_images(store: Path, name: str) -> None:
    fraction, mean = edge_pixel_differences(store_images(store), pinned_images(name))
    assert fraction <= EDGE_PIXEL_FRACTION and mean <= EDGE_MEAN_DIFFERENCE, (fraction, mean)


def test_the_renderer_is_given_exactly_the_pinned_model_meshes_poses_and_lights():
    assert scene_digests() == SCENES


def test_a_tiny_faces_store_holds_exactly_the_pinned_attributes_and_labels(tiny_store):
    assert content_digest(tiny_store, arrays=LABEL_ARRAYS) == FACES_LABELS


def test_a_tiny_faces_store_shows_the_pinned_images_up_to_a_few_edge_pixels(tiny_store):
    assert_pinned_images(tiny_store, "faces")


def test_a_tiny_chairs_store_holds_the_pinned_labels_and_images(tmp_path):
    out = tmp_path / "chairs.zarr"
    result = invoke(render_main, [*TINY_CHAIRS, "--out", out])
    assert result.exit_code == 0, result.output
    assert content_digest(out, arrays=LABEL_ARRAYS) == CHAIRS_LABELS
    assert_pinned_images(out, "chairs")


def test_the_image_comparison_notices_a_changed_light(tiny_store):
    """The tolerance is for edges only: one gray level more everywhere is far outside it."""
    brighter = {k: np.minimum(v.astype(np.int16) + 1, 255).astype(np.uint8)
                for k, v in pinned_images("faces").items()}
    fraction, mean = edge_pixel_differences(store_images(tiny_store), brighter)
    assert fraction > EDGE_PIXEL_FRACTION and mean > EDGE_MEAN_DIFFERENCE
