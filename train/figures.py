"""The run's figures: reconstructions of held-out images, and latents against true factors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .latents import Encoded
from .model import DCIGN


@torch.no_grad()
def reconstruction_grid(model: DCIGN, images: np.ndarray, device: torch.device) -> np.ndarray:
    """uint8 (2H, N·W): the images on top, their reconstructions below."""
    x = torch.from_numpy(images).to(device).unsqueeze(1).float() / 255
    rec = (model.reconstruct(x).float().squeeze(1).cpu().numpy() * 255).round().astype(np.uint8)
    return np.concatenate([np.concatenate(list(images), 1), np.concatenate(list(rec), 1)], 0)


def save_grid(grid: np.ndarray, path: Path) -> Path:
    Image.fromarray(grid).save(path)
    return path


def save_latent_scatter(results: dict, encoded: dict[str, Encoded], factors: dict, path: Path
                        ) -> Path:
    """One panel per extrinsic factor: its assigned latent's μ against the true value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.6), squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items(), strict=True):
        enc, f = encoded[name], factors[name]
        ax.scatter(enc.values[:, f.column], enc.mu[:, res["latent"]], s=4, alpha=0.5)
        ax.set_xlabel(f"true {name} ({f.unit})")
        ax.set_ylabel(f"z{res['latent'] + 1} (posterior mean)")
        ax.set_title(f"{name}: r = {res['r']:.2f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
