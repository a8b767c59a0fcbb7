"""Chair parts: the materials the chair shader textures, and the primitives (boxes, tapered
tubes, rounded cushions, swept tubes) that `chair_model` builds chairs from.

A part carries one material (wood with its grain along x, y or z, fabric, metal, leather,
plastic), which the fragment shader turns into a solid procedural texture; `Chair.mesh`
joins the parts into one mesh whose vertex colours encode each part's material.

Coordinates: metres, y up.
"""

from __future__ import annotations

import colorsys
import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from dcign.shared.images import GRAY_WEIGHTS  # the weights to_gray applies

# Material codes the chair shader understands (renderer/shaders/mesh.frag; a test parses it).
PLAIN, WOOD_X, WOOD_Y, WOOD_Z, FABRIC, METAL, LEATHER, PLASTIC = range(8)
# How a vertex colour carries them: g = code / MATERIAL_CODE_SCALE, b = pattern scale /
# PATTERN_SCALE_RANGE, both in [0, 1]; the shader multiplies them back.
MATERIAL_CODE_SCALE = 8
PATTERN_SCALE_RANGE = 64
MATERIAL_SCALES = {FABRIC: 22.0, METAL: 10.0, LEATHER: 14.0, PLASTIC: 1.0}
TUBE_SIDES = 12


@dataclass
class Part:
    vertices: np.ndarray  # (N, 3) float32
    triangles: np.ndarray  # (T, 3) int64
    normals: np.ndarray  # (N, 3) float32
    material: int = PLAIN
    albedo: float = 0.6


@dataclass
class Chair:
    design: str
    parts: list[Part]

    def mesh(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """All parts as one mesh: vertices, triangles, normals, albedo (N,), material (N, 2)."""
        vertices, triangles, normals, albedo, material, offset = [], [], [], [], [], 0
        for p in self.parts:
            n = len(p.vertices)
            vertices.append(p.vertices)
            triangles.append(p.triangles + offset)
            normals.append(p.normals)
            albedo.append(np.full(n, p.albedo, np.float32))
            material.append(np.tile(encode_material(p.material), (n, 1)))
            offset += n
        return (np.concatenate(vertices).astype(np.float32), np.concatenate(triangles),
                np.concatenate(normals).astype(np.float32), np.concatenate(albedo),
                np.concatenate(material))

    def shape_hash(self) -> str:
        vertices = self.mesh()[0]
        return hashlib.sha256(np.round(vertices, 4).tobytes()).hexdigest()[:16]


def _pattern_scale(material: int) -> float:
    if material in (WOOD_X, WOOD_Y, WOOD_Z):
        return 9.0
    return MATERIAL_SCALES.get(material, 0.0)


def encode_material(material: int) -> np.ndarray:
    """The (g, b) vertex-colour pair that tells the shader a part's material and pattern
    scale."""
    return np.float32([material / MATERIAL_CODE_SCALE,
                       _pattern_scale(material) / PATTERN_SCALE_RANGE])


# --- primitives -------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _unit_box() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The unit cube with flat faces (4 vertices per face, so edges stay sharp)."""
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], np.float32)
    faces = [(0, 1, 3, 2, (-1, 0, 0)), (4, 6, 7, 5, (1, 0, 0)), (0, 4, 5, 1, (0, -1, 0)),
             (2, 3, 7, 6, (0, 1, 0)), (0, 2, 6, 4, (0, 0, -1)), (1, 5, 7, 3, (0, 0, 1))]
    vertices, normals, triangles = [], [], []
    for i, (a, b, c, d, normal) in enumerate(faces):
        vertices.append(corners[[a, b, c, d]])
        normals.append(np.tile(np.float32(normal), (4, 1)))
        triangles += [(4 * i, 4 * i + 1, 4 * i + 2), (4 * i, 4 * i + 2, 4 * i + 3)]
    return np.concatenate(vertices), np.array(triangles), np.concatenate(normals)


def box(lo, hi, material: int = PLAIN, albedo: float = 0.6) -> Part:
    """An axis-aligned box between two opposite corners (in either order: normals face out)."""
    a, b = np.asarray(lo, np.float32), np.asarray(hi, np.float32)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    unit, triangles, normals = _unit_box()
    return Part(lo + unit * (hi - lo), triangles, normals, material, albedo)


