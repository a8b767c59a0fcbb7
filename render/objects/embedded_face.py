"""The embedded Basel-style morphable face model: a licence-free stand-in for the BFM.

A closed head (skull, face, ears, neck) is a star-shaped grid around a point inside the
head, densest over the face, plus two eyeball spheres. Named anatomical parameters change it
in two ways that keep every vertex in correspondence, as in a real morphable model:

* amplitude features (nose projection, brow ridge, cheek fullness, lip fullness ...) push
  the skin along a direction by a smooth profile fixed to the vertices, and
* position features (eye spacing, face length, mouth width, nose length ...) are smooth
  space warps that move vertices, so lip colour stays on the lips and lids stay on the eyes.

Each shape component is the derivative of the vertex positions with respect to one
parameter (central differences, per one standard deviation); Gram-Schmidt (QR) in the order
of `component_names` then makes an orthonormal basis whose leading components keep their
names. Albedo components are named colour fields orthonormalised the same way.

Units are centimetres: +y up, +z out of the face, eyes at y = 0.

Why one long module (about 760 lines, against the project's ~400): it is a single model's
definition, not several concerns. The landmarks at the top, the profiles of the amplitude
features, the lids, the warps and the painted albedo regions are tuned against one another
(the lips' colour must land on the lips' shape, the lids on the eyeballs), and every private
helper serves them all. Split into files, tuning one feature would mean chasing its
constants across them; the sections below are the seams a reader needs.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .face_model import MorphableModel
from .geometry import vertex_normals

EMBEDDED_MODEL_NAME = "embedded-basel-style-v2"
_SEED = 20150601  # fixes the small random localised components; any change changes the model

# ---------------------------------------------------------------------------------------------
# The mean face's landmarks (cm)
# ---------------------------------------------------------------------------------------------

EYE_X, EYE_Y, EYE_R = 3.1, 0.0, 1.2  # eyeball centre offset and radius
NOSE_ROOT_Y, NOSE_TIP_Y = 1.0, -4.4
MOUTH_Y, MOUTH_HALF_WIDTH = -7.2, 2.45
CHIN_Y = -10.6


# ---------------------------------------------------------------------------------------------
# Mesh layout
# ---------------------------------------------------------------------------------------------

_N_LAT = 56  # grid rows between the top and bottom poles (render cost grows with the count)
_N_LON = 92  # grid columns around the vertical axis
_RAY_ORIGIN = np.array([0.0, -2.5, -1.5])  # the head is star-shaped around this point
_EYE_RINGS = np.deg2rad([4, 8, 12, 16, 20, 23, 26, 29, 33, 40, 50, 62, 78, 96, 118, 142, 164])
_EYE_SEGMENTS = 16


def _warped_angles(n: int, low: float, high: float, density, periodic: bool) -> np.ndarray:
    """n angles in [low, high] spaced inversely to `density` (more samples over the face)."""
    fine = np.linspace(low, high, 4001)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density(fine[1:]) + density(fine[:-1])))])
    cdf /= cdf[-1]
    if periodic:
        targets = (np.arange(n) + 0.5) / n
    else:
        targets = (np.arange(n) + 1.0) / (n + 1.0)
    return np.interp(targets, cdf, fine)


def _latitudes() -> np.ndarray:
    # Polar angle from +y. The face spans roughly 45° (hairline) to 150° (under the chin).
    def density(t):
        return 0.3 + np.exp(-(((t - np.deg2rad(98)) / np.deg2rad(50)) ** 4))

    return _warped_angles(_N_LAT, 0.0, np.pi, density, periodic=False)


def _longitudes() -> np.ndarray:
    # Azimuth around +y, 0 = facing +z. Dense over the face and the ears, sparse at the back.
    def density(p):
        return 0.25 + np.exp(-((p / np.deg2rad(100)) ** 4))

    return _warped_angles(_N_LON, -np.pi, np.pi, density, periodic=True)


def _sphere_triangles(n_rows: int, n_cols: int, first: int) -> np.ndarray:
    """Triangles of a pole-row-...-row-pole grid, counter-clockwise seen from outside.

    Vertex `first` is the first pole, then n_rows rows of n_cols, then the second pole; the
    rows run away from the first pole and the columns turn right-handed about it.
    """
    rows = first + 1 + np.arange(n_rows)[:, None] * n_cols + np.arange(n_cols)[None, :]
    nxt = np.roll(rows, -1, axis=1)
    top, bottom = first, first + 1 + n_rows * n_cols
    tris = [np.stack([rows[0], nxt[0], np.full(n_cols, top)], axis=1)]
    a, b, c, d = rows[:-1], nxt[:-1], rows[1:], nxt[1:]
    tris.append(np.stack([c, d, a], axis=-1).reshape(-1, 3))
    tris.append(np.stack([a, d, b], axis=-1).reshape(-1, 3))
    tris.append(np.stack([rows[-1], np.full(n_cols, bottom), nxt[-1]], axis=1))
    return np.concatenate(tris).astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Small numeric helpers
# ---------------------------------------------------------------------------------------------


def _gauss(x, y, cx, cy, sx, sy):
    return np.exp(-(((x - cx) / sx) ** 2) - ((y - cy) / sy) ** 2)


def _smoothstep(x, e0, e1):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _smax(a, b, k):
    """Maximum with a rounded crease of width k (polynomial smooth max)."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.maximum(a, b) + h * h * k * 0.25


def _softplus(x, s):
    return s * np.logaddexp(0.0, x / s)


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# The base head: a smooth union of ellipsoids, ray-cast from inside
# ---------------------------------------------------------------------------------------------

