"""The tensor arithmetic the training methods' hooks run (`modes.py` declares the methods and
calls these): Ada-GVAE's pair KL, mask and averages, β-TCVAE's total correlation, and the
pairs a minibatch is split into.

Kept apart from `modes.py` so that the methods' declarations (names, flags, checks) are read
without importing torch: `dcign-train` parses and checks its arguments first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

PAIR_STREAM = 2  # the pairing's seeds (seed, step, minibatch, PAIR_STREAM)
LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class Posterior:
    """A method's posterior for one minibatch, and how many latents it shared per pair."""

    mu: torch.Tensor
    logvar: torch.Tensor
    shared: torch.Tensor  # scalar: mean latents shared per pair (0 outside Ada-GVAE)


def unchanged(mu: torch.Tensor, logvar: torch.Tensor) -> Posterior:
    return Posterior(mu, logvar, mu.new_zeros(()))


def pair_kl(mu: torch.Tensor, logvar: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """δ (P, D): KL(q(z_j | x_a) ‖ q(z_j | x_b)) per latent j for each pair (a, b)."""
    a, b = pairs[:, 0], pairs[:, 1]
    return 0.5 * (logvar[b] - logvar[a]
                  + (logvar[a].exp() + (mu[a] - mu[b]) ** 2) / logvar[b].exp() - 1)


def shared_by_threshold(delta: torch.Tensor) -> torch.Tensor:
    """Ada-GVAE's mask: δ_j below τ = ½(max δ + min δ) of its pair."""
    tau = 0.5 * (delta.max(dim=1, keepdim=True).values + delta.min(dim=1, keepdim=True).values)
    return delta < tau


def averaged(mu_a: torch.Tensor, logvar_a: torch.Tensor, mu_b: torch.Tensor,
             logvar_b: torch.Tensor, rule: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The two posteriors' average: of μ and σ² (Ada-GVAE), or their product (Ada-ML-VAE)."""
    var_a, var_b = logvar_a.exp(), logvar_b.exp()
    if rule == "ml":
        var = 1 / (1 / var_a + 1 / var_b)
        return var * (mu_a / var_a + mu_b / var_b), var.log()
    return 0.5 * (mu_a + mu_b), (0.5 * (var_a + var_b)).log()


def pairs_sharing(mu: torch.Tensor, logvar: torch.Tensor, pairs: torch.Tensor,
                  shared: torch.Tensor, rule: str) -> Posterior:
    """Each pair's `shared` latents (P, D) replaced by the pair's average posterior."""
    a, b = pairs[:, 0], pairs[:, 1]
    mean_mu, mean_logvar = averaged(mu[a], logvar[a], mu[b], logvar[b], rule)
    new_mu, new_logvar = mu.clone(), logvar.clone()
    for side in (a, b):
        new_mu[side] = torch.where(shared, mean_mu, mu[side])
        new_logvar[side] = torch.where(shared, mean_logvar, logvar[side])
    return Posterior(new_mu, new_logvar, shared.float().sum(dim=1).mean())


def log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; μ, σ²) elementwise."""
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 / logvar.exp())


def total_correlation(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                      dataset_size: int) -> torch.Tensor:
    """Σ_i [log q(z_i) − Σ_k log q(z_ik)] over the batch, each aggregate posterior by Chen et
    al.'s minibatch-weighted sampling: log q(z_i) ≈ logsumexp_j log q(z_i | x_j) − log(N·M)."""
    n = len(z)
    pairwise = log_density(z[:, None], mu[None], logvar[None])  # (i, j, k)
    normaliser = math.log(dataset_size * n)
    joint = torch.logsumexp(pairwise.sum(dim=2), dim=1) - normaliser
    marginals = (torch.logsumexp(pairwise, dim=1) - normaliser).sum(dim=1)
    return (joint - marginals).sum()


def minibatch_pairs(seed: int, step: int, minibatch: int, size: int) -> torch.Tensor:
    """Disjoint pairs (size // 2, 2) of a minibatch's images, drawn from the run's seed."""
    order = np.random.default_rng([seed, step, minibatch, PAIR_STREAM]).permutation(size)
    return torch.from_numpy(order[: size - size % 2].reshape(-1, 2))
