"""What every rendering benchmark measures, for any dataset recipe (see render_faces.py and
render_chairs.py): one worker, two workers, and the depth-only rasterisation floor.

Per-worker figures render minibatches of every factor type in equal shares (as the default
datasets hold them) in this process; the floor rasterises the same meshes at the same poses
depth-only in the same GL context. The two-worker figure is the whole `render_store` pipeline
(planning, rendering, compression, Zarr writes) into a temporary store, at its steady rate: two
stores of different sizes, the images between them over the seconds between them, so that
spawning the workers and building their models (a fixed cost, printed on its own) does not
count against a dataset of hundreds of thousands of images. Medians of repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# This process stands in for one of two pool workers, with the cores and BLAS threads
# render_store gives each (the variables are its BLAS_THREAD_VARIABLES, set here before numpy
# is first imported, which is when OpenBLAS reads them).
CORES_PER_WORKER = max(1, (os.cpu_count() or 1) // 2)
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, str(CORES_PER_WORKER))

from dcign.render.renderer.platform import choose_gl_platform  # noqa: E402 - imports numpy
from dcign.render.writer import RenderRequest, rasteriser_threads, render_store  # noqa: E402


def _plans(generator, factors: list[str], batches: int, offset: int):
    return [generator.plan("train", f, offset + k) for k in range(batches) for f in factors]


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _pipeline(recipe, factors: list[str], batches: int, platform: str) -> tuple[int, float]:
    """(images, seconds) of `render_store` with two workers filling a fresh store."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = render_store(Path(tmp) / "bench.zarr", recipe,
                               RenderRequest(tuple(factors), batches, 1), workers=2,
                               gl_platform=platform, progress=False)
    return summary.rendered * recipe.batch_size, summary.seconds


def measure(recipe, factors: list[str], vertices: Callable[[object], float], batches: int,
            repeats: int, default_images: int, vertices_label: str = "vertices") -> dict:
    """Throughput figures of `recipe` rendering minibatches that vary each of `factors`."""
    threads = CORES_PER_WORKER
    os.environ["LP_NUM_THREADS"] = str(rasteriser_threads(threads))
    platform = choose_gl_platform()
    generator = recipe.load()
    images = batches * len(factors) * recipe.batch_size
    shaded, floor = [], []
    generator.render(_plans(generator, factors, 1, 10_000)[0])  # warm-up: context, shaders
    for r in range(repeats):
        plans = _plans(generator, factors, batches, r * batches)
        floor.append(images / _timed(lambda p=plans: list(map(generator.rasterise_depth_only, p))))
        shaded.append(images / _timed(lambda p=plans: list(map(generator.render, p))))
    generator.close()
    self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    pipeline, start_up = [], []
    for _ in range(max(1, repeats // 2)):
        (small, t_small), (large, t_large) = (
            _pipeline(recipe, factors, n, platform) for n in (batches, batches * 4))
        rate = (large - small) / (t_large - t_small)
        pipeline.append(rate)
        start_up.append(t_small - small / rate)
    worker_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    one = statistics.median(shaded)
    return {
        "device": f"{os.cpu_count()} CPU cores, {platform} (software GL unless a GPU is used), "
                  f"{threads} core(s) and LP_NUM_THREADS={os.environ['LP_NUM_THREADS']} per worker",
        "image_size": recipe.image_size, "batch_size": recipe.batch_size,
        "vertices": vertices(generator), "vertices_label": vertices_label,
        "images_per_s_one_worker": one,
        "images_per_s_depth_only_floor": statistics.median(floor),
        "ratio_to_floor": statistics.median(floor) / one,
        "images_per_s_two_workers_pipeline": statistics.median(pipeline),
        "two_workers_start_up_s": statistics.median(start_up),
        "peak_rss_mib_in_process_worker": self_peak,
        "peak_rss_mib_pool_worker": worker_peak,
        "default_dataset_images": default_images,
        "minutes_for_default_dataset": (default_images / statistics.median(pipeline)
                                        + statistics.median(start_up)) / 60,
        "repeats": repeats, "images_per_repeat": images,
    }


def print_table(result: dict, repeats: int) -> None:
    r = result
    rows = [
        ("images/s, one worker (shaded, in-process)", f"{r['images_per_s_one_worker']:.0f}"),
        ("images/s, depth-only floor, same context", f"{r['images_per_s_depth_only_floor']:.0f}"),
        ("floor / shaded (time ratio)", f"{r['ratio_to_floor']:.2f}"),
        ("images/s, two workers, whole pipeline, steady",
         f"{r['images_per_s_two_workers_pipeline']:.0f}"),
        ("two workers' start-up (spawn, model, GL), s", f"{r['two_workers_start_up_s']:.1f}"),
        ("peak memory, in-process worker (MiB)", f"{r['peak_rss_mib_in_process_worker']:.0f}"),
        ("peak memory, pool worker (MiB)", f"{r['peak_rss_mib_pool_worker']:.0f}"),
        (f"default dataset ({r['default_dataset_images']:,} images), minutes",
         f"{r['minutes_for_default_dataset']:.1f}"),
    ]
    print(f"# {r['device']}; {r['image_size']}x{r['image_size']}, minibatches of "
          f"{r['batch_size']}, {r['vertices']:.0f} {r['vertices_label']}; medians of {repeats}")
    width = max(len(row[0]) for row in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value:>8}")


def main(description: str, run: Callable[[int, int, int], dict]) -> None:
    """The command line every rendering benchmark shares: `run(size, batches, repeats)`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--batches", type=int, default=3, help="minibatches per factor a repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    result = run(args.size, args.batches, args.repeats)
    print_table(result, args.repeats)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
