"""A trained network as evaluation and re-rendering meet it: loaded from a run, checked
against a store, swept along one latent.

Shared by `dcign-eval` and `dcign-rerender`; reads checkpoints through `train/checkpoint.py`,
as resuming does, so both refuse what the trainer would. Never imports the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dcign.shared.errors import DcignError
from dcign.shared.factors import Factor, factor_named, latent_slice
from dcign.shared.store import StoreSpec

from ..checkpoint import Checkpoint, checkpoint_file
from ..config import TrainConfig
from ..data import network_output
from ..model import DCIGN
from ..modes import Method, method_for
from ..shipped import resolve_checkpoint, shipped_name
from .encoding import to_tensor


@dataclass
class Trained:
    """A checkpoint's network in eval mode, and what it was trained on."""

    checkpoint: Path
    model: DCIGN
    method: Method  # the training method, as the run configured it
    step: int
    store_spec: StoreSpec  # the training store's spec
    config: TrainConfig  # the run's, as its checkpoint records it
    factors: tuple[Factor, ...]  # the store's factor table with the run's latent groups

    @property
    def mode(self) -> str:
        """The training method's name (--mode)."""
        return self.method.name

    @property
    def name(self) -> str:
        """The run's name: its directory (runs/faces64-dcign → faces64-dcign), or a shipped
        checkpoint's name (faces64)."""
        return shipped_name(self.checkpoint) or self.checkpoint.parent.name or str(
            self.checkpoint)

    @property
    def image_size(self) -> int:
        return self.model.arch.image_size

    def factor(self, name: str) -> Factor:
        """A factor of the run's table (its latent group as trained)."""
        return factor_named(self.factors, name)

    @property
    def settings(self) -> str:
        """The method and what sets it apart, in a few words (for comparison tables)."""
        c = self.config
        parts = [self.method.describe()]
        if c.mirror_odd:
            parts.append("mirror-odd " + ",".join(c.mirror_odd))
        if c.latent_groups:
            parts.append("groups " + ",".join(c.latent_groups))
        return ", ".join(parts)


def load_trained(run: str | Path, device: torch.device) -> Trained:
    """A run directory's (or checkpoint file's, or shipped checkpoint's) network in eval mode
    on `device`, in float32 whatever precision its weights were stored in."""
    file = checkpoint_file(resolve_checkpoint(run))
    saved = Checkpoint.read(file)  # checked whole: a network is built only from what fits
    try:
        method = method_for(saved.config)
    except DcignError as exc:
        raise DcignError(f"{file} was trained with settings this dcign refuses: {exc}") from None
    model = saved.network().to(device).eval()
    return Trained(file, model, method, saved.step, saved.store, saved.config, saved.factors)


def default_report(run: str | Path, folder: str, up: int = 0) -> Path:
    """Where a report goes unless told: `folder` in the checkpoint's directory (`up` levels
    above it), or for a shipped checkpoint, which lives inside the installed package,
    NAME-`folder` in the working directory."""
    file = checkpoint_file(resolve_checkpoint(run))
    name = shipped_name(file)
    return Path(f"{name}-{folder}") if name else file.parents[up] / folder


def check_same_kind(trained: Trained, spec: StoreSpec, store_path: str | Path) -> None:
    """Refuse a store of another dataset kind, colour, image size or factor table than trained
    on."""
    ours = trained.store_spec
    if ours.dataset != spec.dataset:
        raise DcignError(f"{trained.checkpoint} was trained on a {ours.dataset!r} store; "
                         f"{store_path} is a {spec.dataset!r} store")
    if trained.model.arch.channels != spec.channels:
        raise DcignError(f"{trained.checkpoint} was trained on {ours.color} images; "
                         f"{store_path} has {spec.color} images")
    if trained.image_size != spec.image_size:
        s, t = trained.image_size, spec.image_size
        raise DcignError(f"{trained.checkpoint} holds a {s}×{s} network; {store_path} has "
                         f"{t}×{t} images")
    if [f.to_attrs() for f in ours.factors] != [f.to_attrs() for f in spec.factors]:
        raise DcignError(f"{trained.checkpoint} was trained with another factor table than "
                         f"{store_path}'s ({', '.join(f.name for f in spec.factors)})")


def parse_values(text: str, option: str = "--values") -> np.ndarray:
    """'START:STOP:N' → N evenly spaced latent values from START to STOP inclusive."""
    parts = text.split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        start, stop, n = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise DcignError(f"{option} {text!r} is not START:STOP:N (e.g. -15:15:9)") from None
    if n < 1 or not (np.isfinite(start) and np.isfinite(stop)):
        raise DcignError(f"{option} {text!r}: N must be at least 1 and the ends finite")
    return np.linspace(start, stop, n)


@torch.no_grad()
def decode_images(model: DCIGN, z: torch.Tensor) -> np.ndarray:
    """Latents → uint8 (N, H, W), (N, H, W, 3) rgb, from the decoder's mean output (no
    sampling)."""
    return network_output(torch.sigmoid(model.decode(z)))


@torch.no_grad()
def sweep(model: DCIGN, images: np.ndarray, latent: int, values: np.ndarray,
          device: torch.device, fixed: dict[int, float] | None = None) -> np.ndarray:
    """uint8 (N, 2 + V, H, W): each image, its reconstruction, then its code with one latent
    set to each value (all other latents at the posterior mean, but those `fixed` sets:
    latent index → value) decoded."""
    mu = model.encode(to_tensor(images, device))[0].float()
    rows = [images, decode_images(model, mu)]
    edited = mu.clone()
    for i, v in (fixed or {}).items():
        edited[:, i] = float(v)
    for v in values:
        z = edited.clone()
        z[:, latent] = float(v)
        rows.append(decode_images(model, z))
    return np.stack(rows, axis=1)


def tied_latent(factor: Factor, latent_size: int) -> int | None:
    """The first latent of a factor's group in the store's table; None for 'stored only'."""
    return latent_slice(factor, latent_size).start if factor.ties_latents else None
