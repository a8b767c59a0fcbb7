"""Every use of pyrender's private state, in one module, checked before a Renderer is built.

We keep pyrender for its scene graph and its EGL/OSMesa contexts, but replace three of its
steps that cost more than the rasterisation itself in software GL:

* shading: our shader pair stands in for its PBR `mesh.vert`/`mesh.frag`, through a
  `ShaderProgramCache.get_program` wrapper set as the renderer's `_program_cache`;
* read-back: its `_read_main_framebuffer` resolves and reads colour and linearised depth;
  ours resolves `_main_fb_ms` into `_main_fb` and reads the red channel only;
* uploads: a morphable model's next identity overwrites the uploaded vertex buffer
  (`primitive._vaid`, `primitive._buffers[0]`, after `_platform.make_current`) instead of
  rebuilding every buffer.

`check_pyrender` refuses, in one line, a pyrender outside the versions these patches were
tested with (pyproject.toml caps pyrender at the same range; a test ties the two) or one
that lacks any private attribute named here.

pyrender and PyOpenGL are imported inside the functions: PyOpenGL fixes its GL platform at
its first import, which must come after `platform.choose_gl_platform`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dcign.shared.errors import DcignError

# The pyrender versions the patches were tested with: [first tested, first untested).
TESTED_SINCE = (0, 1, 45)
UNTESTED_FROM = (0, 2)
TESTED_RANGE = ">={},<{}".format(*(".".join(map(str, v)) for v in (TESTED_SINCE, UNTESTED_FROM)))

# The pyrender shader pair a mesh is drawn with; ours replaces it.
PYRENDER_MESH_SHADER = "mesh.vert"
# Signatures our replacements must keep, pyrender calling them (or us calling the original).
GET_PROGRAM_PARAMETERS = ("self", "vertex_shader", "fragment_shader", "geometry_shader",
                          "defines")
READ_MAIN_FRAMEBUFFER_PARAMETERS = ("self", "scene", "flags")


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def _is_tested(version: str) -> bool:
    return TESTED_SINCE <= _version_tuple(version) < UNTESTED_FROM


def _parameters(function: Callable) -> tuple[str, ...]:
    return tuple(inspect.signature(function).parameters)


def missing_private_state() -> list[str]:
    """The private attributes we patch that the installed pyrender lacks (none: all there).

    Instance attributes are looked for on a bare pyrender Renderer and Primitive, whose
    constructors only record state: no GL context is made."""
    # here, not at the top: after the GL platform is chosen
    import pyrender
    from pyrender.platforms.base import Platform
    from pyrender.renderer import Renderer as PyrenderRenderer
    from pyrender.shader_program import ShaderProgramCache

    inner = PyrenderRenderer(1, 1)
    primitive = pyrender.Primitive(positions=np.zeros((3, 3), np.float32))
    present = {
        "ShaderProgramCache.get_program": hasattr(ShaderProgramCache, "get_program") and
        _parameters(ShaderProgramCache.get_program) == GET_PROGRAM_PARAMETERS,
        "Renderer._program_cache": hasattr(inner, "_program_cache"),
        "Renderer._read_main_framebuffer": hasattr(PyrenderRenderer, "_read_main_framebuffer")
        and _parameters(PyrenderRenderer._read_main_framebuffer)
        == READ_MAIN_FRAMEBUFFER_PARAMETERS,
        "Renderer._main_fb": hasattr(inner, "_main_fb"),
        "Renderer._main_fb_ms": hasattr(inner, "_main_fb_ms"),
        "Primitive._vaid": hasattr(primitive, "_vaid"),
        "Primitive._buffers": hasattr(primitive, "_buffers"),
        "Platform.make_current": hasattr(Platform, "make_current"),
    }
    return [name for name, found in present.items() if not found]


def check_pyrender() -> None:
    """Refuse an untested pyrender, or one lacking what we patch, with one line naming both."""
    import pyrender  # here: after the GL platform is chosen

    version = pyrender.__version__
    missing = missing_private_state()
    if _is_tested(version) and not missing:
        return
    problems = [] if _is_tested(version) else [f"outside the tested versions {TESTED_RANGE}"]
    if missing:
        problems.append(f"lacks the private state dcign patches: {', '.join(missing)}")
    raise DcignError(f"pyrender {version} is {' and '.join(problems)}; install a tested "
                     f"one: pip install 'pyrender{TESTED_RANGE}'")


def _require_offscreen_state(offscreen) -> None:
    """The two attributes of a made OffscreenRenderer that we reach through (only visible
    once it exists: its constructor makes the GL context)."""
    missing = [f"OffscreenRenderer.{name}" for name in ("_renderer", "_platform")
               if getattr(offscreen, name, None) is None]
    if missing:
        import pyrender  # here: after the GL platform is chosen

        raise DcignError(f"pyrender {pyrender.__version__} lacks the private state dcign "
                         f"patches: {', '.join(missing)}; install a tested one: pip install "
                         f"'pyrender{TESTED_RANGE}'")


LIGHTS_PER_TARGET = 4  # R, G, B, A
MAX_TARGETS = 8  # colour attachments every OpenGL 3.3 gives (GL_MAX_DRAW_BUFFERS ≥ 8)
LIGHT_CODE_SCALE = 64.0  # a light's red = its slot / this: exact in float, up to 32 slots


@dataclass
class ShaderSettings:
    """What the patched pyrender reads at each render: how many lights our shader shades in
    one pass (1, or up to 32 for a gray light minibatch: one per colour channel of a render
    target, four to a target), and so which render targets and channels the read-back
    returns; and the image's channels (1 gray, 3 rgb: set once, with the shader compiled for
    it, and one light a pass)."""

    lights_per_pass: int = 1
    channels: int = 1

    @property
    def targets(self) -> int:
        return -(-self.lights_per_pass // LIGHTS_PER_TARGET)


def use_shaders(offscreen, vertex_path: str, fragment_path: str, channels: int = 1
                ) -> ShaderSettings:
    """Draw meshes with our shader pair, compiled for the settings' lights per pass and
    channels (each its own program, cached by pyrender); pyrender's other programs (e.g. for
    points) stay. Returns the settings the caller changes between renders."""
    import pyrender.renderer  # here: after the GL platform is chosen
    from pyrender.shader_program import ShaderProgramCache

    _require_offscreen_state(offscreen)
    settings = ShaderSettings(channels=channels)
    cache = ShaderProgramCache()
    original = cache.get_program
    # pyrender binds at most MAX_N_LIGHTS (4) directional lights; a light minibatch's pass
    # binds all of its own (its shadows are off, the only other use of the bound)
    pyrender.renderer.MAX_N_LIGHTS = max(pyrender.renderer.MAX_N_LIGHTS,
                                         LIGHTS_PER_TARGET * MAX_TARGETS)

    def get_program(vertex_shader, fragment_shader, geometry_shader=None, defines=None):
        if vertex_shader == PYRENDER_MESH_SHADER:
            vertex_shader, fragment_shader = vertex_path, fragment_path
            defines = {**(defines or {}), "LIGHTS_PER_PASS": settings.lights_per_pass,
                       "CHANNELS": settings.channels, "TARGETS": settings.targets,
                       "LIGHT_CODE_SCALE": LIGHT_CODE_SCALE}
        return original(vertex_shader, fragment_shader, geometry_shader, defines)

    cache.get_program = get_program
    offscreen._renderer._program_cache = cache
    _draw_to_targets(offscreen._renderer, settings)
    return settings


def _draw_to_targets(inner, settings: ShaderSettings) -> None:
    """Give pyrender's offscreen framebuffers (the multisampled one drawn to, the one it is
    resolved into) MAX_TARGETS colour attachments, and draw into as many as the pass's
    lights need."""
    from OpenGL import GL

    configure_framebuffer = inner._configure_main_framebuffer
    configure_viewport = inner._configure_forward_pass_viewport

    def with_targets():
        configure_framebuffer()
        # made anew (the first render, or another size; GL may hand back the same name)
        made = (inner._main_fb, tuple(inner._main_fb_dims))
        if getattr(inner, "_dcign_targets_of", None) != made:
            _add_attachments(inner)
            inner._dcign_targets_of = made

    def viewport(flags):
        configure_viewport(flags)  # binds the multisampled framebuffer to draw to
        GL.glDrawBuffers(settings.targets, _attachments(settings.targets))

    inner._configure_main_framebuffer = with_targets
    inner._configure_forward_pass_viewport = viewport


def _attachments(count: int, first: int = 0) -> list[int]:
    from OpenGL import GL

    return [GL.GL_COLOR_ATTACHMENT0 + t for t in range(first, first + count)]


def _add_attachments(inner) -> None:
    from OpenGL import GL

    width, height = inner.viewport_width, inner.viewport_height
    for fb, samples in ((inner._main_fb, 0), (inner._main_fb_ms, 4)):
        buffers = GL.glGenRenderbuffers(MAX_TARGETS - 1)
        GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, fb)
        for attachment, buffer in zip(_attachments(MAX_TARGETS - 1, 1), buffers, strict=True):
            GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, buffer)
            GL.glRenderbufferStorageMultisample(GL.GL_RENDERBUFFER, samples, GL.GL_RGBA, width,
                                                height)
            GL.glFramebufferRenderbuffer(GL.GL_DRAW_FRAMEBUFFER, attachment,
                                         GL.GL_RENDERBUFFER, buffer)


def read_channels(offscreen, size: int, settings: ShaderSettings) -> None:
    """Read back uint8 rows top-down: the red channel (size, size) when one light was shaded
    in gray, all four of every target used (size, size, 4 × targets) when several were, red,
    green and blue (size, size, 3) for an rgb image. pyrender's own reader also resolves,
    reads and linearises depth, a third of the frame time in software GL. A depth-only
    render (the benchmarks' floor) waits for the GL and reads nothing."""
    # here, not at the top: after the GL platform is chosen
    import pyrender
    from OpenGL import GL

    _require_offscreen_state(offscreen)
    inner = offscreen._renderer

    def resolve(target: int) -> None:
        """The multisampled target resolved into the framebuffer read from."""
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, inner._main_fb_ms)
        GL.glReadBuffer(GL.GL_COLOR_ATTACHMENT0 + target)
        GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, inner._main_fb)
        GL.glDrawBuffers(1, _attachments(1, target))
        GL.glBlitFramebuffer(0, 0, size, size, 0, 0, size, size, GL.GL_COLOR_BUFFER_BIT,
                             GL.GL_LINEAR)
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, inner._main_fb)
        GL.glReadBuffer(GL.GL_COLOR_ATTACHMENT0 + target)

    def read(target: int, form, channels: int) -> np.ndarray:
        resolve(target)
        buffer = GL.glReadPixels(0, 0, size, size, form, GL.GL_UNSIGNED_BYTE)
        return np.frombuffer(buffer, dtype=np.uint8).reshape(size, size, channels)

    def read_back(scene, flags):
        if flags & pyrender.RenderFlags.DEPTH_ONLY:
            GL.glFinish()
            return None
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)  # rows of `size` bytes, unpadded
        if settings.channels == 3:
            pixels = read(0, GL.GL_RGB, 3)
        elif settings.lights_per_pass == 1:
            pixels = read(0, GL.GL_RED, 1)[..., 0]
        else:
            pixels = np.concatenate([read(t, GL.GL_RGBA, LIGHTS_PER_TARGET)
                                     for t in range(settings.targets)], axis=-1)
        return np.ascontiguousarray(pixels[::-1]), None  # GL rows run bottom-up

    inner._read_main_framebuffer = read_back


def refill_vertex_buffer(offscreen, primitive, vertices: np.ndarray, normals: np.ndarray,
                         colors: np.ndarray) -> bool:
    """Overwrite an uploaded primitive's vertex buffer in place; False when it has not been
    uploaded yet or had another vertex count (then the caller uploads a new mesh).

    The buffer holds what pyrender's upload interleaves for such a primitive: position,
    normal, colour per vertex, float32 (one with texture coordinates, an rgb chair's material
    codes, interleaves more: it is uploaded anew)."""
    from OpenGL import GL  # here: after the GL platform is chosen

    if (primitive._vaid is None or len(primitive.positions) != len(vertices)
            or primitive.texcoord_0 is not None):
        return False
    primitive.positions, primitive.normals, primitive.color_0 = vertices, normals, colors
    data = np.ascontiguousarray(np.hstack([vertices, normals, colors]), dtype=np.float32)
    offscreen._platform.make_current()  # another Renderer's context may be current
    GL.glBindBuffer(GL.GL_ARRAY_BUFFER, primitive._buffers[0])
    GL.glBufferSubData(GL.GL_ARRAY_BUFFER, 0, data.nbytes, data)
    return True
