"""Import the public "Seeing 3D chairs" renders (Aubry et al. 2014) into a dcign chairs store.

The archive's layout is `rendered_chairs/<model-id>/renders/image_NNN_pEEE_tAAA_r096.png`:
600x600 RGB on white, p the camera elevation and t the azimuth in degrees. Each image is
cropped to its central square (`crop` pixels), converted to gray as 0.21 R + 0.72 G + 0.07 B
and box-filtered down to `size`. Minibatches are assembled as the renderer's are: azimuth
minibatches show one chair at one elevation from distinct azimuths, intrinsic minibatches
distinct chairs from one view; minibatch k is a pure function of (seed, split, factor, k),
and chairs are split disjointly between train and test from the seed.

File names that do not follow the pattern are reported and skipped, never guessed at. The
archive's fingerprint hashes relative names and sizes of the images used (not their bytes:
hashing 86k PNGs would double the import's reading).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dcign.shared.errors import DcignError
from dcign.shared.factors import chair_factors
from dcign.shared.images import GRAY_WEIGHTS
from dcign.shared.store import StoreSpec, create_or_open_store

from .objects.aubry_tree import AubryTree, check_crop, crop_gray, read_rgb, scan_tree
from .plans import (
    ListedPools,
    MinibatchPlan,
    check_test_count,
    minibatch_rng,
    paper_test_share,
    split_files,
)

IMPORTER_VERSION = 1
NAME = re.compile(r"^image_(\d{3})_p(\d{3})_t(\d{3})_r(\d{3})\.png$")
VARY = ("azimuth", "intrinsic")

View = tuple[float, float]  # (azimuth, elevation) in degrees


class AubryPlanner:
    """Minibatch plans over the views that exist: a pure function of (seed, split, factor, k)."""

    def __init__(self, tree: AubryTree, pools: ListedPools, batch_size: int, seed: int):
        self.tree, self.pools, self.batch_size, self.seed = tree, pools, batch_size, seed
        self.factors = chair_factors("grid", (tree.elevations[0], tree.elevations[-1]))
        b = batch_size
        self.sweeps = {}  # split -> [(chair, elevation)] with >= b azimuths
        self.shared = {}  # split -> [(view, chairs having it)] with >= b chairs
        for split in ("train", "test"):
            pool = pools.pool(split)
            per_elevation = defaultdict(list)
            chairs_by_view = defaultdict(list)
            for c in pool:
                for (azimuth, elevation) in tree.views[c]:
                    per_elevation[(c, elevation)].append(azimuth)
                    chairs_by_view[(azimuth, elevation)].append(c)
            self.sweeps[split] = sorted(k for k, a in per_elevation.items() if len(a) >= b)
            self.shared[split] = sorted((v, tuple(cs)) for v, cs in chairs_by_view.items()
                                        if len(cs) >= b)

    def check(self, vary: tuple[str, ...]) -> None:
        """Refuse a request whose minibatches the archive's views cannot fill."""
        for split in ("train", "test"):
            if "azimuth" in vary and not self.sweeps[split]:
                most = max(len([v for v in self.tree.views[c] if v[1] == e])
                           for c in self.pools.pool(split) for e in self.tree.elevations)
                raise DcignError(f"no {split} chair has {self.batch_size} distinct azimuths at "
                                 f"one elevation (at most {most}): lower --batch-size")
            if "intrinsic" in vary and not self.shared[split]:
                raise DcignError(f"no view is shared by {self.batch_size} {split} chairs "
                                 f"({len(self.pools.pool(split))} in the split): lower "
                                 "--batch-size or --test-chairs")

    def plan(self, split: str, factor: str, k: int) -> MinibatchPlan:
        rng = minibatch_rng(self.seed, split, factor, k)
        b = self.batch_size
        if factor == "azimuth":
            chair, elevation = self.sweeps[split][int(rng.integers(len(self.sweeps[split])))]
            azimuths = sorted(a for a, e in self.tree.views[chair] if e == elevation)
            chosen = rng.choice(np.float32(azimuths), size=b, replace=False)
            values = np.stack([chosen, np.full(b, elevation, np.float32)], axis=1)
            identities = np.full(b, chair, np.int64)
        else:
            (azimuth, elevation), chairs = self.shared[split][
                int(rng.integers(len(self.shared[split])))]
            identities = np.asarray(chairs, np.int64)[rng.choice(len(chairs), b, replace=False)]
            values = np.tile(np.float32([azimuth, elevation]), (b, 1))
        return MinibatchPlan(split, factor, k, identities, values.astype(np.float32))

    def images(self, plan: MinibatchPlan, crop: int, size: int) -> np.ndarray:
        out = np.empty((len(plan.identities), size, size), np.uint8)
        for i, (chair, (azimuth, elevation)) in enumerate(
                zip(plan.identities, plan.values, strict=True)):
            path = self.tree.views[int(chair)][(float(azimuth), float(elevation))]
            out[i] = crop_gray(read_rgb(path), crop, size)
        return out


@dataclass(frozen=True)
class ImportRequest:
    size: int = 150
    batch_size: int = 20
    crop: int = 450
    seed: int = 0
    test_chairs: int | None = None
    batches: int = 1800
    test_batches: int = 225
    vary: tuple[str, ...] = VARY


def import_aubry(root: str | Path, out: str | Path, request: ImportRequest, *,
                 overwrite: bool = False, progress: bool = True,
                 warn: Callable[[str], None] = print) -> tuple[int, int, AubryTree]:
    """Write every missing minibatch of `request`; returns (written, already there, tree)."""
    tree = scan_tree(root)
    n = len(tree.chairs)
    test = request.test_chairs if request.test_chairs is not None else paper_test_share(n)
    check_test_count(test, n)
    pools = split_files(n, test, request.seed)
    planner = AubryPlanner(tree, pools, request.batch_size, request.seed)
    planner.check(request.vary)
    check_crop(tree, request.crop)
    # after the refusals, so that a refused request prints its one error line only
    for name in tree.malformed:
        warn(f"skipping {name}: not image_NNN_pEEE_tAAA_rDDD.png")
    spec = StoreSpec("chairs", request.size, request.batch_size, planner.factors, {
        "name": "dcign.render.aubry", "version": IMPORTER_VERSION, "seed": request.seed,
        "crop": request.crop, "gray_weights": GRAY_WEIGHTS.tolist(),
        "identities": pools.to_attrs()}, {
        "name": "Seeing 3D chairs renders", "fingerprint": tree.fingerprint(),
        "source": str(Path(root).resolve()), "chairs": list(tree.chairs)})
    store = create_or_open_store(out, spec, overwrite=overwrite)
    tasks, present = [], 0
    for split, count in (("train", request.batches), ("test", request.test_batches)):
        for factor in request.vary:
            done = store.require_arrays(split, factor, count).completed()[:count]
            present += int(done.sum())
            tasks += [(split, factor, int(k)) for k in np.flatnonzero(~done)]
    with tqdm(total=len(tasks) * request.batch_size, unit="img", disable=not progress,
              desc=f"importing {Path(out).name}") as bar:
        for split, factor, k in tasks:
            plan = planner.plan(split, factor, k)
            images = planner.images(plan, request.crop, request.size)
            store.arrays(split, factor).write(k, images, plan.values, plan.identities)
            bar.update(request.batch_size)
    store.append_history({"time": datetime.now(UTC).isoformat(timespec="seconds"),
                          "config": {"command": "import-aubry", **asdict(request)},
                          "rendered_minibatches": len(tasks)})
    return len(tasks), present, tree