# (centre, radii, tilt about x in degrees: positive tips the front end down)
_CRANIUM = ((0.0, 2.7, -1.0), (7.3, 9.0, 9.6), 0.0)
_MIDFACE = ((0.0, -5.0, 2.5), (5.5, 5.8, 6.6), 35.0)  # cheeks and jaws
# The neck: an upright elliptic cylinder (x radius, z radius, axis z) from inside the skull
# down to `bottom`, closed there by a half-ellipsoid cap of height `cap`.
_NECK = {"rx": 4.4, "rz": 4.7, "z": -2.4, "bottom": -13.0, "cap": 2.5}


def _ray_ellipsoid(dirs: np.ndarray, ellipsoid) -> np.ndarray:
    """Distance from _RAY_ORIGIN along unit `dirs` to where the ray leaves the ellipsoid; 0
    for rays that miss it (then another part of the head is hit instead)."""
    centre, radii, tilt = ellipsoid
    t = np.deg2rad(tilt)
    rot = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    o = (rot.T @ (_RAY_ORIGIN - np.asarray(centre))) / np.asarray(radii)
    d = (dirs @ rot) / np.asarray(radii)
    a = np.sum(d * d, axis=1)
    b = d @ o
    c = o @ o - 1.0
    return (-b + np.sqrt(np.maximum(b * b - a * c, 0.0))) / a * (b * b - a * c >= 0)


def _ray_neck(dirs: np.ndarray) -> np.ndarray:
    """Distance to the neck: its side above the cap, else the cap. Side and cap meet with a
    common tangent, so the union is convex and contains the ray origin."""
    rx, rz, zc, bottom, cap = (_NECK[k] for k in ("rx", "rz", "z", "bottom", "cap"))
    ox, oz = _RAY_ORIGIN[0] / rx, (_RAY_ORIGIN[2] - zc) / rz
    dx, dz = dirs[:, 0] / rx, dirs[:, 2] / rz
    a = np.maximum(dx * dx + dz * dz, 1e-12)
    b = dx * ox + dz * oz
    side = (-b + np.sqrt(b * b - a * (ox * ox + oz * oz - 1.0))) / a
    # The cylinder stops at y = 0, inside the skull, so upward rays leave it harmlessly.
    up = np.maximum(dirs[:, 1], 1e-9)
    side = np.where(dirs[:, 1] > 0, np.minimum(side, -_RAY_ORIGIN[1] / up), side)
    cap_end = _ray_ellipsoid(dirs, ((0.0, bottom, zc), (rx, cap, rz), 0.0))
    return np.where(_RAY_ORIGIN[1] + side * dirs[:, 1] >= bottom, side, cap_end)


def _base_radius(dirs: np.ndarray) -> np.ndarray:
    r = _smax(_ray_ellipsoid(dirs, _CRANIUM), _ray_ellipsoid(dirs, _MIDFACE), 1.6)
    return _smax(r, _ray_neck(dirs), 0.8)


# Where the grid gathers extra vertices (centre, angular radius, strength): the lid margins,
# brows and lips need a finer sampling than the rest of the face.
_MAGNIFIERS = (
    ((EYE_X, EYE_Y, 7.5), np.deg2rad(11.0), 0.55),
    ((-EYE_X, EYE_Y, 7.5), np.deg2rad(11.0), 0.55),
    ((0.0, MOUTH_Y, 9.0), np.deg2rad(13.0), 0.4),
    ((7.3, -0.9, -1.3), np.deg2rad(20.0), 0.4),  # the ears
    ((-7.3, -0.9, -1.3), np.deg2rad(20.0), 0.4),
)


def _magnify(dirs: np.ndarray, centre: np.ndarray, radius: float, strength: float):
    """Pull directions towards `centre` along great circles: a local zoom of the grid.

    The angle a from the centre becomes a·(1 - strength·exp(-(a/radius)²)), which is
    one-to-one for strength < 1, so the grid keeps its topology and winding.
    """
    cos_a = np.clip(dirs @ centre, -1.0, 1.0)
    angle = np.arccos(cos_a)
    tangent = dirs - cos_a[:, None] * centre
    norm = np.linalg.norm(tangent, axis=1, keepdims=True)
    tangent = np.where(norm > 1e-9, tangent / np.maximum(norm, 1e-12), 0.0)
    new = angle * (1.0 - strength * np.exp(-((angle / radius) ** 2)))
    return np.cos(new)[:, None] * centre + np.sin(new)[:, None] * tangent


class _Head:
    """Topology, base positions and base normals; everything else is computed from these."""

    def __init__(self) -> None:
        theta, phi = _latitudes()[:, None], _longitudes()[None, :]
        grid = np.stack(np.broadcast_arrays(np.sin(theta) * np.sin(phi), np.cos(theta),
                                            np.sin(theta) * np.cos(phi)), axis=-1)
        dirs = np.concatenate([[[0.0, 1.0, 0.0]], grid.reshape(-1, 3), [[0.0, -1.0, 0.0]]])
        for centre, radius, strength in _MAGNIFIERS:
            dirs = _magnify(dirs, _unit(np.asarray(centre) - _RAY_ORIGIN), radius, strength)
        self.skin = _RAY_ORIGIN + dirs * _base_radius(dirs)[:, None]
        self.skin_triangles = _sphere_triangles(_N_LAT, _N_LON, 0)
        self.normals = vertex_normals(self.skin, self.skin_triangles)
        self.n_skin = len(self.skin)
        # One unit eyeball, gaze +z; its polar angle from the gaze drives the iris albedo.
        alpha, beta = _EYE_RINGS[:, None], (np.arange(_EYE_SEGMENTS) * 2 * np.pi / _EYE_SEGMENTS)
        ring = np.stack(np.broadcast_arrays(np.sin(alpha) * np.sin(beta),
                                            -np.sin(alpha) * np.cos(beta), np.cos(alpha)), -1)
        self.eye_unit = np.concatenate([[[0.0, 0.0, 1.0]], ring.reshape(-1, 3), [[0, 0, -1.0]]])
        self.eye_alpha = np.arccos(np.clip(self.eye_unit[:, 2], -1, 1))
        n_eye = len(self.eye_unit)
        eye_tris = _sphere_triangles(len(_EYE_RINGS), _EYE_SEGMENTS, 0)
        self.triangles = np.concatenate(
            [self.skin_triangles, eye_tris + self.n_skin, eye_tris + self.n_skin + n_eye])
        self.n_eye = n_eye
        self.front = _front(self.skin[:, 2])


