"""Writing a dcign store: creating it, creating or growing a section's arrays, writing whole
shards with their completeness markers last, and recording runs in its history.

Only writers import this module (tests/project/test_module_graph.py holds it): render/'s writer and
repair, `migrate`, and train/synthetic.py's test stores. Readers use `store.py` alone.

A writer owns whole shards: `write_block` removes a shard's old files (markers first: zarr
would otherwise merge into a shard it may not be able to read), writes its images, factors
and identities, and only then its markers, so a crash leaves no marker and a reader trusts
every marker it finds. Only a coordinator creates or grows arrays and writes attributes
(`require_arrays`, `append_history`), before any task writes, so nothing is resized while
workers run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import zarr
from zarr.core.sync import sync
from zarr.storage import LocalStore

from .errors import StoreError
from .location import Location, locate
from .store import MinibatchArrays, Store, open_store
from .store_schema import (
    ARRAYS,
    ATTRS_KEY,
    DTYPES,
    FILL_VALUES,
    MAX_MINIBATCHES,
    StoreSpec,
    array_tails,
    differences,
    dimension_names,
    inner_chunk_codecs,
    read_attrs,
    read_spec,
    shard_key,
    shard_minibatches,
)

# ----------------------------------------------------------------------------- a store


def check_target(path: str | Path, spec: StoreSpec, overwrite: bool = False,
                 keep: tuple[str, ...] = ()) -> bool:
    """Whether minibatches made as `spec` may go to `path`, writing nothing: True for an
    existing store to add to, False for one to create (or replace, with `overwrite`).

    An existing store made with another spec (or schema) is refused unless `overwrite`; a
    path that exists but is not a dcign store is always refused: it is not ours to delete.
    Top-level files named in `keep` (the writer's lock) are not counted."""
    location = locate(path)
    if location.exists() and not location.is_dir():
        raise StoreError(f"{location.url} exists and is not a store directory")
    if location.exists("zarr.json"):
        if _unfinished_creation(location, keep):
            return False
        read_attrs(location)  # only a dcign store may be overwritten
        if overwrite:
            return False
        reasons = differences(read_spec(path), spec)
        if reasons:
            raise StoreError(f"{location.url} was made differently: {'; '.join(reasons)} "
                             "(choose another --out, or pass --overwrite to replace it)")
        return True
    if _entries(location, keep):
        raise StoreError(f"{location.url} is a non-empty directory that is not a dcign store")
    return False


def _unfinished_creation(location: Location, keep: tuple[str, ...]) -> bool:
    """A writer killed while creating the store: its lock (a `keep` file) beside a root group
    with no dcign attributes, and nothing else. Nothing was written yet, so it is recreated;
    a bare group without a dcign writer's lock is someone else's and stays refused."""
    if not any(location.exists(name) for name in keep):
        return False
    if [e.rstrip("/").rsplit("/", 1)[-1] for e in _entries(location, keep)] != ["zarr.json"]:
        return False
    try:
        return ATTRS_KEY not in zarr.open_group(location.url, mode="r").attrs.asdict()
    except OSError:
        raise
    except Exception:  # noqa: BLE001 - a root document torn by the kill: nothing to keep
        return True


def _entries(location: Location, keep: tuple[str, ...]) -> list[str]:
    if not location.is_dir():
        return []
    return [e for e in location.fs.ls(location.root, detail=False)
            if e.rstrip("/").rsplit("/", 1)[-1] not in keep]


def create_or_open_store(path: str | Path, spec: StoreSpec, overwrite: bool = False,
                         keep: tuple[str, ...] = ()) -> Store:
    """Open a store for adding minibatches made as `spec`, creating it if needed (refusing
    what `check_target` refuses; with `overwrite`, an existing store is emptied first)."""
    if check_target(path, spec, overwrite, keep):
        return open_for_writing(path)
    location = locate(path)
    for entry in _entries(location, keep):
        location.fs.rm(entry, recursive=True)
    attrs = {ATTRS_KEY: spec.to_attrs() | {"history": []}}
    try:  # the root document is written once, attributes in it: never seen without them
        root = zarr.open_group(location.url, mode="a", zarr_format=3, attributes=attrs)
    except OSError as exc:
        raise StoreError(f"cannot create a store at {location.url}: {exc.strerror or exc}"
                         ) from exc
    return Store(location, spec, root)


def open_for_writing(path: str | Path) -> Store:
    """An existing store, opened (and validated) to be written: a shard task's."""
    return open_store(path, mode="r+")


def append_history(store: Store, entry: dict) -> None:
    """Record one run at the end of the store's history."""
    attrs = store.root.attrs.asdict()[ATTRS_KEY]
    attrs["history"] = attrs.get("history", []) + [entry]
    store.root.attrs[ATTRS_KEY] = attrs


def set_history(store: Store, history: list[dict]) -> None:
    """Replace the store's history (a migration carries its source's over)."""
    store.root.attrs[ATTRS_KEY] = store.root.attrs.asdict()[ATTRS_KEY] | {"history": history}


def require_arrays(store: Store, split: str, factor: str, n: int) -> MinibatchArrays:
    """The section's arrays with room for at least n minibatches, created or grown as needed,
    before any worker writes (nothing is resized while workers run).

    Never shrinks: minibatches already written are kept."""
    if n > MAX_MINIBATCHES:
        raise StoreError(f"{n} minibatches of {split}/{factor}: a store's section holds at "
                         f"most {MAX_MINIBATCHES}")
    spec = store.spec
    g = store.root.require_group(f"{split}/{factor}")
    tails = array_tails(spec)
    if "complete" not in g:
        # the raw bytes of B rgb images are those of 3·B gray ones
        shard = shard_minibatches(spec.batch_size * spec.channels, spec.image_size)
        dimensions = dimension_names(spec)
        for name in ARRAYS:  # the markers array last: a section without it is unfinished
            tail = tails[name]
            g.create_array(name, shape=(n, *tail), chunks=(1, *tail), shards=(shard, *tail),
                           dtype=str(DTYPES[name]), compressors=inner_chunk_codecs(),
                           fill_value=FILL_VALUES[name], overwrite=True,
                           dimension_names=dimensions[name])
    store.forget_section(split, factor)
    arrays = store.arrays(split, factor)
    if len(arrays) < n:
        # complete grows last, so an interruption leaves no marker beyond the data arrays
        for name in ARRAYS:
            getattr(arrays, name).resize((n, *tails[name]))
    return arrays


# ----------------------------------------------------------------------------- shards

def write_block(arrays: MinibatchArrays, start: int, images: np.ndarray, values: np.ndarray,
                identity: np.ndarray, durable: bool = True) -> None:
    """Write minibatches start.. of a section (a whole shard, for the writer that owns it); the
    completeness markers go last, so a crash leaves them unset.

    A whole shard is written from scratch: its old files (markers first) are removed, since
    zarr would otherwise merge into a shard it may not be able to read (damaged).

    `durable` (the default): on a local disk the data shards are fsynced, with the
    directories they are in, before the markers are written, and the markers after, so a
    marker that survives a power cut vouches for data that survived it too. (An object
    store's PUT is durable when it returns.)"""
    stop = start + len(images)
    s = arrays.per_shard
    if start % s == 0 and stop == min(start + s, len(arrays)):
        for array in (arrays.complete, arrays.identity, arrays.factors, arrays.images):
            _erase_shard(array, start // s)
    arrays.images[start:stop] = images
    arrays.factors[start:stop] = values
    arrays.identity[start:stop] = identity
    shards = range(start // s, (stop - 1) // s + 1)
    if durable:
        for array in (arrays.images, arrays.factors, arrays.identity):
            _sync_shards(array, shards)
    arrays.complete[start:stop] = True
    if durable:
        _sync_shards(arrays.complete, shards)


def write_minibatch(arrays: MinibatchArrays, k: int, images: np.ndarray, values: np.ndarray,
                    identity: np.ndarray) -> None:
    """Write minibatch k alone (a writer that owns its shard, e.g. a test fixture)."""
    write_block(arrays, k, images[None], values[None], identity[None])


def _sync_shards(array: zarr.Array, shards: Iterable[int]) -> None:
    """fsync the shard files of `array` and every directory from theirs up to the array's
    (a first write creates them), on a local disk; nothing elsewhere."""
    backend = array.store_path.store  # zarr's key-value store
    if not isinstance(backend, LocalStore):
        return
    top = Path(backend.root) / array.store_path.path
    directories = set()
    for shard in shards:
        path = top / shard_key(array, shard)
        if _fsync(path):
            parent = path.parent
            while parent != top and top in parent.parents:
                directories.add(parent)
                parent = parent.parent
    for directory in sorted(directories, key=lambda d: -len(d.parts)):
        _fsync(directory)
    _fsync(top)


def _fsync(path: Path) -> bool:
    """fsync a file or directory by path; False if it is not there (zarr writes no shard
    whose chunks all equal the fill value)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def _erase_shard(array: zarr.Array, shard: int) -> None:
    sync((array.store_path / shard_key(array, shard)).delete())
