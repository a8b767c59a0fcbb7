"""The project's one data API: how every reader (trainer, evaluation, tools) opens and reads a
dcign store. What a store holds is fixed in `store_schema.py` (its names are importable from
here too, so a reader needs this module alone); writing is `store_writer.py`'s, which only
the writers import (render/, migrate, and the test stores of train/synthetic.py).

Reading, in the spirit of disentanglement_lib's `GroundTruthData`: `open_store(path)`, then
`store.sections(split)` lists what is there, `store.complete(split, factor)` the complete
minibatches, `store.minibatch(split, factor, k)` reads one, `store.minibatches(...)` iterates,
`store.read_complete(...)` stacks a section, `store.read_images(...)` reads several minibatches'
images concurrently, and `store.sample(n, rng)` draws a seeded sample of images with their
factor values. A minibatch that cannot be read back as written (checksum, unreadable or
missing chunk) raises `DamagedMinibatch`, which names it and the repair command;
`store.missing_chunks(...)` finds complete minibatches whose shard files are gone, by a
listing rather than by reading them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr
from zarr.abc.store import Store as ZarrBackend
from zarr.abc.store import SuffixByteRequest
from zarr.core.sync import sync
from zarr.storage import LocalStore, WrapperStore

from .errors import DamagedMinibatch, StoreError, StoreReadError
from .local_shards import LocalShards, MissingChunk
from .location import Location, locate
from .store_schema import (
    ARRAYS,
    ATTRS_KEY,
    DTYPES,
    MAX_MINIBATCHES,
    SCHEMA_VERSION,
    SPLITS,
    StoreSpec,
    array_tails,
    check_array,
    differences,
    read_attrs,
    read_spec,
    shard_key,
    shard_minibatches,
    shard_of_key,
    spec_from_attrs,
    validate_attrs,
)

# what readers have always imported from here
__all__ = ["ARRAYS", "ATTRS_KEY", "DTYPES", "MAX_MINIBATCHES", "SCHEMA_VERSION", "SPLITS",
           "Minibatch", "MinibatchArrays", "Sample", "Stacked", "Store", "StoreSpec",
           "array_tails", "check_section", "differences", "draw_from_pools", "open_store",
           "read_attrs", "read_spec", "shard_minibatches", "spec_from_attrs", "validate_attrs"]


def zarr_backend(array: zarr.Array) -> ZarrBackend:
    """The zarr key-value store an array lives in, under our wrappers (ShardIndexCache)."""
    backend = array.store_path.store
    while isinstance(backend, WrapperStore):
        backend = backend._store
    return backend


def check_section(arrays: MinibatchArrays, spec: StoreSpec, url: str, where: str) -> None:
    """Check a section's four arrays against the spec and against each other: one shard size,
    and room in the data arrays for every marker (the markers grow last)."""
    per_shard = {name: check_array(getattr(arrays, name), name, spec, url, where)
                 for name in ARRAYS}
    if len(set(per_shard.values())) != 1:
        raise StoreError(f"{url}: {where} has arrays of different shard sizes "
                         f"({', '.join(f'{k} {v}' for k, v in per_shard.items())})")
    n = len(arrays)
    for name in ARRAYS[:3]:
        if getattr(arrays, name).shape[0] < n:
            raise StoreError(f"{url}: array {where}/{name} holds "
                             f"{getattr(arrays, name).shape[0]} minibatches, fewer than the "
                             f"{n} markers of {where}/complete")


# --------------------------------------------------------------------------- one section

@dataclass
class MinibatchArrays:
    """The four arrays of one section (the minibatches of one split and factor, a Zarr group
    `split/factor`), and their shard layout."""

    images: zarr.Array
    factors: zarr.Array
    identity: zarr.Array
    complete: zarr.Array
    url: str = ""  # the store and section, to name them in errors
    where: str = ""

    def __len__(self) -> int:
        return self.complete.shape[0]

    @property
    def per_shard(self) -> int:
        """S: minibatches in each shard of this section."""
        return self.complete.shards[0] if self.complete.shards else 1

    def shard_ranges(self, n: int | None = None) -> Sequence[range]:
        """The minibatch ranges of this section's shards (of its first n minibatches), made as
        they are iterated: a section of a million one-minibatch shards costs no list."""
        n, s = len(self) if n is None else n, self.per_shard
        return _ShardRanges(n, s)

    def shard_range(self, shard: int) -> range:
        s = self.per_shard
        return range(shard * s, min(shard * s + s, len(self)))

    def present_shards(self, name: str = "complete") -> list[int]:
        """The shards of one array whose files exist, by index along the minibatch axis.

        Found from a listing of the array's keys (so the cost is that of the files there,
        not of the shape the metadata claims); a key counts only if it is a shard's key
        (`store_schema.shard_of_key`): a `*.partial` file a killed write left is not one."""
        array = getattr(self, name)
        path = array.store_path.path
        prefix = f"{path}/" if path else ""
        backend = zarr_backend(array)
        if hasattr(backend, "fs"):  # an object store's listings are cached, and another
            backend.fs.invalidate_cache()  # process (a worker) may have written since

        async def listing() -> list[str]:
            return [key async for key in array.store_path.store.list_prefix(prefix)]

        try:
            keys = sync(listing())
        except OSError as exc:
            raise StoreReadError(self.url, f"the file list of {self.where}/{name}", exc
                                 ) from None
        count = -(-len(self) // self.per_shard) if len(self) else 0
        found = {shard_of_key(array, key[len(prefix):] if key.startswith(prefix) else key,
                              count) for key in keys}
        return sorted(found - {None})

    def missing_chunks(self, ks: Iterable[int]) -> dict[int, list[str]]:
        """Of minibatches `ks` (complete ones, say), those whose data are gone, each with the
        arrays (images, factors, identity) whose shard file is not there. Found by listing
        the arrays' files, not by reading them."""
        present = {name: set(self.present_shards(name)) for name in ARRAYS[:3]}
        missing = {}
        for k in ks:
            gone = [name for name in ARRAYS[:3] if int(k) // self.per_shard not in present[name]]
            if gone:
                missing[int(k)] = gone
        return missing

    def marker_shards(self) -> Iterator[tuple[range, np.ndarray | None]]:
        """Each shard of completeness markers whose file exists, in order, with its markers,
        or None where they cannot be decoded (damage). One shard in memory at a time. A read
        the storage does not answer is a StoreReadError, not damage."""
        for shard in map(self.shard_range, self.present_shards("complete")):
            try:
                yield shard, np.asarray(self.complete[shard.start:shard.stop], dtype=bool)
            except OSError as exc:
                raise StoreReadError(self.url, f"the markers of {self.where}", exc) from None
            except Exception:  # noqa: BLE001 - zarr's codecs raise several types for damage
                yield shard, None

    def completed(self) -> np.ndarray:
        """bool (n,): each minibatch's completeness marker. A shard whose markers cannot be
        decoded counts as incomplete (its minibatches are redone), as after a crash."""
        done = np.zeros(len(self), dtype=bool)
        for shard, markers in self.marker_shards():
            if markers is not None:
                done[shard.start:shard.stop] = markers
        return done

    def complete_indices(self) -> np.ndarray:
        """The complete minibatches, ascending, gathered a shard at a time (the memory is
        that of the complete minibatches, not of the section's claimed length)."""
        found = [shard.start + np.flatnonzero(markers)
                 for shard, markers in self.marker_shards() if markers is not None]
        return np.concatenate(found) if found else np.empty(0, np.int64)

    def count_complete(self) -> int:
        return sum(int(markers.sum()) for _, markers in self.marker_shards()
                   if markers is not None)

    def is_complete(self, k: int) -> bool:
        """Minibatch k's marker alone (an undecodable marker shard: not complete)."""
        try:
            return bool(self.complete[k])
        except OSError as exc:
            raise StoreReadError(self.url, f"the markers of {self.where}", exc) from None
        except Exception:  # noqa: BLE001 - what zarr raises for damage differs by codec
            return False

    def unreadable_marker_shards(self) -> list[range]:
        """Shards whose completeness markers cannot be decoded."""
        return [shard for shard, markers in self.marker_shards() if markers is None]


class _ShardRanges(Sequence):
    """range(0, n) cut into shards of s, as a lazy sequence of ranges."""

    def __init__(self, n: int, s: int) -> None:
        self.n, self.s = n, s

    def __len__(self) -> int:
        return -(-self.n // self.s)

    def __getitem__(self, i: int | slice) -> range | list[range]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return range(i * self.s, min(i * self.s + self.s, self.n))


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:80] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _damage_kind(exc: Exception) -> str:
    text = str(exc)
    if "checksum" in text.lower():
        return "checksum mismatch"
    return f"unreadable ({type(exc).__name__}: {text.splitlines()[0][:80] if text else ''})"


def _missing_parts(images: np.ndarray, values: np.ndarray, identity: np.ndarray) -> list[str]:
    """Which arrays of a complete minibatch read back as their fill value: chunks that are
    gone (zarr returns the fill value for a chunk it cannot find). No stored minibatch is all
    black, has a NaN factor or identity -1."""
    missing = []
    if images.size and not images.any():
        missing.append("images")
    if values.size and np.isnan(values).all():
        missing.append("factors")
    if identity.size and (identity == -1).all():
        missing.append("identity")
    return missing


# ----------------------------------------------------------------------------- the store

@dataclass(frozen=True)
class Minibatch:
    """One stored minibatch: B images in which only `factor` varies, with their ground truth."""

    split: str
    factor: str
    index: int
    images: np.ndarray  # uint8 (B, H, W)
    values: np.ndarray  # float32 (B, F): each image's factor values, in table column order
    identity: np.ndarray  # int64 (B,)


@dataclass(frozen=True)
class Stacked:
    """The complete minibatches of one (split, factor), stacked along a first axis."""

    split: str
    factor: str
    indices: np.ndarray  # (n,) which minibatches
    images: np.ndarray  # uint8 (n, B, H, W)
    values: np.ndarray  # float32 (n, B, F)
    identity: np.ndarray  # int64 (n, B)


@dataclass(frozen=True)
class Sample:
    """Images drawn from a store, one row each, with their ground truth."""

    images: np.ndarray  # uint8 (N, H, W)
    values: np.ndarray  # float32 (N, F)
    identity: np.ndarray  # int64 (N,)
    factor: np.ndarray  # object (N,): the factor that varies in each image's minibatch


@dataclass
class Store:
    """An opened dcign store."""

    location: Location
    spec: StoreSpec
    root: zarr.Group = field(repr=False)
    _arrays: dict = field(default_factory=dict, repr=False, compare=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False, compare=False)
    _loop_pid: int = field(default=-1, repr=False, compare=False)
    _local: dict = field(default_factory=dict, repr=False, compare=False)  # section → shards
    # sections a writer stopped while creating (no markers array yet): not listed
    _unfinished: set = field(default_factory=set, repr=False, compare=False)

    def __getstate__(self) -> dict:
        # a loop cannot cross processes, and each process opens its own arrays
        return self.__dict__ | {"_arrays": {}, "_loop": None, "_loop_pid": -1, "_local": {}}

    @property
    def path(self) -> str:
        """The store as the user named it: a local path or a URL."""
        return self.location.url

    @property
    def history(self) -> list[dict]:
        return list(self.root.attrs.asdict()[ATTRS_KEY].get("history", []))

    def sections(self, split: str | None = None) -> Iterator[tuple[str, str]]:
        """(split, factor) pairs present in the store (of one split, if given), in table
        order."""
        for name in SPLITS if split is None else (split,):
            if name not in self.root:
                continue
            present = set(self.root[name].group_keys())
            for f in self.spec.factors:
                if f.name in present and (name, f.name) not in self._unfinished:
                    yield name, f.name

    def factors_present(self, split: str) -> list[str]:
        """The factors with at least one complete minibatch in `split`, in table order."""
        return [f for _, f in self.sections(split) if self.complete(split, f).size]

    def arrays(self, split: str, factor: str) -> MinibatchArrays:
        """The section's arrays, opened once per process (opening reads their metadata) and
        checked against the spec before anything is read from them."""
        key, where = (split, factor), f"{split}/{factor}"
        if key not in self._arrays:
            try:
                g = self.root[where]
            except KeyError:
                raise StoreError(f"{self.path} has no {where} minibatches") from None
            except OSError as exc:
                raise StoreReadError(self.path, f"the metadata of {where}", exc) from None
            if not isinstance(g, zarr.Group):
                raise StoreError(f"{self.path}: {where} is not a group of arrays")
            found = {}
            for name in ARRAYS:
                try:
                    found[name] = g[name]
                except KeyError as exc:
                    if self._has_metadata(f"{where}/{name}"):  # there, but zarr cannot parse it
                        raise StoreError(f"{self.path}: array {where}/{name} has unreadable "
                                         f"metadata (KeyError: {exc})") from None
                    raise StoreError(f"{self.path}: array {where}/{name} is missing") from None
                except OSError as exc:
                    raise StoreReadError(self.path, f"the metadata of {where}/{name}", exc
                                         ) from None
                except Exception as exc:  # noqa: BLE001 - zarr's types for bad metadata vary
                    raise StoreError(f"{self.path}: array {where}/{name} has unreadable "
                                     f"metadata ({_first_line(exc)})") from None
            arrays = MinibatchArrays(**found, url=self.path, where=where)
            check_section(arrays, self.spec, self.path, where)
            self._arrays[key] = arrays
        return self._arrays[key]

    def validate(self) -> None:
        """Check the layout against the spec: each split a group, each factor's node a group
        whose arrays are as `check_section` wants them. A section whose markers array is not there
        yet (a writer stopped while creating it: the markers come last) is left for the
        writer to make. Each node is looked up by name, so a bad one is named."""
        for split in SPLITS:
            node = self._node(split)
            if node is None:
                continue
            if not isinstance(node, zarr.Group):
                raise StoreError(f"{self.path}: {split} is not a group")
            for factor in self.spec.factors:
                where = f"{split}/{factor.name}"
                group = self._node(where)
                if group is None:
                    continue
                if not isinstance(group, zarr.Group):
                    raise StoreError(f"{self.path}: {where} is not a group of arrays")
                if self._node(f"{where}/complete") is not None:
                    self.arrays(split, factor.name)
                else:
                    self._unfinished.add((split, factor.name))
            try:  # what sections() lists: a node zarr cannot parse would fail every reader
                list(node.group_keys())
            except OSError as exc:
                raise StoreReadError(self.path, f"the metadata under {split}", exc) from None
            except Exception as exc:  # noqa: BLE001 - zarr's types for bad metadata vary
                raise StoreError(f"{self.path}: a node under {split} has unreadable metadata "
                                 f"({type(exc).__name__})") from None

    def _node(self, where: str) -> zarr.Group | zarr.Array | None:
        """The node at `where`, None if there is none; one line if its metadata is bad."""
        try:
            return self.root[where]
        except KeyError as exc:
            if self._has_metadata(where):  # there, but zarr cannot parse it
                raise StoreError(f"{self.path}: {where} has unreadable metadata (KeyError: "
                                 f"{exc})") from None
            return None
        except OSError as exc:
            raise StoreReadError(self.path, f"the metadata of {where}", exc) from None
        except Exception as exc:  # noqa: BLE001 - zarr's types for bad metadata vary
            raise StoreError(f"{self.path}: {where} has unreadable metadata "
                             f"({_first_line(exc)})") from None

    def _has_metadata(self, where: str) -> bool:
        """Whether a node's zarr.json is there (zarr says KeyError both for a node that is
        absent and for metadata missing a key)."""
        key = "/".join(p for p in (self.root.store_path.path, where, "zarr.json") if p)
        try:
            return bool(sync(self.root.store.exists(key)))
        except OSError as exc:
            raise StoreReadError(self.path, f"the metadata of {where}", exc) from None

    def content_digest(self) -> str:
        """What identifies the store's content cheaply (sha256 hex): its attributes (factor
        table, generator, seed, model; not its run history, which a repair extends without
        changing a byte) and every section's complete minibatches (their markers, not their
        pixels: a minibatch is a pure function of the settings and its index). An export and
        a shipped model's card name their store by it."""
        attrs = {k: v for k, v in self.root.attrs.asdict()[ATTRS_KEY].items() if k != "history"}
        h = hashlib.sha256(json.dumps(attrs, sort_keys=True).encode())
        for split, factor in self.sections():
            h.update(f"{split}/{factor}:".encode())
            h.update(self.complete(split, factor).astype("<i8").tobytes())
        return h.hexdigest()

    def complete(self, split: str, factor: str) -> np.ndarray:
        """Indices of the complete minibatches of (split, factor), ascending."""
        return self.arrays(split, factor).complete_indices()

    def missing_chunks(self, split: str, factor: str, ks: Iterable[int] | None = None
                       ) -> dict[int, list[str]]:
        """The complete minibatches of (split, factor) (or those of `ks`) whose data chunks
        are gone, each with the arrays whose shard file is not there: found by the files'
        absence, without reading them (`verify`)."""
        arrays = self.arrays(split, factor)
        return arrays.missing_chunks(self.complete(split, factor) if ks is None else ks)

    def forget_section(self, split: str, factor: str) -> None:
        """A writer made or grew the section: its arrays are opened (and checked) again when
        next asked for, and it is listed."""
        self._arrays.pop((split, factor), None)
        self._unfinished.discard((split, factor))

    # ------------------------------------------------------------------------- reading

    def damaged(self, split: str, factor: str, k: int, what: str) -> DamagedMinibatch:
        return DamagedMinibatch(split, factor, k, what, self.path)

    def _checked(self, split: str, factor: str, k: int, images: np.ndarray,
                 values: np.ndarray, identity: np.ndarray) -> Minibatch:
        missing = _missing_parts(images, values, identity)
        if missing:
            raise self.damaged(split, factor, k, f"missing chunk ({', '.join(missing)})")
        return Minibatch(split, factor, k, images, values, identity)

    def _read_one(self, split: str, factor: str, k: int) -> Minibatch:
        arrays = self.arrays(split, factor)
        try:
            parts = arrays.images[k], arrays.factors[k], arrays.identity[k]
        except OSError as exc:  # the storage did not answer: not damage
            raise StoreReadError(self.path, f"{split}/{factor}/{k}", exc) from None
        except Exception as exc:  # noqa: BLE001 - zstd, checksum and shard-index errors alike
            raise self.damaged(split, factor, k, _damage_kind(exc)) from None
        return self._checked(split, factor, k, *parts)

    def minibatch(self, split: str, factor: str, k: int) -> Minibatch:
        """Minibatch k of (split, factor); refuses one that is absent, incomplete or damaged."""
        arrays = self.arrays(split, factor)
        if not 0 <= k < len(arrays) or not arrays.is_complete(k):
            raise StoreError(f"{split}/{factor} minibatch {k} is not in {self.path}")
        return self._read_one(split, factor, k)

    def minibatches(self, split: str, factor: str) -> Iterator[Minibatch]:
        """Every complete minibatch of (split, factor), in index order."""
        for k in self.complete(split, factor):
            yield self._read_one(split, factor, int(k))

    def read_complete(self, split: str, factor: str) -> Stacked:
        """Every complete minibatch of (split, factor) in one read, stacked."""
        ks = self.complete(split, factor)
        images, values, identity = (self._read_selected(split, factor, ks, name)
                                    for name in ARRAYS[:3])
        for i, k in enumerate(ks):
            self._checked(split, factor, int(k), images[i], values[i], identity[i])
        return Stacked(split, factor, ks, images, values, identity)

    def read_truth(self, split: str, factor: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indices, values, identities) of every complete minibatch of a section, each array
        in one read: a few bytes a minibatch beside its images, so a reader that takes
        minibatches one at a time (`MinibatchDataset`) reads them once, not per minibatch."""
        ks = self.complete(split, factor)
        values, identity = (self._read_selected(split, factor, ks, name)
                            for name in ("factors", "identity"))
        for i, k in enumerate(ks):
            missing = _missing_parts(np.empty(0, np.uint8), values[i], identity[i])
            if missing:
                raise self.damaged(split, factor, int(k), f"missing chunk ({', '.join(missing)})")
        return ks, values, identity

    def identities(self, split: str) -> np.ndarray:
        """Every identity shown in a complete minibatch of `split` (with repeats)."""
        found = [self._read_selected(split, f, self.complete(split, f), "identity").ravel()
                 for _, f in self.sections(split)]
        return np.concatenate(found) if found else np.empty(0, np.int64)

    def read_images(self, split: str, picks: Sequence[tuple[str, int]],
                    out: np.ndarray | None = None) -> list[np.ndarray] | np.ndarray:
        """The images of several minibatches, (factor, k) each: on a local disk straight
        from their shard files (`local_shards`, 4x zarr's rate), elsewhere through zarr,
        concurrently. Given `out` (uint8, (len(picks), B, H, W), C-contiguous), they are
        written into it and it is returned: the training loader hands it a step's
        shared-memory tensor, so no minibatch is copied on its way to the trainer.

        A zarr read of one minibatch costs about 1 ms of fixed overhead (handing the request
        to zarr's I/O thread and back), more than decompressing it; reading a training step's
        minibatches together pays it once per call instead of once per minibatch."""
        if all(self._local_shards(split, f) is not None for f in dict.fromkeys(
                f for f, _ in picks)):
            read = [self._read_local(split, f, k, None if out is None else out[i])
                    for i, (f, k) in enumerate(picks)]
            return read if out is None else out
        arrays = {f: self.arrays(split, f).images.async_array for f in dict.fromkeys(
            f for f, _ in picks)}

        async def all_of_them() -> list:
            return await asyncio.gather(*(arrays[f].getitem(k) for f, k in picks),
                                        return_exceptions=True)

        images = self._event_loop().run_until_complete(all_of_them())
        for (f, k), result in zip(picks, images, strict=True):
            if isinstance(result, OSError):
                raise StoreReadError(self.path, f"{split}/{f}/{k}", result)
            if isinstance(result, Exception):
                raise self.damaged(split, f, k, _damage_kind(result))
            if not result.any():
                raise self.damaged(split, f, k, "missing chunk (images)")
        if out is not None:
            np.stack(images, out=out)
            return out
        return images

    def _local_shards(self, split: str, factor: str) -> LocalShards | None:
        """The section's image shards when they lie on a local disk, else None (zarr reads)."""
        key = (split, factor)
        if key not in self._local:
            arrays = self.arrays(split, factor)
            images, backend = arrays.images, zarr_backend(arrays.images)
            self._local[key] = None
            if isinstance(backend, LocalStore):
                spec = self.spec
                self._local[key] = LocalShards(
                    Path(backend.root) / images.store_path.path, arrays.per_shard,
                    (spec.batch_size, *spec.image_shape),
                    lambda shard: shard_key(images, shard))
        return self._local[key]

    def _read_local(self, split: str, factor: str, k: int, out: np.ndarray | None = None
                    ) -> np.ndarray:
        """Minibatch k's images from its shard file (into `out` if given), failures named as
        zarr's are."""
        try:
            images = self._local[(split, factor)].read(k, out)
        except MissingChunk:
            raise self.damaged(split, factor, k, "missing chunk (images)") from None
        except OSError as exc:  # the disk did not answer: not damage
            raise StoreReadError(self.path, f"{split}/{factor}/{k}", exc) from None
        except Exception as exc:  # noqa: BLE001 - checksum, zstd and index errors alike
            raise self.damaged(split, factor, k, _damage_kind(exc)) from None
        if not images.any():
            raise self.damaged(split, factor, k, "missing chunk (images)")
        return images

    def sample(self, n: int, rng: np.random.Generator, split: str = "test",
               factors: Iterable[str] | None = None) -> Sample:
        """n images drawn without replacement (all of them if fewer) by `rng`, uniformly over
        the images of the complete minibatches of `split` (of the given minibatch types, or
        all), with their factor values and identities. The pool is ordered by minibatch type
        in table order, then minibatch index, then image, and `rng.choice(pool, n)` picks from
        it, so the draw is a pure function of the store and `rng`'s state."""
        names = list(factors) if factors is not None else self.factors_present(split)
        done = [self.complete(split, f) for f in names]
        b = self.spec.batch_size
        pool, within = draw_from_pools([len(d) * b for d in done], n, rng)
        out = Sample(np.empty((len(pool), *self.spec.image_shape), np.uint8),
                     np.empty((len(pool), self.spec.n_columns), np.float32),
                     np.empty(len(pool), np.int64), np.empty(len(pool), dtype=object))
        for g, name in enumerate(names):
            rows = np.flatnonzero(pool == g)
            if not rows.size:
                continue
            minibatch, image = np.divmod(within[rows], b)
            needed, position = np.unique(done[g][minibatch], return_inverse=True)
            parts = [self._read_selected(split, name, needed, a) for a in ARRAYS[:3]]
            for i, k in enumerate(needed):
                self._checked(split, name, int(k), *(p[i] for p in parts))
            for part, target in zip(parts, (out.images, out.values, out.identity), strict=True):
                target[rows] = part[position, image]
            out.factor[rows] = name
        return out

    def _read_selected(self, split: str, factor: str, ks: np.ndarray, name: str) -> np.ndarray:
        """Minibatches `ks` (ascending) of one array, one slice per run of consecutive
        indices; a damaged one is named. (Zarr's orthogonal selection decodes whole shards
        per index: slower by 20x, and gigabytes for a large section.)"""
        array = getattr(self.arrays(split, factor), name)
        ks = np.asarray(ks, dtype=np.int64)
        if not len(ks):
            return np.empty((0, *array.shape[1:]), array.dtype)
        breaks = np.flatnonzero(np.diff(ks) != 1) + 1
        try:
            return np.concatenate([np.asarray(array[int(run[0]):int(run[-1]) + 1])
                                   for run in np.split(ks, breaks)])
        except OSError as exc:  # the storage did not answer: not damage
            raise StoreReadError(self.path, f"{split}/{factor}/{name}", exc) from None
        except Exception:  # noqa: BLE001 - find which minibatch: read them one by one
            for k in ks:
                try:
                    array[int(k)]
                except OSError as exc:
                    raise StoreReadError(self.path, f"{split}/{factor}/{int(k)}", exc
                                         ) from None
                except Exception as exc:  # noqa: BLE001
                    raise self.damaged(split, factor, int(k), _damage_kind(exc)) from None
            raise

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        """This process's own loop for concurrent reads (a forked or spawned copy makes its
        own: a loop cannot cross processes)."""
        if self._loop is None or self._loop_pid != os.getpid():
            self._loop, self._loop_pid = asyncio.new_event_loop(), os.getpid()
            weakref.finalize(self, self._loop.close)
        return self._loop


def identities_in_both(train: Iterable[int], test: Iterable[int]) -> np.ndarray:
    """The identities shown in both splits, sorted. Held out must mean unseen: the trainer
    refuses a store with any, and verify reports them (from the minibatches it could read)."""
    return np.intersect1d(np.fromiter(train, np.int64), np.fromiter(test, np.int64))


def draw_from_pools(sizes: Sequence[int], n: int, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray]:
    """n items (all of them if fewer) drawn without replacement, uniformly over pools of the
    given sizes laid end to end: each item's pool and its place in that pool. One
    `rng.choice`, so the draw is a pure function of the sizes and `rng`'s state."""
    ends = np.cumsum(np.asarray(sizes, dtype=np.int64))
    total = int(ends[-1]) if len(ends) else 0
    pick = rng.choice(total, size=min(n, total), replace=False)
    pool = np.searchsorted(ends, pick, side="right")
    return pool, pick - np.concatenate([[0], ends[:-1]])[pool]


class ShardIndexCache(WrapperStore):
    """A read-only zarr backend (zarr's key-value store) that keeps the shard indexes it has
    read.

    Reading one minibatch from a shard costs zarr two reads, the shard's index (the last
    bytes of the file) and the minibatch's chunk; a reader's shards never change under it, so
    each index is read once (about 1.6 kB a shard at 100 minibatches)."""

    def __init__(self, backend: ZarrBackend) -> None:
        super().__init__(backend)
        self._indexes: dict[tuple[str, int], object] = {}

    async def get(self, key: str, prototype=None, byte_range=None):
        if not isinstance(byte_range, SuffixByteRequest):
            return await self._store.get(key, prototype, byte_range)
        cached = self._indexes.get((key, byte_range.suffix))
        if cached is None:
            cached = await self._store.get(key, prototype, byte_range)
            if cached is not None:
                self._indexes[(key, byte_range.suffix)] = cached
        return cached


def open_store(path: str | Path, mode: str = "r") -> Store:
    """Open an existing dcign store (mode 'r' or 'r+'), validating its attributes and every
    section's arrays against the schema (`validate_attrs`, `Store.validate`) before anything is
    read from them; a reader's shard indexes are read once."""
    location = locate(path)
    spec = read_spec(path)
    try:
        if mode == "r":
            base = zarr.open_group(location.url, mode="r").store
            root = zarr.open_group(store=ShardIndexCache(base), mode="r")
        else:
            root = zarr.open_group(location.url, mode=mode)
    except OSError as exc:
        raise StoreReadError(location.url, "the store's metadata (zarr.json)", exc) from None
    store = Store(location, spec, root)
    store.validate()
    return store

