"""What the writer runs: a dataset's picklable recipe, and the generator it loads.

The writer ships the recipe to each worker process, which loads its own generator (and GL
context) once and turns minibatch plans into images; the parent's generator states the
store's spec and refuses impossible requests before any store is touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from dcign.shared.store import StoreSpec

from ..plans import MinibatchPlan


@runtime_checkable
class DatasetGenerator(Protocol):
    """Turns minibatch plans into images for one dataset."""

    @property
    def spec(self) -> StoreSpec:
        """What the store records: dataset kind, sizes, factor table, generator and model."""
        ...

    def check(self, vary: tuple[str, ...]) -> None:
        """Raise DcignError for a request no minibatch varying `vary` could satisfy."""
        ...

    def plan(self, split: str, factor: str, index: int) -> MinibatchPlan:
        """Minibatch `index` of (split, factor): a pure function of these and the seed."""
        ...

    def render(self, plan: MinibatchPlan) -> np.ndarray:
        """The plan's images, uint8 (B, H, W)."""
        ...

    def close(self) -> None:
        """Free what rendering holds (a GL context)."""
        ...


@runtime_checkable
class DatasetRecipe(Protocol):
    """Everything that determines a store's images; picklable, for worker processes."""

    batch_size: int
    needs_gl: bool  # whether a GL platform must be chosen before its generator renders

    def load(self) -> DatasetGenerator:
        ...


# The paper's images and minibatches, every dataset's defaults.
PAPER_IMAGE_SIZE = 150
PAPER_BATCH_SIZE = 20


@dataclass(frozen=True)
class MinibatchCounts:
    """Minibatches per varying factor that a dataset holds by default."""

    train: int
    test: int
