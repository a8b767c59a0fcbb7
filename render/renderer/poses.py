"""Where the object and the light point, and the lighting that stays fixed for a dataset.

Conventions: the camera looks down -z from +z; azimuth turns the object about +y (positive:
its front toward image right), elevation tilts it about x (positive: its front up).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dcign.shared.portable import cross, norm, sin_cos_degrees


@dataclass(frozen=True)
class Lighting:
    """What stays fixed across a whole dataset: camera, light strength, ambient, background."""

    camera_distance: float = 6.0  # in units of the object's normalised size
    yfov_degrees: float = 24.0
    light_elevation: float = 20.0  # degrees above the horizon
    light_intensity: float = 0.85
    ambient: float = 0.15
    background: float = 0.0  # 0 black (faces), 1 white (chairs)


def rotation_matrix(azimuth: float | np.ndarray, elevation: float | np.ndarray) -> np.ndarray:
    """Object rotation: azimuth (deg) turns it about +y (positive: nose toward image right),
    elevation (deg) tilts it about x (positive: nose up). R_y(azimuth) · R_x(elevation)ᵀ,
    written out so that each entry is one product (the same bits on every machine):
    (3, 3) for one pose, (N, 3, 3) for N (the same bits as one by one)."""
    (sa, ca), (se, ce) = (sin_cos_degrees(x) for x in (azimuth, elevation))
    sa, ca, se, ce = np.broadcast_arrays(sa, ca, se, ce)
    rows = ((ca, -sa * se, sa * ce), (np.zeros_like(ce), ce, se), (-sa, -ca * se, ca * ce))
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)


def light_direction(azimuth: float | np.ndarray, elevation: float | np.ndarray) -> np.ndarray:
    """Unit vector from the scene toward the light (deg; positive azimuth: from image right):
    (3,) for one light, (N, 3) for N azimuths or elevations (the same bits as one by one)."""
    (sa, ca), (se, ce) = (sin_cos_degrees(x) for x in (azimuth, elevation))
    return np.stack(np.broadcast_arrays(sa * ce, se, ca * ce), axis=-1)


def object_pose(rotation: np.ndarray) -> np.ndarray:
    """The 4x4 pose of an object rotated about its centre, which stays at the origin."""
    pose = np.eye(4)
    pose[:3, :3] = rotation
    return pose


def light_pose(toward_light: np.ndarray) -> np.ndarray:
    """A pose whose -z axis (pyrender's light direction) points from the light to the scene."""
    z = toward_light / norm(toward_light)
    helper = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = cross(helper, z)
    x /= norm(x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2] = x, cross(z, x), z
    return pose
