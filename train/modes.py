"""What each training mode does to a minibatch's posterior, and what it adds to the loss.

Every mode trains the same network with the same loss convention as DC-IGN: Bernoulli BCE
and KL to N(0, I), both summed over the minibatch. A mode may change the posterior before
sampling, weight the KL by β, and add a penalty:

    dcign      clamp every latent outside the varying factor's group (paper §3)
    vae        nothing: the paper's entangled baseline
    adagvae    Ada-GVAE (Locatello et al. 2020): the minibatch split into disjoint pairs; in a
               pair, the latents whose KL between the two posteriors is below the midpoint of
               the pair's smallest and largest get both images' average posterior (or their
               product, ML-VAE style, with `--ada-average ml`; or exactly the latents outside
               the varying factor's group, with `--ada-mask oracle`); β·KL, β = 1
    betavae    β-VAE (Higgins et al. 2017): β·KL, β = 4, images drawn independently
    betatcvae  β-TCVAE (Chen et al. 2018): KL + (β − 1)·TC, TC the minibatch-weighted
               estimate over the step's images, β = 6, images drawn independently

`--mode betavae` and `betatcvae` see images drawn independently across the store, not
one-factor minibatches: in a one-factor minibatch the TC estimate degenerates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .clamping import clamp
from .config import ADA_AVERAGES, ADA_MASKS, DEFAULT_BETA, INDEPENDENT_MODES, MODES

__all__ = ["ADA_AVERAGES", "ADA_MASKS", "DEFAULT_BETA", "MODES", "Mode", "mode_for"]
PAIR_STREAM = 2  # the pairing's seeds (seed, step, minibatch, PAIR_STREAM)
LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class Posterior:
    """A mode's posterior for one minibatch, and how many latents it shared per pair."""

    mu: torch.Tensor
    logvar: torch.Tensor
    shared: torch.Tensor  # scalar: mean latents shared per pair (0 outside Ada-GVAE)


def _unchanged(mu: torch.Tensor, logvar: torch.Tensor) -> Posterior:
    return Posterior(mu, logvar, mu.new_zeros(()))


@dataclass(frozen=True)
class Mode:
    """The dcign, vae and betavae modes: clamping or nothing, then β·KL."""

    name: str
    beta: float = 1.0
    clamp_rule: str = "mean"
    invariance: float = 0.01

    @property
    def independent(self) -> bool:
        return self.name in INDEPENDENT_MODES

    @property
    def pairs_images(self) -> bool:
        """Whether `posterior` reads the minibatch's pairs (the others get none to draw)."""
        return False

    def posterior(self, mu: torch.Tensor, logvar: torch.Tensor, active: torch.Tensor,
                  pairs: torch.Tensor) -> Posterior:
        if self.name != "dcign":
            return _unchanged(mu, logvar)
        return Posterior(clamp(mu, active, self.clamp_rule, self.invariance),
                         clamp(logvar, active, self.clamp_rule, self.invariance),
                         mu.new_zeros(()))

    def penalty(self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                dataset_size: int) -> torch.Tensor:
        return z.new_zeros(())


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


@dataclass(frozen=True)
class AdaGVAE(Mode):
    """Pairs share the latents their posteriors agree on (or, with the oracle mask, the ones
    outside the varying factor's group: DC-IGN's supervision without clamping)."""

    average: str = "gvae"
    mask: str = "threshold"

    @property
    def pairs_images(self) -> bool:
        return True

    def posterior(self, mu: torch.Tensor, logvar: torch.Tensor, active: torch.Tensor,
                  pairs: torch.Tensor) -> Posterior:
        with torch.no_grad():
            if self.mask == "oracle":
                shared = (~active).expand(len(pairs), -1)
            else:
                shared = shared_by_threshold(pair_kl(mu, logvar, pairs))
        a, b = pairs[:, 0], pairs[:, 1]
        mean_mu, mean_logvar = averaged(mu[a], logvar[a], mu[b], logvar[b], self.average)
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


@dataclass(frozen=True)
class BetaTCVAE(Mode):
    def penalty(self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                dataset_size: int) -> torch.Tensor:
        return (self.beta - 1) * total_correlation(z, mu, logvar, dataset_size)


def mode_for(name: str, beta: float | None, clamp_rule: str, invariance: float,
             ada_average: str, ada_mask: str) -> Mode:
    beta = DEFAULT_BETA.get(name, 1.0) if beta is None else beta
    if name == "adagvae":
        return AdaGVAE(name, beta, clamp_rule, invariance, ada_average, ada_mask)
    if name == "betatcvae":
        return BetaTCVAE(name, beta, clamp_rule, invariance)
    return Mode(name, beta, clamp_rule, invariance)


def minibatch_pairs(seed: int, step: int, minibatch: int, size: int) -> torch.Tensor:
    """Disjoint pairs (size // 2, 2) of a minibatch's images, drawn from the run's seed."""
    order = np.random.default_rng([seed, step, minibatch, PAIR_STREAM]).permutation(size)
    return torch.from_numpy(order[: size - size % 2].reshape(-1, 2))
