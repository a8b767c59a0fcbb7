"""`dcign-render chairs`: procedural CAD chairs and the user's meshes, in one-factor minibatches
on white, written to the same stores as faces."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import zarr
from conftest import assert_one_line_error, content_digest, invoke, read_group, tree_digest
from machines import cpu_variants, run_cli

from dcign.render.cli import main as render_main
from dcign.render.generators.chairs import (
    CHAIR_LIGHTING,
    LIGHT_AZIMUTH,
    ChairRecipe,
    chair_rotation,
)
from dcign.render.objects.chair_mesh import CHAIR_RADIUS
from dcign.render.objects.chair_model import DESIGNS, build_chair
from dcign.render.objects.chair_parts import box, parts_touch
from dcign.render.objects.mesh_folder import load_chair, scan_folder
from dcign.render.renderer.poses import light_direction
from dcign.shared.plans import MinibatchPlan, identity_rng
from dcign.shared.store import open_store
from dcign.shared.verify import verify_store

TINY_CHAIRS = ["--size", "32", "--batch-size", "4", "--batches", "2", "--test-batches", "1",
               "--chairs", "40", "--test-chairs", "10", "--workers", "1", "--quiet"]


def chairs(args: list) -> object:
    return invoke(render_main, ["chairs", *args])


@pytest.fixture(scope="module")
def chairs_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("chairs") / "chairs.zarr"
    result = chairs([*TINY_CHAIRS, "--out", out])
    assert result.exit_code == 0, result.output
    return out


def test_default_command_renders_azimuth_and_intrinsic_minibatches_that_verify(chairs_store):
    store = open_store(chairs_store)
    assert sorted(store.sections()) == sorted((s, f) for s in ("train", "test")
                                            for f in ("azimuth", "intrinsic"))
    assert read_group(chairs_store, "train", "azimuth")["images"].shape == (2, 4, 32, 32)
    findings = verify_store(store)
    assert findings.ok and findings.checked == 6, findings.problems


def test_the_store_records_the_grid_factor_table_with_elevation_stored_but_untied(chairs_store):
    attrs = zarr.open_group(str(chairs_store), mode="r").attrs["dcign"]
    factors = {f["name"]: f for f in attrs["factors"]}
    assert attrs["dataset"] == "chairs"
    assert factors["azimuth"]["latents"] == [0, 1]
    assert factors["elevation"]["latents"] == [1, 1]
    assert factors["intrinsic"]["latents"] == [1, None]
    assert attrs["generator"]["identities"] == {"train": 30, "test": 10}


def test_grid_views_are_multiples_of_12_degrees_at_elevation_20_or_30(chairs_store):
    for split in ("train", "test"):
        for factor in ("azimuth", "intrinsic"):
            values = read_group(chairs_store, split, factor)["factors"]
            assert (values[..., 0] % 12 == 0).all() and (values[..., 0] < 360).all()
            assert set(np.unique(values[..., 1])) <= {20.0, 30.0}
            assert (values[..., 1] == values[:, :1, 1]).all()  # elevation fixed per minibatch


def test_train_and_test_chairs_are_disjoint(chairs_store):
    ids = {s: np.concatenate([read_group(chairs_store, s, f)["identity"].ravel()
                              for f in ("azimuth", "intrinsic")]) for s in ("train", "test")}
    assert (ids["train"] < 30).all() and (ids["test"] >= 30).all()


def test_the_same_command_gives_byte_identical_chairs(tmp_path, chairs_store):
    again = tmp_path / "again.zarr"
    assert chairs([*TINY_CHAIRS, "--vary", "intrinsic", "--out", again]).exit_code == 0
    for split in ("train", "test"):
        first, second = (read_group(chairs_store, split, "intrinsic"),
                         read_group(again, split, "intrinsic"))
        for key in first:
            assert np.array_equal(first[key], second[key], equal_nan=True), (split, key)


def test_a_minibatch_depends_only_on_seed_split_factor_and_index(tmp_path, chairs_store):
    """Rendering one factor alone with two worker processes gives the same minibatches."""
    alone = tmp_path / "azimuth.zarr"
    result = chairs([*TINY_CHAIRS, "--vary", "azimuth", "--workers", "2", "--out", alone])
    assert result.exit_code == 0, result.output
    for split in ("train", "test"):
        assert np.array_equal(read_group(alone, split, "azimuth")["images"],
                              read_group(chairs_store, split, "azimuth")["images"])


def test_continuous_views_cover_the_circle_and_let_elevation_vary_alone(tmp_path):
    out = tmp_path / "continuous.zarr"
    result = chairs([*TINY_CHAIRS, "--views", "continuous", "--vary", "azimuth,elevation",
                     "--out", out])
    assert result.exit_code == 0, result.output
    assert verify_store(open_store(out)).ok
    azimuth = read_group(out, "train", "azimuth")["factors"][..., 0]
    elevation = read_group(out, "train", "elevation")["factors"]
    assert (azimuth % 12 != 0).any()
    assert len(np.unique(elevation[0, :, 1])) == 4 and (elevation[0, :, 0] == elevation[0, 0, 0]
                                                        ).all()
    assert ((elevation[..., 1] >= 10) & (elevation[..., 1] <= 40)).all()
    factors = {f.name: f for f in open_store(out).spec.factors}
    assert factors["elevation"].latents == (1, 2) and factors["intrinsic"].latents == (2, None)


def test_the_default_dataset_is_the_papers_1357_chairs_on_a_30_by_2_view_grid():
    spec = ChairRecipe().load().spec
    assert spec.generator["identities"] == {"train": 1207, "test": 150}
    assert spec.model["chairs"] == 1357 and spec.image_size == 150 and spec.batch_size == 20
    assert spec.generator["grid"]["azimuth"] == [float(a) for a in range(0, 360, 12)]
    assert spec.generator["grid"]["elevation"] == [20.0, 30.0]


def test_the_generator_builds_many_distinct_chairs_of_every_design():
    sample = [build_chair(identity_rng(0, i)) for i in range(0, 1357, 3)]
    assert len({c.shape_hash() for c in sample}) == len(sample)
    assert set(Counter(c.design for c in sample)) == set(DESIGNS)


def test_every_chair_is_one_piece_with_no_floating_part():
    floating = [i for i in range(0, 1357, 3) if not parts_touch(build_chair(identity_rng(7, i)))]
    assert floating == []


def test_a_chair_is_a_pure_function_of_seed_and_id():
    assert build_chair(identity_rng(3, 11)).shape_hash() == build_chair(
        identity_rng(3, 11)).shape_hash()
    assert build_chair(identity_rng(3, 11)).shape_hash() != build_chair(
        identity_rng(4, 11)).shape_hash()


def test_chairs_stand_on_white_in_the_frame(chairs_store):
    images = read_group(chairs_store, "train", "intrinsic")["images"].reshape(-1, 32, 32)
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], 1)
    assert (border == 255).all()
    assert (images[:, 8:24, 8:24] < 200).any(axis=(1, 2)).all()


def _render(textures: bool, size: int = 96) -> np.ndarray:
    generator = ChairRecipe(image_size=size, textures=textures).load()
    plan = MinibatchPlan("train", "intrinsic", 0, np.arange(6, dtype=np.int64),
                         np.tile(np.float32([36.0, 20.0]), (6, 1)))
    try:
        return generator.render(plan).astype(np.float32)
    finally:
        generator.close()


def _detail(images: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels inside the chair's silhouette."""
    inside = (images[:, 1:, 1:] < 250) & (images[:, :-1, 1:] < 250) & (images[:, 1:, :-1] < 250)
    dx = np.abs(np.diff(images, axis=2))[:, 1:, :]
    dy = np.abs(np.diff(images, axis=1))[:, :, 1:]
    return float((dx + dy)[inside].mean())


