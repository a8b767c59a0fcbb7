"""Arithmetic that gives the same bits on every machine.

numpy hands matrix products to BLAS, whose kernel (chosen at start-up from the CPU, or by
OPENBLAS_CORETYPE) and thread count change the order of a sum and whether it fuses a
multiply into an add; and numpy picks its sin, cos, exp and log at run time from the CPU's
SIMD extensions (AVX-512 has its own). Either changes the last bits of a result, and the
last bits of a vertex can move a pixel by one gray level.

Everything here is made of IEEE-754 basic operations (+, -, ×, ÷, √), each a separate numpy
call so nothing can fuse them, in an order fixed by this code: every conforming CPU rounds
each of them the same way, whatever its vector width. numpy's add.reduce over a fixed axis is
used only where its order is fixed by numpy's code (pairwise, the same on every target).
"""

from __future__ import annotations

import numpy as np

# π/2 in two parts (Cody and Waite): the first has trailing zero bits, so k · _PIO2_HI is
# exact for the small multiples k that angles here need.
_PIO2_HI = 1.5707963267341256e00
_PIO2_LO = 6.0771005065061922e-11
_TWO_OVER_PI = 0.63661977236758134308
_DEG_TO_RAD = np.pi / 180.0

# Taylor coefficients (-1)^n / (2n+1)! and (-1)^n / (2n)!: to r^15 and r^16 they leave an
# error under 5e-17 on |r| <= π/4, below a double's rounding.
_SIN = [(-1.0) ** n / float(np.prod(np.arange(1, 2 * n + 2))) for n in range(8)]
_COS = [(-1.0) ** n / float(np.prod(np.arange(1, 2 * n + 1))) for n in range(9)]


def _horner(coefficients: list[float], x2: np.ndarray) -> np.ndarray:
    total = np.full_like(x2, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        total = total * x2 + c
    return total


def sin_cos(radians) -> tuple[np.ndarray, np.ndarray]:
    """sin and cos of angles in radians (float64), within a unit in the last place of
    numpy's, identical on every machine. Meant for angles of a few turns at most."""
    x = np.asarray(radians, dtype=np.float64)
    k = np.rint(x * _TWO_OVER_PI)
    return _quarter_turns((x - k * _PIO2_HI) - k * _PIO2_LO, k)


def sin_cos_degrees(degrees) -> tuple[np.ndarray, np.ndarray]:
    """sin and cos of angles in degrees; whole multiples of 90° come out exact."""
    d = np.asarray(degrees, dtype=np.float64)
    k = np.rint(d / 90.0)
    return _quarter_turns((d - k * 90.0) * _DEG_TO_RAD, k)


def _quarter_turns(r: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sin and cos of k·π/2 + r for |r| <= π/4."""
    r2 = r * r
    s = r * _horner(_SIN, r2)
    c = _horner(_COS, r2)
    quadrant = np.mod(k, 4.0)
    sin = np.select([quadrant == 0, quadrant == 1, quadrant == 2], [s, c, -s], -c)
    cos = np.select([quadrant == 0, quadrant == 1, quadrant == 2], [c, -s, -c], s)
    return sin, cos


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for small inner dimensions (rotations, 3-vectors): products summed in index
    order, never through BLAS. a (..., k) or (..., n, k), b (k,) or (k, m)."""
    a, b = np.asarray(a), np.asarray(b)
    if b.ndim == 1:
        total = a[..., 0] * b[0]
        for j in range(1, b.shape[0]):
            total = total + a[..., j] * b[j]
        return total
    total = a[..., :, 0:1] * b[0]
    for j in range(1, b.shape[0]):
        total = total + a[..., :, j:j + 1] * b[j]
    return total


_CACHED_SUM_BYTES = 512 * 1024  # the running sums of linear_combination's slice of columns


def linear_combination(mean: np.ndarray, weights: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """mean + weights @ basis with the sum over components in order, in float64, then
    float32: mean (D,), weights (M, K), basis (K, D) → (M, D). The morphable model's
    identities: a few milliseconds more than a BLAS product for a minibatch of faces.

    Summed over a slice of columns at a time, whose running sums stay in the CPU's cache
    (half as long for 20 faces as one pass over all columns); every element's sum is the
    same, in the same order, whatever the slice."""
    weights = np.asarray(weights, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64)
    out = np.empty((len(weights), basis.shape[1]), np.float32)
    step = max(1, _CACHED_SUM_BYTES // (8 * max(1, len(weights))))
    for start in range(0, basis.shape[1], step):
        columns = slice(start, start + step)
        total = np.repeat(mean[None, columns], len(weights), axis=0)
        for k in range(basis.shape[0]):
            total += weights[:, k:k + 1] * basis[k, columns]
        out[:, columns] = total
    return out


def norm(v: np.ndarray, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    """Euclidean length along `axis`: squares summed by add.reduce, not BLAS's dot (which
    np.linalg.norm uses for a single vector)."""
    v = np.asarray(v)
    return np.sqrt(np.add.reduce(v * v, axis=axis, keepdims=keepdims))


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a × b over the last axis (3-vectors), each component one difference of two products."""
    a, b = np.asarray(a), np.asarray(b)
    return np.stack([a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
                     a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                     a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]], axis=-1)
