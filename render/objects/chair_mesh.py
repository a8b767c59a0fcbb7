"""The mesh every chair source gives the renderer, normalised to one size: procedural chairs
here, the user's files in `mesh_folder`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .chair_model import build_chair
from .chair_parts import colour_albedo

CHAIR_RADIUS = 1.2  # every chair's bounding sphere, in scene units: fits the frame at any view


@dataclass(frozen=True)
class ChairMesh:
    vertices: np.ndarray  # (N, 3) float32, normalised
    triangles: np.ndarray  # (T, 3) uint32
    normals: np.ndarray  # (N, 3) float32
    albedo: np.ndarray  # (N,) float32 gray, or (N, 3) rgb
    material: np.ndarray | None  # (N, 2) shader texture codes, None: plain albedo


def normalise(vertices: np.ndarray) -> np.ndarray:
    """Centre the bounding box on the origin and scale the bounding sphere to CHAIR_RADIUS."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    centred = vertices - (lo + hi) / 2
    radius = float(np.linalg.norm(centred, axis=1).max())
    return (centred * (CHAIR_RADIUS / max(radius, 1e-9))).astype(np.float32)


def procedural_chair(rng: np.random.Generator, textures: bool = True,
                     colour_rng: np.random.Generator | None = None) -> ChairMesh:
    """The procedural chair `rng` draws (a chair's identity stream), normalised; without
    `textures` its parts keep their gray albedo but lose their material patterns. With
    `colour_rng` (the chair's colour stream) its albedo is rgb (`chair_parts.colour_albedo`):
    the same chair, coloured."""
    chair = build_chair(rng)
    vertices, triangles, normals, albedo, material = chair.mesh()
    if colour_rng is not None:
        albedo = colour_albedo(albedo, material, colour_rng)
    return ChairMesh(normalise(vertices), triangles.astype(np.uint32), normals, albedo,
                     material if textures else None)
