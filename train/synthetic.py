"""A tiny analytic dataset in the store schema ("blobs"), for tests and benchmarks.

It needs no renderer: an elliptical blob whose x-position follows azimuth, y-position
elevation, shading direction light, and whose size and shape are its identity. Minibatches
obey the store's invariant (one factor varies, over distinct values; everything else equal),
so the trainer cannot tell it from a rendered store, and it is easy enough to learn in
seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dcign.shared.factors import FACE_FACTORS, Factor, continuous_factors
from dcign.shared.store import StoreSpec
from dcign.shared.store_writer import create_or_open_store, require_arrays, write_block

TEST_IDENTITY_OFFSET = 1_000_000  # test identities never collide with train ones


def blob_images(values: np.ndarray, identity: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, size, size) from factor values (N, 3) in degrees and identities (N,)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    out = np.empty((len(identity), size, size), np.uint8)
    for i, ((az, el, light), ident) in enumerate(zip(values, identity, strict=True)):
        shape = np.random.default_rng(int(ident)).uniform(0.0, 1.0, size=2)
        rx, ry = 0.12 + 0.08 * shape[0], 0.12 + 0.08 * shape[1]
        dx, dy = xx - 0.25 * az / 86.0, yy - 0.2 * el / 23.0
        inside = (dx / rx) ** 2 + (dy / ry) ** 2 <= 1.0
        shade = 0.6 + 0.4 * np.sin(np.radians(light)) * np.clip(dx / rx, -1, 1)
        out[i] = np.where(inside, 255 * shade, 0).astype(np.uint8)
    return out


def _minibatch(rng: np.random.Generator, factors: tuple[Factor, ...], varying: Factor,
               batch: int, id_offset: int) -> tuple[np.ndarray, np.ndarray]:
    cols = continuous_factors(factors)
    values = np.array([[rng.uniform(f.low, f.high) for f in cols]] * batch, np.float32)
    identity = np.full(batch, id_offset + rng.integers(0, 100_000), np.int64)
    if varying.is_intrinsic:
        identity = id_offset + rng.choice(100_000, size=batch, replace=False)
    else:
        values[:, varying.column] = rng.permutation(
            np.linspace(varying.low, varying.high, batch)).astype(np.float32)
    return values, identity


def _blob_minibatch(rng: np.random.Generator, factors: tuple[Factor, ...], varying: Factor,
                    batch: int, id_offset: int, size: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One minibatch's images, factor values and identities."""
    values, identity = _minibatch(rng, factors, varying, batch, id_offset)
    named = {f.name: f.column for f in continuous_factors(factors)}
    full = np.zeros((batch, 3), np.float32)  # absent factors: neutral
    for j, name in enumerate(("azimuth", "elevation", "light")):
        if name in named:
            full[:, j] = values[:, named[name]]
    return blob_images(full, identity, size), values, identity


def write_blob_store(path: str | Path, image_size: int = 32, train_batches: int = 4,
                     test_batches: int = 1, batch_size: int = 20, seed: int = 0,
                     factors: tuple[Factor, ...] = FACE_FACTORS) -> Path:
    """Write a blob store with n train and m test minibatches per factor, through the store's
    writer as the renderer writes: arrays made first, then whole shards, markers last."""
    spec = StoreSpec("blobs", image_size, batch_size, factors,
                     {"name": "dcign.train.synthetic", "version": 1, "seed": seed},
                     {"name": "blob", "fingerprint": "blob-v1"})
    store = create_or_open_store(path, spec, overwrite=True)
    rng = np.random.default_rng(seed)
    for split, n, offset in (("train", train_batches, 0),
                             ("test", test_batches, TEST_IDENTITY_OFFSET)):
        for f in factors:
            if n == 0:
                continue
            arrays = require_arrays(store, split, f.name, n)
            made = [_blob_minibatch(rng, factors, f, batch_size, offset, image_size)
                    for _ in range(n)]
            for shard in arrays.shard_ranges():
                images, values, identity = (np.stack(part) for part in zip(
                    *made[shard.start:shard.stop], strict=True))
                write_block(arrays, shard.start, images, values, identity)
    return Path(path)
