"""Clamping and invariance targeting (paper §3.1–3.2), as one autograd function.

For a minibatch in which only factor k varies, the latents outside k's group must not vary:

forward   every clamped latent is replaced by one value shared by the minibatch: its mean
          over the minibatch (the paper) or the first sample's value (the released code);
backward  the active group's gradient passes unchanged; a clamped latent's reconstruction
          gradient is discarded and replaced by λ·(zᵢ − batch mean), so a descent step pulls
          each sample's value toward the batch mean (paper §3.2). λ = 0 gives zero gradient,
          the released code's default. (The released code's term had the opposite sign, which
          pushed away from the mean; the paper's description is followed here.)

The same function is applied to μ and to log σ².

It runs in fp32 whatever autocast is on (torch.amp's custom_fwd/custom_bwd, for CPU and CUDA
autocast alike): the batch mean and the small invariance gradient need fp32, and bf16 inputs
are cast up. It compiles whole with `torch.compile(fullgraph=True)`.
"""

from __future__ import annotations

import torch
from torch.amp import custom_bwd, custom_fwd

AUTOCAST_DEVICES = ("cpu", "cuda")


def _fp32_forward(fn):
    for device_type in AUTOCAST_DEVICES:
        fn = custom_fwd(fn, device_type=device_type, cast_inputs=torch.float32)
    return fn


def _fp32_backward(fn):
    for device_type in AUTOCAST_DEVICES:
        fn = custom_bwd(fn, device_type=device_type)
    return fn


class Clamp(torch.autograd.Function):
    @staticmethod
    @_fp32_forward
    def forward(ctx, x: torch.Tensor, active: torch.Tensor, rule: str, lam: float):
        mean = x.mean(dim=0, keepdim=True)
        shared = mean if rule == "mean" else x[:1]
        ctx.save_for_backward(x - mean, active)
        ctx.lam = lam
        return torch.where(active, x, shared.expand_as(x))

    @staticmethod
    @_fp32_backward
    def backward(ctx, grad: torch.Tensor):
        deviation, active = ctx.saved_tensors
        return torch.where(active, grad, ctx.lam * deviation), None, None, None


def clamp(x: torch.Tensor, active: torch.Tensor, rule: str = "mean", lam: float = 0.01
          ) -> torch.Tensor:
    """Clamp the columns of x (N, latents) where `active` (latents,) is False."""
    if rule not in ("mean", "first"):
        raise ValueError(f"unknown clamping rule {rule!r}")
    return Clamp.apply(x, active, rule, lam)


def active_mask(latents: slice, latent_size: int, device: torch.device | str = "cpu"
                ) -> torch.Tensor:
    """A boolean mask over the code, True on the varying factor's latent group."""
    mask = torch.zeros(latent_size, dtype=torch.bool, device=device)
    mask[latents] = True
    return mask
