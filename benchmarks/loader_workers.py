"""The training loader with 0 and 2 worker processes: this checkout against an earlier commit,
alternating in one run.

    python benchmarks/loader_workers.py [--before 8ed8123] [--steps 200] [--repeats 3]
                                        [--store S.zarr] [--json out.json]

Each figure is `loader_rate` of benchmarks/train_throughput.py (the real DataLoader over
`StepDataset`, 8 minibatches a step, timed from the first step it hands over, so spawning
the workers does not count), run in a fresh process with the code of this checkout or of
--before (a git worktree, removed afterwards) on PYTHONPATH, the two taking turns, medians
of --repeats. Without --store a 150×150 blob store of 50 train minibatches a factor is
written first. Target (issue 24, part 2): ≥ 30,000 images/s with 2 workers on a 2-core
machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from checkouts import REPO, before_and_after

BEFORE = "8ed8123"  # main before a step's images were decoded straight into shared memory
ONE_RATE = """
import sys
sys.path.insert(0, sys.argv[1])
from train_throughput import loader_rate
print(loader_rate(sys.argv[2], int(sys.argv[3]), False, int(sys.argv[4]), 1))
"""


def rate(root: Path, store: str, workers: int, steps: int) -> float:
    done = subprocess.run([sys.executable, "-c", ONE_RATE, str(REPO / "benchmarks"), store,
                           str(workers), str(steps)],
                          env=os.environ | {"PYTHONPATH": str(root)}, check=True,
                          capture_output=True, text=True)
    return float(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--store", help="a store to read (default: a 150×150 blob store)")
    parser.add_argument("--json", type=Path)
    opts = parser.parse_args()
    rates: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        store = opts.store
        if store is None:
            from dcign.train.synthetic import write_blob_store

            store = str(write_blob_store(tmp / "blobs150.zarr", 150, 50, 1))
        with before_and_after(opts.before, tmp) as roots:
            for _ in range(opts.repeats):
                for workers in (0, 2):
                    for way, root in roots.items():
                        rates.setdefault(f"{way}, {workers} workers", []).append(
                            rate(root, store, workers, opts.steps))
    report(rates, opts)


def report(rates: dict[str, list[float]], opts: argparse.Namespace) -> None:
    print(f"loader, {opts.steps} steps of 8 minibatches, medians of {opts.repeats}, "
          f"alternating; before = {opts.before}; store = {opts.store or 'blobs 150×150'}")
    print(f"{'workers':>8}{'before img/s':>15}{'after img/s':>15}{'ratio':>8}")
    for workers in (0, 2):
        before = statistics.median(rates[f"before, {workers} workers"])
        after = statistics.median(rates[f"after, {workers} workers"])
        print(f"{workers:>8}{before:>15,.0f}{after:>15,.0f}{after / before:>8.2f}")
    print("target: ≥ 30,000 images/s with 2 workers")
    if opts.json:
        opts.json.write_text(json.dumps(rates, indent=1))


if __name__ == "__main__":
    main()
