"""The renderer's conventions and image quality, on meshes simple enough to reason about; and
the check that refuses a pyrender whose private state differs from what we patch."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from dcign.render.generators.faces import FaceRecipe
from dcign.render.renderer.offscreen import Renderer
from dcign.render.renderer.platform import choose_gl_platform
from dcign.render.renderer.poses import Lighting, light_direction, rotation_matrix
from dcign.render.renderer.pyrender_patches import (
    TESTED_RANGE,
    check_pyrender,
    missing_private_state,
)
from dcign.shared.errors import DcignError

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



@pytest.mark.parametrize("batch_size", [20, 6, 40])
def test_a_light_minibatch_shaded_in_one_pass_is_the_one_at_a_time_picture(batch_size):
    """Faces' light minibatches rasterise once for up to 32 lights (one per colour channel of
    up to eight render targets): every image must be, bit for bit, the one that lighting
    alone gives, for a minibatch of the default 20 (five targets), of 6 (two targets, two
    channels unused) and of 40 (a pass of 32 and one of 8), and the renderer must draw one
    light again afterwards."""
    from dcign.render.generators.base import RenderingGenerator

    generator = FaceRecipe(image_size=48, batch_size=batch_size).load()
    for k in range(3):
        plan = generator.plan("train", "light", k)
        one_at_a_time = RenderingGenerator.render(generator, plan)  # the per-image path
        relit = generator.render(plan)
        assert relit.shape == one_at_a_time.shape and relit.mean() > 10
        assert np.array_equal(relit, one_at_a_time), f"light minibatch {k}"
        assert len({image.tobytes() for image in relit}) == batch_size  # the light moved
    elevation = generator.plan("train", "elevation", 0)
    assert np.array_equal(generator.render(elevation),
                          RenderingGenerator.render(generator, elevation))
    _OPEN.append(generator.renderer())


def test_only_the_per_vertex_shader_shades_several_lights_to_a_pass(renderer):
    with pytest.raises(ValueError, match="per-vertex"):
        renderer.render_lights(np.eye(3), np.stack([light_direction(0, 0)] * 2))

# --- pyrender's private state, patched in one module and checked before any GL context ---

def _instance_attribute_removed(monkeypatch, cls: type, name: str) -> None:
    original = cls.__init__

    def init_without(self, *args, **kwargs):
        original(self, *args, **kwargs)
        delattr(self, name)

    monkeypatch.setattr(cls, "__init__", init_without)


@pytest.mark.parametrize("owner, name", [
    ("pyrender.shader_program.ShaderProgramCache", "get_program"),
    ("pyrender.renderer.Renderer", "_read_main_framebuffer"),
    ("pyrender.renderer.Renderer", "_program_cache"),
    ("pyrender.renderer.Renderer", "_main_fb"),
    ("pyrender.renderer.Renderer", "_main_fb_ms"),
    ("pyrender.primitive.Primitive", "_vaid"),
    ("pyrender.primitive.Primitive", "_buffers"),
    ("pyrender.platforms.base.Platform", "make_current"),
])
def test_a_pyrender_lacking_a_patched_attribute_is_refused_in_one_line(monkeypatch, owner,
                                                                       name):
    import importlib

    import pyrender

    module, _, class_name = owner.rpartition(".")
    cls = getattr(importlib.import_module(module), class_name)
    if name in vars(cls):
        monkeypatch.delattr(cls, name)
    else:  # set by the constructor
        _instance_attribute_removed(monkeypatch, cls, name)
    with pytest.raises(DcignError) as refused:
        Renderer(8, Lighting())
    message = str(refused.value)
    assert "\n" not in message
    assert f"pyrender {pyrender.__version__}" in message
    assert f"{class_name}.{name}" in message and f"pyrender{TESTED_RANGE}" in message


def test_a_pyrender_outside_the_tested_versions_is_refused_in_one_line(monkeypatch):
    import pyrender

    monkeypatch.setattr(pyrender, "__version__", "0.2.0")
    with pytest.raises(DcignError, match=r"^pyrender 0\.2\.0 is outside the tested versions "
                                         r">=0\.1\.45,<0\.2; install"):
        check_pyrender()


def test_the_installed_pyrender_passes_the_check():
    import pyrender

    assert missing_private_state() == []
    check_pyrender()
    assert pyrender.__version__ == "0.1.45"  # the one version the patches were tested with


def test_pyproject_caps_pyrender_at_the_tested_versions():
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    render_extra = pyproject["project"]["optional-dependencies"]["render"]
    assert f"pyrender{TESTED_RANGE}" in render_extra
