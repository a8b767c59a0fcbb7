"""The store's schema: what a dcign Zarr v3 store holds and what its metadata may say. No
reading or writing of minibatches happens here; the reader (`store.py`) and the writer
(`store_writer.py`) both follow it.

    STORE/                      attrs["dcign"]: schema version, dataset kind, image size,
                                minibatch size, factor table, generator (name, version, seed,
                                scene constants), object model (name, fingerprint), run history
      <split>/<factor>/images   uint8   (n, B, H, W), or (n, B, H, W, 3) for an rgb store
      <split>/<factor>/factors  float32 (n, B, F)     every image's true factor values
      <split>/<factor>/identity int64   (n, B)        which face / chair
      <split>/<factor>/complete bool    (n,)          set only after the arrays above

Schema 2 (this one): every array is sharded along the minibatch axis, S minibatches to a
shard file (the same S for the four arrays of a section), one minibatch to an inner chunk,
each inner chunk zstd-compressed and then checksummed (crc32c), so a flipped bit fails at
read time in every Zarr reader. Schema 1 (one file per minibatch and array, no checksums) is
refused with the way to convert it (`dcign-store migrate`).

Colour: a store is gray (the paper's, one channel) unless its attributes say `"color":
"rgb"`; then its images carry a last axis of three channels, named "channel". The key is
written only for rgb, so a gray store's attributes are what they were before colour existed.

Here: the spec (`StoreSpec`, its attributes, `differences`), reading and validating the
attributes (`read_spec`), checking arrays' metadata, the codecs and fill values, and the
shard files' keys. The contract between the two sides is what this module fixes: the writer
sets the markers last (so a reader trusts a marker), and the codec chain checksums every
chunk (so a damaged one is named); a chunk that reads back as its fill value (`FILL_VALUES`)
is a missing one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
import zarr.codecs

from .errors import StoreError, StoreReadError
from .factors import LATENT_SIZE, Factor, continuous_factors
from .images import CHANNELS, GRAY
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
    """S, the minibatches in a shard, for a new section of this minibatch and image size. (An
    rgb store asks for B·3: its minibatch has the bytes of 3·B gray images.)"""
    raw = batch_size * image_size * image_size
    return max(1, min(SHARD_MINIBATCHES, SHARD_RAW_BYTES // raw))


def inner_chunk_codecs() -> list:
    """What each minibatch's chunk goes through after its bytes: zstd, then a crc32c checksum."""
    return [zarr.codecs.ZstdCodec(level=ZSTD_LEVEL), zarr.codecs.Crc32cCodec()]


# What a chunk that was never written reads back as: no stored minibatch is all black, has a
# NaN factor or identity -1, so a complete minibatch that reads so has lost its chunk.
FILL_VALUES = {"images": 0, "factors": np.nan, "identity": -1, "complete": False}
# dimension names let xarray open the arrays without this package
DIMENSIONS = {"images": ("minibatch", "image", "y", "x"),
              "factors": ("minibatch", "image", "factor"),
              "identity": ("minibatch", "image"), "complete": ("minibatch",)}
# An rgb store's images (`images.CHANNELS`) have one more axis, named so.
CHANNEL_DIMENSION = "channel"


def dimension_names(spec: StoreSpec) -> dict[str, tuple[str, ...]]:
    """Each array's dimension names for a store of this spec: an rgb store's images end in
    the channel axis."""
    if spec.color == GRAY:
        return DIMENSIONS
    return DIMENSIONS | {"images": (*DIMENSIONS["images"], CHANNEL_DIMENSION)}


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
    color: str = GRAY  # GRAY or RGB

    def to_attrs(self) -> dict:
        attrs = {
            "schema_version": self.schema_version,
            "dataset": self.dataset,
            "image_size": self.image_size,
            "batch_size": self.batch_size,
            "factors": [f.to_attrs() for f in self.factors],
            "generator": self.generator,
            "model": self.model,
        }
        if self.color != GRAY:  # a gray store's attributes stay as they were before colour
            attrs["color"] = self.color
        return attrs

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
            color=attrs.get("color", GRAY),
        )

    def factor(self, name: str) -> Factor:
        for f in self.factors:
            if f.name == name:
                return f
        raise StoreError(f"this {self.dataset} store has no factor {name!r}")

    @property
    def n_columns(self) -> int:
        return len(continuous_factors(self.factors))

    @property
    def channels(self) -> int:
        """Colour channels an image has: 1 (gray) or 3 (rgb)."""
        return CHANNELS[self.color]

    @property
    def image_shape(self) -> tuple[int, ...]:
        """One image's array shape: (H, W) gray, (H, W, 3) rgb."""
        h = self.image_size
        return (h, h) if self.color == GRAY else (h, h, self.channels)


