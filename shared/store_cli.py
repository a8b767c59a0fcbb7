"""`dcign-store`: look inside a dcign store without training anything."""

from __future__ import annotations

import click
from tqdm import tqdm

from .cli import DcignGroup, split_choices
from .errors import DcignError
from .factors import factor_names
from .preview import save_preview
from .store import SPLITS, Store, open_store
from .verify import verify_store

EPILOG = """\b
Examples:
  dcign-store info datasets/faces.zarr
  dcign-store verify datasets/faces.zarr
  dcign-store preview datasets/faces.zarr --out preview.png
  dcign-store preview datasets/faces.zarr --split test --factor light --minibatch 0,1,2
"""


@click.group(cls=DcignGroup, epilog=EPILOG)
def main() -> None:
    """Summarise, verify and preview dcign Zarr stores."""


def _disk_bytes(store: Store) -> int:
    return sum(p.stat().st_size for p in store.path.rglob("*") if p.is_file())


@main.command(epilog=EPILOG)
@click.argument("store_path", metavar="STORE", type=click.Path())
def info(store_path: str) -> None:
    """Print what a store holds and how it was made."""
    store = open_store(store_path)
    s = store.spec
    g = s.generator
    click.echo(f"{store.path}: {s.dataset}, {s.image_size}x{s.image_size} grayscale, "
               f"minibatches of {s.batch_size}, schema {s.schema_version}")
    click.echo(f"generator {g.get('name')} v{g.get('version')}, seed {g.get('seed')}; "
               f"model {s.model.get('name')} ({s.model.get('fingerprint')})")
    click.echo("factors:")
    for f in s.factors:
        span = f"[{f.low:g}, {f.high:g}] {f.unit}" if not f.is_intrinsic else f.unit
        stop = "end" if f.latents[1] is None else f"z{f.latents[1]}"
        tied = ("stored, no latent" if not f.ties_latents
                else f"latents z{f.latents[0] + 1}..{stop}")
        click.echo(f"  {f.name:<10} {span:<24} {tied}")
    click.echo(f"{'split':<6} {'factor':<10} {'complete':>10} {'images':>9}")
    total = 0
    for split, name in store.groups():
        done, room = len(store.complete(split, name)), len(store.arrays(split, name))
        total += done * s.batch_size
        click.echo(f"{split:<6} {name:<10} {done:>5}/{room:<4} {done * s.batch_size:>9}")
    click.echo(f"{total} images, {_disk_bytes(store) / 2**20:.1f} MiB on disk")


@main.command(epilog=EPILOG)
@click.argument("store_path", metavar="STORE", type=click.Path())
def verify(store_path: str) -> None:
    """Check every minibatch's invariants; exit 1 if any fails."""
    store = open_store(store_path)
    total = sum(len(store.complete(sp, f)) for sp, f in store.groups())
    with tqdm(total=total, unit="minibatch", desc="verifying", leave=False) as bar:
        report = verify_store(store, on_minibatch=lambda: bar.update(1))
    for problem in report.problems[:20]:
        click.echo(f"FAIL {problem}", err=True)
    if len(report.problems) > 20:
        click.echo(f"... and {len(report.problems) - 20} more", err=True)
    if not report.ok:
        raise click.ClickException(f"{len(report.problems)} problems in {store.path}")
    click.echo(f"OK: {report.checked} minibatches: one factor varies in each over distinct "
               "values, all else identical; train and test identities disjoint")


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
    present = [f for sp, f in store.groups() if sp == split]
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
