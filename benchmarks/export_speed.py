"""`dcign-store export` speed and size against the store it reads.

    python benchmarks/export_speed.py [--store S.zarr] [--size 150] [--batches 10] [--repeats 3]

Without --store, a faces store of --batches train and --batches // 5 test minibatches of each
factor is rendered first (2 workers) into a temporary folder. Each repeat exports the whole
store into a fresh folder through the same code as the command (`prepare_export`,
`export_store`), timed from the call to its return (reading, PNG encoding, Parquet writing,
the sha256 of each file, the card, croissant.json and preview); medians. Sizes are the bytes
of every file under the store and under the export.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path)
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path = opts.store or rendered_store(tmp, opts.size, opts.batches)
        store = open_store(path)
        seconds = []
        for r in range(opts.repeats):
            out = tmp / f"export-{r}"
            start = time.perf_counter()
            summary = export_store(prepare_export(store, out))
            seconds.append(time.perf_counter() - start)
        images = summary.minibatches * store.spec.batch_size
        store_bytes, export_bytes = folder_bytes(Path(path)), folder_bytes(out)
        parquet_bytes = folder_bytes(out / "data")
    median = statistics.median(seconds)
    size = store.spec.image_size
    print(f"{store.spec.dataset} {size}x{size}: {images} images in {summary.minibatches} "
          f"minibatches, {summary.files} Parquet files; medians of {opts.repeats}")
    print(f"{'export':32}{median:>10.2f} s{images / median:>10.0f} images/s")
    print(f"{'the store':32}{store_bytes / 1e6:>10.2f} MB")
    print(f"{'the export':32}{export_bytes / 1e6:>10.2f} MB"
          f"  (Parquet {parquet_bytes / 1e6:.2f} MB; {export_bytes / store_bytes:.2f}x the store)")


if __name__ == "__main__":
    main()
