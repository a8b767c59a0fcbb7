"""What the writer runs: a dataset's picklable recipe, and the generator it loads.

The writer ships the recipe to each worker process, which loads its own generator (and GL
context) once and turns minibatch plans into images; the parent's generator states the
store's spec and refuses impossible requests before any store is touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from dcign.shared.factors import Factor
from dcign.shared.plans import IdentityPools, ListedPools, MinibatchPlan, plan_minibatch
from dcign.shared.store import StoreSpec

from ..renderer.offscreen import Renderer
from ..renderer.poses import Lighting


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
        """The plan's images, uint8 (B, H, W), or (B, H, W, 3) for an rgb store."""
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


class GLRecipe(Protocol):
    """What a rendering generator's life cycle reads of its recipe."""

    seed: int
    image_size: int
    batch_size: int
    lighting: Lighting
    color: str  # images.GRAY or images.RGB


class RenderingGenerator:
    """The life cycle of a generator that renders with GL (faces, chairs): minibatches planned
    over its identity pools (and view grid), its renderer (and GL context) made on first use,
    a minibatch rendered image by image as `_posed` places the object and the light, and
    everything freed by `close`. Subclasses give `recipe`, `spec`, `factors`, `pools`,
    `grid`, `shading` and `_posed` (which uploads each object's mesh once)."""

    recipe: GLRecipe
    spec: StoreSpec
    factors: tuple[Factor, ...]
    pools: IdentityPools | ListedPools
    grid: dict[str, np.ndarray]  # factor → the values a grid factor takes; {}: no grid
    shading: ClassVar[str] = "pixel"  # the Renderer's shader pair: "pixel" or "vertex"
    _renderer: Renderer | None = None

    def plan(self, split: str, factor: str, index: int) -> MinibatchPlan:
        """Minibatch `index` of (split, factor): a pure function of these and the seed."""
        r = self.recipe
        return plan_minibatch(r.seed, split, self.spec.factor(factor), index, self.factors,
                              r.batch_size, self.pools, self.grid)

    def _posed(self, plan: MinibatchPlan) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(image index, object rotation, direction toward the light) of each image, with
        the image's mesh uploaded to `renderer()`."""
        raise NotImplementedError

    def renderer(self) -> Renderer:
        if self._renderer is None:
            self._renderer = Renderer(self.recipe.image_size, self.recipe.lighting,
                                      shading=self.shading, color=self.recipe.color)
        return self._renderer

    def render(self, plan: MinibatchPlan) -> np.ndarray:
        """uint8 images (B, H, W), (B, H, W, 3) rgb, of one minibatch plan."""
        images = np.empty((len(plan.identities), *self.spec.image_shape), dtype=np.uint8)
        for i, rotation, toward_light in self._posed(plan):
            images[i] = self.renderer().render(rotation, toward_light)
        return images

    def rasterise_depth_only(self, plan: MinibatchPlan) -> None:
        """The same work as `render` up to rasterisation, depth only: the benchmark floor."""
        for _, rotation, _ in self._posed(plan):
            self.renderer().rasterise_depth_only(rotation)

    def close(self) -> None:
        """Free the GL context (a later render makes a new one)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


# The paper's images and minibatches, every dataset's defaults.
PAPER_IMAGE_SIZE = 150
PAPER_BATCH_SIZE = 20


@dataclass(frozen=True)
class MinibatchCounts:
    """Minibatches per varying factor that a dataset holds by default."""

    train: int
    test: int
