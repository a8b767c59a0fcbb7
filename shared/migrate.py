"""Convert a schema-1 store (a file per minibatch and array, no checksums) into schema 2
(sharded, checksummed) without rendering anything again: the same minibatches, the same
attributes, its history plus one line for the migration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import zarr

from .errors import StoreError
from .location import locate
from .lock import LOCK_NAME, writer_lock
from .store import (
    ATTRS_KEY,
    SCHEMA_VERSION,
    Store,
    StoreSpec,
    create_or_open_store,
    read_attrs,
    spec_from_attrs,
)


@dataclass(frozen=True)
class Migration:
    """A checked conversion, nothing written yet."""

    source: str
    target: str
    spec: StoreSpec
    attrs: dict  # the source's attributes, history included
    minibatches: int  # complete minibatches to copy


def plan_migration(source: str | Path, target: str | Path) -> Migration:
    """Refuse, before anything is written, a source that is not schema 1 or a target that
    exists."""
    old, new = locate(source), locate(target)
    attrs = read_attrs(old)
    if attrs.get("schema_version") != 1:
        raise StoreError(f"{old.url} has store schema {attrs.get('schema_version')!r}; "
                         "migrate converts schema 1 only")
    if new.exists() and not new.is_empty_dir():
        raise StoreError(f"{new.url} already exists; migrate writes a new store")
    spec = spec_from_attrs(attrs | {"schema_version": SCHEMA_VERSION}, old.url)
    root = zarr.open_group(old.url, mode="r")
    total = sum(int(np.asarray(root[f"{split}/{f.name}/complete"][:]).sum())
                for split in ("train", "test") if split in root
                for f in spec.factors if f.name in root[split])
    return Migration(old.url, new.url, spec, attrs, total)


def migrate(plan: Migration, on_minibatches: Callable[[int], None] | None = None) -> int:
    """Copy every complete minibatch of the schema-1 store into a new schema-2 store;
    returns how many were copied. The source is only read."""
    root = zarr.open_group(plan.source, mode="r")
    copied = 0
    with writer_lock(locate(plan.target)):
        store = create_or_open_store(plan.target, plan.spec, keep=(LOCK_NAME,))
        for split in ("train", "test"):
            if split not in root:
                continue
            for factor in [f.name for f in plan.spec.factors if f.name in root[split]]:
                copied += _copy_group(root[f"{split}/{factor}"], store, split, factor,
                                      on_minibatches)
        store.root.attrs[ATTRS_KEY] = store.root.attrs.asdict()[ATTRS_KEY] | {
            "history": list(plan.attrs.get("history", [])) + [{
                "time": datetime.now(UTC).isoformat(timespec="seconds"),
                "config": {"command": "migrate", "from": plan.source, "schema": [1, 2]},
                "rendered_minibatches": 0, "copied_minibatches": copied}]}
    return copied


def _copy_group(group: zarr.Group, store: Store, split: str, factor: str,
                on_minibatches: Callable[[int], None] | None) -> int:
    """One (split, factor), shard by shard; minibatches not complete in the source stay
    missing (the render command fills them, as after an interrupted run)."""
    done = np.asarray(group["complete"][:], dtype=bool)
    arrays = store.require_arrays(split, factor, len(done))
    copied = 0
    for shard in arrays.shard_ranges():
        keep = np.flatnonzero(done[shard.start:shard.stop]) + shard.start
        if not len(keep):
            continue
        if len(keep) == len(shard):
            arrays.write_block(shard.start, *(group[a][shard.start:shard.stop]
                                              for a in ("images", "factors", "identity")))
        else:  # a partly complete shard: its missing minibatches stay unmarked
            for k in keep:
                arrays.write(int(k), *(group[a][int(k)] for a in ("images", "factors",
                                                                    "identity")))
        copied += len(keep)
        if on_minibatches:
            on_minibatches(len(keep))
    return copied
