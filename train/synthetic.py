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
from dcign.shared.plans import IdentityPools, MinibatchPlan, plan_minibatch
from dcign.shared.store import StoreSpec
from dcign.shared.store_writer import create_or_open_store, require_arrays, write_block

# Blob identities are shapes drawn from the id: pools far larger than any test store needs.
BLOB_POOLS = IdentityPools(train=100_000, test=1_000)


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


def _blob_minibatch(plan: MinibatchPlan, factors: tuple[Factor, ...], size: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One planned minibatch's images, factor values and identities."""
    named = {f.name: f.column for f in continuous_factors(factors)}
    full = np.zeros((len(plan.identities), 3), np.float32)  # absent factors: neutral
    for j, name in enumerate(("azimuth", "elevation", "light")):
        if name in named:
            full[:, j] = plan.values[:, named[name]]
    return blob_images(full, plan.identities, size), plan.values, plan.identities


def write_blob_store(path: str | Path, image_size: int = 32, train_batches: int = 4,
                     test_batches: int = 1, batch_size: int = 20, seed: int = 0,
                     factors: tuple[Factor, ...] = FACE_FACTORS) -> Path:
    """Write a blob store with n train and m test minibatches per factor, through the store's
    writer as the renderer writes: arrays made first, then whole shards, markers last; each
    minibatch planned as the renderer plans one (`dcign.shared.plans`)."""
    spec = StoreSpec("blobs", image_size, batch_size, factors,
                     {"name": "dcign.train.synthetic", "version": 1, "seed": seed},
                     {"name": "blob", "fingerprint": "blob-v1"})
    store = create_or_open_store(path, spec, overwrite=True)
    for split, n in (("train", train_batches), ("test", test_batches)):
        for f in factors:
            if n == 0:
                continue
            arrays = require_arrays(store, split, f.name, n)
            for shard in arrays.shard_ranges():
                made = [_blob_minibatch(plan_minibatch(seed, split, f, k, factors, batch_size,
                                                       BLOB_POOLS), factors, image_size)
                        for k in shard]
                images, values, identity = (np.stack(part) for part in zip(*made, strict=True))
                write_block(arrays, shard.start, images, values, identity)
    return Path(path)
