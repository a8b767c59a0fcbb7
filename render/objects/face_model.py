"""Morphable face models: one array layout for the embedded model and the Basel Face Models.

A face is mean + basis · (coefficients × standard deviations), for shape and for albedo, as in
Paysan et al. 2009. Identities are drawn as standard-normal coefficients, so an identity is a
pure function of (seed, identity id).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from dcign.shared.portable import linear_combination

# Coefficients beyond this many standard deviations give caricatures, not faces.
COEFFICIENT_LIMIT = 3.0


@dataclass(frozen=True, eq=False)
class MorphableModel:
    """A linear shape and albedo model over one fixed triangle mesh.

    shape_mean    (N, 3) float32, any length unit (the renderer normalises scale)
    shape_basis   (Ks, N, 3) float32 principal directions (orthonormal when flattened)
    shape_std     (Ks,) float32 standard deviation of each shape coefficient
    albedo_mean   (N, 3) float32 RGB reflectance in [0, 1]
    albedo_basis  (Ka, N, 3) float32
    albedo_std    (Ka,) float32
    triangles     (T, 3) int32, counter-clockwise seen from outside (OpenGL front faces)
    """

    name: str
    shape_mean: np.ndarray
    shape_basis: np.ndarray
    shape_std: np.ndarray
    albedo_mean: np.ndarray
    albedo_basis: np.ndarray
    albedo_std: np.ndarray
    triangles: np.ndarray

    @property
    def n_vertices(self) -> int:
        return self.shape_mean.shape[0]

    @property
    def n_shape(self) -> int:
        return self.shape_basis.shape[0]

    @property
    def n_albedo(self) -> int:
        return self.albedo_basis.shape[0]

    def fingerprint(self) -> str:
        """A short hash of every array: stores made from different models never mix."""
        h = hashlib.sha256()
        for a in (self.shape_mean, self.shape_basis, self.shape_std, self.albedo_mean,
                  self.albedo_basis, self.albedo_std, self.triangles):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    def sample_coefficients(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Standard-normal shape and albedo coefficients for one identity, truncated."""
        shape = np.clip(rng.standard_normal(self.n_shape), -COEFFICIENT_LIMIT, COEFFICIENT_LIMIT)
        albedo = np.clip(rng.standard_normal(self.n_albedo), -COEFFICIENT_LIMIT, COEFFICIENT_LIMIT)
        return shape.astype(np.float32), albedo.astype(np.float32)

    def instance(self, shape_coef: np.ndarray, albedo_coef: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Vertices (N, 3) and RGB albedo (N, 3) in [0, 1] of one face."""
        vertices, albedo = self.instances(shape_coef[None], albedo_coef[None])
        return vertices[0], albedo[0]

    def instances(self, shape_coefs: np.ndarray, albedo_coefs: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Vertices (M, N, 3) and RGB albedo (M, N, 3) of M faces: the same bits on every
        machine, and a face's bits independent of the others (no BLAS product)."""
        def combine(mean, basis, std, coefs):
            weights = (np.atleast_2d(coefs) * std).astype(np.float32)
            flat = basis.reshape(len(basis), -1)
            total = linear_combination(mean.reshape(-1), weights, flat)
            return total.reshape(len(weights), *mean.shape)

        vertices = combine(self.shape_mean, self.shape_basis, self.shape_std, shape_coefs)
        albedo = combine(self.albedo_mean, self.albedo_basis, self.albedo_std, albedo_coefs)
        return vertices.astype(np.float32), np.clip(albedo, 0.0, 1.0).astype(np.float32)

