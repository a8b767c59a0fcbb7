"""The Zarr v3 store schema: the one module that knows how a dcign dataset is laid out.

    STORE/                      attrs["dcign"]: schema version, dataset kind, image size,
                                minibatch size, factor table, generator (name, version, seed,
                                scene constants), object model (name, fingerprint), run history
      <split>/<factor>/images   uint8   (n, B, H, W)  one chunk per minibatch, zstd
      <split>/<factor>/factors  float32 (n, B, F)     every image's true factor values
      <split>/<factor>/identity int64   (n, B)        which face / chair
      <split>/<factor>/complete bool    (n,)          set only after the arrays above

Minibatches write to disjoint chunks (complete too: one element per chunk), so any number of
processes may fill one store without a lock. Only the coordinating process resizes arrays or
writes attributes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr
import zarr.codecs

from .errors import StoreError
from .factors import Factor, continuous_factors

SCHEMA_VERSION = 1
SPLITS = ("train", "test")
ATTRS_KEY = "dcign"
_COMPRESSOR = zarr.codecs.ZstdCodec(level=3)


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


def _is_store(path: Path) -> bool:
    return (path / "zarr.json").is_file()


def _read_attrs(path: Path) -> dict:
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for unreadable metadata
        raise StoreError(f"{path} is not a readable Zarr store ({type(exc).__name__})") from exc
    attrs = group.attrs.asdict()
    if ATTRS_KEY not in attrs:
        raise StoreError(f"{path} is a Zarr store but not a dcign dataset")
    return attrs[ATTRS_KEY]


def read_spec(path: str | Path) -> StoreSpec:
    """The spec of an existing store; refuses a missing store or one of another schema."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"no store at {path}")
    if not _is_store(path):
        raise StoreError(f"{path} is not a Zarr store (no zarr.json)")
    attrs = _read_attrs(path)
    version = attrs.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"{path} has store schema {version!r}; this dcign reads schema {SCHEMA_VERSION}"
        )
    try:
        return StoreSpec.from_attrs(attrs)
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"{path} has damaged dcign attributes ({exc})") from exc


@dataclass
class MinibatchArrays:
    """The four arrays of one (split, factor) group."""

    images: zarr.Array
    factors: zarr.Array
    identity: zarr.Array
    complete: zarr.Array

    def __len__(self) -> int:
        return self.complete.shape[0]

    def completed(self) -> np.ndarray:
        return np.asarray(self.complete[:], dtype=bool)

    def write(self, k: int, images: np.ndarray, factors: np.ndarray, identity: np.ndarray) -> None:
        """Write minibatch k; the completeness marker goes last so a crash leaves it unset."""
        self.images[k] = images
        self.factors[k] = factors
        self.identity[k] = identity
        self.complete[k] = True

    def read(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.images[k], self.factors[k], self.identity[k]


@dataclass
class Store:
    """An opened dcign store."""

    path: Path
    spec: StoreSpec
    root: zarr.Group = field(repr=False)

    @property
    def history(self) -> list[dict]:
        return list(self.root.attrs.asdict()[ATTRS_KEY].get("history", []))

    def groups(self) -> Iterator[tuple[str, str]]:
        """(split, factor) pairs present in the store, in table order."""
        for split in SPLITS:
            if split not in self.root:
                continue
            present = set(self.root[split].group_keys())
            for f in self.spec.factors:
                if f.name in present:
                    yield split, f.name

    def arrays(self, split: str, factor: str) -> MinibatchArrays:
        try:
            g = self.root[f"{split}/{factor}"]
            return MinibatchArrays(g["images"], g["factors"], g["identity"], g["complete"])
        except KeyError as exc:
            raise StoreError(f"{self.path} has no {split}/{factor} minibatches") from exc

    def require_arrays(self, split: str, factor: str, n: int) -> MinibatchArrays:
        """The group's arrays with room for at least n minibatches, created or grown as needed.

        Never shrinks: minibatches already written are kept.
        """
        s = self.spec
        g = self.root.require_group(f"{split}/{factor}")
        b, h = s.batch_size, s.image_size
        if "complete" not in g:
            def make(name, dims, shape, chunks, dtype, fill):
                # dimension names let xarray open the arrays without this package
                g.create_array(name, shape=shape, chunks=chunks, dtype=dtype,
                               compressors=_COMPRESSOR, fill_value=fill, overwrite=True,
                               dimension_names=dims)
            mb, im = "minibatch", "image"
            make("images", (mb, im, "y", "x"), (n, b, h, h), (1, b, h, h), "uint8", 0)
            make("factors", (mb, im, "factor"), (n, b, s.n_columns), (1, b, s.n_columns),
                 "float32", np.nan)
            make("identity", (mb, im), (n, b), (1, b), "int64", -1)
            make("complete", (mb,), (n,), (1,), "bool", False)
        arrays = MinibatchArrays(g["images"], g["factors"], g["identity"], g["complete"])
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


def open_store(path: str | Path, mode: str = "r") -> Store:
    """Open an existing dcign store (mode 'r' or 'r+'), validating its schema."""
    spec = read_spec(path)
    return Store(Path(path), spec, zarr.open_group(str(path), mode=mode))


def create_or_open_store(path: str | Path, spec: StoreSpec, overwrite: bool = False) -> Store:
    """Open a store for adding minibatches made as `spec`, creating it if needed.

    An existing store made with another spec is refused (or, with `overwrite`, deleted).
    A path that exists but is not a dcign store is always refused: it is not ours to delete.
    """
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise StoreError(f"{path} exists and is not a store directory")
        if _is_store(path):
            old = read_spec(path) if not overwrite else None
            if old is not None:
                reasons = differences(old, spec)
                if reasons:
                    raise StoreError(
                        f"{path} was made differently: {'; '.join(reasons)} "
                        "(choose another --out, or pass --overwrite to replace it)"
                    )
                return open_store(path, mode="r+")
            _read_attrs(path)  # only a dcign store may be overwritten
            shutil.rmtree(path)
        elif any(path.iterdir()):
            raise StoreError(f"{path} is a non-empty directory that is not a dcign store")
    try:
        root = zarr.open_group(str(path), mode="w", zarr_format=3)
    except OSError as exc:
        raise StoreError(f"cannot create a store at {path}: {exc.strerror or exc}") from exc
    root.attrs[ATTRS_KEY] = spec.to_attrs() | {"history": []}
    return Store(path, spec, root)