def _base_depth(x: float, y: float) -> float:
    """z of the base head's front surface above (x, y)."""
    z = 8.0
    for _ in range(6):  # the ray through (x, y, z) lands near (x, y); a few fixed-point steps
        d = _unit(np.array([[x, y, z]]) - _RAY_ORIGIN)
        p = _RAY_ORIGIN + d * _base_radius(d)[:, None]
        z = float(p[0, 2])
    return z


class _Params:
    """Parameter values in standard deviations; unknown names read as 0 (the mean face)."""

    def __init__(self, values: dict[str, float] | None = None) -> None:
        self._values = values or {}

    def __getattr__(self, name: str) -> float:
        return self._values.get(name, 0.0)


# ---------------------------------------------------------------------------------------------
# Amplitude features: (dz, dn) = push along +z and along the base normal, in cm
# ---------------------------------------------------------------------------------------------


def _forehead_and_brow(x, y, p: _Params):
    ax = np.abs(x)
    ridge = (0.5 + 0.16 * p.brow_ridge) * np.exp(-(((ax - 2.7) / 2.2) ** 2)
                                                 - ((y - 1.85) / 0.7) ** 2)
    glabella = (0.15 + 0.08 * p.brow_ridge) * _gauss(x, y, 0.0, 1.6, 1.0, 0.8)
    bossing = (0.2 + 0.12 * p.forehead_bossing) * _gauss(ax, y, 2.8, 5.2, 2.2, 2.0)
    # The orbit: a hollow under the brow in which the eyeball and lids sit.
    orbit = -(0.9 + 0.15 * p.eye_depth) * _gauss(ax, y, EYE_X, EYE_Y - 0.1, 1.7, 1.25)
    return ridge + glabella + bossing + orbit


def _nose(x, y, p: _Params):
    ax = np.abs(x)
    root, tip = NOSE_ROOT_Y, NOSE_TIP_Y
    projection = 2.0 + 0.25 * p.nose_projection
    t = np.clip((root - y) / (root - tip), 0.0, 1.0)  # 0 at the root, 1 at the tip
    profile = projection * (0.14 + 0.86 * t ** 1.15) + 0.16 * p.nose_bridge * np.sin(np.pi * t)
    profile *= np.exp(-((np.maximum(y - root, 0.0) / 0.6) ** 2))  # fade into the glabella
    profile *= np.exp(-((np.maximum(tip - y, 0.0) / 0.5) ** 2))  # underside of the tip
    half_width = 0.42 + 0.2 * t
    dorsum = profile * np.exp(-0.5 * (x / half_width) ** 2)
    bulb = (0.3 + 0.1 * p.nose_tip) * _gauss(x, y, 0.0, tip + 0.05, 0.65, 0.6)
    alae = (0.75 + 0.1 * p.nose_tip) * _gauss(ax, y, 1.2, tip - 0.35, 0.5, 0.42)
    alar_crease = -0.18 * _gauss(ax, y, 1.75, tip - 0.3, 0.2, 0.5)
    nostrils = -0.25 * _gauss(ax, y, 0.45, tip - 0.7, 0.22, 0.17)
    return dorsum + bulb + alae + alar_crease + nostrils


def _mouth_and_chin(x, y, p: _Params):
    ax = np.abs(x)
    ym, mw = MOUTH_Y, MOUTH_HALF_WIDTH
    # The dental arch carries the lips forward of the cheeks.
    muzzle = (0.4 + 0.15 * p.midface) * np.exp(-((x / 2.3) ** 2) - ((y - ym - 0.4) / 2.4) ** 2)
    upper_side = _smoothstep(ax, mw, mw - 0.9)
    lower_side = _smoothstep(ax, mw - 0.2, mw - 1.2)
    fullness = 1.0 + 0.28 * p.lip_fullness
    upper = 0.42 * fullness * upper_side * np.exp(-(((y - ym - 0.38) / 0.32) ** 2))
    lower = 0.5 * fullness * lower_side * np.exp(-(((y - ym + 0.5) / 0.37) ** 2))
    line = -0.28 * _smoothstep(ax, mw + 0.2, mw - 0.4) * np.exp(-(((y - ym) / 0.13) ** 2))
    corners = -0.2 * _gauss(ax, y, mw, ym, 0.35, 0.35)
    philtrum = (0.06 * _gauss(ax, y, 0.45, ym + 1.2, 0.18, 0.55)
                - 0.06 * _gauss(x, y, 0.0, ym + 1.2, 0.22, 0.5))
    sulcus = -(0.32 + 0.12 * p.mentolabial) * _gauss(x, y, 0.0, ym - 1.45, 1.8, 0.45)
    chin = (1.2 + 0.25 * p.chin_prominence) * _gauss(x, y, 0.0, CHIN_Y + 0.2, 1.6, 1.0)
    square = 0.15 * p.chin_shape * _gauss(ax, y, 1.5, CHIN_Y, 0.8, 1.0)
    return muzzle + upper + lower + line + corners + philtrum + sulcus + chin + square


