"""The SGVB objective: Bernoulli reconstruction (BCE summed over pixels) plus KL to N(0, I).

Both terms are sums over the minibatch, as in the released code (λ of the invariance
targeting is relative to these sums). The negative ELBO per image is their sum divided by
the number of images, in nats.

The reparameterisation noise ε of a training minibatch is a pure function of (seed, step,
the minibatch's place in the step), drawn on the CPU: so a resumed run continues exactly, a
checkpoint carries no device-specific generator state, and the numbers do not depend on the
device or on how many processes share a step.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .device import Execution, autocast
from .model import DCIGN
from .modes import Method

NOISE_STREAM = 1  # ε's seeds (seed, step, minibatch, NOISE_STREAM) never meet the schedule's


def sample_latents(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = μ + σ·ε."""
    return mu + torch.exp(0.5 * logvar) * eps


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, rng: torch.Generator
                   ) -> torch.Tensor:
    """z = μ + σ·ε, with ε drawn from `rng` (held-out ELBOs)."""
    eps = torch.randn(mu.shape, generator=rng, device=mu.device, dtype=mu.dtype)
    return sample_latents(mu, logvar, eps)


def minibatch_noise(seed: int, step: int, minibatch: int, shape: tuple[int, ...]
                    ) -> torch.Tensor:
    """ε (float32, CPU) for minibatch `minibatch` of training step `step`."""
    key = np.random.SeedSequence([seed, step, minibatch, NOISE_STREAM]).generate_state(1)
    return torch.randn(shape, generator=torch.Generator().manual_seed(int(key[0])))


def reconstruction_nats(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of images x in [0, 1] under sigmoid(logits), summed."""
    return F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="sum")


def kl_nats(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)), summed over latents and images."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


class MinibatchLoss(nn.Module):
    """One minibatch's summed BCE, KL, the method's penalty and shared-latent count, as a (4,)
    fp32 tensor; the loss is BCE + β·KL + penalty (`loss_of`).

    The training method (modes.py) shapes the posterior before sampling: DC-IGN clamps every
    latent outside the varying factor's group (`active`), in μ and in log σ².
    The network runs under the execution's autocast; the posterior, the sampling and the
    loss in fp32. This module is what `--compile` compiles (whole, clamp included) and what
    data-parallel training wraps."""

    def __init__(self, model: DCIGN, method: Method, execution: Execution,
                 dataset_size: int = 1):
        super().__init__()
        self.model, self.method, self.execution = model, method, execution
        self.dataset_size = dataset_size  # training images: β-TCVAE's estimate needs it

    def forward(self, x: torch.Tensor, active: torch.Tensor, eps: torch.Tensor,
                pairs: torch.Tensor) -> torch.Tensor:
        with autocast(self.execution):
            mu, logvar = self.model.encode(x)
        post = self.method.posterior(mu.float(), logvar.float(), active, pairs)
        z = sample_latents(post.mu, post.logvar, eps)
        with autocast(self.execution):
            logits = self.model.decode(z)
        return torch.stack([reconstruction_nats(logits, x), kl_nats(post.mu, post.logvar),
                            self.method.penalty(z, post.mu, post.logvar, self.dataset_size),
                            post.shared])


def loss_of(terms: torch.Tensor, method: Method) -> torch.Tensor:
    """What the optimiser minimises: BCE + w·KL + the method's penalty (w = 1, no penalty:
    the negative ELBO; w is β for β-VAE and Ada-GVAE, 1 for β-TCVAE, whose β weighs the TC)."""
    return terms[0] + method.kl_weight * terms[1] + terms[2]
