"""The trainer's end-of-run check on the store's test split: held-out ELBO, each factor's
latent correlated with its true value, a reconstruction grid and a latent scatter, written
beside the checkpoint as `held_out.json` and two PNGs.

For each extrinsic factor the test minibatches in which it varies are encoded (posterior
means, no clamping) and every latent is correlated with the factor's true value. DC-IGN is
judged on the latent its group assigns (z₁ azimuth, …); the entangled baseline, which has no
assignment, on its best single latent (largest |r|). `dcign-eval` goes much further.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dcign.shared.factors import Factor, latent_slice
from dcign.shared.store import Store

from ..model import DCIGN
from .encoding import EncodedSplit, encode_split, pearson, test_elbo
from .figures import reconstruction_grid, save_grid, save_latent_scatter

HELD_OUT_NAME = "held_out.json"
GRID_IMAGES = 10  # held-out images in the reconstruction grid


@dataclass
class HeldOutCheck:
    numbers: dict  # what held_out.json holds
    grid: np.ndarray  # uint8: held-out images over their reconstructions
    figures: list[Path]


def factor_correlations(model: DCIGN, store: Store, factors: tuple[Factor, ...],
                        test_groups: tuple[str, ...], device: torch.device
                        ) -> tuple[dict, dict[str, EncodedSplit]]:
    """{factor: {latent, r, best_latent, best_r, images}} over held-out minibatches; `factors`
    is the run's table (its latent groups)."""
    results, encoded = {}, {}
    for f in factors:
        if f.is_intrinsic or not f.ties_latents or f.name not in test_groups:
            continue  # a factor tied to no latent has no latent to correlate
        enc = encode_split(model, store, "test", f.name, device)
        r = pearson(enc.mu, enc.values[:, f.column])
        z = latent_slice(f, model.arch.latent_size).start
        best = int(np.argmax(np.abs(r)))
        results[f.name] = {"latent": z, "r": float(r[z]), "best_latent": best,
                           "best_r": float(r[best]), "images": len(enc.mu)}
        encoded[f.name] = enc
    return results, encoded


def check(model: DCIGN, store: Store, factors: tuple[Factor, ...],
          test_groups: tuple[str, ...], device: torch.device, seed: int, step: int, out: Path
          ) -> HeldOutCheck:
    """Measure `model` (in eval mode) on the test minibatches of `test_groups`; write the
    numbers and figures into `out`."""
    correlations, encoded = factor_correlations(model, store, factors, test_groups, device)
    numbers = {"event": "held_out", "step": step, "split": "test",
               "elbo_per_image": test_elbo(model, store, test_groups, device, seed),
               "correlations": correlations}
    (out / HELD_OUT_NAME).write_text(json.dumps(numbers, indent=2) + "\n")
    first = next(store.minibatches("test", test_groups[0]))
    grid = reconstruction_grid(model, first.images[:GRID_IMAGES], device)
    figures = [save_grid(grid, out / "reconstructions.png")]
    if correlations:
        figures.append(save_latent_scatter(correlations, encoded, {f.name: f for f in factors},
                                           out / "latents_vs_factors.png"))
    return HeldOutCheck(numbers, grid, figures)