def _cheeks_and_jaw(x, y, z, p: _Params):
    """Pushes along the normal: these sit where the face turns towards the side."""
    ax = np.abs(x)
    cheekbone = (0.45 + 0.18 * p.cheekbone_prominence) * _gauss(ax, y, 4.7, -1.5, 1.5, 0.9)
    cheek = (0.15 + 0.25 * p.cheek_fullness + 0.15 * p.weight) * _gauss(ax, y, 3.6, -5.0, 1.7, 1.9)
    nasolabial = -(0.08 + 0.06 * p.nasolabial) * _gauss(ax, y, 2.5, -5.6, 0.3, 1.2)
    temple = -(0.25 + 0.12 * p.temple) * _gauss(ax, y, 6.2, 2.5, 1.1, 2.0)
    jaw_angle = (0.3 + 0.18 * p.jaw_angle) * _gauss(ax, y, 5.2, -8.3, 1.1, 1.1)
    jaw_angle *= np.exp(-(((z + 0.3) / 2.5) ** 2))
    jowl = 0.15 * p.weight * _gauss(ax, y, 3.8, -9.0, 1.8, 1.6)
    # Under the jaw line (chin to jaw angle, seen from the side) the skin steps back to the
    # neck, which gives the lower face its edge.
    jaw_line = -8.3 - (z + 1.0) * (2.9 / 8.0)
    under_jaw = -(0.7 + 0.12 * p.weight * -1) * _smoothstep(jaw_line - y, 0.0, 1.4)
    under_jaw *= _smoothstep(z, -3.0, -1.0) * _smoothstep(y, -15.0, -12.5)
    face = (cheekbone + cheek + nasolabial + jowl) * _smoothstep(z, 1.0, 4.0)
    side = (temple + jaw_angle) * _smoothstep(z, -4.0, 0.0)
    neck = 0.15 * p.weight * _smoothstep(-y, 10.0, 12.0)
    return face + side + neck + under_jaw


def _ears(x, y, z, p: _Params):
    """Outward push on each side of the head: a pinna with helix rim, concha and lobe."""
    s, t = z + 1.3, y + 0.9
    rho = np.sqrt((s / 1.45) ** 2 + (t / 2.9) ** 2)
    plate = _smoothstep(rho, 1.1, 0.72)  # wide enough an edge for the grid to draw smoothly
    helix = np.exp(-(((rho - 0.84) / 0.14) ** 2)) * _smoothstep(t, -1.6, -0.6)
    concha = _gauss(s, t, 0.25, -0.3, 0.55, 0.85)
    stand_off = 1.0 + 0.35 * np.clip(-s / 1.45, -1, 1)  # the back of the ear stands out more
    height = (0.75 + 0.15 * p.ear_protrusion) * plate * stand_off + 0.3 * helix - 0.75 * concha
    return height * _smoothstep(np.abs(x), 4.5, 6.0)


# ---------------------------------------------------------------------------------------------
# Eyes: lids drape over the eyeball; the lid opening (palpebral fissure) goes deep behind it
# ---------------------------------------------------------------------------------------------

_LID_THICKNESS = 0.12


def _eye_centre_z(p: _Params) -> float:
    recess = 0.35 + 0.15 * p.eye_depth  # how far the cornea sits behind the untouched head
    return _base_depth(EYE_X, EYE_Y) - recess - EYE_R


def _fissure_depth(dx, dy):
    """How far (cm) a point lies inside the almond-shaped lid opening (negative outside);
    dx is positive towards the temple."""
    u = dx / 1.32
    tilt = 0.06 * u  # the outer corner sits a little higher
    upper = 0.47 * (1 - u * u) * (1 - 0.25 * u) + tilt
    lower = -0.36 * (1 - u * u) * (1 + 0.2 * u) + tilt
    return np.minimum(np.minimum(upper - dy, dy - lower), (1 - np.abs(u)) * 0.4)


def _drape_lids(skin: np.ndarray, front: np.ndarray, ez: float, p: _Params) -> np.ndarray:
    x, y, z = skin.T
    dx, dy = np.abs(x) - EYE_X, y - EYE_Y
    lid_r = EYE_R + _LID_THICKNESS
    # The lid follows the eyeball's sphere, continued past 90% of its radius by its tangent
    # cone, so the draped skin has no crease where the sphere would turn vertical.
    r = np.hypot(dx, dy) / lid_r
    knee = 0.9
    cone = np.sqrt(1 - knee ** 2) - knee / np.sqrt(1 - knee ** 2) * (r - knee)
    cover = ez + lid_r * np.where(r < knee, np.sqrt(np.maximum(1 - r * r, 0.0)), cone)
    rho2 = dx * dx + dy * dy
    near = front * (rho2 < 2.8 ** 2)
    draped = np.where(near > 0, _smax(z, cover, 0.3), z)
    # Inside the opening the lid rolls smoothly back behind the eyeball. A gradual roll (over
    # a few grid cells) makes the visible margin, where lid meets eyeball, a smooth curve.
    roll = _smoothstep(_fissure_depth(dx, dy), -0.02, 0.3) * near
    out = skin.copy()
    out[:, 2] = draped - roll * np.maximum(draped - (ez - 0.4), 0.0)
    return out


