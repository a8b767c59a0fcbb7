"""Where and how a network runs: the device, the arithmetic (fp32 or bf16 autocast), the
memory layout, and how the loader feeds it.

Every choice that CUDA makes by default is a flag that also works on the CPU, so the GPU's
code paths run in the CPU test suite: bf16 autocast, channels-last, pinned memory with
non-blocking copies, loader worker processes and torch.compile.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from dcign.shared.errors import DcignError

from .config import TrainConfig

CUDA_LOADER_WORKERS = 4


def cpu_multiplies_bf16() -> bool:
    """Whether this CPU has AMX tiles, which multiply bf16 natively: there bf16 autocast
    trains the CPU network at 1.8x the steps/s of fp32 (docs/results.md). Elsewhere fp32: a
    CPU without bf16 units emulates it, slower than fp32. (torch exposes the check only
    privately; a torch without it reads as no AMX.)"""
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(check and check())


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


@dataclass(frozen=True)
class Execution:
    """How a run executes on its device; none of it is part of what the run learns."""

    device: torch.device
    precision: str  # "fp32" or "bf16" (autocast; losses, clamping and the optimiser stay fp32)
    channels_last: bool
    workers: int  # loader processes (spawned)
    pin_memory: bool

    @property
    def on_cuda(self) -> bool:
        return self.device.type == "cuda"

    def describe(self) -> str:
        layout = ", channels-last" if self.channels_last else ""
        return f"{self.device} {self.precision}{layout}"


def execution_for(cfg: TrainConfig) -> Execution:
    """Resolve the config's `auto` choices against the device it picks (its values checked
    by `TrainConfig.validate`)."""
    device = pick_device(cfg.device)
    cuda = device.type == "cuda"
    bf16 = cuda or cpu_multiplies_bf16()
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if bf16 else "fp32")
    workers = cfg.workers if cfg.workers >= 0 else (CUDA_LOADER_WORKERS if cuda else 0)
    if cfg.in_memory:
        workers = 0  # the split is in this process's memory: a worker would copy all of it
    return Execution(device, precision,
                     cuda if cfg.channels_last is None else cfg.channels_last, workers,
                     cuda if cfg.pin_memory is None else cfg.pin_memory)


def autocast(execution: Execution):
    """bf16 autocast on the run's device (bf16 keeps fp32's range: no loss scaling needed)."""
    if execution.precision == "bf16":
        return torch.autocast(execution.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
