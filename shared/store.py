"""The Zarr v3 store schema and the project's one data API: the only module that knows how a
dcign dataset is laid out, and the way every reader (trainer, evaluation, tools) reads it.

    STORE/                      attrs["dcign"]: schema version, dataset kind, image size,
                                minibatch size, factor table, generator (name, version, seed,
                                scene constants), object model (name, fingerprint), run history
      <split>/<factor>/images   uint8   (n, B, H, W)
      <split>/<factor>/factors  float32 (n, B, F)     every image's true factor values
      <split>/<factor>/identity int64   (n, B)        which face / chair
      <split>/<factor>/complete bool    (n,)          set only after the arrays above

Schema 2 (this one): every array is sharded along the minibatch axis, S minibatches to a
shard file (the same S for the four arrays of a group), one minibatch to an inner chunk,
each inner chunk zstd-compressed and then checksummed (crc32c), so a flipped bit fails at
read time in every Zarr reader. A writer owns whole shards: it writes a shard's images,
factors and identities, then its completeness markers; no two writers ever touch one shard.
Schema 1 (one file per minibatch and array, no checksums) is refused with the way to
convert it (`dcign-store migrate`).

Reading, in the spirit of disentanglement_lib's `GroundTruthData`: `open_store(path)`, then
`store.groups(split)` lists what is there, `store.complete(split, factor)` the complete
minibatches, `store.minibatch(split, factor, k)` reads one, `store.minibatches(...)` iterates,
`store.read_complete(...)` stacks a group, `store.read_images(...)` reads several minibatches'
images concurrently, and `store.sample(n, rng)` draws a seeded sample of images with their
factor values. A minibatch that cannot be read back as written (checksum, unreadable or
missing chunk) raises `DamagedMinibatch`, which names it and the repair command.

Why one module of about 600 lines (against the project's ~400): the layout and the code
that reads and writes it are one contract. Shard sizes, codecs, marker order and the damage
checks are tuned against each other (a reader trusts a marker because the writer sets it
last; a damaged chunk is named because the codec chain checksums it); split across files,
a change to one side would hide its consequence on the other.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr
import zarr.codecs
from zarr.abc.store import SuffixByteRequest
from zarr.core.sync import sync
from zarr.storage import LocalStore, WrapperStore

from .errors import DamagedMinibatch, StoreError, StoreReadError
from .factors import LATENT_SIZE, Factor, continuous_factors
from .location import Location, locate

SCHEMA_VERSION = 2
SPLITS = ("train", "test")
ATTRS_KEY = "dcign"
ARRAYS = ("images", "factors", "identity", "complete")  # in writing order: markers last
# A shard holds this many minibatches, fewer for large images so that its raw images stay
# under SHARD_RAW_BYTES: at 150×150 and minibatches of 20, 100 minibatches is 45 MB raw, about
# 8 MB of zstd (faces: 70-90 kB a minibatch), and the default faces store is 560 files.
SHARD_MINIBATCHES = 100
SHARD_RAW_BYTES = 45_000_000
ZSTD_LEVEL = 3


def shard_minibatches(batch_size: int, image_size: int) -> int:
    """S, the minibatches in a shard, for a new group of this minibatch and image size."""
    raw = batch_size * image_size * image_size
    return max(1, min(SHARD_MINIBATCHES, SHARD_RAW_BYTES // raw))


def _inner_chunk_codecs() -> list:
    """What each minibatch's chunk goes through after its bytes: zstd, then a crc32c checksum."""
    return [zarr.codecs.ZstdCodec(level=ZSTD_LEVEL), zarr.codecs.Crc32cCodec()]