def _eyeballs(head: _Head, ez: float) -> np.ndarray:
    # A slightly bulging cornea catches a highlight like a real eye.
    bulge = 1.0 + 0.05 * _smoothstep(head.eye_alpha, np.deg2rad(40), 0.0)
    local = head.eye_unit * (EYE_R * bulge)[:, None]
    right = local + np.array([EYE_X, EYE_Y, ez])
    left = local + np.array([-EYE_X, EYE_Y, ez])
    return np.concatenate([right, left])


# ---------------------------------------------------------------------------------------------
# Position features: smooth warps of space, applied to skin and eyeballs alike
# ---------------------------------------------------------------------------------------------


def _weight(v: np.ndarray, centre, radii) -> np.ndarray:
    """A 3-D Gaussian falloff; displacement k·weight stays one-to-one while |k| < radius."""
    return np.exp(-np.sum(((v - np.asarray(centre)) / np.asarray(radii)) ** 2, axis=1))


def _front(z):
    """How much a point belongs to the face rather than the skull or neck."""
    return _smoothstep(z, 0.5, 4.0)


def _warp_axis(v, axis: int, delta):
    out = v.copy()
    out[:, axis] += delta
    return out


def _global_warps(v: np.ndarray, p: _Params) -> np.ndarray:
    """Whole-head proportions; coefficients are fractions of a length per standard deviation."""
    x, y, z = v.T

    def widen(v, a, weight):
        return _warp_axis(v, 0, a * weight * v[:, 0])

    def neck(v, a):
        w = _smoothstep(-y, 9.0, 12.0)
        return _warp_axis(_warp_axis(v, 0, a * w * x), 2, a * w * (z + 2.2))

    warps = {
        # Below the eyes the face stretches down; the skull above stays.
        "face_length": lambda v, a: _warp_axis(v, 1, -0.045 * a * _softplus(-(y + 1.5), 1.0)),
        "head_height": lambda v, a: _warp_axis(v, 1, 0.035 * a * _softplus(y - 3.0, 1.0)),
        "head_depth": lambda v, a: _warp_axis(v, 2, -0.045 * a * _softplus(-(z + 1.0), 1.0)),
        "forehead_slope": lambda v, a: _warp_axis(
            v, 2, -0.06 * a * _softplus(y - 2.5, 1.0) * _front(z)),
        "head_width": lambda v, a: widen(v, 0.03 * a, 1.0),
        "face_width": lambda v, a: widen(v, 0.035 * a, _front(z) * np.exp(-(((y + 2) / 6) ** 2))),
        "jaw_width": lambda v, a: widen(
            v, 0.06 * a, np.exp(-(((y + 8.5) / 2.8) ** 2)) * _smoothstep(z, -4.0, 0.0)),
        "neck_width": lambda v, a: neck(v, 0.05 * a),
        # Real faces are never mirror images: one side a little wider than the other.
        "asymmetry": lambda v, a: _warp_axis(
            v, 0, 0.1 * a * _front(z) * np.tanh(x / 3.0) * np.exp(-((y / 8.0) ** 2))),
    }
    for name, warp in warps.items():
        amount = getattr(p, name)
        if amount:
            v = warp(v, amount)
            x, y, z = v.T
    return v


def _shift(v, amount, centre, radii, axis: int, mirror: bool = False):
    """Move the region around `centre` by `amount` along `axis`; with mirror, also the mirror
    region, in the mirrored direction when the axis is x (so eyes move apart together)."""
    out = v.copy()
    w = _weight(v, centre, radii)
    if mirror:
        other = _weight(v, (-centre[0], centre[1], centre[2]), radii)
        w = w - other if axis == 0 else w + other
    out[:, axis] += amount * w
    return out


def _scale(v, amount, centre, radii, axes, mirror: bool = False):
    """Scale the region around `centre` by 1 + amount along `axes` (about the centre)."""
    out = v.copy()
    centres = [np.asarray(centre, float)]
    if mirror:
        centres.append(centres[0] * np.array([-1.0, 1.0, 1.0]))
    for c in centres:
        w = _weight(v, c, radii)[:, None]
        out[:, axes] += amount * w * (v[:, axes] - c[axes])
    return out


def _tilt_eyes(v, amount, centre):
    out = v.copy()
    for side in (1.0, -1.0):
        c = np.array([side * centre[0], centre[1], centre[2]])
        w = _weight(v, c, (2.0, 1.8, 3.0))
        out[:, 1] += amount * w * side * (v[:, 0] - c[0])
    return out


