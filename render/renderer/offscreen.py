"""The one renderer interface: pyrender offscreen, one GL context per process, reused.

Geometry is uploaded once per object (`set_mesh`); each image then only moves the object and
the light (`render`). Shading is our own small Lambert shader in place of pyrender's (see
`pyrender_patches`): pyrender's PBR shader costs three times the rasterisation itself in
software GL. Two variants: lit per pixel with solid textures (chairs), or lit per vertex
(faces, whose dense mesh makes that look the same at a fraction of the cost). Lit per
vertex, an unmoved object is shaded under four lights in one rasterisation, one per colour
channel (`render_lights`, for light minibatches).

Colour (`color="rgb"`): the same shaders compiled with CHANNELS 3 take an RGB albedo from the
vertex colour (a chair's material codes move to texture coordinates) and write three
channels; a light minibatch then takes one pass a light, since the channels are the image's.
The gray programs are compiled from the same source as before colour existed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dcign.shared.errors import DcignError
from dcign.shared.images import CHANNELS, GRAY
from dcign.shared.portable import sin_cos_degrees

from ..objects.geometry import vertex_normals
from .platform import PLATFORM_HELP
from .poses import Lighting, light_direction, light_pose, object_pose
from .pyrender_patches import check_pyrender, read_channels, refill_vertex_buffer, use_shaders

SHADER_DIR = Path(__file__).with_name("shaders")
SHADERS = {  # shading → our (vertex, fragment) stand-ins for pyrender's mesh shaders
    "pixel": ("mesh.vert", "mesh.frag"),  # per-pixel light, solid textures by material code
    "vertex": ("vertex_lit.vert", "vertex_lit.frag"),  # per-vertex light, plain albedo
}
# A light's colour names the channel the per-vertex shader writes it to (vertex_lit.vert):
# four lights are shaded over one rasterisation of an unmoved object.
CHANNEL_COLOURS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.0, 0.0, 0.0))
NEAR_PLANE = 0.5
FAR_PLANE_IN_CAMERA_DISTANCES = 3


class Renderer:
    """Renders grayscale (or rgb) images of one mesh at a time under a fixed camera."""

    def __init__(self, size: int, lighting: Lighting, shading: str = "pixel",
                 color: str = GRAY):
        import pyrender  # here, after choose_gl_platform has set PYOPENGL_PLATFORM

        check_pyrender()  # before any GL context: an unusable pyrender is one clear line
        self._pyrender = pyrender
        self.size = size
        self.lighting = lighting
        bg = lighting.background
        # the background in all four channels: a four-light render reads alpha as an image
        self.scene = pyrender.Scene(bg_color=[bg, bg, bg, bg],
                                    ambient_light=[lighting.ambient] * 3)
        # A pinhole given by its focal length, computed here with portable arithmetic:
        # pyrender's PerspectiveCamera takes numpy's tan, whose last bits vary by CPU.
        sin, cos = sin_cos_degrees(lighting.yfov_degrees / 2.0)
        focal = size / 2.0 * float(cos / sin)
        camera = pyrender.IntrinsicsCamera(
            fx=focal, fy=focal, cx=size / 2.0, cy=size / 2.0, znear=NEAR_PLANE,
            zfar=lighting.camera_distance * FAR_PLANE_IN_CAMERA_DISTANCES)
        camera_pose = np.eye(4)
        camera_pose[2, 3] = lighting.camera_distance
        self.scene.add(camera, pose=camera_pose)
        self._lights = [pyrender.DirectionalLight(colour, lighting.light_intensity)
                        for colour in CHANNEL_COLOURS]
        self._light_node = self.scene.add(self._lights[0],
                                          pose=light_pose(light_direction(0.0, 0.0)))
        self._mesh_node = None
        self._triangles = None  # the uploaded mesh's topology, kept to tell when it changes
        try:
            self._gl = pyrender.OffscreenRenderer(size, size)
        except Exception as exc:  # PyOpenGL raises many kinds when no context can be made
            raise DcignError(f"could not create an OpenGL context ({exc}): {PLATFORM_HELP}"
                             ) from exc
        self.shading = shading
        self.channels = CHANNELS[color]
        self._shader = use_shaders(self._gl, *(str(SHADER_DIR / name)
                                               for name in SHADERS[shading]),
                                   channels=self.channels)
        read_channels(self._gl, size, self._shader)

    def set_mesh(self, vertices: np.ndarray, triangles: np.ndarray, albedo: np.ndarray,
                 normals: np.ndarray | None = None, material: np.ndarray | None = None) -> None:
        """Upload one object: vertices (N, 3), triangles (T, 3), albedo: grayscale (N,), or
        RGB (N, 3) for an rgb renderer.

        `material` (N, 2), optional: per-vertex solid-texture code and pattern scale, carried
        in colour channels g and b (see shaders/mesh.frag), or for an rgb renderer, whose
        vertex colour is the albedo, in texture coordinates; none means plain albedo.
        """
        pr = self._pyrender
        if normals is None:
            normals = vertex_normals(vertices, triangles)
        colors = np.zeros((len(vertices), 4), np.float32)
        texcoords = None
        if self.channels == 1:
            colors[:, 0] = albedo
            if material is not None:
                colors[:, 1:3] = material
        else:
            colors[:, :3] = np.asarray(albedo, np.float32).reshape(len(vertices), -1)
            texcoords = material
        colors[:, 3] = 1.0  # opaque: pyrender would blend any vertex with alpha < 1
        if self._refill(vertices, triangles, normals, colors):
            return
        primitive = pr.Primitive(positions=vertices, normals=normals, color_0=colors,
                                 texcoord_0=texcoords, indices=triangles,
                                 mode=pr.constants.GLTF.TRIANGLES)
        if self._mesh_node is not None:
            self.scene.remove_node(self._mesh_node)
        self._mesh_node = self.scene.add(pr.Mesh([primitive]))
        self._triangles = triangles

    def _refill(self, vertices, triangles, normals, colors) -> bool:
        """Overwrite the uploaded mesh's vertices when only they changed (the very same
        topology array: a morphable model's next identity); rebuilding the buffers costs a
        third of a frame."""
        if self._mesh_node is None or triangles is not self._triangles:
            return False
        return refill_vertex_buffer(self._gl, self._mesh_node.mesh.primitives[0], vertices,
                                    normals, colors)

    def render(self, rotation: np.ndarray, toward_light: np.ndarray) -> np.ndarray:
        """One uint8 (size, size) image, (size, size, 3) rgb, of the current mesh, rotated, lit
        from `toward_light`."""
        self.scene.set_pose(self._mesh_node, object_pose(rotation))
        self.scene.set_pose(self._light_node, light_pose(toward_light))
        gray, _ = self._gl.render(self.scene)
        return gray

    def render_lights(self, rotation: np.ndarray, toward_lights: np.ndarray) -> np.ndarray:
        """uint8 images (L, size, size) of the current mesh, rotated, lit from each of
        `toward_lights` (L, 3) in turn: four lights to one rasterisation, one per colour
        channel, each channel the image `render` gives for its light (per-vertex shading
        only: the pixel shader lights each fragment once). An rgb image needs its channels:
        one light a pass, (L, size, size, 3)."""
        if self.shading != "vertex":
            raise ValueError("render_lights needs the per-vertex shader")
        if self.channels != 1:
            return np.stack([self.render(rotation, toward) for toward in toward_lights])
        self.scene.set_pose(self._mesh_node, object_pose(rotation))
        extra = [self.scene.add(light) for light in self._lights[1:]]
        self._shader.lights_per_pass = len(CHANNEL_COLOURS)
        try:
            images = np.empty((len(toward_lights), self.size, self.size), np.uint8)
            for start in range(0, len(toward_lights), len(CHANNEL_COLOURS)):
                chunk = toward_lights[start:start + len(CHANNEL_COLOURS)]
                for node, toward in zip([self._light_node, *extra], chunk, strict=False):
                    self.scene.set_pose(node, light_pose(toward))
                rgba, _ = self._gl.render(self.scene)
                images[start:start + len(chunk)] = np.moveaxis(rgba[..., :len(chunk)], -1, 0)
        finally:
            self._shader.lights_per_pass = 1
            for node in extra:
                self.scene.remove_node(node)
        return images

    def rasterise_depth_only(self, rotation: np.ndarray) -> None:
        """The floor benchmarks compare `render` to: the same mesh, pose and context through
        the same pyrender calls, depth only, waited for but not read back."""
        self.scene.set_pose(self._mesh_node, object_pose(rotation))
        self._gl.render(self.scene, flags=self._pyrender.RenderFlags.DEPTH_ONLY)

    def close(self) -> None:
        self._gl.delete()