def test_materials_carry_texture_not_flat_gray():
    textured, flat = _render(True), _render(False)
    assert (textured[:, 0, 0] == 255).all()
    assert _detail(textured) > 1.3 * _detail(flat)


def test_a_positive_elevation_shows_a_seat_from_above():
    """A flat plate standing for a seat, lit from above: from a camera above (positive
    elevation) its lit top shows; from below (negative), its unlit underside."""
    plate = box((-1.0, -0.02, -1.0), (1.0, 0.02, 1.0), albedo=0.8)
    generator = ChairRecipe(image_size=32).load()
    renderer = generator.renderer()
    renderer.set_mesh(plate.vertices, plate.triangles.astype(np.uint32),
                      np.full(len(plate.vertices), 0.8, np.float32), plate.normals)
    light = light_direction(LIGHT_AZIMUTH, CHAIR_LIGHTING.light_elevation)
    try:
        above = renderer.render(chair_rotation(20.0, 30.0), light)
        below = renderer.render(chair_rotation(20.0, -30.0), light)
    finally:
        generator.close()
    assert above[16, 16] > below[16, 16] + 40
    assert chair_rotation(0.0, 30.0)[2, 1] > 0  # the chair's up axis tips toward the camera


# --- the user's own meshes -----------------------------------------------------------------

