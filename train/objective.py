"""The SGVB objective: Bernoulli reconstruction (BCE summed over pixels) plus KL to N(0, I).

Both terms are sums over the minibatch, as in the released code (λ of the invariance
targeting is relative to these sums). The negative ELBO per image is their sum divided by
the number of images, in nats.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator
                   ) -> torch.Tensor:
    """z = μ + σ·ε, with ε drawn from the run's own generator so resumption is exact."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def reconstruction_nats(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of images x in [0, 1] under sigmoid(logits), summed."""
    return F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="sum")


def kl_nats(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)), summed over latents and images."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
