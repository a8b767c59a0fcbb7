"""The one renderer interface: pyrender offscreen, one GL context per process, reused.

Geometry is uploaded once per object (`set_mesh`); each image then only moves the object and
the light (`render`). Shading is our own small Lambert shader plugged into pyrender's program
cache: pyrender's PBR shader costs three times the rasterisation itself in software GL. Two
variants: lit per pixel with solid textures (chairs), or lit per vertex (faces, whose dense
mesh makes that look the same at a fraction of the cost).

The GL platform (EGL or OSMesa) must be chosen before PyOpenGL is first imported, so pyrender
is imported lazily and `choose_gl_platform` probes candidates in child processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dcign.shared.errors import DcignError

from .objects.geometry import vertex_normals

SHADER_DIR = Path(__file__).with_name("shaders")
GL_PLATFORMS = ("egl", "osmesa")
_PLATFORM_HELP = (
    "no offscreen OpenGL works here. For EGL install the system package libegl1 "
    "(Debian/Ubuntu: apt-get install libegl1 libgl1; Mesa's software EGL needs no GPU); "
    "for OSMesa install libosmesa6 and pass --gl osmesa"
)
_PROBE = (
    "import pyrender; r = pyrender.OffscreenRenderer(8, 8); "
    "import numpy as np; s = pyrender.Scene(); "
    "s.add(pyrender.PerspectiveCamera(yfov=1.0)); r.render(s); r.delete()"
)


def _platform_works(platform: str) -> bool:
    env = dict(os.environ, PYOPENGL_PLATFORM=platform)
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                              timeout=120)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def choose_gl_platform(requested: str = "auto") -> str:
    """Pick and export PYOPENGL_PLATFORM: the requested one, or EGL then OSMesa for 'auto'.

    An explicit PYOPENGL_PLATFORM in the environment counts as a request.
    """
    if requested == "auto" and os.environ.get("PYOPENGL_PLATFORM"):
        requested = os.environ["PYOPENGL_PLATFORM"]
    candidates = GL_PLATFORMS if requested == "auto" else (requested,)
    for platform in candidates:
        if _platform_works(platform):
            os.environ["PYOPENGL_PLATFORM"] = platform
            return platform
    tried = " and ".join(candidates)
    raise DcignError(f"offscreen OpenGL through {tried} failed: {_PLATFORM_HELP}")


@dataclass(frozen=True)
class Lighting:
    """What stays fixed across a whole dataset: camera, light strength, ambient, background."""

    camera_distance: float = 6.0  # in units of the object's normalised size
    yfov_degrees: float = 24.0
    light_elevation: float = 20.0  # degrees above the horizon
    light_intensity: float = 0.85
    ambient: float = 0.15
    background: float = 0.0  # 0 black (faces), 1 white (chairs)


def rotation_matrix(azimuth: float, elevation: float) -> np.ndarray:
    """Object rotation: azimuth (deg) turns it about +y (positive: nose toward image right),
    elevation (deg) tilts it about x (positive: nose up)."""
    a, e = np.radians(azimuth), np.radians(elevation)
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(e), -np.sin(e)], [0, np.sin(e), np.cos(e)]])
    return ry @ rx.T


def light_direction(azimuth: float, elevation: float) -> np.ndarray:
    """Unit vector from the scene toward the light (deg; positive azimuth: from image right)."""
    a, e = np.radians(azimuth), np.radians(elevation)
    return np.array([np.sin(a) * np.cos(e), np.sin(e), np.cos(a) * np.cos(e)])


def _pose(rotation: np.ndarray) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = rotation
    return pose


def _light_pose(toward_light: np.ndarray) -> np.ndarray:
    """A pose whose -z axis (pyrender's light direction) points from the light to the scene."""
    z = toward_light / np.linalg.norm(toward_light)
    helper = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2] = x, np.cross(z, x), z
    return pose


SHADERS = {  # shading → our (vertex, fragment) stand-ins for pyrender's mesh shaders
    "pixel": ("mesh.vert", "mesh.frag"),  # per-pixel light, solid textures by material code
    "vertex": ("vertex_lit.vert", "vertex_lit.frag"),  # per-vertex light, plain albedo
}