def differences(old: StoreSpec, new: StoreSpec) -> list[str]:
    """Human-readable reasons why `new` minibatches cannot be added to a store made as `old`."""
    a, b = old.to_attrs(), new.to_attrs()
    a.setdefault("color", old.color)  # written only for rgb; compared always
    b.setdefault("color", new.color)
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


# ----------------------------------------------------------------------------- validation
#
# A store is checked against this schema when it is opened, before anything is allocated or
# indexed from what it states: its attributes field by field, then every section's arrays
# (dtype, shape, chunk and shard shape) against what the attributes imply. A store that
# breaks a rule is refused in one line naming the field. The limits are far above any store
# dcign makes (the paper's faces: 150x150, minibatches of 20, 3,000 a section) and low enough
# that one minibatch, one shard and one section's markers fit in memory.

MAX_IMAGE_SIZE = 4096
MAX_BATCH_SIZE = 10_000
MAX_MINIBATCH_BYTES = 2**30  # one minibatch's raw images
MAX_MINIBATCHES = 10_000_000  # in one section: its markers are 10 MB
MAX_FACTORS = 64
MAX_SEED = 2**64 - 1
FACTOR_FIELDS = ("name", "unit", "low", "high", "latents", "column", "description")
REQUIRED_ATTRS = ("schema_version", "dataset", "image_size", "batch_size", "factors",
                  "generator", "model")
# a factor's name is a section's Zarr group name in the store's paths: no separators, no dots
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
    color = attrs.get("color", GRAY)
    if not isinstance(color, str) or color not in CHANNELS:
        raise _bad(url, "color", f"{_shown(color)} is not one of {', '.join(CHANNELS)}")
    c = CHANNELS[color]
    if b * h * h * c > MAX_MINIBATCH_BYTES:
        shape = f"{h}x{h}" if c == 1 else f"{h}x{h}x{c}"
        raise _bad(url, "batch_size", f"{b} images of {shape} make a minibatch of "
                                      f"{b * h * h * c} bytes, over {MAX_MINIBATCH_BYTES}")
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



def array_tails(spec: StoreSpec) -> dict[str, tuple[int, ...]]:
    """Each array's shape after its minibatch axis, as the spec implies it."""
    b = spec.batch_size
    return {"images": (b, *spec.image_shape), "factors": (b, spec.n_columns), "identity": (b,),
            "complete": ()}


def check_array(array: object, name: str, spec: StoreSpec, url: str, where: str) -> int:
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
    most = shard_minibatches(spec.batch_size * spec.channels, spec.image_size)
    if shards[1:] != tail or not 1 <= shards[0] <= most:
        raise StoreError(f"{url}: array {at} has shards {_shown(shards)}, not 1 to {most} "
                         f"minibatches {implied.replace('n', 'S', 1)}")
    return shards[0]



# ----------------------------------------------------------------------------- shard keys
#
# A shard's file is named by zarr's own chunk-key encoding of (shard, 0, ...), relative to
# its array. zarr 3.1's decode_chunk_key cannot read its own "c/0/0" keys, so a listed key is
# read back here by locating the index and checking it by encoding it again.

def shard_key(array: zarr.Array, shard: int) -> str:
    """The key of one shard's file, relative to its array."""
    return array.metadata.encode_chunk_key((shard,) + (0,) * (array.ndim - 1))


def shard_of_key(array: zarr.Array, key: str, count: int) -> int | None:
    """The shard (below `count`) whose file `key` (relative to the array) is, or None when
    it names none: anything else there, such as a `*.partial` file a killed write left."""
    first, second = shard_key(array, 0), shard_key(array, 1)
    # where the index sits in a key: where the keys of shards 0 and 1 differ
    at = next(i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)
    head, tail = first[:at], first[at + 1:]
    if not (key.startswith(head) and key.endswith(tail)):
        return None
    middle = key[len(head):len(key) - len(tail)]
    if middle.isascii() and middle.isdigit() and int(middle) < count and shard_key(
            array, int(middle)) == key:
        return int(middle)
    return None
