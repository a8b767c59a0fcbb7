"""Convert a schema-1 store (a file per minibatch and array, no checksums) into schema 2
(sharded, checksummed) without rendering anything again: the same minibatches, the same
attributes, its history plus one line for the migration.

A migration is a writer like the renderer: it holds the target's writer lock and checks it
(fencing) before every write, so a migration that lost its lock (paused past the stale
limit, taken over) writes nothing more. While it runs, a marker in the target's root names
the source; an interrupted migration (Ctrl-C, a kill, a full disk) is resumed by running the
same command again, which keeps every shard already copied and copies the rest. The marker
goes last: a target without it is a finished store, which migrate never writes into.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import zarr

from . import store_writer
from .errors import StoreError
from .location import Location, locate
from .lock import LOCK_NAME, HeldLock, writer_lock
from .store import Store
from .store_schema import (
    SCHEMA_VERSION,
    StoreSpec,
    differences,
    read_attrs,
    read_spec,
    spec_from_attrs,
)

MARKER_NAME = "dcign-migrating.json"  # in the target's root until the migration is complete


@dataclass(frozen=True)
class Migration:
    """A checked conversion, nothing written yet."""

    source: str
    target: str
    spec: StoreSpec
    attrs: dict  # the source's attributes, history included
    minibatches: int  # complete minibatches to copy
    resume: bool = False  # the target holds an unfinished migration of this source


def _identity(location: Location) -> str:
    """The source as a marker names it: an absolute URL, however the user spelled it."""
    return location.fs.unstrip_protocol(location.root)


def _marker(location: Location) -> dict | None:
    """The unfinished migration the target holds, if any."""
    if not location.exists(MARKER_NAME):
        return None
    try:
        marker = json.loads(location.read_text(MARKER_NAME))
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def _entries(location: Location) -> list[str]:
    """What the target holds besides a writer's lock (another migration may be starting)."""
    if not location.is_dir():
        return [location.root] if location.exists() else []
    return [e for e in location.fs.ls(location.root, detail=False)
            if e.rstrip("/").rsplit("/", 1)[-1] != LOCK_NAME]


def prepare_migration(source: str | Path, target: str | Path) -> Migration:
    """Refuse, before anything is written, a source that is not schema 1 or a target that
    exists, unless the target is an unfinished migration of this very source (resumed)."""
    old, new = locate(source), locate(target)
    attrs = read_attrs(old)
    if attrs.get("schema_version") != 1:
        raise StoreError(f"{old.url} has store schema {attrs.get('schema_version')!r}; "
                         "migrate converts schema 1 only")
    spec = spec_from_attrs(attrs | {"schema_version": SCHEMA_VERSION}, old.url)
    resume = False
    if _entries(new):
        marker = _marker(new) if new.is_dir() else None
        if marker is None:
            raise StoreError(f"{new.url} already exists; migrate writes a new store")
        if marker.get("from") != _identity(old):
            raise StoreError(f"{new.url} holds an unfinished migration from "
                             f"{marker.get('from', 'an unknown store')}, not from {old.url}: "
                             "rerun that migration, or choose another NEW")
        if new.exists("zarr.json"):
            reasons = differences(read_spec(new.url), spec)
            if reasons:
                raise StoreError(f"{new.url} holds an unfinished migration of a store made "
                                 f"differently ({'; '.join(reasons)}); choose another NEW")
        resume = True
    root = zarr.open_group(old.url, mode="r")
    total = sum(int(np.asarray(root[f"{split}/{f.name}/complete"][:]).sum())
                for split in ("train", "test") if split in root
                for f in spec.factors if f.name in root[split])
    return Migration(old.url, new.url, spec, attrs, total, resume)


def _remove_partial_writes(location: Location) -> None:
    """Zarr writes a file beside its target and renames it; a killed migration leaves the
    temporary one. Under the writer lock no one else is writing, so they can go."""
    if location.is_local:
        for partial in Path(location.root).rglob("*.partial"):
            partial.unlink(missing_ok=True)


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def migrate(migration: Migration, on_minibatches: Callable[[int], None] | None = None,
            note: Callable[[str], None] = _to_stderr) -> int:
    """Copy every complete minibatch of the schema-1 store into the schema-2 target, keeping
    the shards an interrupted run already copied; returns how many the target holds. The
    source is only read."""
    root = zarr.open_group(migration.source, mode="r")
    new = locate(migration.target)
    copied = 0
    with writer_lock(new, note=note) as lock:
        lock.check()  # fencing: before every write
        if migration.resume:
            note(f"resuming the unfinished migration of {migration.source} into {migration.target}")
            _remove_partial_writes(new)
        else:
            new.write_text(json.dumps({"from": _identity(locate(migration.source)),
                                       "since": datetime.now(UTC).isoformat(
                                           timespec="seconds")}), MARKER_NAME)
        lock.check()
        store = store_writer.create_or_open_store(migration.target, migration.spec,
                                                  keep=(LOCK_NAME, MARKER_NAME))
        for split in ("train", "test"):
            if split not in root:
                continue
            for factor in [f.name for f in migration.spec.factors if f.name in root[split]]:
                copied += _copy_group(root[f"{split}/{factor}"], store, split, factor,
                                      on_minibatches, lock)
        lock.check()
        store_writer.set_history(store, list(migration.attrs.get("history", [])) + [{
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": {"command": "migrate", "from": migration.source, "schema": [1, 2]},
            "rendered_minibatches": 0, "copied_minibatches": copied}])
        lock.check()
        new.remove(MARKER_NAME)  # last: the target is a finished store from here on
    return copied


def _copy_group(group: zarr.Group, store: Store, split: str, factor: str,
                on_minibatches: Callable[[int], None] | None, lock: HeldLock) -> int:
    """One (split, factor), shard by shard, skipping what the target holds already (an
    interrupted run's); minibatches not complete in the source stay missing (the render
    command fills them, as after an interrupted run). Returns the minibatches copied, by
    this run or the one it resumes."""
    done = np.asarray(group["complete"][:], dtype=bool)
    lock.check()
    arrays = store_writer.require_arrays(store, split, factor, len(done))
    there = arrays.completed()
    copied = 0
    for shard in arrays.shard_ranges():
        keep = np.flatnonzero(done[shard.start:shard.stop]) + shard.start
        if not len(keep):
            continue
        missing = keep[~there[keep]]
        if len(missing) and len(keep) == len(shard):
            lock.check()
            store_writer.write_block(arrays, shard.start, *(
                group[a][shard.start:shard.stop] for a in ("images", "factors", "identity")))
        else:  # a partly complete shard: its missing minibatches stay unmarked
            for k in missing:
                lock.check()
                store_writer.write_minibatch(arrays, int(k), *(group[a][int(k)] for a in (
                    "images", "factors", "identity")))
        copied += len(keep)
        if on_minibatches:
            on_minibatches(len(keep))
    return copied