def _local_warps(v: np.ndarray, ez: float, p: _Params) -> np.ndarray:
    eye_ball = (EYE_X, EYE_Y, ez)
    eye_front = (EYE_X, EYE_Y, ez + EYE_R)
    mouth, chin = (0.0, MOUTH_Y, 9.0), (0.0, CHIN_Y, 7.0)
    tip, nose = (0.0, NOSE_TIP_Y, 10.0), (0.0, -3.0, 9.0)
    # name -> warp of the vertices by `a` standard deviations; coefficients are cm (shifts) or
    # fractions (scales) per standard deviation.
    warps = {
        "eye_spacing": lambda v, a: _shift(v, 0.16 * a, eye_front, (1.9, 1.7, 3.0), 0, True),
        "eye_height": lambda v, a: _shift(v, 0.14 * a, eye_front, (1.9, 1.7, 3.0), 1, True),
        "eye_size": lambda v, a: _scale(v, 0.05 * a, eye_ball, (2.0, 1.8, 3.0), [0, 1, 2], True),
        # The outer corners of the eyes rise or fall: a shear about each eyeball centre.
        "canthal_tilt": lambda v, a: _tilt_eyes(v, 0.04 * a, eye_ball),
        "cheekbone_height": lambda v, a: _shift(v, 0.2 * a, (4.6, -1.5, 6.0), (1.8, 1.4, 3.0),
                                                1, True),
        "brow_height": lambda v, a: _shift(v, 0.12 * a, (2.7, 2.0, 8.5), (2.5, 0.9, 2.5), 1, True),
        "mouth_width": lambda v, a: _scale(v, 0.07 * a, mouth, (3.5, 1.8, 3.5), [0]),
        "mouth_height": lambda v, a: _shift(v, 0.16 * a, mouth, (3.5, 1.8, 3.5), 1),
        "lip_height": lambda v, a: _scale(v, 0.09 * a, mouth, (2.8, 1.3, 3.0), [1]),
        "mouth_shift": lambda v, a: _shift(v, 0.12 * a, mouth, (2.8, 1.3, 3.0), 0),
        "nose_length": lambda v, a: _shift(v, -0.28 * a, tip, (2.2, 2.4, 3.5), 1),
        "nose_deviation": lambda v, a: _shift(v, 0.1 * a, tip, (2.2, 2.4, 3.5), 0),
        "nose_width": lambda v, a: _scale(v, 0.1 * a, nose, (1.9, 2.6, 3.5), [0]),
        "chin_height": lambda v, a: _shift(v, -0.2 * a, chin, (3.2, 1.8, 4.0), 1),
        "chin_width": lambda v, a: _scale(v, 0.12 * a, chin, (3.2, 1.8, 4.0), [0]),
        "ear_size": lambda v, a: _scale(v, 0.05 * a, (7.3, -0.9, -1.3), (2.0, 3.5, 2.5),
                                        [0, 1, 2], True),
    }
    for name, warp in warps.items():
        amount = getattr(p, name)
        if amount:  # the mean face skips them all; a finite difference runs one
            v = warp(v, amount)
    return v


# ---------------------------------------------------------------------------------------------
# Assembly
# ---------------------------------------------------------------------------------------------


def _vertices(head: _Head, p: _Params) -> np.ndarray:
    """Every vertex (skin, right eye, left eye) of the face with parameters p."""
    x, y, z = head.skin.T
    dz = head.front * (_forehead_and_brow(x, y, p) + _nose(x, y, p) + _mouth_and_chin(x, y, p))
    dn = _cheeks_and_jaw(x, y, z, p) + _ears(x, y, z, p) + head.front * _local_features(x, y, p)
    skin = head.skin + dn[:, None] * head.normals
    skin[:, 2] += dz
    ez = _eye_centre_z(p)
    skin = _drape_lids(skin, head.front, ez, p)
    v = np.concatenate([skin, _eyeballs(head, ez)])
    return _local_warps(_global_warps(v, p), ez, p)


# ---------------------------------------------------------------------------------------------
# Albedo: regions painted on the mean face's vertices
# ---------------------------------------------------------------------------------------------

_SKIN = np.array([0.78, 0.58, 0.47])
_LIP = np.array([0.66, 0.35, 0.35])
_BROW = np.array([0.28, 0.2, 0.15])
_SCLERA = np.array([0.92, 0.89, 0.85])
_IRIS = np.array([0.3, 0.2, 0.12])


def _lip_mask(x, y):
    ax = np.abs(x)
    ym, mw = MOUTH_Y, MOUTH_HALF_WIDTH
    # The upper border dips at the centre (Cupid's bow) between two peaks.
    upper_border = ym + 0.78 * np.sqrt(np.clip(1 - (ax / mw) ** 2, 0, 1)) - 0.12 * np.exp(
        -((x / 0.22) ** 2))
    lower_border = ym - 0.9 * np.sqrt(np.clip(1 - (ax / (mw - 0.15)) ** 2, 0, 1))
    return _smoothstep(upper_border - y, -0.04, 0.08) * _smoothstep(y - lower_border, -0.04, 0.08)


def _brow_mask(x, y):
    ax = np.abs(x)
    u = (ax - 0.9) / 3.8  # 0 at the inner end, 1 at the tail
    centre = EYE_Y + 1.45 + 0.55 * np.sin(np.pi * np.clip(u, 0, 1) * 0.8)
    thickness = 0.38 * (1 - 0.5 * np.clip(u, 0, 1))
    along = _smoothstep(u, -0.05, 0.08) * _smoothstep(u, 1.05, 0.85)
    return along * _smoothstep(thickness - np.abs(y - centre), -0.15, 0.2)


def _skin_regions(head: _Head) -> dict[str, np.ndarray]:
    """Per-vertex masks in [0, 1] on the skin, by region name."""
    x, y, z = head.skin.T
    ax = np.abs(x)
    front = head.front
    dx, dy = ax - EYE_X, y - EYE_Y
    depth = _fissure_depth(dx, dy)
    # The lash line hugs the lid margin: dark on the upper lid, faint on the lower.
    lashes = np.exp(-(((depth - 0.01) / 0.07) ** 2)) * np.where(dy > 0.0, 1.0, 0.4)
    fissure = _smoothstep(depth, 0.0, 0.1)
    return {
        "lips": _lip_mask(x, y) * front,
        "brows": _brow_mask(x, y) * front,
        "lashes": lashes * front,
        "caruncle": fissure * front,
        "cheeks": _gauss(ax, y, 3.5, -3.5, 1.6, 1.5) * front,
        "nose_tip": _gauss(x, y, 0.0, NOSE_TIP_Y, 0.8, 0.9) * front,
        "nostrils": _gauss(ax, y, 0.42, NOSE_TIP_Y - 0.75, 0.2, 0.12) * front,
        "under_eyes": _gauss(ax, y, EYE_X - 0.2, EYE_Y - 1.0, 1.2, 0.45) * front,
        "beard": _smoothstep(-y, 5.6, 7.0) * _smoothstep(z, -2.0, 1.0) * (1 - _lip_mask(x, y))
        * _smoothstep(-y, 13.0, 11.5),
        "ears": _smoothstep(ax, 5.5, 6.5) * _gauss(z, y, -1.3, -0.9, 2.0, 3.2),
    }


