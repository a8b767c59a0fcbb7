"""What a shipped model's card promises about its code, measured on held-out renders: for each
factor tied to one latent, |r| of that latent with the factor's true value; for a factor tied
to a circle of two latents (chairs azimuth), how far the angle round the circle is from the
true angle. The card records these on freshly rendered test minibatches
(`held_out_store`), and the test that loads each shipped checkpoint measures them again.
"""

from __future__ import annotations

import numpy as np
import torch

from dcign.shared.factors import latent_slice
from dcign.shared.store import Store

from ..eval.encoding import encode_split, pearson
from ..eval.trained import Trained

FULL_TURN = 360.0


def encoding_check(trained: Trained, store: Store, device: torch.device) -> dict:
    """{factor: {"latents", "abs_r"} or {"latents", "median_angle_error_deg"}} for each
    extrinsic factor with held-out minibatches in the store."""
    size = trained.model.arch.latent_size
    present = set(store.factors_present("test"))
    measured = {}
    for factor in trained.factors:
        if factor.is_intrinsic or not factor.ties_latents or factor.name not in present:
            continue
        latents = list(range(size))[latent_slice(factor, size)]
        encoded = encode_split(trained.model, store, "test", factor.name, device)
        truth = encoded.values[:, factor.column]
        entry = {"latents": [z + 1 for z in latents], "images": len(truth)}
        if len(latents) == 2:
            entry["median_angle_error_deg"] = median_angle_error(encoded.mu[:, latents], truth)
        else:
            entry["abs_r"] = float(abs(pearson(encoded.mu[:, latents[:1]], truth)[0]))
        measured[factor.name] = entry
    return measured


def median_angle_error(codes: np.ndarray, degrees: np.ndarray) -> float:
    """Median |angle of the code round the circle's centre − the true angle|, in degrees, with
    the circle's orientation (either way round) and starting angle fitted: codes (N, 2)."""
    centred = codes - codes.mean(axis=0)
    theta = np.arctan2(centred[:, 1], centred[:, 0])
    truth = np.deg2rad(degrees)
    best = np.inf
    for direction in (1.0, -1.0):
        offset = np.angle(np.exp(1j * (theta - direction * truth)).mean())
        error = np.abs(np.angle(np.exp(1j * (theta - direction * truth - offset))))
        best = min(best, float(np.median(error)))
    return float(np.rad2deg(best))