@dataclass(frozen=True)
class StoreSpec:
    """Everything that must match for minibatches to belong in one store."""

    dataset: str
    image_size: int
    batch_size: int
    factors: tuple[Factor, ...]
    generator: dict  # name, version, seed and every constant the images depend on
    model: dict  # object-model name and fingerprint
    schema_version: int = SCHEMA_VERSION

    def to_attrs(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "dataset": self.dataset,
            "image_size": self.image_size,
            "batch_size": self.batch_size,
            "factors": [f.to_attrs() for f in self.factors],
            "generator": self.generator,
            "model": self.model,
        }

    @classmethod
    def from_attrs(cls, attrs: dict) -> StoreSpec:
        return cls(
            dataset=attrs["dataset"],
            image_size=int(attrs["image_size"]),
            batch_size=int(attrs["batch_size"]),
            factors=tuple(Factor.from_attrs(f) for f in attrs["factors"]),
            generator=attrs["generator"],
            model=attrs["model"],
            schema_version=int(attrs["schema_version"]),
        )

    def factor(self, name: str) -> Factor:
        for f in self.factors:
            if f.name == name:
                return f
        raise StoreError(f"this {self.dataset} store has no factor {name!r}")

    @property
    def n_columns(self) -> int:
        return len(continuous_factors(self.factors))


def differences(old: StoreSpec, new: StoreSpec) -> list[str]:
    """Human-readable reasons why `new` minibatches cannot be added to a store made as `old`."""
    a, b = old.to_attrs(), new.to_attrs()
    reasons = []
    for key in a:
        if key == "generator":
            for gk in sorted(set(a[key]) | set(b[key])):
                if a[key].get(gk) != b[key].get(gk):
                    reasons.append(f"{gk} {a[key].get(gk)!r} (store) vs {b[key].get(gk)!r}")
        elif key == "model":
            if a[key].get("fingerprint") != b[key].get("fingerprint"):
                reasons.append(f"model {a[key].get('name')!r} (store) vs {b[key].get('name')!r}")
        elif a[key] != b[key]:
            reasons.append(f"{key.replace('_', ' ')} {a[key]!r} (store) vs {b[key]!r}")
    return reasons


def read_attrs(location: Location) -> dict:
    """A store's dcign attributes, whatever its schema; refuses what is not a dcign store."""
    if not location.exists():
        raise StoreError(f"no store at {location.url}")
    if not location.exists("zarr.json"):
        raise StoreError(f"{location.url} is not a Zarr store (no zarr.json)")
    try:
        group = zarr.open_group(location.url, mode="r")
        attrs = group.attrs.asdict()
    except OSError as exc:  # the storage did not answer: not a verdict on the store
        raise StoreReadError(location.url, "the store's metadata (zarr.json)", exc) from None
    except Exception as exc:  # noqa: BLE001 - zarr raises several types for bad metadata
        raise StoreError(f"{location.url} is not a readable Zarr store ({type(exc).__name__})"
                         ) from None
    if ATTRS_KEY not in attrs:
        raise StoreError(f"{location.url} is a Zarr store but not a dcign dataset")
    if not isinstance(attrs[ATTRS_KEY], dict):
        raise _bad(location.url, ATTRS_KEY, f"{_shown(attrs[ATTRS_KEY])} is not a mapping")
    return attrs[ATTRS_KEY]


def spec_from_attrs(attrs: dict, url: str) -> StoreSpec:
    """The spec the attributes state, once `validate_attrs` has checked every field."""
    validate_attrs(attrs, url)
    return StoreSpec.from_attrs(attrs)


def read_spec(path: str | Path) -> StoreSpec:
    """The spec of an existing store; refuses a missing store or one of another schema."""
    location = locate(path)
    attrs = read_attrs(location)
    version = attrs.get("schema_version")
    if version == 1 and not isinstance(version, bool):
        raise StoreError(
            f"{location.url} has store schema 1 (a file per minibatch, no checksums); this "
            f"dcign reads schema {SCHEMA_VERSION}: convert it with `dcign-store migrate "
            f"{location.url} NEW` or render it again with --overwrite")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise StoreError(f"{location.url} has store schema {_shown(version)} (attribute "
                         f"schema_version); this dcign reads schema {SCHEMA_VERSION}")
    return spec_from_attrs(attrs, location.url)


# ----------------------------------------------------------------------------- validation
#
# A store is checked against this schema when it is opened, before anything is allocated or
# indexed from what it states: its attributes field by field, then every group's arrays
# (dtype, shape, chunk and shard shape) against what the attributes imply. A store that
# breaks a rule is refused in one line naming the field. The limits are far above any store
# dcign makes (the paper's faces: 150x150, minibatches of 20, 3,000 a group) and low enough
# that one minibatch, one shard and one group's markers fit in memory.

