"""A local store's minibatch images read straight from their shard files: what the training
loader and `MinibatchDataset` read on every step.

Zarr's reader spends about 0.7 ms of Python a minibatch (asyncio tasks, indexing, buffers)
around 0.3 ms of decoding; reading the chunk's bytes at the range its shard's index gives and
decoding them with the codecs zarr itself uses (google_crc32c, numcodecs' Zstd) is 4.3x
`Store.read_images` on rendered faces (docs/results.md). Only the images of a local store go
this way, and only in the layout the schema writes (`store_schema`: sharding_indexed, its
index at the end as little-endian (offset, nbytes) pairs with a crc32c, each inner chunk one
minibatch as bytes, zstd, crc32c); everything else is read through zarr, which stays the
reference (a test reads every minibatch both ways).

Failures are named as `Store` names zarr's: a read the disk refused is an OSError (not
damage); a shard file that is gone, or an index entry that says "no chunk", is a missing
chunk (zarr returns the fill value: all zeros); anything that does not decode is damage,
a bad checksum saying "checksum".
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import google_crc32c
import numpy as np
from numcodecs import Zstd

INDEX_ENTRY_BYTES = 16  # (offset, nbytes), two little-endian uint64
CHECKSUM_BYTES = 4  # a little-endian crc32c after the index and after each chunk
NO_CHUNK = 2**64 - 1  # an index entry of (NO_CHUNK, NO_CHUNK): the chunk was never written


def read_tail(path: str, size: int) -> bytes:
    """The last `size` bytes of a file (a shard's index)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < size:
            raise ValueError(f"{path}: shorter than its shard index")
        f.seek(-size, os.SEEK_END)
        return f.read(size)


def read_range(path: str, offset: int, nbytes: int) -> bytes:
    """`nbytes` of a file from `offset` (fewer if it ends first)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, nbytes, offset)
    finally:
        os.close(fd)


ZSTD_MAGIC = 0xFD2FB528


def frame_content_size(frame: bytes) -> int | None:
    """The decoded size a zstd frame's header declares (RFC 8878, 3.1.1.1), or None when it
    declares none or is not a zstd frame."""
    if len(frame) < 6 or int.from_bytes(frame[:4], "little") != ZSTD_MAGIC:
        return None
    descriptor = frame[4]
    single_segment = (descriptor >> 5) & 1
    at = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 3]
    size = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
    if size == 0 or len(frame) < at + size:
        return None
    value = int.from_bytes(frame[at:at + size], "little")
    return value + 256 if size == 2 else value


class MissingChunk(Exception):
    """The minibatch's chunk is not in its shard file, or the file is gone."""


def _checked(data: bytes, what: str) -> bytes:
    body, stored = data[:-CHECKSUM_BYTES], data[-CHECKSUM_BYTES:]
    if len(data) < CHECKSUM_BYTES or google_crc32c.value(body) != struct.unpack("<I", stored)[0]:
        raise ValueError(f"{what}: checksum does not match")
    return body


class LocalShards:
    """One section's image shards on a local disk; each shard's index read once (a reader's
    shards do not change under it)."""

    def __init__(self, folder: Path, per_shard: int, shape: tuple[int, ...],
                 key_of: Callable[[int], str]):
        self.folder, self.per_shard, self.shape, self.key_of = folder, per_shard, shape, key_of
        self.indexes: dict[int, np.ndarray] = {}
        self.zstd = Zstd()

    def _index(self, shard: int) -> tuple[str, np.ndarray]:
        path = str(self.folder / self.key_of(shard))
        if shard not in self.indexes:
            try:
                raw = read_tail(path, self.per_shard * INDEX_ENTRY_BYTES + CHECKSUM_BYTES)
            except FileNotFoundError:
                raise MissingChunk(path) from None
            body = _checked(raw, f"{path}: shard index")
            self.indexes[shard] = np.frombuffer(body, "<u8").reshape(self.per_shard, 2)
        return path, self.indexes[shard]

    def read(self, k: int, out: np.ndarray | None = None) -> np.ndarray:
        """Minibatch k's images, uint8 (B, H, W), or (B, H, W, 3) for an rgb store: decoded
        into `out` (C-contiguous, that shape) when given, so a caller stacking minibatches
        copies none of them."""
        path, index = self._index(k // self.per_shard)
        offset, nbytes = (int(v) for v in index[k % self.per_shard])
        if offset == NO_CHUNK and nbytes == NO_CHUNK:
            raise MissingChunk(path)
        data = read_range(path, offset, nbytes)
        if len(data) != nbytes:
            raise ValueError(f"{path}: minibatch {k} runs past the end of its shard file")
        body = _checked(data, f"{path}: minibatch {k}")
        if out is not None and frame_content_size(body) == out.nbytes:
            # zstd refuses a larger frame than out, not a smaller one: sized first
            return self.zstd.decode(body, out=out.reshape(-1)).reshape(self.shape)
        raw = self.zstd.decode(body)
        if len(raw) != int(np.prod(self.shape)):
            raise ValueError(f"{path}: minibatch {k} decodes to {len(raw)} bytes")
        images = np.frombuffer(raw, np.uint8).reshape(self.shape)
        if out is not None:
            out[...] = images
            return out
        return images
