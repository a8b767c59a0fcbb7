"""Local rendering with 2 workers: our pool, a bare process pool, and the local Dask cluster it
replaced, on an even load, start-up included.

    python benchmarks/render_local_cluster.py [--size 150] [--repeats 5] [--before ca9eb76]
                                              [--json out.json]

The load is one shard per worker: `render_store` with 2 workers filling a fresh store of one
train and one test shard of elevation minibatches (S minibatches each, S from the store's
schema for the size). Three ways to run the same shard tasks, each in a fresh process, taking
turns, --repeats rounds, wall time from the call to its return (start-up included):
- "pool": what `dcign-render --workers 2` runs now (this checkout: `local_pool.run_on_pool`,
  a spawned ProcessPoolExecutor with the workers' log file, retries and dead-worker restarts);
- "bare pool": this checkout's coordinator with the runner replaced here by a bare
  `ProcessPoolExecutor` of 2 spawned processes running `render_shard` (no log, no retries,
  all tasks submitted at once; its workers named as the pool's are, so that none imports
  distributed to ask its name): the floor the issue measures the local runner against
  (within 3%);
- "local Dask cluster": what `dcign-render --workers 2` ran at --before (a private Dask
  cluster: TLS, no HTTP, its logs in a file), from a git worktree of that commit.
Prints the medians and each way's overhead over the bare pool.
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

from checkouts import before_and_after

BEFORE = "ca9eb76"  # main while local rendering ran on a private Dask cluster

ONE_RUN = """
import json, os, sys, tempfile, time
from pathlib import Path
from dcign.render.generators.faces import FaceRecipe
from dcign.render.writer import RenderRequest, render_store
from dcign.shared.store_schema import shard_minibatches
way, size = sys.argv[1], int(sys.argv[2])
if way == "bare pool":
    import functools, multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from dcign.render.writer import coordinator
    from dcign.render.writer.local_pool import worker_env
    from dcign.render.writer.shards import name_worker, render_shard

    def bare_pool(tasks, recipe, url, settings, workers, log=None):
        os.environ.update(worker_env(settings.cores))  # the spawned processes inherit it
        # named, as the pool's workers are: else each imports distributed to ask its name
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=functools.partial(name_worker, 0)) as pool:
            futures = {pool.submit(render_shard, recipe, url, t, settings): t for t in tasks}
            for future in as_completed(futures):
                yield futures[future], future.result()

    coordinator.run_on_pool = bare_pool
recipe = FaceRecipe(image_size=size)
s = shard_minibatches(recipe.batch_size, size)
with tempfile.TemporaryDirectory() as tmp:
    start = time.perf_counter()
    summary = render_store(Path(tmp) / "s.zarr", recipe, RenderRequest(("elevation",), s, s),
                           workers=2, progress=False)
    seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "images": summary.rendered * recipe.batch_size}))
"""

WAYS = ("pool", "bare pool", "local Dask cluster")


def one_run(way: str, root: Path, size: int) -> dict:
    done = subprocess.run([sys.executable, "-c", ONE_RUN, way, str(size)],
                          env=os.environ | {"PYTHONPATH": str(root)}, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--before", default=BEFORE, help="the commit with the Dask cluster")
    parser.add_argument("--json", type=Path)
    opts = parser.parse_args()
    runs: dict[str, list[dict]] = {way: [] for way in WAYS}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with before_and_after(opts.before, tmp) as code:
            roots = {"pool": code["after"], "bare pool": code["after"],
                     "local Dask cluster": code["before"]}
            for _ in range(opts.repeats):
                for way in WAYS:
                    runs[way].append(one_run(way, roots[way], opts.size))
    report(runs, opts)


def report(runs: dict[str, list[dict]], opts: argparse.Namespace) -> None:
    seconds = {way: statistics.median(r["seconds"] for r in rs) for way, rs in runs.items()}
    images = runs[WAYS[0]][0]["images"]
    print(f"faces {opts.size}x{opts.size}, 2 workers, one shard each ({images} images), "
          f"medians of {opts.repeats}, alternating, start-up included; "
          f"local Dask cluster = {opts.before}")
    print(f"{'way':20}{'seconds':>10}{'images/s':>10}{'vs bare pool':>14}")
    for way in WAYS:
        overhead = seconds[way] / seconds["bare pool"] - 1
        print(f"{way:20}{seconds[way]:>10.2f}{images / seconds[way]:>10.0f}{overhead:>+14.1%}")
    print("target: the local runner within 3% of the bare pool")
    if opts.json:
        opts.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
