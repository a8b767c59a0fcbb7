"""The Aubry chairs dataset: the public "Seeing 3D chairs" renders (Aubry et al. 2014),
imported into a chairs store by the same writer that renders the other datasets.

Its "rendering" reads, crops and grays the PNGs a plan names (see `objects.aubry_tree`), so
no GL context is made. Minibatches are assembled as the renderer's are: azimuth minibatches
show one chair at one elevation from distinct azimuths, intrinsic minibatches distinct chairs
from one view; minibatch k is a pure function of (seed, split, factor, k), and chairs are
split disjointly between train and test from the seed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np

from dcign.shared.errors import DcignError
from dcign.shared.factors import chair_factors
from dcign.shared.images import GRAY_WEIGHTS
from dcign.shared.plans import (
    MinibatchPlan,
    check_test_count,
    minibatch_rng,
    paper_test_share,
    split_files,
)
from dcign.shared.store import SPLITS, StoreSpec

from ..objects.aubry_tree import AubryTree, View, check_crop, crop_gray, read_rgb
from .base import PAPER_BATCH_SIZE, PAPER_IMAGE_SIZE
from .chairs import CHAIR_MINIBATCHES

# Bump when the images for a given (seed, options) would change: stores refuse to mix.
IMPORTER_VERSION = 2  # 2: t360 is t000's view, not a view of its own
AUBRY_GENERATOR = "dcign.render.aubry"  # the label stores record
VARY = ("azimuth", "intrinsic")  # elevation has the archive's two values: held fixed
AUBRY_MINIBATCHES = CHAIR_MINIBATCHES  # the same 81,000 images as the chairs dataset


@dataclass(frozen=True)
class AubryRecipe:
    """The scanned tree and the import's options; picklable, for worker processes."""

    tree: AubryTree
    image_size: int = PAPER_IMAGE_SIZE
    batch_size: int = PAPER_BATCH_SIZE
    crop: int = 450  # side of the central square kept from each 600x600 render
    seed: int = 0
    test_chairs: int | None = None  # None: the paper's share of the tree's chairs
    needs_gl: ClassVar[bool] = False

    def load(self) -> AubryGenerator:
        return AubryGenerator(self)


class AubryGenerator:
    """Plans minibatches over the views that exist and reads their images."""

    def __init__(self, recipe: AubryRecipe):
        self.recipe = recipe
        tree = recipe.tree
        n = len(tree.chairs)
        self.test_chairs = (paper_test_share(n) if recipe.test_chairs is None
                            else recipe.test_chairs)
        self.pools = split_files(n, self.test_chairs, recipe.seed)
        self.factors = chair_factors("grid", (tree.elevations[0], tree.elevations[-1]))
        self.sweeps: dict[str, list[tuple[int, float]]] = {}  # (chair, elevation) with >= B
        self.shared: dict[str, list[tuple[View, tuple[int, ...]]]] = {}  # view, >= B chairs
        for split in SPLITS:
            self.sweeps[split], self.shared[split] = self._fillable(self.pools.pool(split))

    def _fillable(self, pool) -> tuple[list, list]:
        """The azimuth sweeps (a chair at one elevation) and the shared views (one view of
        several chairs) of `pool` that can fill a minibatch of distinct values."""
        b = self.recipe.batch_size
        per_elevation = defaultdict(list)
        chairs_by_view = defaultdict(list)
        for c in pool:
            for (azimuth, elevation) in self.recipe.tree.views[c]:
                per_elevation[(c, elevation)].append(azimuth)
                chairs_by_view[(azimuth, elevation)].append(c)
        sweeps = sorted(k for k, a in per_elevation.items() if len(a) >= b)
        shared = sorted((v, tuple(cs)) for v, cs in chairs_by_view.items() if len(cs) >= b)
        return sweeps, shared

    @cached_property
    def spec(self) -> StoreSpec:
        """What the store records; the fingerprint stats every image, so once."""
        r = self.recipe
        generator = {"name": AUBRY_GENERATOR, "version": IMPORTER_VERSION,
                     "seed": r.seed, "crop": r.crop, "gray_weights": GRAY_WEIGHTS.tolist(),
                     "identities": self.pools.to_attrs()}
        model = {"name": "Seeing 3D chairs renders", "fingerprint": r.tree.fingerprint(),
                 "source": str(r.tree.root.resolve()), "chairs": list(r.tree.chairs)}
        return StoreSpec("chairs", r.image_size, r.batch_size, self.factors, generator, model)

    def check(self, vary: tuple[str, ...]) -> None:
        """Refuse a split, crop or request whose minibatches the archive cannot fill."""
        tree, b = self.recipe.tree, self.recipe.batch_size
        check_test_count(self.test_chairs, len(tree.chairs))
        for split in SPLITS:
            pool = self.pools.pool(split)
            if "azimuth" in vary and not self.sweeps[split]:
                most = max(len([v for v in tree.views[c] if v[1] == e])
                           for c in pool for e in tree.elevations)
                raise DcignError(f"no {split} chair has {b} distinct azimuths at one "
                                 f"elevation (at most {most}): lower --batch-size")
            if "intrinsic" in vary and not self.shared[split]:
                raise DcignError(f"no view is shared by {b} {split} chairs ({len(pool)} in "
                                 "the split): lower --batch-size or --test-chairs")
        check_crop(tree, self.recipe.crop)

    def plan(self, split: str, factor: str, index: int) -> MinibatchPlan:
        """Minibatch `index` of (split, factor): a pure function of these and the seed."""
        rng = minibatch_rng(self.recipe.seed, split, factor, index)
        b = self.recipe.batch_size
        if factor == "azimuth":
            chair, elevation = self.sweeps[split][int(rng.integers(len(self.sweeps[split])))]
            azimuths = sorted(a for a, e in self.recipe.tree.views[chair] if e == elevation)
            chosen = rng.choice(np.float32(azimuths), size=b, replace=False)
            values = np.stack([chosen, np.full(b, elevation, np.float32)], axis=1)
            identities = np.full(b, chair, np.int64)
        else:
            (azimuth, elevation), chairs = self.shared[split][
                int(rng.integers(len(self.shared[split])))]
            identities = np.asarray(chairs, np.int64)[rng.choice(len(chairs), b, replace=False)]
            values = np.tile(np.float32([azimuth, elevation]), (b, 1))
        return MinibatchPlan(split, factor, index, identities, values.astype(np.float32))

    def render(self, plan: MinibatchPlan) -> np.ndarray:
        """uint8 images (B, H, W): the renders the plan names, cropped, gray and resized."""
        r = self.recipe
        images = np.empty((len(plan.identities), r.image_size, r.image_size), np.uint8)
        for i, (chair, (azimuth, elevation)) in enumerate(
                zip(plan.identities, plan.values, strict=True)):
            path = r.tree.views[int(chair)][(float(azimuth), float(elevation))]
            images[i] = crop_gray(read_rgb(path), r.crop, r.image_size)
        return images

    def close(self) -> None:
        """Nothing to free: no GL context, no open files."""
