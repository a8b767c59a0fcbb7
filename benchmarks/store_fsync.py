"""What durable shard writes cost: seconds to write N whole shards with and without fsync.

    python benchmarks/store_fsync.py [--shards 4] [--repeats 5] [--size 150] [--dir DIR]

`store_writer.write_block` (the writer's one way to write a shard) fsyncs, on a local
disk, the shard files of images, factors and identity and the directories they are in
before it writes the completeness markers, then the markers and theirs. This times
`write_block(..., durable=True)` against `durable=False` in the same run: a new store each
time, the two alternating, `os.sync()` before each so that one's write-back does not land on
the other, and the median of --repeats. The images are smooth blobs with 1 bit of noise a
pixel, which compress to about what faces do (the figure printed as kB a minibatch). The
store goes in a temporary directory under --dir (default: the system's), on whatever file
system that is (printed): fsync costs what that disk makes it cost.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from dcign.shared.factors import FACE_FACTORS
from dcign.shared.store_schema import StoreSpec, shard_minibatches
from dcign.shared.store_writer import create_or_open_store, require_arrays, write_block


def file_system(path: Path) -> str:
    """The type and device of the file system holding `path` (from /proc/mounts)."""
    best, found = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, kind = line.split()[:3]
            if str(path.resolve()).startswith(mount) and len(mount) > len(best):
                best, found = mount, f"{kind} ({device} on {mount})"
    except OSError:
        pass
    return found


def minibatches(n: int, batch: int, size: int, seed: int = 0) -> np.ndarray:
    """uint8 (n, batch, size, size): a bright ellipse on black with 1 bit of noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size - 0.5
    blob = np.where(x**2 / 0.12 + y**2 / 0.2 <= 1, 160 + 60 * x, 0).astype(np.uint8)
    return (blob + rng.integers(0, 2, size=(n, batch, size, size))).astype(np.uint8)


def write_shards(root: Path, tag: str, spec: StoreSpec, shards: int, durable: bool,
                 data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[float, int]:
    """Seconds to write `shards` whole shards into a new store, and the bytes written."""
    path = root / f"{tag}.zarr"
    store = create_or_open_store(path, spec)
    per = shard_minibatches(spec.batch_size, spec.image_size)
    arrays = require_arrays(store, "train", "light", shards * per)
    images, values, identity = data
    os.sync()
    started = time.perf_counter()
    for i in range(shards):
        write_block(arrays, i * per, images, values, identity, durable=durable)
    seconds = time.perf_counter() - started
    written = sum(p.stat().st_size for p in (path / "train").rglob("*") if p.is_file())
    shutil.rmtree(path)
    return seconds, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=4, help="Shards written per timing.")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=150, help="Image side in pixels.")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--dir", default=None, help="Where the temporary stores go.")
    args = parser.parse_args()
    spec = StoreSpec("benchmark", args.size, args.batch_size, FACE_FACTORS,
                     {"name": "benchmarks.store_fsync", "version": 1, "seed": 0},
                     {"name": "none", "fingerprint": "none"})
    per = shard_minibatches(args.batch_size, args.size)
    data = (minibatches(per, args.batch_size, args.size),
            np.zeros((per, args.batch_size, spec.n_columns), np.float32),
            np.arange(per * args.batch_size, dtype=np.int64).reshape(per, args.batch_size))
    root = Path(tempfile.mkdtemp(prefix="dcign-fsync-", dir=args.dir))
    times: dict[bool, list[float]] = {False: [], True: []}
    written = 0
    try:
        for repeat in range(args.repeats):
            order = (False, True) if repeat % 2 == 0 else (True, False)
            for durable in order:
                seconds, written = write_shards(root, f"{repeat}-{durable}", spec,
                                                args.shards, durable, data)
                times[durable].append(seconds)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.shards} shards of {per} minibatches of {args.batch_size} images "
          f"{args.size}x{args.size} ({written / args.shards / per / 1e3:.0f} kB a minibatch "
          f"written, {written / args.shards / 1e6:.1f} MB a shard), {args.repeats} repeats, "
          f"on {file_system(root.parent)}")
    print()
    print(f"| writes | median s for {args.shards} shards | ms a shard | min–max s |")
    print("|---|---:|---:|---:|")
    for durable in (False, True):
        t = times[durable]
        label = "fsync (the default)" if durable else "no fsync"
        print(f"| {label} | {statistics.median(t):.3f} | "
              f"{1e3 * statistics.median(t) / args.shards:.0f} | {min(t):.3f}–{max(t):.3f} |")
    extra = statistics.median(times[True]) - statistics.median(times[False])
    print()
    print(f"fsync adds {1e3 * extra / args.shards:.0f} ms a shard "
          f"({100 * extra / statistics.median(times[False]):+.0f}%)")


if __name__ == "__main__":
    main()
