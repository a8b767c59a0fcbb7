"""`dcign-store`: look inside a dcign store without training anything."""

from __future__ import annotations

from contextlib import ExitStack

import click
from tqdm import tqdm

from .cli import DcignGroup, split_choices
from .dask_cluster import SCHEDULER_VARIABLE, choose_scheduler
from .errors import DcignError
from .factors import factor_names
from .location import Location, locate
from .lock import DiskLock, S3Lock, lock_for
from .migrate import migrate as migrate_store
from .migrate import prepare_migration
from .preview import save_preview
from .store import SPLITS, Store, StoreSpec, open_store, read_attrs, spec_from_attrs
from .verify import verify_store

EPILOG = """\b
Examples:
  dcign-store info datasets/faces.zarr
  dcign-store verify datasets/faces.zarr
  dcign-store migrate datasets/old-faces.zarr datasets/faces.zarr   # schema 1 → 2
  dcign-store preview datasets/faces.zarr --out preview.png
  dcign-store preview datasets/faces.zarr --split test --factor light --minibatch 0,1,2
  dcign-store export datasets/faces.zarr exports/faces   # Parquet + card for HF datasets
  dcign-store export datasets/faces.zarr exports/faces-light --factor light --split train
  dcign-store export datasets/faces.zarr exports/faces --scheduler tcp://10.0.0.5:8786
  dcign-store export s3://bucket/faces.zarr s3://bucket/exports/faces   # AWS_* variables
"""


@click.group(cls=DcignGroup, epilog=EPILOG)
def main() -> None:
    """Summarise, verify, preview, migrate and export dcign Zarr stores."""


def _layout(store: Store) -> str:
    """How the bytes lie: the schema, its shards and checksums."""
    shards = sorted({store.arrays(sp, f).per_shard for sp, f in store.sections()})
    per = "/".join(str(s) for s in shards) or "-"
    return (f"schema {store.spec.schema_version}: {per} minibatches a shard file, "
            "each minibatch zstd-compressed and crc32c-checksummed")


def _writer_lock(location: Location) -> str:
    """What one writer per store rests on where this store lives (see shared/lock.py)."""
    backend = lock_for(location)
    if isinstance(backend, DiskLock):
        return ("writer lock: one writer guaranteed (a disk: the lock is published with "
                "link(2), so it has one holder; readers take no lock)")
    if isinstance(backend, S3Lock):
        return ("writer lock: one writer guaranteed only where the server honours S3 "
                "conditional writes (If-None-Match, If-Match), as AWS S3 does; a writer "
                "that finds it ignored says so (readers take no lock)")
    return ("writer lock: one writer NOT guaranteed (this storage has no atomic "
            "conditional writes): start writers one at a time (readers take no lock)")


def _describe(spec: StoreSpec, url: str) -> None:
    g = spec.generator
    click.echo(f"{url}: {spec.dataset}, {spec.image_size}x{spec.image_size} "
               f"{'grayscale' if spec.channels == 1 else 'colour (rgb)'}, "
               f"minibatches of {spec.batch_size}")
    click.echo(f"generator {g.get('name')} v{g.get('version')}, seed {g.get('seed')}; "
               f"model {spec.model.get('name')} ({spec.model.get('fingerprint')})")


@main.command(epilog=EPILOG)
@click.argument("store_path", metavar="STORE", type=click.Path())
def info(store_path: str) -> None:
    """Print what a store holds, how it was made and how it is laid out."""
    location = locate(store_path)
    attrs = read_attrs(location)
    if attrs.get("schema_version") == 1 and type(attrs["schema_version"]) is int:
        _describe(spec_from_attrs(attrs | {"schema_version": 1}, location.url), location.url)
        click.echo("schema 1: one file per minibatch and array, no checksums; this dcign reads "
                   f"schema 2: convert it with `dcign-store migrate {location.url} NEW`")
        return
    store = open_store(store_path)
    s = store.spec
    # everything is read before anything is printed: a read that fails is the one line
    counts = [(split, name, store.arrays(split, name).count_complete(),
               len(store.arrays(split, name))) for split, name in store.sections()]
    size, files = location.size(), len(location.files())
    _describe(s, store.path)
    click.echo(_layout(store))
    click.echo(_writer_lock(location))
    click.echo("factors:")
    for f in s.factors:
        span = f"[{f.low:g}, {f.high:g}] {f.unit}" if not f.is_intrinsic else f.unit
        stop = "end" if f.latents[1] is None else f"z{f.latents[1]}"
        tied = ("stored, no latent" if not f.ties_latents
                else f"latents z{f.latents[0] + 1}..{stop}")
        click.echo(f"  {f.name:<10} {span:<24} {tied}")
    click.echo(f"{'split':<6} {'factor':<10} {'complete':>10} {'images':>9}")
    for split, name, done, room in counts:  # markers counted a shard at a time
        click.echo(f"{split:<6} {name:<10} {done:>5}/{room:<4} {done * s.batch_size:>9}")
    total = sum(done for _, _, done, _ in counts) * s.batch_size
    click.echo(f"{total} images, {size / 2**20:.1f} MiB in {files} files")