def tube(p0, p1, r0: float, r1: float | None = None, material: int = PLAIN,
         albedo: float = 0.6, sides: int = TUBE_SIDES) -> Part:
    """A capped, possibly tapered round tube from p0 (radius r0) to p1 (radius r1)."""
    p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
    r1 = r0 if r1 is None else r1
    axis = p1 - p0
    length = np.linalg.norm(axis)
    w = axis / length
    helper = np.array([1.0, 0, 0]) if abs(w[0]) < 0.9 else np.array([0, 0, 1.0])
    u = np.cross(w, helper)
    u /= np.linalg.norm(u)
    v = np.cross(w, u)
    angles = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    ring = np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * v
    slope = (r0 - r1) / length
    side_normals = ring + slope * w
    side_normals /= np.linalg.norm(side_normals, axis=1, keepdims=True)
    bottom, top = p0 + r0 * ring, p1 + r1 * ring
    i = np.arange(sides)
    j = (i + 1) % sides
    side = np.concatenate([np.stack([i, j, sides + j], 1), np.stack([i, sides + j, sides + i], 1)])
    cap0 = np.stack([np.full(sides - 2, 2 * sides), 2 * sides + i[2:], 2 * sides + i[1:-1]], 1)
    cap1 = np.stack([np.full(sides - 2, 3 * sides), 3 * sides + i[1:-1], 3 * sides + i[2:]], 1)
    vertices = np.concatenate([bottom, top, bottom, top])
    normals = np.concatenate([side_normals, side_normals, np.tile(-w, (sides, 1)),
                              np.tile(w, (sides, 1))])
    return Part(vertices.astype(np.float32), np.concatenate([side, cap0, cap1]),
                normals.astype(np.float32), material, albedo)


@lru_cache(maxsize=4)
def _sphere(rows: int, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """A UV sphere's unit directions and triangles (no degenerate pole triangles), built once
    per resolution."""
    theta = np.linspace(0, np.pi, rows + 1)
    phi = np.linspace(0, 2 * np.pi, columns, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    sphere = np.stack([np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)], -1).reshape(-1, 3)
    r, c = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
    a, b = (r * columns + c).ravel(), (r * columns + (c + 1) % columns).ravel()
    # counter-clockwise seen from outside: GL culls the other side
    triangles = np.concatenate([np.stack([a, b, b + columns], 1),
                                np.stack([a, b + columns, a + columns], 1)])
    v = sphere[triangles]
    area = np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)
    triangles = triangles[area > 1e-12]
    return sphere, triangles