class Renderer:
    """Renders grayscale images of one mesh at a time under a fixed camera."""

    def __init__(self, size: int, lighting: Lighting, shading: str = "pixel"):
        import pyrender  # after choose_gl_platform has set PYOPENGL_PLATFORM
        from pyrender.shader_program import ShaderProgramCache

        self._pyrender = pyrender
        self.size = size
        self.lighting = lighting
        bg = lighting.background
        self.scene = pyrender.Scene(bg_color=[bg, bg, bg, 1.0],
                                    ambient_light=[lighting.ambient] * 3)
        camera = pyrender.PerspectiveCamera(yfov=np.radians(lighting.yfov_degrees),
                                            znear=0.5, zfar=lighting.camera_distance * 3)
        camera_pose = np.eye(4)
        camera_pose[2, 3] = lighting.camera_distance
        self.scene.add(camera, pose=camera_pose)
        light = pyrender.DirectionalLight(intensity=lighting.light_intensity)
        self._light_node = self.scene.add(light, pose=_light_pose(light_direction(0.0, 0.0)))
        self._mesh_node = None
        self._triangles = None  # the uploaded mesh's topology, kept to tell when it changes
        try:
            self._gl = pyrender.OffscreenRenderer(size, size)
        except Exception as exc:  # PyOpenGL raises many kinds when no context can be made
            raise DcignError(f"could not create an OpenGL context ({exc}): {_PLATFORM_HELP}"
                             ) from exc
        # Our shader stands in for pyrender's mesh.vert/mesh.frag; others stay pyrender's.
        ours = [str(SHADER_DIR / name) for name in SHADERS[shading]]
        cache = ShaderProgramCache()
        original = cache.get_program

        def get_program(vertex_shader, fragment_shader, geometry_shader=None, defines=None):
            if vertex_shader == "mesh.vert":
                vertex_shader, fragment_shader = ours
            return original(vertex_shader, fragment_shader, geometry_shader, defines)

        cache.get_program = get_program
        self._gl._renderer._program_cache = cache
        self._gl._renderer._read_main_framebuffer = self._read_gray

    def set_mesh(self, vertices: np.ndarray, triangles: np.ndarray, albedo: np.ndarray,
                 normals: np.ndarray | None = None, material: np.ndarray | None = None) -> None:
        """Upload one object: vertices (N, 3), triangles (T, 3), grayscale albedo (N,).

        `material` (N, 2), optional: per-vertex solid-texture code and pattern scale, carried
        in colour channels g and b (see shaders/mesh.frag); none means plain albedo.
        """
        pr = self._pyrender
        if normals is None:
            normals = vertex_normals(vertices, triangles)
        colors = np.zeros((len(vertices), 4), np.float32)
        colors[:, 0] = albedo
        if material is not None:
            colors[:, 1:3] = material
        colors[:, 3] = 1.0  # opaque: pyrender would blend any vertex with alpha < 1
        if self._refill(vertices, triangles, normals, colors):
            return
        primitive = pr.Primitive(positions=vertices, normals=normals, color_0=colors,
                                 indices=triangles, mode=pr.constants.GLTF.TRIANGLES)
        if self._mesh_node is not None:
            self.scene.remove_node(self._mesh_node)
        self._mesh_node = self.scene.add(pr.Mesh([primitive]))
        self._triangles = triangles

    def _refill(self, vertices, triangles, normals, colors) -> bool:
        """Overwrite the uploaded mesh's vertex buffer when only the vertices changed (a
        morphable model's next identity): rebuilding the buffers costs a third of a frame.

        The buffer holds what pyrender's upload interleaves for this primitive: position,
        normal, colour per vertex, float32."""
        from OpenGL import GL

        if self._mesh_node is None or triangles is not self._triangles:
            return False
        primitive = self._mesh_node.mesh.primitives[0]
        if primitive._vaid is None or len(primitive.positions) != len(vertices):
            return False  # not uploaded yet, or another vertex count
        primitive.positions, primitive.normals, primitive.color_0 = vertices, normals, colors
        data = np.ascontiguousarray(np.hstack([vertices, normals, colors]), dtype=np.float32)
        self._gl._platform.make_current()  # another Renderer's context may be current
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, primitive._buffers[0])
        GL.glBufferSubData(GL.GL_ARRAY_BUFFER, 0, data.nbytes, data)
        return True

    def _read_gray(self, scene, flags):
        """Resolve the multisampled colour buffer and read one channel: pyrender's own reader
        also resolves, reads and linearises depth, a third of the frame time in software GL."""
        from OpenGL import GL

        if flags & self._pyrender.RenderFlags.DEPTH_ONLY:  # the floor: rasterise, read nothing
            GL.glFinish()
            return None
        inner, n = self._gl._renderer, self.size
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, inner._main_fb_ms)
        GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, inner._main_fb)
        GL.glBlitFramebuffer(0, 0, n, n, 0, 0, n, n, GL.GL_COLOR_BUFFER_BIT, GL.GL_LINEAR)
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, inner._main_fb)
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)  # rows of `size` bytes, unpadded
        buffer = GL.glReadPixels(0, 0, n, n, GL.GL_RED, GL.GL_UNSIGNED_BYTE)
        gray = np.frombuffer(buffer, dtype=np.uint8).reshape(n, n)
        return np.ascontiguousarray(gray[::-1]), None  # GL rows run bottom-up

    def render(self, rotation: np.ndarray, toward_light: np.ndarray) -> np.ndarray:
        """One uint8 (size, size) image of the current mesh, rotated, lit from `toward_light`."""
        self.scene.set_pose(self._mesh_node, _pose(rotation))
        self.scene.set_pose(self._light_node, _light_pose(toward_light))
        gray, _ = self._gl.render(self.scene)
        return gray

    def rasterise_depth_only(self, rotation: np.ndarray) -> None:
        """The floor benchmarks compare `render` to: the same mesh, pose and context through
        the same pyrender calls, depth only, waited for but not read back."""
        self.scene.set_pose(self._mesh_node, _pose(rotation))
        self._gl.render(self.scene, flags=self._pyrender.RenderFlags.DEPTH_ONLY)

    def close(self) -> None:
        self._gl.delete()
