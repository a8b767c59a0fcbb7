"""An experiment for issue 24's loader: how fast a training step's minibatches could be read
if the reader went to the shard files itself instead of through zarr's per-chunk machinery.

    python benchmarks/loader_direct_read.py [--store S.zarr] [--steps 200]

Not a reader dcign uses: it measures the ceiling of one. For a local sharded store it reads
each minibatch's bytes at the offset the shard's index gives (the index read once a shard,
its crc32c checked), checks the chunk's crc32c and zstd-decodes it, then compares every
minibatch it read with `Store.read_images` (the same bytes, or it stops) and times both on
the same seeded steps of 8 minibatches, alternating, twice. The layout it assumes is the
store schema's (shared/store_schema.py): sharding_indexed, index at the end as little-endian
(offset, nbytes) pairs plus a crc32c, inner chunks of one minibatch as bytes → zstd → crc32c.
Without --store, a 150×150 blob store of 50 train minibatches per factor is written first.
"""

from __future__ import annotations

import argparse
import os
import struct
import tempfile
import time
from pathlib import Path

import google_crc32c
import numpy as np
from numcodecs import Zstd

from dcign.shared.store import open_store
from dcign.train.synthetic import write_blob_store

ENTRY = 16  # bytes of one inner chunk's (offset, nbytes) in a shard's index
CRC = 4


class DirectReader:
    def __init__(self, root: Path, per_shard: int, image_shape: tuple[int, ...]):
        self.root, self.per_shard, self.shape = root, per_shard, image_shape
        self.indexes: dict[str, np.ndarray] = {}
        self.zstd = Zstd()

    def _index(self, path: str) -> np.ndarray:
        if path not in self.indexes:
            with open(path, "rb") as f:
                f.seek(-(self.per_shard * ENTRY + CRC), os.SEEK_END)
                raw = f.read()
            body, crc = raw[:-CRC], raw[-CRC:]
            if google_crc32c.value(body) != struct.unpack("<I", crc)[0]:
                raise ValueError(f"{path}: shard index checksum")
            self.indexes[path] = np.frombuffer(body, "<u8").reshape(self.per_shard, 2)
        return self.indexes[path]

    def read(self, split: str, factor: str, k: int) -> np.ndarray:
        path = f"{self.root}/{split}/{factor}/images/c/{k // self.per_shard}/0/0/0"
        offset, nbytes = self._index(path)[k % self.per_shard]
        fd = os.open(path, os.O_RDONLY)
        try:
            data = os.pread(fd, int(nbytes), int(offset))
        finally:
            os.close(fd)
        body, crc = data[:-CRC], data[-CRC:]
        if google_crc32c.value(body) != struct.unpack("<I", crc)[0]:
            raise ValueError(f"{path}: minibatch {k} checksum")
        return np.frombuffer(self.zstd.decode(body), np.uint8).reshape(self.shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path)
    parser.add_argument("--steps", type=int, default=200)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = opts.store or write_blob_store(Path(tmp) / "blobs150.zarr", 150, 50, 1)
        store = open_store(path)
        factors = store.factors_present("train")
        arrays = store.arrays("train", factors[0])
        spec = store.spec
        direct = DirectReader(Path(path), arrays.per_shard,
                              (spec.batch_size, spec.image_size, spec.image_size))
        rng = np.random.default_rng(0)
        done = {f: store.complete("train", f) for f in factors}
        steps = [[(f, int(rng.choice(done[f]))) for f in rng.choice(factors, 8)]
                 for _ in range(opts.steps)]
        for step in steps:  # the same bytes, or nothing is timed
            for a, (f, k) in zip(store.read_images("train", step), step, strict=True):
                assert np.array_equal(a, direct.read("train", f, k)), (f, k)
        images = opts.steps * 8 * spec.batch_size
        print(f"{spec.dataset} {spec.image_size}x{spec.image_size}, {opts.steps} steps of 8 "
              "minibatches, one thread")
        for _ in range(2):
            start = time.perf_counter()
            for step in steps:
                store.read_images("train", step)
            through_zarr = images / (time.perf_counter() - start)
            start = time.perf_counter()
            for step in steps:
                [direct.read("train", f, k) for f, k in step]
            straight = images / (time.perf_counter() - start)
            print(f"Store.read_images {through_zarr:>10,.0f} images/s   direct "
                  f"{straight:>10,.0f} images/s   ({straight / through_zarr:.1f}x)")


if __name__ == "__main__":
    main()
