"""Every figure dcign draws of a trained network (matplotlib, Agg: files, never a window):
the trainer's end-of-run reconstructions and latent scatter, and dcign-eval's latent traversals,
inferred vs true, entangled-vs-disentangled novel views and the comparison of runs. Small PNGs
(dpi 100)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from ..data import network_output  # noqa: E402
from ..model import DCIGN  # noqa: E402
from .encoding import EncodedSplit, to_tensor  # noqa: E402

GAP = 2  # pixels between tiles


# ----------------------------------------------------------------------------- end of a run

@torch.no_grad()
def reconstruction_grid(model: DCIGN, images: np.ndarray, device: torch.device) -> np.ndarray:
    """uint8 (2H, N·W), (2H, N·W, 3) rgb: the images on top, their reconstructions below."""
    rec = network_output(model.reconstruct(to_tensor(images, device)))
    return np.concatenate([np.concatenate(list(images), 1), np.concatenate(list(rec), 1)], 0)


def save_grid(grid: np.ndarray, path: Path) -> Path:
    Image.fromarray(grid).save(path)
    return path


def save_latent_scatter(results: dict, encoded: dict[str, EncodedSplit], factors: dict,
                        path: Path) -> Path:
    """One panel per extrinsic factor: its assigned latent's μ against the true value."""
    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.6), squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items(), strict=True):
        enc, f = encoded[name], factors[name]
        ax.scatter(enc.values[:, f.column], enc.mu[:, res["latent"]], s=4, alpha=0.5)
        ax.set_xlabel(f"true {name} ({f.unit})")
        ax.set_ylabel(f"z{res['latent'] + 1} (posterior mean)")
        ax.set_title(f"{name}: r = {res['r']:.2f}")
    fig.tight_layout()
    return save(fig, path)


# ----------------------------------------------------------------------------- dcign-eval

def mosaic(grid: np.ndarray) -> np.ndarray:
    """uint8 (R, C, H, W) → one gray image with thin white gaps between tiles; (R, C, H, W,
    3) → one rgb image."""
    rows, cols, h, w = grid.shape[:4]
    out = np.full((rows * (h + GAP) - GAP, cols * (w + GAP) - GAP, *grid.shape[4:]), 255,
                  np.uint8)
    for r in range(rows):
        for c in range(cols):
            out[r * (h + GAP): r * (h + GAP) + h, c * (w + GAP): c * (w + GAP) + w] = grid[r, c]
    return out


def column_labels(values: np.ndarray) -> list[str]:
    return ["input", "recon."] + [f"{v:+.3g}" for v in values]


def tile_axes(ax, grid: np.ndarray, labels: list[str]) -> None:
    _, cols, _, w = grid.shape[:4]
    if grid.ndim == 5:  # rgb tiles are shown in their own colours
        ax.imshow(mosaic(grid), interpolation="nearest")
    else:
        ax.imshow(mosaic(grid), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([c * (w + GAP) + w / 2 for c in range(cols)], labels, fontsize=7)
    ax.set_yticks([])
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)


def _figure_for(grid: np.ndarray, blocks: int = 1):
    rows, cols = grid.shape[:2]
    width = min(12.0, 0.75 * cols + 0.6)
    return plt.subplots(blocks, 1, figsize=(width, 0.75 * rows * blocks + 0.8 * blocks),
                        squeeze=False)


def save(fig, path: Path) -> Path:
    """Write the figure as a 256-colour PNG: the tiles are gray (rgb ones few enough colours
    for a median-cut palette) and the plots use few colours, so this keeps each file small
    (docs/ and report.html carry them) at no visible cost."""
    fig.canvas.draw()
    rgb = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3])
    plt.close(fig)
    rgb.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def traversal_figure(grid: np.ndarray, values: np.ndarray, title: str, path: Path) -> Path:
    """Paper figures 4, 5, 7: rows of held-out images, one latent swept along the columns."""
    fig, axes = _figure_for(grid)
    tile_axes(axes[0, 0], grid, column_labels(values))
    axes[0, 0].set_title(title, fontsize=9)
    fig.tight_layout()
    return save(fig, path)


def novel_view_figure(blocks: list[tuple[str, np.ndarray]], values: np.ndarray,
                      path: Path) -> Path:
    """Paper figure 5b: the same inputs and sweep through each model, one block per model."""
    fig, axes = _figure_for(blocks[0][1], len(blocks))
    for ax, (title, grid) in zip(axes[:, 0], blocks, strict=True):
        tile_axes(ax, grid, column_labels(values))
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save(fig, path)


