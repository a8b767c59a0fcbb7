"""From held-out images to codes: encoding a store's split, the test ELBO, correlations, and
the one rule that chooses a factor's latent in a network that assigns none.

Posterior means, no clamping: at test time DC-IGN is a plain encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dcign.shared.factors import Factor
from dcign.shared.store import Store

from ..data import network_input
from ..model import DCIGN
from ..objective import kl_nats, reconstruction_nats, reparameterize

ENCODE_CHUNK = 256  # images per forward pass: bounds memory at any split size


@dataclass
class EncodedSplit:
    """The complete minibatches of one (split, factor), flattened to images, with their codes."""

    mu: np.ndarray  # (N, latents) posterior means
    values: np.ndarray  # (N, F) true factor values
    images: np.ndarray  # (N, H, W) uint8


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W) → float (N, 1, H, W) in [0, 1]."""
    # a writable copy: torch warns on read-only (zarr, PIL) arrays
    return network_input(torch.from_numpy(np.array(images, dtype=np.uint8)).to(device))


@torch.no_grad()
def encode_images(model: DCIGN, images: np.ndarray, device: torch.device) -> np.ndarray:
    """Posterior means (N, latents) of uint8 images (N, H, W), in chunks."""
    mus = [model.encode(to_tensor(chunk, device))[0].float().cpu().numpy()
           for chunk in np.array_split(images, max(1, len(images) // ENCODE_CHUNK))]
    return np.concatenate(mus)


def encode_split(model: DCIGN, store: Store, split: str, factor: str, device: torch.device
                 ) -> EncodedSplit:
    group = store.read_complete(split, factor)
    images = group.images.reshape(-1, *group.images.shape[2:])
    values = group.values.reshape(-1, group.values.shape[2])
    return EncodedSplit(encode_images(model, images, device), values, images)


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Correlation of each column of a (N, K) with b (N,); 0 where a column is constant."""
    a = a - a.mean(0)
    b = b - b.mean()
    denom = np.sqrt((a**2).sum(0) * (b**2).sum())
    return np.divide(a.T @ b, denom, out=np.zeros(a.shape[1]), where=denom > 0)


def baseline_latent(encoded: EncodedSplit, batch_size: int) -> int:
    """The latent a network that assigns none (the entangled baseline, β-VAE, …) is judged on
    for a factor: the paper's rule (§4.1.1), the latent of largest variance within minibatches
    in which only that factor varies, here averaged over every held-out one of them rather than
    one. It needs no labels, so the baseline is chosen for as the paper chose. dcign-eval's
    comparisons and the trainer's end-of-run measurement both call it."""
    mu = encoded.mu.reshape(-1, batch_size, encoded.mu.shape[1])
    return int(np.argmax(mu.var(axis=1).mean(axis=0)))


def best_single_latent(encoded: EncodedSplit, factor: Factor) -> int:
    """A diagnostic, not a choice for the comparison: the latent whose posterior mean has the
    largest |Pearson r| with the factor's true value, chosen with the labels (how well the
    factor is coded anywhere in the network, tied latent or not)."""
    return int(np.argmax(np.abs(pearson(encoded.mu, encoded.values[:, factor.column]))))


@torch.no_grad()
def test_elbo(model: DCIGN, store: Store, factors: tuple[str, ...] | list[str],
              device: torch.device, seed: int = 0) -> float | None:
    """ELBO per held-out image in nats (one ε sample per image, no clamping), over the test
    minibatches of the given types."""
    rng = torch.Generator(device).manual_seed(seed)
    total, n = 0.0, 0
    for name in factors:
        for m in store.minibatches("test", name):
            x = to_tensor(m.images, device)
            mu, logvar = (t.float() for t in model.encode(x))
            logits = model.decode(reparameterize(mu, logvar, rng))
            total += float(reconstruction_nats(logits, x) + kl_nats(mu, logvar))
            n += len(x)
    return -total / n if n else None
