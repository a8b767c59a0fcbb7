"""Held-out checks: encode the test split, correlate latents with the true factors, test ELBO.

For each extrinsic factor the test minibatches in which it varies are encoded (posterior
means, no clamping) and every latent is correlated with the factor's true value. DC-IGN is
judged on the latent its group assigns (z₁ azimuth, …); the entangled baseline, which has no
assignment, on its best single latent (largest |r|).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dcign.shared.factors import latent_slice
from dcign.shared.store import Store

from .model import DCIGN
from .objective import kl_nats, reconstruction_nats, reparameterize


@dataclass
class Encoded:
    mu: np.ndarray  # (N, latents)
    values: np.ndarray  # (N, F) true factor values
    images: np.ndarray  # (N, H, W) uint8


@torch.no_grad()
def encode_split(model: DCIGN, store: Store, split: str, factor: str, device: torch.device
                 ) -> Encoded:
    arrays = store.arrays(split, factor)
    keep = arrays.completed()
    images = np.asarray(arrays.images[:])[keep].reshape(-1, *arrays.images.shape[2:])
    values = np.asarray(arrays.factors[:])[keep].reshape(-1, arrays.factors.shape[2])
    mus = []
    for chunk in np.array_split(images, max(1, len(images) // 256)):
        x = torch.from_numpy(chunk).to(device).unsqueeze(1).float() / 255
        mus.append(model.encode(x)[0].float().cpu().numpy())
    return Encoded(np.concatenate(mus), values, images)


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Correlation of each column of a (N, K) with b (N,); 0 where a column is constant."""
    a = a - a.mean(0)
    b = b - b.mean()
    denom = np.sqrt((a**2).sum(0) * (b**2).sum())
    return np.divide(a.T @ b, denom, out=np.zeros(a.shape[1]), where=denom > 0)


def factor_correlations(model: DCIGN, store: Store, test_groups: tuple[str, ...],
                        device: torch.device) -> tuple[dict, dict[str, Encoded]]:
    """{factor: {latent, r, best_latent, best_r, images}} over held-out minibatches."""
    results, encoded = {}, {}
    for f in store.spec.factors:
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


@torch.no_grad()
def test_elbo(model: DCIGN, store: Store, test_groups: tuple[str, ...], device: torch.device,
              seed: int = 0) -> float | None:
    """ELBO per held-out image in nats (one ε sample per image, no clamping)."""
    gen = torch.Generator(device).manual_seed(seed)
    total, n = 0.0, 0
    for name in test_groups:
        arrays = store.arrays("test", name)
        for k in np.flatnonzero(arrays.completed()):
            x = torch.from_numpy(arrays.images[k]).to(device).unsqueeze(1).float() / 255
            mu, logvar = (t.float() for t in model.encode(x))
            logits = model.decode(reparameterize(mu, logvar, gen))
            total += float(reconstruction_nats(logits, x) + kl_nats(mu, logvar))
            n += len(x)
    return -total / n if n else None
