"""Where a network runs: choosing the device, and the arithmetic used on it."""

from __future__ import annotations

import contextlib

import torch

from dcign.shared.errors import DcignError


def pick_device(name: str) -> torch.device:
    """`auto` (CUDA when present, else the CPU), `cpu`, `cuda`, `cuda:N`; one-line errors."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DcignError(f"--device {name}: no CUDA device is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise DcignError(f"--device {name!r} is not a device (auto, cpu, cuda, cuda:1, …)"
                         ) from None


def autocast(device: torch.device):
    """bf16 autocast on CUDA (bf16 keeps fp32's range: no loss scaling needed); fp32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