@pytest.fixture(scope="module")
def mesh_folder(tmp_path_factory):
    """Meshes written by trimesh in every format the issue names, a ShapeNet-style one and a
    corrupt file."""
    import trimesh

    root = tmp_path_factory.mktemp("meshes")
    shapes = [trimesh.creation.box((0.5, 0.9, 0.4)), trimesh.creation.cylinder(0.3, 0.8),
              trimesh.creation.capsule(0.6, 0.2), trimesh.creation.icosphere(2, 0.4),
              trimesh.creation.annulus(0.2, 0.4, 0.5),
              trimesh.creation.box((2.0, 4.0, 6.0)).apply_translation((5, -3, 2)),  # off centre
              trimesh.creation.cone(0.4, 0.9)]
    for shape, name in zip(shapes, ["a.obj", "b.ply", "c.off", "d.glb", "e.stl", "f.gltf"],
                           strict=False):
        shape.export(root / name)
    shapenet = root / "1a2b3c" / "models"
    shapenet.mkdir(parents=True)
    shapes[-1].export(shapenet / "model_normalized.obj")
    (root / "broken.ply").write_bytes(b"ply\nformat nonsense\n")
    return root


def test_a_mesh_folder_renders_every_readable_file_and_reports_the_corrupt_one(
        tmp_path, mesh_folder):
    out = tmp_path / "mine.zarr"
    result = chairs(["--meshes", mesh_folder, "--size", "32", "--batch-size", "2", "--batches",
                     "2", "--test-batches", "1", "--test-chairs", "2", "--workers", "1",
                     "--quiet", "--out", out])
    assert result.exit_code == 0, result.output
    assert "warning: skipping broken.ply" in result.output
    assert "skipped 1 of 8 files" in result.output
    store = open_store(out)
    assert verify_store(store).ok
    assert store.spec.model["files"] == 7 and store.spec.model["name"] == "mesh folder"
    ids = {s: set(np.concatenate([read_group(out, s, f)["identity"].ravel()
                                  for f in ("azimuth", "intrinsic")]).tolist())
           for s in ("train", "test")}
    assert not ids["train"] & ids["test"] and ids["train"] | ids["test"] <= set(range(7))


@pytest.mark.slow
def test_a_mesh_folder_renders_the_same_bytes_on_another_cpu(tmp_path, mesh_folder):
    args = ["chairs", "--meshes", mesh_folder, "--size", "32", "--batch-size", "2", "--batches",
            "1", "--test-batches", "1", "--test-chairs", "2", "--workers", "1", "--quiet"]
    here = invoke(render_main, [*args, "--out", tmp_path / "here.zarr"])
    assert here.exit_code == 0, here.output
    there = run_cli("dcign.render.cli", [*args, "--out", tmp_path / "there.zarr"],
                    cpu_variants()["openblas-prescott"])
    assert there.returncode == 0, there.stdout + there.stderr
    assert content_digest(tmp_path / "here.zarr") == content_digest(tmp_path / "there.zarr")


