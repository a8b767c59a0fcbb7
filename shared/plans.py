"""Minibatch plans: which identity and factor values each image of a minibatch shows, and
the random streams and train/test splits they draw from.

Minibatch k of (split, factor) is a pure function of (seed, split, factor, k): its rng
is seeded from exactly those, so reruns are byte-identical, interrupted runs resume, and any
process can render any minibatch without coordination.

The invariant that matters most lives here: the varying factor takes `batch_size` distinct
values; every other factor and the identity are drawn once and repeated bit-identically.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from dcign.shared.errors import DcignError
from dcign.shared.factors import Factor, continuous_factors
from dcign.shared.store_schema import SPLITS

# The word after the seed in every random generator's key: separate streams, so minibatch
# draws, identity draws and file splits never share a generator state. Changing one changes
# every store made from that stream.
STREAM_MINIBATCH = 0
STREAM_IDENTITY = 1
STREAM_FILE_SPLIT = 2
STREAM_COLOUR = 3  # an rgb store's extra draws (a chair's colours): gray draws never move


class ChairSplit(NamedTuple):
    chairs: int  # in all, train + test
    test: int


# The paper's chairs: Aubry et al.'s 1357 models, 150 of them held out for testing.
PAPER_CHAIRS = ChairSplit(chairs=1357, test=150)


@dataclass(frozen=True)
class IdentityPools:
    """Identity ids [0, train) are training faces, [train, train + test) test faces: disjoint."""

    train: int = 10_000
    test: int = 1_000

    def pool(self, split: str) -> range:
        if split == "train":
            return range(0, self.train)
        return range(self.train, self.train + self.test)


@dataclass(frozen=True)
class ListedPools:
    """Identity pools given as explicit id lists (e.g. a seeded split of a mesh folder)."""

    train: tuple[int, ...]
    test: tuple[int, ...]

    def pool(self, split: str) -> tuple[int, ...]:
        return self.train if split == "train" else self.test

    def to_attrs(self) -> dict:
        """As a store records it (JSON lists, so a reopened store compares equal)."""
        return {"train": list(self.train), "test": list(self.test)}


@dataclass(frozen=True)
class MinibatchPlan:
    split: str
    factor: str
    index: int
    identities: np.ndarray  # (B,) int64
    values: np.ndarray  # (B, F) float32, columns in factor-table order


def minibatch_rng(seed: int, split: str, factor: str, index: int) -> np.random.Generator:
    # crc32 of the name, not hash(): stable across processes and Python versions
    key = [seed, STREAM_MINIBATCH, SPLITS.index(split), zlib.crc32(factor.encode()), index]
    return np.random.default_rng(key)


def identity_rng(seed: int, identity: int) -> np.random.Generator:
    return np.random.default_rng([seed, STREAM_IDENTITY, identity])


def colour_rng(seed: int, identity: int) -> np.random.Generator:
    """An identity's colour draws, apart from its identity stream (which gray stores share)."""
    return np.random.default_rng([seed, STREAM_COLOUR, identity])


def distinct_values(rng: np.random.Generator, low: float, high: float, n: int) -> np.ndarray:
    """n distinct float32 values spread over [low, high]: one uniform draw in each of n equal
    strata, so no two coincide (as they can with independent draws) and the sweep covers the
    whole range."""
    edges = np.linspace(low, high, n + 1)
    values = (edges[:-1] + rng.random(n) * np.diff(edges)).astype(np.float32)
    if len(np.unique(values)) != n:  # only if the range is too narrow for float32
        raise DcignError(f"cannot draw {n} distinct values in [{low}, {high}]")
    return values


def check_grid(factor: Factor, grid: dict[str, np.ndarray] | None, batch_size: int) -> None:
    """Refuse a minibatch that needs more distinct values than the factor's grid has."""
    if grid and factor.name in grid and batch_size > len(grid[factor.name]):
        raise DcignError(f"a minibatch varying {factor.name} needs {batch_size} distinct values "
                         f"but the view grid has {len(grid[factor.name])}: use --batch-size "
                         f"{len(grid[factor.name])} or less, or --views continuous")


def check_pools(pools: IdentityPools | ListedPools, batch_size: int,
                splits: tuple[str, ...] = SPLITS, noun: str = "identities") -> None:
    """Refuse an intrinsic minibatch of `batch_size` distinct identities that a split's pool
    is too small to fill (`noun`: what the dataset's identities are, for the message)."""
    for split in splits:
        have = len(pools.pool(split))
        if batch_size > have:
            raise DcignError(f"a {split} minibatch of {batch_size} distinct {noun} needs at "
                             f"least that many {split} {noun} (have {have}): lower --batch-size")


def plan_minibatch(seed: int, split: str, factor: Factor, index: int,
                   factors: tuple[Factor, ...], batch_size: int,
                   pools: IdentityPools | ListedPools,
                   grid: dict[str, np.ndarray] | None = None) -> MinibatchPlan:
    """The identities and factor values of minibatch `index` in which only `factor` varies.

    `grid` optionally restricts factors to discrete values (e.g. the chairs' 30 azimuths and
    2 elevations): a fixed factor then takes one grid value, a varying one `batch_size`
    distinct grid values drawn without replacement. Factors not in `grid` are continuous.
    """
    grid = grid or {}
    check_grid(factor, grid, batch_size)
    rng = minibatch_rng(seed, split, factor.name, index)
    columns = continuous_factors(factors)
    fixed = np.array([rng.choice(grid[f.name]) if f.name in grid else rng.uniform(f.low, f.high)
                      for f in columns], dtype=np.float32)
    pool = pools.pool(split)
    identity = pool[int(rng.integers(len(pool)))]
    values = np.tile(fixed, (batch_size, 1))
    identities = np.full(batch_size, identity, dtype=np.int64)
    if factor.is_intrinsic:
        check_pools(pools, batch_size, (split,))
        identities = np.asarray(pool)[rng.choice(len(pool), size=batch_size, replace=False)]
    elif factor.name in grid:
        values[:, factor.column] = rng.choice(grid[factor.name], size=batch_size, replace=False)
    else:
        values[:, factor.column] = distinct_values(rng, factor.low, factor.high, batch_size)
    return MinibatchPlan(split, factor.name, index, identities.astype(np.int64), values)


def paper_test_share(n: int) -> int:
    """How many of n listed chairs the paper's share (150 of 1357) holds out: at least one."""
    return max(1, round(n * PAPER_CHAIRS.test / PAPER_CHAIRS.chairs))


def check_test_count(test: int, n: int) -> None:
    """Refuse a test split that leaves no chair for one of the two splits."""
    if not 0 < test < n:
        raise DcignError(f"--test-chairs must lie between 1 and {n - 1} (got {test})")


def split_files(n: int, test: int, seed: int) -> ListedPools:
    """A seeded, disjoint train/test split of n listed objects (mesh files, Aubry chairs):
    identities are their indices in the sorted list."""
    order = np.random.default_rng([seed, STREAM_FILE_SPLIT, n]).permutation(n)
    return ListedPools(train=tuple(sorted(int(i) for i in order[test:])),
                       test=tuple(sorted(int(i) for i in order[:test])))
