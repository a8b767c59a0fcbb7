"""What fsync costs a checkpoint write (issue 21): the trainer's own `save_checkpoint`, timed
with the file and directory fsynced (as it runs) and with `os.fsync` made a no-op, for the
tests' tiny network, the README's 64×64 one and the default faces store's paper150.

    python benchmarks/checkpoint_write.py [--repeats 9] [--dir DIR]

Each run is built on a synthetic blob store (train/synthetic.py) and takes one optimiser step
first, so the checkpoint holds Adam's moments as a real one does. The two ways alternate,
write after write, so that load on the machine falls on both alike; each figure is the median
of --repeats writes. Checkpoints are written to a temporary folder under --dir (default
runs/, where training writes them; /tmp may be memory, where fsync costs nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

from dcign.train.config import TrainConfig
from dcign.train.data import StepDataset
from dcign.train.loop import Run, build_run, save_checkpoint, train_step
from dcign.train.model import count_parameters
from dcign.train.synthetic import write_blob_store

NETWORKS = (("tiny (tests)", 32, "small"), ("README (64×64)", 64, "small"),
            ("default faces (paper150)", 150, "paper150"))


def trained_run(root: Path, image_size: int, arch: str) -> Run:
    """A run one step in, its directory created, on a fresh blob store."""
    store = write_blob_store(root / f"blobs{image_size}.zarr", image_size, 1, 0)
    out = root / f"run{image_size}"
    run = build_run(TrainConfig(store=str(store), out=str(out), arch=arch, workers=0,
                                progress=False))
    train_step(run, StepDataset(run.data, 0, 1)[0])
    out.mkdir()
    return run


def write_seconds(run: Run, fsync: bool) -> float:
    with contextlib.nullcontext() if fsync else mock.patch("os.fsync"):  # no-op: no fsync
        start = time.perf_counter()
        save_checkpoint(run)
        return time.perf_counter() - start


def measure(run: Run, repeats: int) -> dict[bool, float]:
    """Median seconds per write, with and without fsync, alternating."""
    times: dict[bool, list[float]] = {True: [], False: []}
    write_seconds(run, True)  # warm-up: the first write allocates the file
    for _ in range(repeats):
        for fsync in (True, False):
            times[fsync].append(write_seconds(run, fsync))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--dir", type=Path, default=Path("runs"))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="checkpoint-bench-") as tmp:
        print(f"{'network':<26} {'parameters':>10} {'file MB':>8} {'fsync ms':>9} "
              f"{'no fsync ms':>11} {'fsync costs':>11}")
        for label, size, arch in NETWORKS:
            run = trained_run(Path(tmp), size, arch)
            median = measure(run, args.repeats)
            mb = run.checkpoint_path.stat().st_size / 1e6
            print(f"{label:<26} {count_parameters(run.model):>10,} {mb:>8.1f} "
                  f"{1e3 * median[True]:>9.1f} {1e3 * median[False]:>11.1f} "
                  f"{1e3 * (median[True] - median[False]):>+8.1f} ms")
    print(f"(median of {args.repeats} writes each, alternating; under {args.dir})")


if __name__ == "__main__":
    main()
