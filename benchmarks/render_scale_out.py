"""Rendering beyond one process: in-process vs the local pool of 2 workers vs Dask clusters (a
one-worker LocalCluster, and one started from the command line: `dask scheduler` plus `dask
worker` processes on this machine, as on a real cluster), and what a Dask task costs the
coordinator per shard.

    python benchmarks/render_scale_out.py [--size 150] [--batches 12] [--repeats 3] [--json F]

Each figure is a steady rate: two stores of different sizes rendered from scratch, the images
between them over the seconds between them, so a cluster's start-up (printed apart) does not
count against a dataset of hundreds of thousands of images. Faces, every factor in equal
shares, medians of --repeats. The per-shard overhead is a Dask round trip of an empty task
on the command-line cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dcign.render.generators.faces import FaceRecipe
from dcign.render.writer import RenderRequest, render_store
from dcign.shared.dask_cluster import scheduler_client
from dcign.shared.factors import FACE_FACTORS

FACTORS = tuple(f.name for f in FACE_FACTORS)


def _render(recipe, batches: int, workers: int, scheduler: str | None) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary = render_store(Path(tmp) / "bench.zarr", recipe,
                               RenderRequest(FACTORS, batches, 1), workers=workers,
                               progress=False, scheduler=scheduler)
        return summary.rendered * recipe.batch_size, time.perf_counter() - started


def steady(recipe, batches: int, workers: int, scheduler: str | None, repeats: int
           ) -> dict[str, float]:
    rates, start_ups = [], []
    for _ in range(repeats):
        (small, t_small), (large, t_large) = (_render(recipe, n, workers, scheduler)
                                              for n in (batches, batches * 4))
        rate = (large - small) / (t_large - t_small)
        rates.append(rate)
        start_ups.append(t_small - small / rate)
    return {"images_per_s": statistics.median(rates),
            "start_up_s": statistics.median(start_ups)}


def round_trip_ms(scheduler: str, tasks: int = 200) -> float:
    """Milliseconds a Dask task costs the coordinator beyond its work (an empty task)."""
    with scheduler_client(scheduler) as client:
        client.gather(client.map(abs, range(10), pure=False))  # warm
        started = time.perf_counter()
        client.gather(client.map(abs, range(tasks), pure=False))
        return 1000 * (time.perf_counter() - started) / tasks


class CommandLineCluster:
    """`dask scheduler` and `dask worker --nworkers 2`, on 127.0.0.1, stopped on exit."""

    def __enter__(self) -> str:
        dask = str(Path(sys.executable).with_name("dask"))
        self.tmp = tempfile.TemporaryDirectory()
        file = Path(self.tmp.name) / "scheduler.json"
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port",
                                           "0", "--no-dashboard", "--scheduler-file",
                                           str(file)], **quiet)
        while not file.exists():
            time.sleep(0.2)
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   MKL_NUM_THREADS="1")
        self.workers = subprocess.Popen([dask, "worker", "--scheduler-file", str(file),
                                         "--nthreads", "1", "--nworkers", "2", "--host",
                                         "127.0.0.1", "--no-dashboard"], env=env, **quiet)
        address = json.loads(file.read_text())["address"]
        with scheduler_client(address) as client:
            client.wait_for_workers(2, timeout=120)
        return address

    def __exit__(self, *exc) -> None:
        for process in (self.workers, self.scheduler):
            process.terminate()
            process.wait(timeout=60)
        self.tmp.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--batches", type=int, default=12, help="minibatches per factor")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    recipe = FaceRecipe(image_size=args.size)
    rows = {
        "in-process (--workers 1)": steady(recipe, args.batches, 1, None, args.repeats),
        "local pool, 2 workers": steady(recipe, args.batches, 2, None, args.repeats),
        "Dask LocalCluster, 1 worker": _one_worker_cluster(recipe, args),
    }
    with CommandLineCluster() as address:
        rows["command-line cluster, 2 workers"] = steady(recipe, args.batches, 2, address,
                                                         args.repeats)
        overhead_cli = round_trip_ms(address)
    print(f"# {os.cpu_count()} CPU cores, faces {args.size}x{args.size}, minibatches of 20, "
          f"{args.batches} and {4 * args.batches} per factor; medians of {args.repeats}")
    print(f"{'where the shard tasks run':<34} {'images/s':>9} {'start-up s':>11}")
    for name, row in rows.items():
        print(f"{name:<34} {row['images_per_s']:>9.0f} {row['start_up_s']:>11.1f}")
    print(f"{'Dask round trip per shard, CLI':<34} {overhead_cli:>9.2f} ms")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows,
                                         "round_trip_ms_command_line": overhead_cli,
                                         "size": args.size, "batches": args.batches}, indent=2))


def _one_worker_cluster(recipe, args) -> dict[str, float]:
    """A Dask cluster of one worker: the Dask path with nothing to share the work."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        return steady(recipe, args.batches, 1, cluster.scheduler_address, args.repeats)


if __name__ == "__main__":
    main()