MAX_IMAGE_SIZE = 4096
MAX_BATCH_SIZE = 10_000
MAX_MINIBATCH_BYTES = 2**30  # one minibatch's raw images
MAX_MINIBATCHES = 10_000_000  # in one group: its markers are 10 MB
MAX_FACTORS = 64
MAX_SEED = 2**64 - 1
FACTOR_FIELDS = ("name", "unit", "low", "high", "latents", "column", "description")
REQUIRED_ATTRS = ("schema_version", "dataset", "image_size", "batch_size", "factors",
                  "generator", "model")
# a factor's name is a group's name in the store's paths: no separators, no dots
_FACTOR_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
DTYPES = {"images": np.dtype("uint8"), "factors": np.dtype("float32"),
          "identity": np.dtype("int64"), "complete": np.dtype("bool")}


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _bad(url: str, field: str, problem: str) -> StoreError:
    return StoreError(f"{url}: bad store attribute {field}: {problem}")


def _int(value: object, url: str, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(url, field, f"{_shown(value)} is not an integer")
    if not low <= value <= high:
        raise _bad(url, field, f"{_shown(value)} is outside [{low}, {high}]")
    return value


def _number(value: object, url: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(url, field, f"{_shown(value)} is not a number")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        number = math.inf
    if not math.isfinite(number):
        raise _bad(url, field, f"{_shown(value)} is not a finite number")
    return number


def _text(value: object, url: str, field: str) -> str:
    if not isinstance(value, str):
        raise _bad(url, field, f"{_shown(value)} is not a string")
    return value


def _mapping(value: object, url: str, field: str, required: Sequence[str] = ()) -> dict:
    if not isinstance(value, dict):
        raise _bad(url, field, f"{_shown(value)} is not a mapping")
    for key in required:
        if key not in value:
            raise _bad(url, f"{field}.{key}" if field != ATTRS_KEY else key, "missing")
    return value


def validate_attrs(attrs: object, url: str) -> None:
    """Check every field of a store's dcign attributes against the schema (types, ranges,
    what they imply together); raise StoreError naming the first bad field."""
    attrs = _mapping(attrs, url, ATTRS_KEY, REQUIRED_ATTRS)
    _int(attrs["schema_version"], url, "schema_version", 1, 1_000_000)
    if not _text(attrs["dataset"], url, "dataset"):
        raise _bad(url, "dataset", "empty")
    h = _int(attrs["image_size"], url, "image_size", 1, MAX_IMAGE_SIZE)
    b = _int(attrs["batch_size"], url, "batch_size", 1, MAX_BATCH_SIZE)
    if b * h * h > MAX_MINIBATCH_BYTES:
        raise _bad(url, "batch_size", f"{b} images of {h}x{h} make a minibatch of "
                                      f"{b * h * h} bytes, over {MAX_MINIBATCH_BYTES}")
    _validate_factors(attrs["factors"], url)
    generator = _mapping(attrs["generator"], url, "generator", ("name", "version", "seed"))
    if not _text(generator["name"], url, "generator.name"):
        raise _bad(url, "generator.name", "empty")
    _int(generator["version"], url, "generator.version", 0, 1_000_000)
    _int(generator["seed"], url, "generator.seed", 0, MAX_SEED)
    model = _mapping(attrs["model"], url, "model", ("name", "fingerprint"))
    _text(model["name"], url, "model.name")
    _text(model["fingerprint"], url, "model.fingerprint")
    history = attrs.get("history", [])
    if not isinstance(history, list):
        raise _bad(url, "history", f"{_shown(history)} is not a list")
    for i, entry in enumerate(history):
        _mapping(entry, url, f"history[{i}]")


def _validate_factors(factors: object, url: str) -> None:
    if not isinstance(factors, list):
        raise _bad(url, "factors", f"{_shown(factors)} is not a list")
    if not 1 <= len(factors) <= MAX_FACTORS:
        raise _bad(url, "factors", f"{len(factors)} factors, not 1 to {MAX_FACTORS}")
    names, columns, intrinsic = set(), [], []
    for i, factor in enumerate(factors):
        at = f"factors[{i}]"
        factor = _mapping(factor, url, at, FACTOR_FIELDS)
        unknown = sorted(set(factor) - set(FACTOR_FIELDS))
        if unknown:
            raise _bad(url, f"{at}.{unknown[0]}", "not a field of a factor")
        name = _text(factor["name"], url, f"{at}.name")
        if not _FACTOR_NAME.fullmatch(name):
            raise _bad(url, f"{at}.name", f"{_shown(name)} is not a factor name (1 to 64 "
                                          "letters, digits, _ or -)")
        if name in names:
            raise _bad(url, f"{at}.name", f"{name!r} names two factors")
        names.add(name)
        _text(factor["unit"], url, f"{at}.unit")
        _text(factor["description"], url, f"{at}.description")
        if factor["column"] is None:  # the identity: it has no range and no column
            intrinsic.append(name)
            for key in ("low", "high"):
                if factor[key] is not None:
                    raise _bad(url, f"{at}.{key}", f"{_shown(factor[key])} for the intrinsic "
                                                   "factor (column null), which has no range")
        else:
            columns.append(_int(factor["column"], url, f"{at}.column", 0, MAX_FACTORS - 1))
            low = _number(factor["low"], url, f"{at}.low")
            if _number(factor["high"], url, f"{at}.high") < low:
                raise _bad(url, f"{at}.high", f"{factor['high']!r} is below low {low:g}")
        latents = factor["latents"]
        if not isinstance(latents, list) or len(latents) != 2:
            raise _bad(url, f"{at}.latents", f"{_shown(latents)} is not a pair [start, stop]")
        start = _int(latents[0], url, f"{at}.latents[0]", 0, LATENT_SIZE - 1)
        if latents[1] is not None:
            _int(latents[1], url, f"{at}.latents[1]", start, LATENT_SIZE)
    if len(intrinsic) > 1:
        raise _bad(url, "factors", f"{len(intrinsic)} intrinsic factors (column null: "
                                   f"{', '.join(intrinsic)}); the identity is one")
    if sorted(columns) != list(range(len(columns))):
        raise _bad(url, "factors", f"columns {sorted(columns)}: the {len(columns)} factors "
                                   f"with values take columns 0..{len(columns) - 1}, one each")


def array_tails(spec: StoreSpec) -> dict[str, tuple[int, ...]]:
    """Each array's shape after its minibatch axis, as the spec implies it."""
    b, h = spec.batch_size, spec.image_size
    return {"images": (b, h, h), "factors": (b, spec.n_columns), "identity": (b,),
            "complete": ()}


def _check_array(array: object, name: str, spec: StoreSpec, url: str, where: str) -> int:
    """Check one array's metadata (read through zarr's own API) against what the spec
    implies; its shard size S."""
    at = f"{where}/{name}"
    if not isinstance(array, zarr.Array):
        raise StoreError(f"{url}: {at} is not an array")
    tail = array_tails(spec)[name]
    shape, dtype = tuple(array.shape), np.dtype(array.dtype)
    implied = f"(n, {', '.join(map(str, tail))})" if tail else "(n,)"
    if len(shape) != 1 + len(tail) or shape[1:] != tail:
        raise StoreError(f"{url}: array {at} has shape {_shown(shape)} where the store's "
                         f"attributes imply {implied}")
    if not 0 <= shape[0] <= MAX_MINIBATCHES:
        raise StoreError(f"{url}: array {at} claims {shape[0]} minibatches, over "
                         f"{MAX_MINIBATCHES}")
    if dtype != DTYPES[name]:
        raise StoreError(f"{url}: array {at} has dtype {dtype}, not {DTYPES[name]}")
    if array.shards is None:
        raise StoreError(f"{url}: array {at} is not sharded (schema {SCHEMA_VERSION} shards "
                         "every array)")
    chunks, shards = tuple(array.chunks), tuple(array.shards)
    if chunks != (1, *tail):
        raise StoreError(f"{url}: array {at} has chunks {_shown(chunks)}, not one minibatch "
                         f"{(1, *tail)}")
    most = shard_minibatches(spec.batch_size, spec.image_size)
    if shards[1:] != tail or not 1 <= shards[0] <= most:
        raise StoreError(f"{url}: array {at} has shards {_shown(shards)}, not 1 to {most} "
                         f"minibatches {implied.replace('n', 'S', 1)}")
    return shards[0]


def check_group(arrays: MinibatchArrays, spec: StoreSpec, url: str, where: str) -> None:
    """Check a group's four arrays against the spec and against each other: one shard size,
    and room in the data arrays for every marker (the markers grow last)."""
    per_shard = {name: _check_array(getattr(arrays, name), name, spec, url, where)
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


# ----------------------------------------------------------------------------- one group

@dataclass
class MinibatchArrays:
    """The four arrays of one (split, factor) group, and their shard layout."""

    images: zarr.Array
    factors: zarr.Array
    identity: zarr.Array
    complete: zarr.Array
    url: str = ""  # the store and group, to name them in errors
    where: str = ""

    def __len__(self) -> int:
        return self.complete.shape[0]

    @property
    def per_shard(self) -> int:
        """S: minibatches in each shard of this group."""
        return self.complete.shards[0] if self.complete.shards else 1

    def shard_ranges(self, n: int | None = None) -> Sequence[range]:
        """The minibatch ranges of this group's shards (of its first n minibatches), made as
        they are iterated: a group of a million one-minibatch shards costs no list."""
        n, s = len(self) if n is None else n, self.per_shard
        return _ShardRanges(n, s)

    def shard_range(self, shard: int) -> range:
        s = self.per_shard
        return range(shard * s, min(shard * s + s, len(self)))

    def present_shards(self, name: str = "complete") -> list[int]:
        """The shards of one array whose files exist, by index along the minibatch axis.

        Found from a listing of the array's keys (so the cost is that of the files there,
        not of the shape the metadata claims), each key kept only if zarr's own chunk-key
        encoder gives it back for that index: anything else there, such as a `*.partial`
        file a killed write left, is not a shard. (zarr 3.1's decode_chunk_key cannot read
        its own "c/0/0" keys, so the index is read off the key and checked by encoding.)"""
        array = getattr(self, name)
        path = array.store_path.path
        prefix = f"{path}/" if path else ""
        zeros = (0,) * (array.ndim - 1)
        encode = array.metadata.encode_chunk_key
        # where the index sits in a key: where the keys of shards 0 and 1 differ
        first, second = encode((0, *zeros)), encode((1, *zeros))
        at = next(i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)
        head, tail = first[:at], first[at + 1:]

        store = array.store_path.store
        while isinstance(store, WrapperStore):
            store = store._store
        if hasattr(store, "fs"):  # an object store's listings are cached, and another
            store.fs.invalidate_cache()  # process (a worker) may have written since

        async def listing() -> list[str]:
            return [key async for key in array.store_path.store.list_prefix(prefix)]

        try:
            keys = sync(listing())
        except OSError as exc:
            raise StoreReadError(self.url, f"the file list of {self.where}/{name}", exc
                                 ) from None
        count = -(-len(self) // self.per_shard) if len(self) else 0
        found = set()
        for key in keys:
            key = key[len(prefix):] if key.startswith(prefix) else key
            if not (key.startswith(head) and key.endswith(tail)):
                continue
            middle = key[len(head):len(key) - len(tail)]
            if middle.isascii() and middle.isdigit() and int(middle) < count and encode(
                    (int(middle), *zeros)) == key:
                found.add(int(middle))
        return sorted(found)

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
        that of the complete minibatches, not of the group's claimed length)."""
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

    def write_block(self, start: int, images: np.ndarray, values: np.ndarray,
                    identity: np.ndarray, durable: bool = True) -> None:
        """Write minibatches start.. (a whole shard, for the writer that owns it); the
        completeness markers go last, so a crash leaves them unset.

        A whole shard is written from scratch: its old files (markers first) are removed,
        since zarr would otherwise merge into a shard it may not be able to read (damaged).

        `durable` (the default): on a local disk the data shards are fsynced, with the
        directories they are in, before the markers are written, and the markers after, so
        a marker that survives a power cut vouches for data that survived it too. (An object
        store's PUT is durable when it returns.)"""
        stop = start + len(images)
        s = self.per_shard
        if start % s == 0 and stop == min(start + s, len(self)):
            for array in (self.complete, self.identity, self.factors, self.images):
                _erase_shard(array, start // s)
        self.images[start:stop] = images
        self.factors[start:stop] = values
        self.identity[start:stop] = identity
        shards = range(start // s, (stop - 1) // s + 1)
        if durable:
            for array in (self.images, self.factors, self.identity):
                _sync_shards(array, shards)
        self.complete[start:stop] = True
        if durable:
            _sync_shards(self.complete, shards)

    def write(self, k: int, images: np.ndarray, values: np.ndarray,
              identity: np.ndarray) -> None:
        """Write minibatch k alone (a writer that owns its shard, e.g. a test fixture)."""
        self.write_block(k, images[None], values[None], identity[None])


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


def _sync_shards(array: zarr.Array, shards: Iterable[int]) -> None:
    """fsync the shard files of `array` and every directory from theirs up to the array's
    (a first write creates them), on a local disk; nothing elsewhere."""
    store = array.store_path.store
    if not isinstance(store, LocalStore):
        return
    top = Path(store.root) / array.store_path.path
    zeros = (0,) * (array.ndim - 1)
    directories = set()
    for shard in shards:
        path = top / array.metadata.encode_chunk_key((shard, *zeros))
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
    key = array.metadata.encode_chunk_key((shard,) + (0,) * (array.ndim - 1))
    sync((array.store_path / key).delete())


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
    # groups a writer stopped while creating (no markers array yet): not listed
    _unfinished: set = field(default_factory=set, repr=False, compare=False)

    def __getstate__(self) -> dict:
        # a loop cannot cross processes, and each process opens its own arrays
        return self.__dict__ | {"_arrays": {}, "_loop": None, "_loop_pid": -1}

    @property
    def path(self) -> str:
        """The store as the user named it: a local path or a URL."""
        return self.location.url

    @property
    def history(self) -> list[dict]:
        return list(self.root.attrs.asdict()[ATTRS_KEY].get("history", []))

    def groups(self, split: str | None = None) -> Iterator[tuple[str, str]]:
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
        return [f for _, f in self.groups(split) if self.complete(split, f).size]

    def arrays(self, split: str, factor: str) -> MinibatchArrays:
        """The group's arrays, opened once per process (opening reads their metadata) and
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
            check_group(arrays, self.spec, self.path, where)
            self._arrays[key] = arrays
        return self._arrays[key]

    def validate(self) -> None:
        """Check the layout against the spec: each split a group, each factor's node a group
        whose arrays are as `check_group` wants them. A group whose markers array is not there
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
            try:  # what groups() lists: a node zarr cannot parse would fail every reader
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

    def complete(self, split: str, factor: str) -> np.ndarray:
        """Indices of the complete minibatches of (split, factor), ascending."""
        return self.arrays(split, factor).complete_indices()

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

    def identities(self, split: str) -> np.ndarray:
        """Every identity shown in a complete minibatch of `split` (with repeats)."""
        found = [self._read_selected(split, f, self.complete(split, f), "identity").ravel()
                 for _, f in self.groups(split)]
        return np.concatenate(found) if found else np.empty(0, np.int64)

    def read_images(self, split: str, picks: Sequence[tuple[str, int]]) -> list[np.ndarray]:
        """The images of several minibatches, (factor, k) each, read concurrently.

        A zarr read of one minibatch costs about 1 ms of fixed overhead (handing the request
        to zarr's I/O thread and back), more than decompressing it; reading a training step's
        minibatches together pays it once per call instead of once per minibatch."""
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
        return images

    def sample(self, n: int, rng: np.random.Generator, split: str = "test",
               factors: Iterable[str] | None = None) -> Sample:
        """n images drawn without replacement (all of them if fewer) by `rng`, uniformly over
        the images of the complete minibatches of `split` (of the given minibatch types, or
        all), with their factor values and identities. The pool is ordered by minibatch type
        in table order, then minibatch index, then image, and `rng.choice(pool, n)` picks from
        it, so the draw is a pure function of the store and the generator's state."""
        names = list(factors) if factors is not None else self.factors_present(split)
        done = [self.complete(split, f) for f in names]
        b = self.spec.batch_size
        group, within = draw_from_pools([len(d) * b for d in done], n, rng)
        out = Sample(np.empty((len(group), self.spec.image_size, self.spec.image_size),
                              np.uint8),
                     np.empty((len(group), self.spec.n_columns), np.float32),
                     np.empty(len(group), np.int64), np.empty(len(group), dtype=object))
        for g, name in enumerate(names):
            rows = np.flatnonzero(group == g)
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
        per index: slower by 20x, and gigabytes for a large group.)"""
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

    # ------------------------------------------------------------------------- writing

    def require_arrays(self, split: str, factor: str, n: int) -> MinibatchArrays:
        """The group's arrays with room for at least n minibatches, created or grown as
        needed, before any worker writes (nothing is resized while workers run).

        Never shrinks: minibatches already written are kept."""
        s = self.spec
        if n > MAX_MINIBATCHES:
            raise StoreError(f"{n} minibatches of {split}/{factor}: a store's group holds at "
                             f"most {MAX_MINIBATCHES}")
        g = self.root.require_group(f"{split}/{factor}")
        b, h = s.batch_size, s.image_size
        shard = shard_minibatches(b, h)
        if "complete" not in g:
            def make(name, dims, shape, chunks, dtype, fill):
                # dimension names let xarray open the arrays without this package
                g.create_array(name, shape=shape, chunks=chunks,
                               shards=(shard, *chunks[1:]), dtype=dtype,
                               compressors=_inner_chunk_codecs(), fill_value=fill,
                               overwrite=True, dimension_names=dims)
            mb, im = "minibatch", "image"
            make("images", (mb, im, "y", "x"), (n, b, h, h), (1, b, h, h), "uint8", 0)
            make("factors", (mb, im, "factor"), (n, b, s.n_columns), (1, b, s.n_columns),
                 "float32", np.nan)
            make("identity", (mb, im), (n, b), (1, b), "int64", -1)
            make("complete", (mb,), (n,), (1,), "bool", False)
        self._arrays.pop((split, factor), None)
        self._unfinished.discard((split, factor))
        arrays = self.arrays(split, factor)
        if len(arrays) < n:
            # complete grows last, so an interruption leaves no marker beyond the data arrays
            arrays.images.resize((n, b, h, h))
            arrays.factors.resize((n, b, s.n_columns))
            arrays.identity.resize((n, b))
            arrays.complete.resize((n,))
        return arrays

    def append_history(self, entry: dict) -> None:
        attrs = self.root.attrs.asdict()[ATTRS_KEY]
        attrs["history"] = attrs.get("history", []) + [entry]
        self.root.attrs[ATTRS_KEY] = attrs


def draw_from_pools(sizes: Sequence[int], n: int, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray]:
    """n items (all of them if fewer) drawn without replacement, uniformly over pools of the
    given sizes laid end to end: each item's pool and its place in that pool. One
    `rng.choice`, so the draw is a pure function of the sizes and the generator's state."""
    ends = np.cumsum(np.asarray(sizes, dtype=np.int64))
    total = int(ends[-1]) if len(ends) else 0
    pick = rng.choice(total, size=min(n, total), replace=False)
    pool = np.searchsorted(ends, pick, side="right")
    return pool, pick - np.concatenate([[0], ends[:-1]])[pool]


class ShardIndexCache(WrapperStore):
    """A read-only store that keeps the shard indexes it has read.

    Reading one minibatch from a shard costs zarr two reads, the shard's index (the last
    bytes of the file) and the minibatch's chunk; a reader's shards never change under it, so
    each index is read once (about 1.6 kB a shard at 100 minibatches)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
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
    group's arrays against the schema (`validate_attrs`, `Store.validate`) before anything is
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
        return open_store(path, mode="r+")
    location = locate(path)
    for entry in _entries(location, keep):
        location.fs.rm(entry, recursive=True)
    try:
        root = zarr.open_group(location.url, mode="a", zarr_format=3)
    except OSError as exc:
        raise StoreError(f"cannot create a store at {location.url}: {exc.strerror or exc}"
                         ) from exc
    root.attrs[ATTRS_KEY] = spec.to_attrs() | {"history": []}
    return Store(location, spec, root)
