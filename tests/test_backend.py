"""The renderer's conventions and image quality, on meshes simple enough to reason about."""

from __future__ import annotations

import numpy as np
import pytest

from dcign.render.backend import (
    Lighting,
    Renderer,
    choose_gl_platform,
    light_direction,
    rotation_matrix,
)

# Renderers a test made beside the module's one, kept open to the end of the process:
# pyrender's close (also run when one is garbage-collected) terminates the process's single
# EGL display, and with it every other renderer's context.
_OPEN: list[Renderer] = []


@pytest.fixture(scope="module")
def renderer():
    choose_gl_platform()
    r = Renderer(64, Lighting())
    yield r
    r.close()


def _tilted_square() -> tuple[np.ndarray, np.ndarray]:
    """A flat square facing the camera, turned 30° in the image plane so no edge is
    pixel-aligned."""
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32) * 0.8
    xy = corners @ np.array([[c, s], [-s, c]], np.float32)
    vertices = np.column_stack([xy, np.zeros(4, np.float32)])
    return vertices, np.array([[0, 1, 2], [0, 2, 3]], np.uint32)


def test_silhouette_edges_are_antialiased(renderer):
    vertices, triangles = _tilted_square()
    renderer.set_mesh(vertices, triangles, np.full(4, 0.8, np.float32))
    image = renderer.render(np.eye(3), light_direction(0, 0)).astype(int)
    inside = image[32, 32]
    assert image[0, 0] == 0 and inside > 150  # black background, a lit square
    partial = ((image > 10) & (image < inside - 10)).sum()
    assert partial > 40, "edge pixels should blend square and background"


def test_the_front_faces_the_camera_and_the_back_is_culled(renderer):
    vertices, triangles = _tilted_square()
    renderer.set_mesh(vertices, triangles, np.full(4, 0.8, np.float32))
    assert renderer.render(rotation_matrix(180, 0), light_direction(0, 0)).max() == 0


def test_positive_azimuth_turns_the_front_toward_image_right():
    assert np.allclose(rotation_matrix(90, 0) @ [0, 0, 1], [1, 0, 0])


def test_positive_elevation_turns_the_front_up():
    assert np.allclose(rotation_matrix(0, 90) @ [0, 0, 1], [0, 1, 0])


def test_light_azimuth_and_elevation_point_toward_the_light():
    assert np.allclose(light_direction(90, 0), [1, 0, 0])
    assert np.allclose(light_direction(0, 90), [0, 1, 0])
    assert np.allclose(light_direction(0, 0), [0, 0, 1])  # from the camera


def test_brightness_follows_the_cosine_of_the_light_angle(renderer):
    vertices, triangles = _tilted_square()
    renderer.set_mesh(vertices, triangles, np.full(4, 0.8, np.float32))
    frontal, grazing = (int(renderer.render(np.eye(3), light_direction(a, 0))[32, 32])
                        for a in (0, 80))
    assert frontal > grazing + 40


def test_faces_lit_per_vertex_look_as_lit_per_pixel():
    """The faces' cheap shader: at 150×150 a face's triangles are 1-3 pixels, so lighting at
    the vertices must give the picture per-pixel lighting gives, pose and light alike."""
    from dcign.render.faces import FaceRecipe

    generator = FaceRecipe().load()
    (vertices, albedo), = generator.faces([7])
    normals = generator.normals(vertices)
    images = {}
    for shading in ("pixel", "vertex"):
        r = Renderer(150, generator.recipe.lighting, shading=shading)
        r.set_mesh(vertices, generator.triangles, albedo, normals)
        images[shading] = np.stack([r.render(rotation_matrix(az, el), light_direction(li, 20))
                                    for az, el, li in ((-60, 10, 50), (0, 0, 0), (45, -20, -70))
                                    ]).astype(int)
        _OPEN.append(r)
    difference = np.abs(images["pixel"] - images["vertex"])
    assert images["vertex"].mean() > 20  # a lit face, not an empty frame
    assert difference.mean() < 1.0, "within one gray level on average"
    assert np.quantile(difference, 0.99) <= 8, "and no visible region apart"


def test_a_new_identity_on_the_same_topology_renders_as_a_fresh_upload(renderer):
    """Faces refill the uploaded vertex buffer in place; the picture must be the one a new
    mesh gives, bit for bit, and the previous face must leave no trace."""
    from dcign.render.faces import FaceRecipe

    generator = FaceRecipe(image_size=64).load()
    (v1, a1), (v2, a2) = generator.faces([3, 11])
    pose = (rotation_matrix(30, 10), light_direction(-40, 20))
    renderer.set_mesh(v2, generator.triangles.copy(), a2, generator.normals(v2))  # new mesh
    expected = renderer.render(*pose)
    renderer.set_mesh(v1, generator.triangles, a1, generator.normals(v1))  # new mesh
    first = renderer.render(*pose)
    renderer.set_mesh(v2, generator.triangles, a2, generator.normals(v2))  # refilled
    assert np.array_equal(renderer.render(*pose), expected)
    assert not np.array_equal(first, expected)