def cushion(lo, hi, roundness: float = 0.3, material: int = FABRIC, albedo: float = 0.6,
            rows: int = 10, columns: int = 16) -> Part:
    """A rounded box (a superellipsoid) filling [lo, hi]: upholstery that looks padded."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    sphere, triangles = _sphere(rows, columns)
    exponent = max(0.08, roundness)
    half = np.maximum((hi - lo) / 2, 1e-9)
    unit = np.sign(sphere) * np.abs(sphere) ** exponent
    vertices = ((lo + hi) / 2 + unit * half).astype(np.float32)
    # the surface's own normals (gradient of sum |x_i / h_i| ** (2 / exponent)): averaged
    # triangle normals would shade the flat top's pole fan as a visible square
    normals = np.sign(sphere) * np.abs(sphere) ** (2 - exponent) / half
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return Part(vertices, triangles, normals.astype(np.float32), material, albedo)


def sweep(points, radius: float, material: int = METAL, albedo: float = 0.7) -> list[Part]:
    """A bent tube along a polyline: one tube per segment, a ball at each bend."""
    points = [np.asarray(p, np.float64) for p in points]
    parts = [tube(a, b, radius, radius, material, albedo)
             for a, b in zip(points, points[1:], strict=False)]
    parts += [cushion(p - radius, p + radius, 1.0, material, albedo, rows=6, columns=10)
              for p in points[1:-1]]
    return parts


def rounded_corner(a, corner, b, radius: float, steps: int = 4) -> list[np.ndarray]:
    """Points replacing the sharp corner of a→corner→b by a quadratic arc."""
    a, corner, b = (np.asarray(x, np.float64) for x in (a, corner, b))
    start = corner + (a - corner) / np.linalg.norm(a - corner) * radius
    end = corner + (b - corner) / np.linalg.norm(b - corner) * radius
    t = np.linspace(0, 1, steps + 1)[:, None]
    return list((1 - t) ** 2 * start + 2 * t * (1 - t) * corner + t ** 2 * end)


def rotate_x(part: Part, degrees: float, pivot) -> Part:
    """Tilt a part about the x axis through `pivot` (positive: its top leans back, to -z)."""
    a = np.radians(degrees)
    r = np.array([[1, 0, 0], [0, np.cos(a), np.sin(a)], [0, -np.sin(a), np.cos(a)]])
    pivot = np.asarray(pivot, np.float64)
    vertices = (part.vertices - pivot) @ r.T + pivot
    return Part(vertices.astype(np.float32), part.triangles,
                (part.normals @ r.T).astype(np.float32), part.material, part.albedo)


def _wood_along(lo, hi) -> int:
    return WOOD_X + int(np.argmax(np.abs(np.asarray(hi) - np.asarray(lo))))


def wood_box(lo, hi, albedo: float) -> Part:
    return box(lo, hi, _wood_along(lo, hi), albedo)


def _aabb(part: Part) -> tuple[np.ndarray, np.ndarray]:
    return part.vertices.min(axis=0), part.vertices.max(axis=0)


def parts_touch(chair: Chair, tolerance: float = 1e-3) -> bool:
    """Whether all parts form one connected piece, parts linked where their boxes overlap."""
    boxes = [_aabb(p) for p in chair.parts]
    n = len(boxes)
    linked = {0}
    frontier = [0]
    while frontier:
        i = frontier.pop()
        for j in range(n):
            if j not in linked and np.all(boxes[i][0] <= boxes[j][1] + tolerance) and np.all(
                    boxes[j][0] <= boxes[i][1] + tolerance):
                linked.add(j)
                frontier.append(j)
    return len(linked) == n


# --- colour (rgb stores) -----------------------------------------------------------------
#
# An rgb chair keeps its gray chair's parts, materials and gray albedo; each material gets a
# hue from the chair's own colour palette, scaled so that its gray (images.to_gray) is the
# part's gray albedo: a colour chair converted to gray looks like the gray chair (up to the
# gamma curve and channels clipped at 1). The palette is drawn from its own generator
# (plans.colour_rng), never from the chair's identity stream, so gray chairs do not change.
# The procedural fingerprint an rgb store records hashes these colours, so a changed palette
# is not mixed into a store made with the old one.

WOODS = ((0.62, 0.42, 0.25), (0.48, 0.30, 0.18), (0.74, 0.56, 0.36), (0.55, 0.26, 0.17))
LEATHERS = ((0.45, 0.27, 0.16), (0.20, 0.17, 0.15), (0.55, 0.16, 0.12), (0.72, 0.55, 0.38))


def _jitter(rng: np.random.Generator, rgb: tuple[float, ...], amount: float) -> np.ndarray:
    return np.clip(np.float64(rgb) * rng.uniform(1 - amount, 1 + amount, 3), 0.02, 1.0)


def _hsv(rng: np.random.Generator, saturation: tuple[float, float]) -> np.ndarray:
    """A random hue at full value (colorsys: pure Python arithmetic, the same bits
    everywhere)."""
    hue, sat = float(rng.uniform(0, 1)), float(rng.uniform(*saturation))
    return np.float64(colorsys.hsv_to_rgb(hue, sat, 1.0))


def colour_palette(rng: np.random.Generator) -> dict[int, np.ndarray]:
    """One chair's hue for each material code (every code drawn, in code order, whichever
    the chair uses: the draws do not depend on its design)."""
    wood = _jitter(rng, WOODS[int(rng.integers(len(WOODS)))], 0.08)
    metal = _jitter(rng, (0.92, 0.93, 0.96), 0.04)
    palette = {PLAIN: np.ones(3), WOOD_X: wood, WOOD_Y: wood, WOOD_Z: wood,
               FABRIC: _hsv(rng, (0.25, 0.65)), METAL: metal,
               LEATHER: _jitter(rng, LEATHERS[int(rng.integers(len(LEATHERS)))], 0.08),
               PLASTIC: _hsv(rng, (0.3, 0.8))}
    return palette


def colour_albedo(albedo: np.ndarray, material: np.ndarray, rng: np.random.Generator
                  ) -> np.ndarray:
    """RGB albedo (N, 3) of a chair's vertices from their gray albedo (N,) and encoded
    material (N, 2): each material's hue from the chair's palette, at the part's gray."""
    palette = colour_palette(rng)
    codes = np.rint(material[:, 0] * MATERIAL_CODE_SCALE).astype(int)
    hues = np.stack([palette.get(int(c), palette[PLAIN]) for c in range(MATERIAL_CODE_SCALE)])
    # each hue's gray is 1; elementwise, not a BLAS product, so the bits are the same on
    # every CPU (shared/portable.py's rule for what is handed to GL)
    w = GRAY_WEIGHTS
    hues = hues / (hues[:, 0] * w[0] + hues[:, 1] * w[1] + hues[:, 2] * w[2])[:, None]
    return np.clip(albedo[:, None] * hues[codes], 0.0, 1.0).astype(np.float32)
