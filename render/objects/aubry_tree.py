"""The public "Seeing 3D chairs" renders (Aubry et al. 2014) as an object source: their tree
of PNGs, and how one render becomes a dataset image.

The archive's layout is `rendered_chairs/<model-id>/renders/image_NNN_pEEE_tAAA_r096.png`:
600x600 RGB on white, p the camera elevation and t the azimuth in degrees. Each image is
cropped to its central square (`crop` pixels), converted to gray as 0.21 R + 0.72 G + 0.07 B
and box-filtered down to `size`.

File names that do not follow the pattern are listed as malformed, never guessed at. The
archive's fingerprint hashes relative names and sizes of the images used (not their bytes:
hashing 86k PNGs would double the import's reading).

Azimuth is modulo 360: the archive names 31 azimuths per elevation, t000 … t360 in steps of
12, and t360 is t000's view again. One view per angle (t000 kept), as the paper counted them
(30 azimuths × 2 elevations), so no minibatch holds one view under two labels.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dcign.shared.errors import DcignError
from dcign.shared.images import to_gray

NAME = re.compile(r"^image_(\d{3})_p(\d{3})_t(\d{3})_r(\d{3})\.png$")

View = tuple[float, float]  # (azimuth in [0, 360), elevation) in degrees
FULL_TURN = 360


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
            view = (float(azimuth % FULL_TURN), float(elevation))
            if view not in found or azimuth < FULL_TURN:  # t000 over t360
                found[view] = image
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
