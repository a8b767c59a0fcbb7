"""A PNG grid of minibatches: one row per minibatch, labelled, so a person can see at a glance
that exactly one factor changes along each row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .store import Store

LABEL_WIDTH = 120
GAP = 2


def preview_grid(store: Store, rows: list[tuple[str, str, int]], columns: int | None = None
                 ) -> Image.Image:
    """Rows of (split, factor, minibatch index); the first `columns` images of each."""
    size = store.spec.image_size
    columns = min(columns or store.spec.batch_size, store.spec.batch_size)
    width = LABEL_WIDTH + columns * (size + GAP)
    height = len(rows) * (size + GAP)
    rgb = store.spec.channels == 3  # an rgb store's grid is in colour; a gray one stays L
    white, black = ((255,) * 3, (0,) * 3) if rgb else (255, 0)
    canvas = Image.new("RGB" if rgb else "L", (width, height), color=white)
    draw = ImageDraw.Draw(canvas)
    for r, (split, factor, k) in enumerate(rows):
        images = store.minibatch(split, factor, k).images
        top = r * (size + GAP)
        draw.text((6, top + size // 2 - 12), f"{split}/{factor}\nminibatch {k}", fill=black)
        for c in range(columns):
            left = LABEL_WIDTH + c * (size + GAP)
            canvas.paste(Image.fromarray(np.asarray(images[c])), (left, top))
    return canvas


def save_preview(store: Store, rows: list[tuple[str, str, int]], out: str | Path,
                 columns: int | None = None) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    preview_grid(store, rows, columns).save(out)
    return out