def test_the_shapenet_layout_is_found(mesh_folder):
    scan = scan_folder(mesh_folder)
    assert any(p.endswith("1a2b3c/models/model_normalized.obj") for p in scan.readable)
    assert [name for name, _ in scan.skipped] == ["broken.ply"]


def test_mesh_colours_become_gray_albedo_with_the_dataset_weights(tmp_path):
    import trimesh

    mesh = trimesh.creation.box((0.5, 0.9, 0.4))
    mesh.visual.vertex_colors = np.tile([255, 0, 0, 255], (len(mesh.vertices), 1))
    mesh.export(tmp_path / "red.ply")
    assert np.allclose(load_chair(tmp_path / "red.ply").albedo, 0.21, atol=1e-3)
    # an OBJ whose MTL names a green texture image
    from PIL import Image

    textured = trimesh.creation.box((0.5, 0.9, 0.4))
    textured.visual = trimesh.visual.TextureVisuals(
        uv=np.random.default_rng(0).random((len(textured.vertices), 2)),
        image=Image.new("RGB", (8, 8), (0, 255, 0)))
    (tmp_path / "obj").mkdir()
    textured.export(tmp_path / "obj" / "green.obj")
    assert (tmp_path / "obj" / "material.mtl").exists()
    assert np.allclose(load_chair(tmp_path / "obj" / "green.obj").albedo, 0.72, atol=1e-3)


def test_any_mesh_is_centred_and_scaled_to_the_chairs_size(mesh_folder):
    """A 2x4x6 box placed far off the origin (glTF) frames like a small one at the origin."""
    for name in ("f.gltf", "a.obj"):
        vertices = load_chair(mesh_folder / name).vertices
        centre = (vertices.min(axis=0) + vertices.max(axis=0)) / 2
        assert np.allclose(centre, 0, atol=1e-5)
        assert np.isclose(np.linalg.norm(vertices, axis=1).max(), CHAIR_RADIUS, rtol=1e-5)


def test_the_up_axis_option_turns_the_named_axis_up(mesh_folder):
    tall_in_y = load_chair(mesh_folder / "a.obj", "y").vertices
    tall_in_z = load_chair(mesh_folder / "a.obj", "z").vertices
    assert np.ptp(tall_in_y[:, 1]) > np.ptp(tall_in_y[:, 2])
    assert np.ptp(tall_in_z[:, 1]) < np.ptp(tall_in_z[:, 2])


# --- bad input: one line, non-zero exit, store untouched ---------------------------------------

@pytest.mark.parametrize("args, needle", [
    (["--batch-size", "31"], "30"),
    (["--vary", "elevation"], "--views continuous"),
    (["--test-chairs", "40"], "--test-chairs"),
    (["--batch-size", "12", "--test-chairs", "8"], "test chairs"),
])
def test_requests_the_views_or_chairs_cannot_fill_are_refused(tmp_path, chairs_store, args,
                                                               needle):
    before = tree_digest(chairs_store)
    assert_one_line_error(chairs([*TINY_CHAIRS, *args, "--out", chairs_store]), needle)
    assert tree_digest(chairs_store) == before


def test_an_empty_mesh_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "x.zarr"
    assert_one_line_error(chairs([*TINY_CHAIRS, "--meshes", tmp_path / "empty", "--out", out]),
                          "no mesh files")
    assert not out.exists()


def test_a_folder_of_unreadable_meshes_is_refused(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    for name in ("a.obj", "b.ply"):
        (folder / name).write_bytes(b"\x00garbage")
    out = tmp_path / "x.zarr"
    assert_one_line_error(chairs([*TINY_CHAIRS, "--meshes", folder, "--out", out]),
                          "none of its 2 mesh files could be read", "a.obj")
    assert not out.exists()


def test_the_help_shows_examples():
    result = chairs(["--help"])
    assert result.exit_code == 0
    assert "dcign-render chairs --meshes ShapeNetCore.v2/03001627" in result.output
