"""What `dcign-train` measures once training ends, on the store's test split: held-out ELBO,
each factor's latent correlated with its true value, a reconstruction grid and a latent
scatter, written beside the checkpoint as `held_out.json` and two PNGs.

For each extrinsic factor the test minibatches in which it varies are encoded (posterior
means, no clamping) and every latent is correlated with the factor's true value. Each factor
is reported on the latent its group assigns (z₁ azimuth, …: what DC-IGN is judged on) and on
the best single latent (largest |r|, chosen with the labels: a diagnostic), and on the
latent a baseline is judged on (`encoding.baseline_latent`, the paper's rule, as in
dcign-eval). `dcign-eval` goes much further.
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
from .encoding import (
    EncodedSplit,
    baseline_latent,
    best_single_latent,
    encode_split,
    pearson,
    test_elbo,
)
from .figures import reconstruction_grid, save_grid, save_latent_scatter

HELD_OUT_NAME = "held_out.json"
GRID_IMAGES = 10  # held-out images in the reconstruction grid


@dataclass
class HeldOut:
    """What `measure_held_out` measured and wrote."""

    numbers: dict  # what held_out.json holds
    grid: np.ndarray  # uint8: held-out images over their reconstructions
    figures: list[Path]


def factor_correlations(encoded: dict[str, EncodedSplit], factors: tuple[Factor, ...],
                        latent_size: int, batch_size: int) -> dict:
    """{factor: {latent, r, best_latent, best_r, baseline_latent, baseline_r, images}} for
    each factor in `encoded` (its held-out minibatches); `factors` is the run's table."""
    results = {}
    for f in factors:
        if f.name not in encoded:
            continue
        enc = encoded[f.name]
        r = pearson(enc.mu, enc.values[:, f.column])
        z = latent_slice(f, latent_size).start
        best, baseline = best_single_latent(enc, f), baseline_latent(enc, batch_size)
        results[f.name] = {"latent": z, "r": float(r[z]), "best_latent": best,
                           "best_r": float(r[best]), "baseline_latent": baseline,
                           "baseline_r": float(r[baseline]), "images": len(enc.mu)}
    return results


def measure_held_out(model: DCIGN, store: Store, factors: tuple[Factor, ...],
                     test_factors: tuple[str, ...], device: torch.device, seed: int, step: int,
                     out: Path) -> HeldOut:
    """Measure `model` (in eval mode) on the test minibatches of `test_factors`, then write
    the numbers (`held_out.json`) and figures into `out`."""
    correlated = [f for f in factors  # a factor tied to no latent has no latent to correlate
                  if not f.is_intrinsic and f.ties_latents and f.name in test_factors]
    encoded = {f.name: encode_split(model, store, "test", f.name, device) for f in correlated}
    correlations = factor_correlations(encoded, factors, model.arch.latent_size,
                                       store.spec.batch_size)
    numbers = {"event": "held_out", "step": step, "split": "test",
               "elbo_per_image": test_elbo(model, store, test_factors, device, seed),
               "correlations": correlations}
    (out / HELD_OUT_NAME).write_text(json.dumps(numbers, indent=2) + "\n")
    first = next(store.minibatches("test", test_factors[0]))
    grid = reconstruction_grid(model, first.images[:GRID_IMAGES], device)
    figures = [save_grid(grid, out / "reconstructions.png")]
    if correlations:
        figures.append(save_latent_scatter(correlations, encoded, {f.name: f for f in factors},
                                           out / "latents_vs_factors.png"))
    return HeldOut(numbers, grid, figures)
