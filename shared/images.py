"""What every dcign image shares, whichever side makes or reads it: its colours (gray, the
paper's, or rgb), the gray conversion, and the scale of a stored gray level."""

from __future__ import annotations

import numpy as np

from .portable import matmul

# A store's colours: gray (the paper's, the default) or rgb; an image's channels in each.
GRAY, RGB = "gray", "rgb"
CHANNELS = {GRAY: 1, RGB: 3}

# The original DC-IGN data's RGB → gray weights (0.21 R + 0.72 G + 0.07 B).
GRAY_WEIGHTS = np.array([0.21, 0.72, 0.07])
_WEIGHTS32 = GRAY_WEIGHTS.astype(np.float32)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB → (...) float32 gray on the same scale (0-1 or 0-255), the same bits on
    every machine (no BLAS)."""
    return matmul(np.asarray(rgb, dtype=np.float32), _WEIGHTS32)


GRAY_LEVELS = 255  # a stored uint8 image's white


def to_unit(images: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Gray levels on the stored 0-255 scale (uint8 images, or their means) → [0, 1], as
    `dtype`. (Torch tensors have their own, `dcign.train.data.network_input`: the trainer
    moves uint8 to the device and scales there, a quarter of the bytes.)"""
    return np.asarray(images, dtype=dtype) / dtype(GRAY_LEVELS)


def from_unit(values: np.ndarray) -> np.ndarray:
    """[0, 1] (a decoder's output) → uint8 gray levels, rounded to the nearest."""
    return (np.asarray(values) * GRAY_LEVELS).round().astype(np.uint8)
