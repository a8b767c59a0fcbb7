"""Choosing the offscreen GL platform: EGL or OSMesa.

PyOpenGL fixes its platform when it is first imported, so the choice is made before
anything imports pyrender: each candidate is probed in a child process, and the one that
works is exported as PYOPENGL_PLATFORM (for this process and for the workers it spawns).
"""

from __future__ import annotations

import os
import subprocess
import sys

from dcign.shared.errors import DcignError

GL_PLATFORMS = ("egl", "osmesa")
PROBE_TIMEOUT_S = 120  # a software context is made in about a second; a hung driver is not
PLATFORM_HELP = (
    "no offscreen OpenGL works here. For EGL install the system package libegl1 "
    "(Debian/Ubuntu: apt-get install libegl1 libgl1; Mesa's software EGL needs no GPU); "
    "for OSMesa install libosmesa6 and pass --gl osmesa"
)
_PROBE = (
    "import pyrender; r = pyrender.OffscreenRenderer(8, 8); "
    "import numpy as np; s = pyrender.Scene(); "
    "s.add(pyrender.PerspectiveCamera(yfov=1.0)); r.render(s); r.delete()"
)


_RENDERER_PROBE = (
    "import pyrender; r = pyrender.OffscreenRenderer(8, 8); "
    "from OpenGL import GL; print(GL.glGetString(GL.GL_RENDERER).decode()); r.delete()"
)


def gl_renderer(platform: str) -> str:
    """The GL renderer string a context on `platform` reports ("llvmpipe …" is Mesa's
    software rasteriser; an NVIDIA GPU names itself), with the worker's EGL_DEVICE_ID."""
    env = dict(os.environ, PYOPENGL_PLATFORM=platform)
    try:
        done = subprocess.run([sys.executable, "-c", _RENDERER_PROBE], env=env,
                              capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return "unknown (the probe hung)"
    return done.stdout.strip() or f"unknown ({done.stderr.strip()[-200:]})"


def _platform_works(platform: str) -> bool:
    env = dict(os.environ, PYOPENGL_PLATFORM=platform)
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                              timeout=PROBE_TIMEOUT_S)
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
    raise DcignError(f"offscreen OpenGL through {tried} failed: {PLATFORM_HELP}")
