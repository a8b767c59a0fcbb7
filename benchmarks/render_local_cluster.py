"""The local Dask cluster against a plain process pool, on an even load, start-up included.

    python benchmarks/render_local_cluster.py [--size 150] [--repeats 5] [--json out.json]

The load is one shard per worker: `render_store` with 2 workers filling a fresh store of one
train and one test shard of elevation minibatches (S minibatches each, S from the store's
schema for the size). Two ways to run the same shard tasks, each in a fresh process, taking
turns, --repeats rounds, wall time from the call to its return (the cluster's or pool's
start-up included):
- "local cluster": what `dcign-render --workers 2` runs (a private Dask cluster: TLS, no
  HTTP, its logs in a file);
- "plain pool": the same coordinator (lock, arrays, shard tasks, markers) with its Dask runner
  replaced here by a `concurrent.futures.ProcessPoolExecutor` of 2 spawned processes running
  the same `render_shard` (what the writer ran before Dask, without its retries and logs).
Prints the medians and the cluster's overhead over the pool.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ONE_RUN = """
import json, os, sys, tempfile, time
from pathlib import Path
from dcign.render.generators.faces import FaceRecipe
from dcign.render.writer import RenderRequest, render_store
from dcign.shared.store_schema import shard_minibatches
way, size = sys.argv[1], int(sys.argv[2])
if way == "plain pool":
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from dcign.render.writer import coordinator
    from dcign.render.writer.cluster import worker_env
    from dcign.render.writer.shards import render_shard

    def run_on_pool(tasks, recipe, url, settings, workers, *args, **kwargs):
        os.environ.update(worker_env(settings.cores))  # the spawned processes inherit it
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")
                                 ) as pool:
            futures = {pool.submit(render_shard, recipe, url, t, settings): t for t in tasks}
            for future in as_completed(futures):
                yield futures[future], future.result()

    coordinator.run_on_dask = run_on_pool
recipe = FaceRecipe(image_size=size)
s = shard_minibatches(recipe.batch_size, size)
with tempfile.TemporaryDirectory() as tmp:
    start = time.perf_counter()
    summary = render_store(Path(tmp) / "s.zarr", recipe, RenderRequest(("elevation",), s, s),
                           workers=2, progress=False)
    seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "images": summary.rendered * recipe.batch_size}))
"""

WAYS = ("local cluster", "plain pool")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    opts = parser.parse_args()
    runs: dict[str, list[dict]] = {way: [] for way in WAYS}
    for _ in range(opts.repeats):
        for way in WAYS:
            done = subprocess.run([sys.executable, "-c", ONE_RUN, way, str(opts.size)],
                                  check=True, capture_output=True, text=True)
            runs[way].append(json.loads(done.stdout.splitlines()[-1]))
    seconds = {way: statistics.median(r["seconds"] for r in rs) for way, rs in runs.items()}
    images = runs[WAYS[0]][0]["images"]
    print(f"faces {opts.size}x{opts.size}, 2 workers, one shard each ({images} images), "
          f"medians of {opts.repeats}, alternating, start-up included")
    print(f"{'way':16}{'seconds':>10}{'images/s':>10}")
    for way in WAYS:
        print(f"{way:16}{seconds[way]:>10.2f}{images / seconds[way]:>10.0f}")
    overhead = seconds["local cluster"] / seconds["plain pool"] - 1
    print(f"the local cluster's overhead over the pool: {overhead:+.1%} (target: within 3%)")
    if opts.json:
        opts.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