def scatter_figure(panels: list[dict], path: Path) -> Path:
    """Paper figure 6: per factor, the tied latent's posterior mean against the true value.

    Each panel: {truth, inferred, factor, unit, latent, pearson, spearman}, and optionally
    plane = (za, zb, (a, b)): a factor's two group latents, drawn as a second panel.
    """
    count = len(panels) + sum("plane" in p for p in panels)
    fig, axes = plt.subplots(1, count, figsize=(3.3 * count, 3.1), squeeze=False)
    axes = iter(axes[0])
    for p in panels:
        ax = next(axes)
        ax.scatter(p["truth"], p["inferred"], s=3, alpha=0.4, linewidths=0)
        ax.set_xlabel(f"true {p['factor']} ({p['unit']})", fontsize=8)
        ax.set_ylabel(f"inferred z{p['latent'] + 1}", fontsize=8)
        ax.set_title(f"{p['factor']}: Pearson {p['pearson']:+.2f}, Spearman "
                     f"{p['spearman']:+.2f}", fontsize=8)
        ax.tick_params(labelsize=7)
        if "plane" in p:
            plane_panel(next(axes), fig, p)
    fig.tight_layout()
    return save(fig, path)


def plane_panel(ax, fig, p: dict) -> None:
    """Two latents of one factor against each other, coloured by the factor's true value (a
    cyclic colour map, so 0° and 360° look alike)."""
    za, zb, (a, b) = p["plane"]
    dots = ax.scatter(za, zb, c=p["truth"], cmap="twilight", s=3, alpha=0.6, linewidths=0)
    fig.colorbar(dots, ax=ax).set_label(f"true {p['factor']} ({p['unit']})", fontsize=7)
    ax.set_xlabel(f"inferred z{a + 1}", fontsize=8)
    ax.set_ylabel(f"inferred z{b + 1}", fontsize=8)
    ax.set_title(f"{p['factor']}: z{a + 1} against z{b + 1}", fontsize=8)
    ax.tick_params(labelsize=7)


def compare_figure(rows: list[dict], columns: list[str], path: Path) -> Path:
    """Grouped bars: one group per metric, one bar per run (values in [0, 1])."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(columns) + 1.5), 3.2))
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(columns))
    for i, row in enumerate(rows):
        heights = [row["values"].get(c, np.nan) for c in columns]
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, heights, width, label=row["name"])
    ax.set_xticks(x, columns, fontsize=7, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (higher is better)", fontsize=8)
    # Beside the axes, not on them: with many runs a legend inside covers the bars.
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return save(fig, path)


def pair_grid_figure(rows: list[tuple[str, np.ndarray]], labels: list[str], title: str,
                     path: Path) -> Path:
    """Rows of tiles, one column per example, each row named at its left (e.g. input, truth,
    and each model's re-render at the target view)."""
    grid = np.stack([images for _, images in rows])
    fig, axes = _figure_for(grid)
    tile_axes(axes[0, 0], grid, labels)
    h = grid.shape[2]
    axes[0, 0].set_yticks([r * (h + GAP) + h / 2 for r in range(len(rows))],
                          [name for name, _ in rows], fontsize=7)
    axes[0, 0].set_title(title, fontsize=9)
    fig.tight_layout()
    return save(fig, path)


def curve_figure(points: list[dict], title: str, path: Path) -> Path:
    """A learning curve: held-out MSE against step (left); per factor, the novel-view MSE
    against step with its floors, the training mean of the target view (dashed) and half
    of it (dotted: the shipped faces model's target) (right)."""
    steps = [p["step"] for p in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.4))
    left.plot(steps, [p["mse_per_pixel"] for p in points], "o-", color="k", ms=3)
    left.set_title("held-out reconstruction", fontsize=9)
    left.set_ylabel("MSE/pixel", fontsize=8)
    for i, factor in enumerate(points[0]["novel_view"]):
        colour = f"C{i}"
        right.plot(steps, [p["novel_view"][factor] for p in points], "o-", ms=3, color=colour,
                   label=factor)
        floor = points[-1]["floors"][factor]["view_mean"]
        right.axhline(floor, color=colour, ls="--", lw=0.8)
        right.axhline(floor / 2, color=colour, ls=":", lw=0.8)
    right.set_title("novel view (dashed: view-mean floor; dotted: half)", fontsize=9)
    right.legend(fontsize=7, frameon=False)
    for ax in (left, right):
        ax.set_xlabel("step", fontsize=8)
        ax.set_yscale("log")
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save(fig, path)
