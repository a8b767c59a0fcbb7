"""What every dcign image shares, whichever side makes or reads it: the gray conversion."""

from __future__ import annotations

import numpy as np

from .portable import matmul

# The original DC-IGN data's RGB → gray weights (0.21 R + 0.72 G + 0.07 B).
GRAY_WEIGHTS = np.array([0.21, 0.72, 0.07])
_WEIGHTS32 = GRAY_WEIGHTS.astype(np.float32)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB → (...) float32 gray on the same scale (0-1 or 0-255), the same bits on
    every machine (no BLAS)."""
    return matmul(np.asarray(rgb, dtype=np.float32), _WEIGHTS32)