def _iris_masks(head: _Head) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.rad2deg(head.eye_alpha)
    pupil = _smoothstep(a, 11.0, 8.0)
    iris = _smoothstep(a, 29.0, 25.0) * (1 - pupil)
    limbus = np.exp(-(((a - 26.0) / 3.0) ** 2)) * iris
    return pupil, iris, limbus


def _albedo_mean(head: _Head) -> np.ndarray:
    r = _skin_regions(head)
    skin = np.tile(_SKIN, (head.n_skin, 1))
    skin += r["cheeks"][:, None] * np.array([0.04, -0.04, -0.03])
    skin += r["nose_tip"][:, None] * np.array([0.03, -0.03, -0.02])
    skin *= 1 - 0.12 * r["under_eyes"][:, None]
    skin = _mix(skin, _LIP, r["lips"])
    skin = _mix(skin, _BROW, 0.85 * r["brows"])
    skin = _mix(skin, np.array([0.12, 0.08, 0.07]), 0.9 * r["lashes"])
    skin = _mix(skin, np.array([0.72, 0.42, 0.42]), r["caruncle"])
    skin = _mix(skin, np.array([0.3, 0.15, 0.12]), 0.8 * r["nostrils"])
    pupil, iris, limbus = _iris_masks(head)
    eye = np.tile(_SCLERA, (head.n_eye, 1))
    eye += (head.eye_alpha > np.deg2rad(60))[:, None] * np.array([0.0, -0.06, -0.06])
    eye = _mix(eye, _IRIS, iris)
    eye = _mix(eye, _IRIS * 0.45, limbus)
    eye = _mix(eye, np.array([0.03, 0.03, 0.03]), pupil)
    return np.clip(np.concatenate([skin, eye, eye]), 0.0, 1.0)


def _mix(colour: np.ndarray, target: np.ndarray, amount: np.ndarray) -> np.ndarray:
    return colour + amount[:, None] * (target - colour)


# ---------------------------------------------------------------------------------------------
# Components
# ---------------------------------------------------------------------------------------------

_NAMED_SHAPE = (
    "face_length", "face_width", "jaw_width", "chin_prominence", "cheek_fullness",
    "cheekbone_height", "cheekbone_prominence", "nose_length", "nose_width",
    "nose_projection", "nose_bridge", "eye_spacing", "eye_size", "brow_ridge",
    "forehead_slope", "lip_fullness", "mouth_width", "head_width", "head_depth",
    "head_height", "chin_height", "chin_width", "chin_shape", "nose_tip", "eye_height",
    "eye_depth", "canthal_tilt", "brow_height", "mouth_height", "lip_height", "midface",
    "jaw_angle", "temple", "weight", "neck_width", "forehead_bossing", "nasolabial",
    "mentolabial", "ear_size", "ear_protrusion", "asymmetry", "nose_deviation", "mouth_shift",
)
_N_LOCAL = 15  # small smooth localised bumps after the named parameters
component_names: tuple[str, ...] = _NAMED_SHAPE + tuple(
    f"local_{i:02d}" for i in range(_N_LOCAL))


def _local_bumps() -> np.ndarray:
    """(x, y, sx, sy, amplitude, mirrored) of the localised components, from a fixed seed."""
    rng = np.random.default_rng(_SEED)
    x = rng.uniform(0.0, 5.0, _N_LOCAL)
    y = rng.uniform(-11.0, 6.0, _N_LOCAL)
    sx, sy = rng.uniform(1.2, 2.4, _N_LOCAL), rng.uniform(1.2, 2.4, _N_LOCAL)
    amplitude = rng.uniform(0.06, 0.12, _N_LOCAL)
    mirrored = rng.uniform(size=_N_LOCAL) < 0.7  # mostly symmetric, some one-sided
    return np.stack([x, y, sx, sy, amplitude, mirrored], axis=1)


_BUMPS = _local_bumps()


def _local_features(x, y, p: _Params):
    dn = np.zeros_like(x)
    for i, (bx, by, sx, sy, amplitude, mirrored) in enumerate(_BUMPS):
        coefficient = getattr(p, f"local_{i:02d}")
        if not coefficient:  # zero at the mean face
            continue
        bump = _gauss(x, y, bx, by, sx, sy)
        if mirrored:
            bump = bump + _gauss(x, y, -bx, by, sx, sy)
        dn += coefficient * amplitude * bump
    # They leave the eyes alone: the lids' folds behind the eyeball are too tight for them.
    rho = np.hypot(np.abs(x) - EYE_X, y - EYE_Y)
    return dn * (1 - np.exp(-((rho / 1.9) ** 4)))


