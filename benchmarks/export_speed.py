"""`dcign-store export` speed and size against the store it reads.

    python benchmarks/export_speed.py [--store S.zarr] [--size 150] [--batches 10] [--repeats 3]
                                      [--dask-workers N]

Without --store, a faces store of --batches train and --batches // 5 test minibatches of each
factor is rendered first (2 workers) into a temporary folder. Each repeat exports the whole
store into a fresh folder through the same code as the command (`prepare_export`,
`export_store`), timed from the call to its return (reading, PNG encoding, Parquet writing,
the sha256 of each file, the card, croissant.json and preview); medians. Sizes are the bytes
of every file under the store and under the export. With --dask-workers, each repeat is timed
twice, alternating: here, then through `--scheduler` to a plain Dask cluster of N one-thread
worker processes on 127.0.0.1, started once before timing (as a user's cluster is already
running), a task per Parquet file.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from dcign.shared.export import export_store, prepare_export
from dcign.shared.store import open_store


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def rendered_store(root: Path, size: int, batches: int) -> Path:
    from dcign.render.generators.faces import FaceRecipe
    from dcign.render.writer import RenderRequest, render_store

    out = root / f"faces{size}.zarr"
    render_store(out, FaceRecipe(image_size=size),
                 RenderRequest(("azimuth", "elevation", "light", "intrinsic"), batches,
                               max(1, batches // 5)), workers=2, progress=False)
    return out


def users_cluster(stack: ExitStack, workers: int) -> str:
    from distributed import LocalCluster

    cluster = stack.enter_context(LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None))
    return cluster.scheduler_address


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path)
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dask-workers", type=int, default=0)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        path = opts.store or rendered_store(tmp, opts.size, opts.batches)
        store = open_store(path)
        ways = {"here": None}
        if opts.dask_workers:
            ways[f"{opts.dask_workers} Dask workers"] = users_cluster(stack, opts.dask_workers)
        seconds: dict[str, list[float]] = {way: [] for way in ways}
        for r in range(opts.repeats):
            for way, scheduler in ways.items():
                out = tmp / f"export-{r}-{len(seconds[way])}-{way.replace(' ', '-')}"
                start = time.perf_counter()
                summary = export_store(prepare_export(store, out), scheduler=scheduler)
                seconds[way].append(time.perf_counter() - start)
        images = summary.minibatches * store.spec.batch_size
        store_bytes, export_bytes = folder_bytes(Path(path)), folder_bytes(out)
        parquet_bytes = folder_bytes(out / "data")
    size = store.spec.image_size
    print(f"{store.spec.dataset} {size}x{size}: {images} images in {summary.minibatches} "
          f"minibatches, {summary.files} Parquet files; medians of {opts.repeats}")
    for way, times in seconds.items():
        median = statistics.median(times)
        print(f"{'export, ' + way:32}{median:>10.2f} s{images / median:>10.0f} images/s")
    print(f"{'the store':32}{store_bytes / 1e6:>10.2f} MB")
    print(f"{'the export':32}{export_bytes / 1e6:>10.2f} MB"
          f"  (Parquet {parquet_bytes / 1e6:.2f} MB; {export_bytes / store_bytes:.2f}x the store)")


if __name__ == "__main__":
    main()
