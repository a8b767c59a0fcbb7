"""The Zarr v3 store schema and the project's one data API: the only module that knows how a
dcign dataset is laid out, and the way every reader (trainer, evaluation, tools) reads it.

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

Reading, in the spirit of disentanglement_lib's `GroundTruthData`: `open_store(path)`, then
`store.groups(split)` lists what is there, `store.complete(split, factor)` the complete
minibatches, `store.minibatch(split, factor, k)` reads one, `store.minibatches(...)` iterates,
`store.read_complete(...)` stacks a group, `store.read_images(...)` reads several minibatches'
images concurrently, and `store.sample(n, rng)` draws a seeded sample of images with their
factor values.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import weakref
from collections.abc import Iterable, Iterator, Sequence
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

    path: Path
    spec: StoreSpec
    root: zarr.Group = field(repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False, compare=False)
    _loop_pid: int = field(default=-1, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return self.__dict__ | {"_loop": None, "_loop_pid": -1}  # a loop cannot be pickled

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
                if f.name in present:
                    yield name, f.name

    def factors_present(self, split: str) -> list[str]:
        """The factors with at least one complete minibatch in `split`, in table order."""
        return [f for _, f in self.groups(split) if self.complete(split, f).size]

    def complete(self, split: str, factor: str) -> np.ndarray:
        """Indices of the complete minibatches of (split, factor), ascending."""
        return np.flatnonzero(self.arrays(split, factor).completed())

    def minibatch(self, split: str, factor: str, k: int) -> Minibatch:
        """Minibatch k of (split, factor); refuses one that is absent or incomplete."""
        arrays = self.arrays(split, factor)
        if not 0 <= k < len(arrays) or not bool(arrays.complete[k]):
            raise StoreError(f"{split}/{factor} minibatch {k} is not in {self.path}")
        return Minibatch(split, factor, k, *arrays.read(k))

    def minibatches(self, split: str, factor: str) -> Iterator[Minibatch]:
        """Every complete minibatch of (split, factor), in index order."""
        arrays = self.arrays(split, factor)
        for k in self.complete(split, factor):
            yield Minibatch(split, factor, int(k), *arrays.read(int(k)))

    def read_complete(self, split: str, factor: str) -> Stacked:
        """Every complete minibatch of (split, factor) in one read, stacked."""
        arrays = self.arrays(split, factor)
        done = arrays.completed()
        return Stacked(split, factor, np.flatnonzero(done), np.asarray(arrays.images[:])[done],
                       np.asarray(arrays.factors[:])[done], np.asarray(arrays.identity[:])[done])

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

        async def all_of_them() -> list[np.ndarray]:
            return await asyncio.gather(*(arrays[f].getitem(k) for f, k in picks))

        return self._event_loop().run_until_complete(all_of_them())

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
        sizes = np.array([len(d) * b for d in done], dtype=np.int64)
        pick = rng.choice(int(sizes.sum()), size=min(n, int(sizes.sum())), replace=False)
        group = np.searchsorted(np.cumsum(sizes), pick, side="right")
        within = pick - np.concatenate([[0], np.cumsum(sizes)[:-1]])[group]
        out = Sample(np.empty((len(pick), self.spec.image_size, self.spec.image_size), np.uint8),
                     np.empty((len(pick), self.spec.n_columns), np.float32),
                     np.empty(len(pick), np.int64), np.empty(len(pick), dtype=object))
        for g, name in enumerate(names):
            rows = np.flatnonzero(group == g)
            if not rows.size:
                continue
            minibatch, image = np.divmod(within[rows], b)
            needed, position = np.unique(done[g][minibatch], return_inverse=True)
            for array, target in (("images", out.images), ("factors", out.values),
                                  ("identity", out.identity)):
                target[rows] = self._read_selected(split, name, needed, array)[position, image]
            out.factor[rows] = name
        return out

    def _read_selected(self, split: str, factor: str, ks: np.ndarray, name: str) -> np.ndarray:
        """Minibatches `ks` of one array, in one orthogonal read."""
        array = getattr(self.arrays(split, factor), name)
        if not len(ks):
            return np.empty((0, *array.shape[1:]), array.dtype)
        return np.asarray(array.get_orthogonal_selection((np.asarray(ks, dtype=np.int64),)))

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        """This process's own loop for concurrent reads (a forked or spawned copy makes its
        own: a loop cannot cross processes)."""
        if self._loop is None or self._loop_pid != os.getpid():
            self._loop, self._loop_pid = asyncio.new_event_loop(), os.getpid()
            weakref.finalize(self, self._loop.close)
        return self._loop

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