@main.command(epilog=EPILOG)
@click.argument("store_path", metavar="STORE", type=click.Path())
def verify(store_path: str) -> None:
    """Read back and check every complete minibatch: name each one that is damaged (missing
    chunk, checksum, unreadable, invariant) on a line of its own; exit 1 if any is."""
    store = open_store(store_path)
    total = sum(store.arrays(sp, f).count_complete() for sp, f in store.sections())
    with tqdm(total=total, unit="minibatch", desc="verifying", leave=False) as bar:
        findings = verify_store(store, on_minibatch=lambda: bar.update(1))
    for problem in findings.problems:
        click.echo(f"FAIL {problem}", err=True)
    if findings.damaged:
        raise DcignError(f"{findings.damaged_count} damaged minibatches in {store.path} (of "
                         f"{len(findings.problems)} problems): `dcign-render repair "
                         f"{store.path}` renders exactly those again")
    if not findings.ok:
        raise DcignError(f"{len(findings.problems)} problems in {store.path}")
    click.echo(f"OK: {findings.checked} minibatches read back intact (checksums, every chunk "
               "there): one factor varies in each over distinct values, all else identical; "
               "train and test identities disjoint")


@main.command(epilog=EPILOG)
@click.argument("source", metavar="OLD")
@click.argument("target", metavar="NEW")
def migrate(source: str, target: str) -> None:
    """Convert a schema-1 store into a new schema-2 store (sharded, checksummed), copying
    every complete minibatch; the old store is only read."""
    migration = prepare_migration(source, target)
    with tqdm(total=migration.minibatches, unit="minibatch", desc="migrating", leave=False) as bar:
        copied = migrate_store(migration, on_minibatches=bar.update)
    click.echo(f"{target}: {copied} minibatches copied from {source} (schema 1 → 2); check it "
               f"with `dcign-store verify {target}`")


def _indices(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise DcignError(f"--minibatch takes comma-separated indices, not {text!r}") from None


@main.command(epilog=EPILOG)
@click.argument("store_path", metavar="STORE", type=click.Path())
@click.option("--split", type=click.Choice(SPLITS), default="train", show_default=True)
@click.option("--factor", multiple=True, help="Factor(s) to show. Default: every one present.")
@click.option("--minibatch", "minibatches", default="0", show_default=True,
              help="Comma-separated minibatch indices, one row each per factor.")
@click.option("--columns", type=int, default=None, help="Images per row (default: all).")
@click.option("--out", default="preview.png", show_default=True, type=click.Path())
def preview(store_path, split, factor, minibatches, columns, out) -> None:
    """Write a PNG grid of minibatches, one labelled row each."""
    store = open_store(store_path)
    present = [f for sp, f in store.sections() if sp == split]
    names = split_choices(factor, factor_names(store.spec.factors), "factor") or tuple(present)
    rows = []
    for name in names:
        if name not in present:
            raise DcignError(f"{store.path} has no {split}/{name} minibatches")
        done = set(store.complete(split, name).tolist())
        for k in _indices(minibatches):
            if k not in done:
                raise DcignError(f"{split}/{name} minibatch {k} is not in the store")
            rows.append((split, name, k))
    path = save_preview(store, rows, out, columns)
    click.echo(f"wrote {path} ({len(rows)} rows)")


@main.command(epilog=EPILOG)
@click.argument("store_path", metavar="STORE", type=click.Path())
@click.argument("out", metavar="OUT")
@click.option("--factor", multiple=True, help="Varying factor(s) to export. Default: all.")
@click.option("--split", "splits", multiple=True, help="Split(s) to export. Default: all.")
@click.option("--overwrite", is_flag=True,
              help="Replace an export made from another store, with other settings, or "
                   "with a file since changed.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Write the Parquet files on your Dask cluster's workers (e.g. "
                   "tcp://10.0.0.5:8786), one task each; they need dcign installed and to "
                   "reach STORE and OUT by the same path or URL, and what they return is "
                   f"unpickled here: use a cluster you trust. Without it, {SCHEDULER_VARIABLE} "
                   "is used when set (announced on stderr); else this machine.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def export(store_path, out, factor, splits, overwrite, scheduler, quiet) -> None:
    """Write OUT (a folder, or an s3:// URL as a store takes): Parquet files (one row per
    image) with a dataset card and Croissant metadata, read by Hugging Face
    `datasets.load_dataset(OUT)` with no dcign code. A rerun on a finished export of the same
    store, every file's sha256 intact, is a no-op. The store's writer lock is held while it is
    read."""
    from .export import existing_export, export_store, prepare_export  # pyarrow when exporting

    store = open_store(store_path)
    names = split_choices(factor, factor_names(store.spec.factors), "factor")
    chosen = split_choices(splits, list(SPLITS), "split")
    request = prepare_export(store, out, names, chosen)
    if existing_export(request, overwrite):
        click.echo(f"{out}: already an export of this store with these settings; nothing "
                   "to do")
        return
    address, source = choose_scheduler(scheduler)
    with ExitStack() as stack:
        bars: list[tqdm] = []  # shown once writing begins: a refusal before is its only line

        def advance(minibatches: int) -> None:
            if not bars:
                bars.append(stack.enter_context(tqdm(
                    total=len(request.files), unit="file", desc="exporting", leave=False,
                    disable=quiet)))
            bars[0].update(1 if minibatches else 0)

        summary = export_store(request, overwrite, on_minibatches=advance, scheduler=address,
                               scheduler_from=source,
                               note=lambda line: click.echo(line, err=True))
    images = summary.minibatches * store.spec.batch_size
    click.echo(f"{out}: {summary.minibatches} minibatches ({images} images) in "
               f"{summary.files} Parquet files, with README.md, croissant.json and "
               "preview.png; load it with datasets.load_dataset(OUT)")


if __name__ == "__main__":  # python -m, as torchrun -m runs it
    main()
