"""Colour (issue 22 item 4): `dcign-render faces|chairs --color rgb` stores images with a
channel axis the schema names, through verify, repair, preview and migrate; the colour
images show the gray images' scenes (their gray conversion stays within a bound of the gray
store's images); and a gray store is what it was (tests/end_to_end pins its bytes)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import (
    TINY,
    as_schema_1,
    assert_one_line_error,
    content_digest,
    file_digests,
    garble,
    invoke,
    read_group,
    render,
    store_tool,
    worker_pythonpath,
)
from machines import RecordingRenderer, cpu_variants, run_python
from PIL import Image

from dcign.render.cli import main as render_main
from dcign.shared.images import to_gray
from dcign.shared.store import open_store

# Measured on these tiny stores (32x32): faces 0.13-0.16 and chairs 0.22-0.42 gray levels of
# mean |to_gray(colour) - gray|; the gap is the gamma curve applied per channel, not a scene
# difference (another pose or face differs by tens of levels).
FACES_GRAY_BOUND = 0.5
CHAIRS_GRAY_BOUND = 1.0
COLOURED = 3.0  # mean |R - B| in gray levels: a gray image has 0


def _sections(store: Path) -> list[tuple[str, str]]:
    return list(open_store(store).sections())


def test_a_colour_store_has_a_channel_axis_the_schema_names(colour_faces, colour_chairs):
    for store in (colour_faces, colour_chairs[1]):
        attrs = zarr.open_group(str(store), mode="r").attrs["dcign"]
        assert attrs["color"] == "rgb"
        for split, factor in _sections(store):
            images = zarr.open_array(str(store / split / factor / "images"), mode="r")
            assert images.shape[2:] == (4, 32, 32, 3)[1:] and images.shape[-1] == 3
            assert images.metadata.dimension_names == ("minibatch", "image", "y", "x",
                                                       "channel")
            assert images.chunks == (1, 4, 32, 32, 3)
        spec = open_store(store).spec
        assert (spec.color, spec.channels, spec.image_shape) == ("rgb", 3, (32, 32, 3))


def test_a_gray_store_records_no_colour(tiny_store):
    attrs = zarr.open_group(str(tiny_store), mode="r").attrs["dcign"]
    assert "color" not in attrs and "color" not in attrs["generator"]
    assert "color" not in attrs["history"][0]["config"]
    assert read_group(tiny_store, "train", "light")["images"].ndim == 4


def test_colour_images_are_coloured(colour_faces, colour_chairs):
    """Over each store (a chair of brushed metal on white may be nearly neutral alone)."""
    for store in (colour_faces, colour_chairs[1]):
        images = np.concatenate([read_group(store, split, factor)["images"].reshape(-1, 3)
                                 for split, factor in _sections(store)]).astype(np.float64)
        assert np.abs(images[:, 0] - images[:, 2]).mean() > COLOURED, store


def _gray_gap(colour: Path, gray: Path) -> float:
    """The largest, over sections, mean |to_gray(colour) - gray| in gray levels."""
    gaps = []
    for split, factor in _sections(gray):
        c = read_group(colour, split, factor)["images"].astype(np.float64)
        g = read_group(gray, split, factor)["images"].astype(np.float64)
        gaps.append(float(np.abs(to_gray(c) - g).mean()))
    return max(gaps)


def test_colour_faces_in_gray_are_the_gray_stores_faces(colour_faces, tiny_store):
    assert _gray_gap(colour_faces, tiny_store) < FACES_GRAY_BOUND


def test_colour_chairs_in_gray_are_the_gray_stores_chairs(colour_chairs):
    gray, rgb = colour_chairs
    assert _gray_gap(rgb, gray) < CHAIRS_GRAY_BOUND


def test_colour_minibatches_keep_the_gray_stores_factors_and_identities(colour_faces,
                                                                         tiny_store):
    for split, factor in _sections(tiny_store):
        c, g = read_group(colour_faces, split, factor), read_group(tiny_store, split, factor)
        assert np.array_equal(c["factors"], g["factors"])
        assert np.array_equal(c["identity"], g["identity"])


def test_colour_stores_verify_and_info_names_the_colour(colour_faces, colour_chairs):
    for store in (colour_faces, colour_chairs[1]):
        result = store_tool(["verify", store])
        assert result.exit_code == 0, result.output
        assert "OK:" in result.output
        assert "colour (rgb)" in store_tool(["info", store]).output
    assert "grayscale" in store_tool(["info", colour_chairs[0]]).output


def test_rendering_again_in_colour_is_byte_identical(tmp_path, colour_faces):
    again = tmp_path / "again.zarr"
    assert render([*TINY, "--color", "rgb", "--vary", "light", "--out", again]).exit_code == 0
    assert np.array_equal(read_group(again, "train", "light")["images"],
                          read_group(colour_faces, "train", "light")["images"])


def test_extending_a_store_in_the_other_colour_is_refused_in_one_line(fresh_store, tmp_path,
                                                                      colour_faces):
    assert_one_line_error(render([*TINY, "--color", "rgb", "--out", fresh_store]),
                          "color 'gray' (store) vs 'rgb'")
    copy = tmp_path / "rgb.zarr"
    shutil.copytree(colour_faces, copy)
    assert_one_line_error(render([*TINY, "--out", copy]), "color 'rgb' (store) vs 'gray'")


def test_repair_renders_a_damaged_colour_minibatch_again_byte_identical(tmp_path,
                                                                        colour_faces):
    copy = tmp_path / "rgb.zarr"
    shutil.copytree(colour_faces, copy)
    garble(copy.joinpath("train", "light", "images", "c", "0", "0", "0", "0", "0"), 1)
    assert store_tool(["verify", copy]).exit_code == 1
    result = invoke(render_main, ["repair", copy, "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "repaired 1 damaged minibatch" in result.output
    assert file_digests(copy) == file_digests(colour_faces)


def test_preview_of_a_colour_store_is_an_rgb_png(tmp_path, colour_faces):
    out = tmp_path / "preview.png"
    assert store_tool(["preview", colour_faces, "--out", out]).exit_code == 0
    with Image.open(out) as image:
        assert image.mode == "RGB"
        pixels = np.asarray(image).astype(int)
    assert np.abs(pixels[..., 0] - pixels[..., 2]).max() > 40


def test_migrate_carries_a_colour_store_over(tmp_path, colour_faces):
    """Schema 1 predates colour, so no schema-1 store is rgb; migrate follows the spec all the
    same, so a colour store in the old layout converts with its channel axis."""
    old, new = tmp_path / "old.zarr", tmp_path / "new.zarr"
    as_schema_1(colour_faces, old)
    result = store_tool(["migrate", old, new])
    assert result.exit_code == 0, result.output
    assert content_digest(new) == content_digest(colour_faces)
    assert store_tool(["verify", new]).exit_code == 0


def test_a_store_whose_colour_its_arrays_contradict_is_refused_in_one_line(fresh_store):
    root = zarr.open_group(str(fresh_store), mode="r+")
    attrs = dict(root.attrs["dcign"])
    root.attrs["dcign"] = attrs | {"color": "cmyk"}
    assert_one_line_error(store_tool(["verify", fresh_store]),
                          "bad store attribute color: 'cmyk' is not one of gray, rgb")
    root.attrs["dcign"] = attrs | {"color": "rgb"}  # gray arrays under an rgb claim
    assert_one_line_error(store_tool(["verify", fresh_store]),
                          "where the store's attributes imply (n, 4, 32, 32, 3)")


def test_a_mesh_folder_chair_keeps_its_own_colours_in_an_rgb_store(tmp_path):
    import trimesh

    from dcign.render.cli import main as render_main
    from dcign.render.objects.mesh_folder import load_chair

    folder = tmp_path / "meshes"
    folder.mkdir()
    for i, rgb in enumerate([(255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 0),
                             (255, 0, 255)]):
        mesh = trimesh.creation.box((0.5, 0.9 + 0.1 * i, 0.4))
        mesh.visual.vertex_colors = np.tile([*rgb, 255], (len(mesh.vertices), 1))
        mesh.export(folder / f"{i}.ply")
    albedo = load_chair(folder / "0.ply", color="rgb").albedo
    assert albedo.shape[1:] == (3,) and np.allclose(albedo, (1, 0, 0))
    out = tmp_path / "meshes.zarr"
    result = invoke(render_main, ["chairs", "--meshes", folder, "--test-chairs", "2",
                                  "--size", "32", "--batch-size", "2", "--batches", "1",
                                  "--test-batches", "1", "--workers", "1", "--quiet",
                                  "--color", "rgb", "--out", out])
    assert result.exit_code == 0, result.output
    images = read_group(out, "train", "azimuth")["images"].astype(int)
    assert images.shape[-1] == 3 and (images.max(-1) - images.min(-1)).max() > 100


class RecordingRgbRenderer(RecordingRenderer):
    """machines.RecordingRenderer, drawing (blank) rgb images."""

    def render(self, rotation, toward_light) -> np.ndarray:
        return np.repeat(super().render(rotation, toward_light)[..., None], 3, axis=-1)


def scene_digest(recipe, factors: tuple[str, ...], minibatches: int = 2) -> str:
    """As machines.scene_digest, for an rgb recipe."""
    generator = recipe.load()
    recorder = generator._renderer = RecordingRgbRenderer(recipe.image_size)
    for split in ("train", "test"):
        for factor in factors:
            for k in range(minibatches):
                generator.render(generator.plan(split, factor, k))
    return recorder.hash.hexdigest()


def colour_scene_digests() -> dict[str, str]:
    """Every mesh (with its rgb albedo), pose and light handed to GL for tiny rgb stores."""
    from dcign.render.generators.chairs import ChairRecipe
    from dcign.render.generators.faces import FaceRecipe

    faces = FaceRecipe(image_size=32, batch_size=4, color="rgb")
    chairs = ChairRecipe(image_size=32, batch_size=4, chairs=40, test_chairs=10, color="rgb")
    return {"faces": scene_digest(faces, ("azimuth", "light", "intrinsic")),
            "chairs": scene_digest(chairs, ("azimuth", "intrinsic"))}


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(cpu_variants()))
def test_colour_scenes_are_the_same_bits_on_another_cpu(variant):
    """As tests/end_to_end/test_same_bits_everywhere.py holds gray scenes: the colours
    handed to GL (the face model's albedo, the chair palette) under another BLAS kernel and
    numpy without SIMD are the same bits."""
    code = ("import json, test_render_colour as t; "
            "print(json.dumps(t.colour_scene_digests()))")
    done = run_python(["-c", code], cpu_variants()[variant]
                      | {"PYTHONPATH": worker_pythonpath(__file__)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == colour_scene_digests()