_N_ALBEDO_LOCAL = 16  # smooth regional colour variations after the named albedo components
albedo_component_names: tuple[str, ...] = (
    "skin_tone", "redness", "yellowness", "lip_colour", "brow_darkness", "cheek_blush",
    "iris_colour", "iris_darkness", "under_eye_shadow", "beard_shadow", "nose_redness",
    "forehead_tone", "ear_redness", "lash_darkness", "lip_darkness", "sclera_tint",
) + tuple(f"albedo_local_{i:02d}" for i in range(_N_ALBEDO_LOCAL))


def _albedo_fields(head: _Head, mean: np.ndarray) -> np.ndarray:
    """(Ka, N, 3): the change of albedo per standard deviation of each named component."""
    n_skin, n_eye = head.n_skin, head.n_eye
    r = _skin_regions(head)
    not_dark = 1 - np.clip(r["brows"] + r["lashes"] + r["nostrils"], 0, 1)
    skin_only = np.concatenate([np.ones(n_skin), np.zeros(2 * n_eye)])
    eyes_only = 1 - skin_only
    pupil, iris, limbus = _iris_masks(head)
    iris_all = np.concatenate([np.zeros(n_skin), iris, iris])

    def on_skin(mask, rgb):
        return np.concatenate([mask, np.zeros(2 * n_eye)])[:, None] * np.asarray(rgb)

    # Colour shifts stay on the skin's own axes (lighter/darker, pinker/sallower, golden/
    # rosier) and stay small where their negative would turn a region green or grey.
    pink = np.array([0.015, -0.01, -0.003])
    lightness = np.array([1.0, 0.78, 0.62])
    lip_contrast = _LIP - _SKIN  # + deeper red lips, - lips nearer the skin colour
    fields = [
        -0.14 * mean * skin_only[:, None] * np.array([1.0, 1.08, 1.15]),  # light ↔ dark
        on_skin(not_dark, pink),
        on_skin(not_dark, [0.006, 0.008, -0.016]),  # golden/olive ↔ rosy-pale
        on_skin(r["lips"], 0.25 * lip_contrast),
        on_skin(r["brows"], [-0.07, -0.05, -0.04]),
        on_skin(r["cheeks"], [0.014, -0.014, -0.01]),  # blush; -3 std just cancels the mean's
        iris_all[:, None] * np.array([-0.012, 0.015, 0.04]),  # brown ↔ blue-grey
        iris_all[:, None] * np.array([-0.06, -0.045, -0.03]),
        on_skin(r["under_eyes"], [-0.03, -0.03, -0.02]),
        on_skin(r["beard"], [-0.04, -0.035, -0.025]),
        on_skin(r["nose_tip"], 1.5 * pink),
        on_skin(_smoothstep(head.skin[:, 1], 2.0, 5.0) * head.front, 0.02 * lightness),
        on_skin(r["ears"], 1.5 * pink),
        on_skin(r["lashes"], [-0.04, -0.03, -0.03]),
        on_skin(r["lips"], -0.05 * lightness),
        eyes_only[:, None] * (1 - iris_all[:, None]) * np.array([0.0, -0.015, -0.02]),
    ]
    rng = np.random.default_rng(_SEED + 1)
    x, y, z = head.skin.T
    for _ in range(_N_ALBEDO_LOCAL):
        # A soft patch somewhere on the head, a little lighter/darker and pinker/sallower.
        centre = rng.uniform([-6, -12, -6], [6, 8, 9])
        size = rng.uniform(2.0, 4.0)
        blob = np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
                      / size ** 2)
        rgb = 0.025 * rng.normal() * lightness + rng.normal() * pink
        fields.append(on_skin(blob * not_dark, rgb))
    return np.stack(fields)


def _orthonormalise(fields: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gram-Schmidt in the given order: basis k is field k minus its overlap with fields
    0..k-1, so the leading components keep their meaning; the std is the length that remains.

    Computed as CholeskyQR2 (two Cholesky passes), which is as accurate as Householder QR
    here and far faster on a tall 3N x K matrix.
    """
    k = fields.shape[0]
    m = fields.reshape(k, -1).astype(np.float64)  # rows are the fields
    lengths = np.ones(k)
    for _ in range(2):
        lower = np.linalg.cholesky(m @ m.T)
        m = scipy.linalg.solve_triangular(lower, m, lower=True)
        lengths *= np.diag(lower)
    return m.reshape(fields.shape).astype(np.float32), lengths.astype(np.float32)


def _shape_field(head: _Head, name: str, step: float = 0.5) -> np.ndarray:
    """The vertex displacement per standard deviation of one parameter (central difference)."""
    plus = _vertices(head, _Params({name: step}))
    minus = _vertices(head, _Params({name: -step}))
    return (plus - minus) / (2 * step)


def derive_embedded_model() -> MorphableModel:
    """The embedded face model computed from its definition, in about half a second. Its last
    bits depend on the machine (BLAS, SIMD): renderers read the shipped copy instead
    (`embedded_face_data.load_embedded_model`)."""
    head = _Head()
    mean = _vertices(head, _Params())
    shape_basis, shape_std = _orthonormalise(
        np.stack([_shape_field(head, name) for name in component_names]))
    albedo_mean = _albedo_mean(head)
    albedo_basis, albedo_std = _orthonormalise(_albedo_fields(head, albedo_mean))
    return MorphableModel(
        name=EMBEDDED_MODEL_NAME,
        shape_mean=mean.astype(np.float32),
        shape_basis=shape_basis,
        shape_std=shape_std,
        albedo_mean=albedo_mean.astype(np.float32),
        albedo_basis=albedo_basis,
        albedo_std=albedo_std,
        triangles=head.triangles,
    )
