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

import hashlib
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from dcign.shared.errors import DcignError
from dcign.shared.factors import chair_factors
from dcign.shared.images import GRAY_WEIGHTS, to_gray
from dcign.shared.store import StoreSpec, create_or_open_store

from .mesh_folder import split_files
from .scenes import ListedPools, MinibatchPlan, minibatch_rng

IMPORTER_VERSION = 1
NAME = re.compile(r"^image_(\d{3})_p(\d{3})_t(\d{3})_r(\d{3})\.png$")
VARY = ("azimuth", "intrinsic")

View = tuple[float, float]  # (azimuth, elevation) in degrees


@dataclass(frozen=True)
class AubryTree:
    root: Path
    chairs: tuple[str, ...]  # model ids, sorted: a chair's identity is its index here
    views: tuple[dict[View, Path], ...]  # per chair
    malformed: tuple[str, ...]  # relative paths of files whose names break the pattern

    @property
    def elevations(self) -> list[float]:
        return sorted({e for v in self.views for (_, e) in v})

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for views in self.views:
            for view in sorted(views):
                path = views[view]
                h.update(path.relative_to(self.root).as_posix().encode())
                h.update(str(path.stat().st_size).encode())
        return h.hexdigest()[:16]


def scan_tree(root: str | Path) -> AubryTree:
    """Find every chair's renders; refuse a tree that is not the Aubry layout."""
    root = Path(root)
    if not root.is_dir():
        raise DcignError(f"{root}: no such folder")
    chairs, views, malformed = [], [], []
    for chair_dir in sorted(p for p in root.iterdir() if (p / "renders").is_dir()):
        found = {}
        for image in sorted((chair_dir / "renders").iterdir()):
            match = NAME.match(image.name)
            if not match:
                malformed.append(image.relative_to(root).as_posix())
                continue
            _, elevation, azimuth, _ = (int(g) for g in match.groups())
            found[(float(azimuth), float(elevation))] = image
        if found:
            chairs.append(chair_dir.name)
            views.append(found)
    if not chairs:
        raise DcignError(f"{root} is not the Aubry layout: no <model-id>/renders/"
                         "image_NNN_pEEE_tAAA_r096.png files under it")
    return AubryTree(root, tuple(chairs), tuple(views), tuple(malformed))


def crop_gray(rgb: np.ndarray, crop: int, size: int) -> np.ndarray:
    """Central `crop` square of an RGB image, gray = 0.21 R + 0.72 G + 0.07 B, box-filtered
    to `size` x `size` uint8."""
    h, w = rgb.shape[:2]
    if crop > min(h, w):
        raise DcignError(f"--crop {crop} is larger than the {w}x{h} renders")
    top, left = (h - crop) // 2, (w - crop) // 2
    square = rgb[top:top + crop, left:left + crop, :3].astype(np.float32)
    gray = to_gray(square)
    small = Image.fromarray(gray, mode="F").resize((size, size), Image.Resampling.BOX)
    return np.clip(np.rint(np.asarray(small)), 0, 255).astype(np.uint8)


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


def read_rgb(path: Path) -> np.ndarray:
    """One render as an RGB array; a damaged file is a one-line error naming it."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:  # PIL's UnidentifiedImageError is an OSError
        raise DcignError(f"{path} is not a readable image ({type(exc).__name__})") from exc


def check_crop(tree: AubryTree, crop: int) -> None:
    """Refuse a crop the renders cannot give, before any store is touched."""
    first = next(iter(tree.views[0].values()))
    height, width = read_rgb(first).shape[:2]
    if not 1 <= crop <= min(height, width):
        raise DcignError(f"--crop must lie between 1 and {min(height, width)}, the side of "
                         f"the {width}x{height} renders (got {crop})")


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
    test = request.test_chairs if request.test_chairs is not None else max(1, round(n * 150
                                                                                    / 1357))
    if not 0 < test < n:
        raise DcignError(f"--test-chairs must lie between 1 and {n - 1} (got {test})")
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
