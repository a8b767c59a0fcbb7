"""Face rendering throughput: one worker, two workers, and the depth-only rasterisation floor.

    python benchmarks/render_faces.py [--size 150] [--batches 8] [--repeats 5] [--json out.json]

Per-worker figures render minibatches of every factor type in equal shares (as the default
dataset holds them) in this process; the floor rasterises the same meshes at the same poses
depth-only in the same GL context. The two-worker figure is the whole `render_store` pipeline
(planning, rendering, compression, Zarr writes) into a temporary store. Medians of repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from dcign.render.backend import choose_gl_platform
from dcign.render.faces import FaceRecipe
from dcign.render.scenes import plan_minibatch
from dcign.render.writer import RenderRequest, render_store
from dcign.shared.factors import FACE_FACTORS


def _plans(recipe: FaceRecipe, batches: int, offset: int):
    return [plan_minibatch(recipe.seed, "train", f, offset + k, FACE_FACTORS, recipe.batch_size,
                           recipe.identities)
            for k in range(batches) for f in FACE_FACTORS]


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(size: int, batches: int, repeats: int) -> dict:
    # A worker's share of this machine: with one worker per core, as `render_store` runs them,
    # each worker's llvmpipe rasterises on one thread.
    threads = max(1, (os.cpu_count() or 1) // 2)
    os.environ["LP_NUM_THREADS"] = str(threads)
    platform = choose_gl_platform()
    recipe = FaceRecipe(image_size=size)
    generator = recipe.load()
    images = batches * len(FACE_FACTORS) * recipe.batch_size
    shaded, floor = [], []
    generator.render(_plans(recipe, 1, 10_000)[0])  # warm-up: context, shaders
    for r in range(repeats):
        plans = _plans(recipe, batches, r * batches)
        floor.append(images / _timed(lambda p=plans: list(map(generator.rasterise_depth_only, p))))
        shaded.append(images / _timed(lambda p=plans: list(map(generator.render, p))))
    generator.close()
    self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    pipeline = []
    # large enough that worker start-up (spawn, model build, GL context) is a small share
    request = RenderRequest(tuple(f.name for f in FACE_FACTORS), batches * 4, 1)
    for _ in range(max(1, repeats // 2)):
        with tempfile.TemporaryDirectory() as tmp:
            summary = render_store(Path(tmp) / "bench.zarr", recipe, request, workers=2,
                                   gl_platform=platform, progress=False)
            pipeline.append(summary.rendered * recipe.batch_size / summary.seconds)
    worker_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    one = statistics.median(shaded)
    return {
        "device": f"{os.cpu_count()} CPU cores, {platform} (software GL unless a GPU is used), "
                  f"{threads} rasteriser thread(s) per worker",
        "image_size": size, "batch_size": recipe.batch_size,
        "vertices": generator.model.n_vertices,
        "images_per_s_one_worker": one,
        "images_per_s_depth_only_floor": statistics.median(floor),
        "ratio_to_floor": statistics.median(floor) / one,
        "images_per_s_two_workers_pipeline": statistics.median(pipeline),
        "peak_rss_mib_in_process_worker": self_peak,
        "peak_rss_mib_pool_worker": worker_peak,
        "minutes_for_default_dataset": 268_000 / statistics.median(pipeline) / 60,
        "repeats": repeats, "images_per_repeat": images,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--batches", type=int, default=3, help="minibatches per factor a repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    result = measure(args.size, args.batches, args.repeats)
    r = result
    rows = [
        ("images/s, one worker (shaded, in-process)", f"{r['images_per_s_one_worker']:.0f}"),
        ("images/s, depth-only floor, same context", f"{r['images_per_s_depth_only_floor']:.0f}"),
        ("floor / shaded (time ratio)", f"{r['ratio_to_floor']:.2f}"),
        ("images/s, two workers, whole pipeline",
         f"{r['images_per_s_two_workers_pipeline']:.0f}"),
        ("peak memory, in-process worker (MiB)", f"{r['peak_rss_mib_in_process_worker']:.0f}"),
        ("peak memory, pool worker (MiB)", f"{r['peak_rss_mib_pool_worker']:.0f}"),
        ("default dataset (268,000 images), minutes",
         f"{r['minutes_for_default_dataset']:.1f}"),
    ]
    print(f"# {result['device']}; {result['image_size']}x{result['image_size']}, minibatches of "
          f"{result['batch_size']}, {result['vertices']} vertices; medians of {args.repeats}")
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value:>8}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
