"""What `dcign-explore` computes, without its page: an image encoded, the factor sliders and
what each sets in the code, a code decoded, two codes interpolated, and the `dcign-rerender`
command that re-renders an edit. Plain functions over a `Trained` network and numpy arrays,
so they are tested without a browser and timed by `benchmarks/explore_step.py`.

A slider belongs to one factor. A factor tied to one latent is a slider of that latent's
value; a full turn tied to a circle of two latents (chairs' `--latent-group azimuth=2`) is one
angle slider θ setting (r cos θ, r sin θ), r the image's encoded radius, so turning keeps the
code's distance from the centre; any other group is a slider per latent. A run that ties no
latent (a VAE baseline) gets, per factor, the latent `dcign-eval` judges it on
(`baseline_latent`: the largest variance within held-out minibatches where only that factor
varies), so it needs a store.

The baseline beside the main run takes "the same edit" as `dcign-eval`'s side-by-side figures
take the same sweep: its latent for a factor is set to the value the main run's first latent
of that factor has.
"""

from __future__ import annotations

import io
import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dcign.shared.errors import DcignError
from dcign.shared.factors import Factor, latent_slice
from dcign.shared.store import Store

from .encoding import baseline_latent, encode_split, to_tensor
from .rerender import model_image
from .trained import Trained, check_same_kind, decode_images

LATENT_RANGE = 6.0  # a latent slider's ends, ± this, when no store shows the codes' spread
MIN_RANGE = 3.0  # with a store: the held-out codes' spread padded by half, and at least ± this
FULL_TURN = 360.0

@dataclass(frozen=True)
class Slider:
    """One factor's control: which latents it sets, and how."""

    factor: str
    latents: tuple[int, ...]  # 0-based indices into the code
    angle: bool  # True: one angle (degrees) for a circle of two latents
    low: float
    high: float

    @property
    def label(self) -> str:
        zs = ",".join(f"z{i + 1}" for i in self.latents)
        return f"{self.factor} ({'angle of ' if self.angle else ''}{zs})"

    def value(self, code: np.ndarray) -> float:
        """The slider's position for a code: the latent, or the circle's angle in [0, 360)."""
        if self.angle:
            a, b = (float(code[i]) for i in self.latents)
            return math.degrees(math.atan2(b, a)) % FULL_TURN
        return float(code[self.latents[0]])

    def set(self, code: np.ndarray, value: float, radius_from: np.ndarray) -> None:
        """Put the slider's value into `code` (in place); an angle keeps `radius_from`'s
        radius on the circle."""
        if self.angle:
            r = float(np.hypot(*(radius_from[i] for i in self.latents)))
            theta = math.radians(value)
            code[self.latents[0]], code[self.latents[1]] = r * math.cos(theta), r * math.sin(theta)
        else:
            for i in self.latents:
                code[i] = value


def _is_circle(factor: Factor, latents: range) -> bool:
    return (len(latents) == 2 and factor.low is not None and factor.high is not None
            and factor.high - factor.low == FULL_TURN)


def sliders(trained: Trained, store: Store | None = None) -> list[Slider]:
    """The sliders of a run's factors (intrinsic and stored-only factors have none). With a
    store, a latent slider spans its held-out codes' spread, padded by half of it, and at
    least ±MIN_RANGE; without, ±LATENT_RANGE."""
    size = trained.model.arch.latent_size
    chosen = None if trained.method.assigns_latents else chosen_latents(trained, store)
    out = []
    for f in trained.factors:
        if f.is_intrinsic or not f.ties_latents:
            continue
        if chosen is not None:
            groups = [(chosen[f.name],)]
            angle = False
        else:
            zs = range(*latent_slice(f, size).indices(size))
            angle = _is_circle(f, zs)
            groups = [tuple(zs)] if angle else [(i,) for i in zs]
        for g in groups:
            if angle:
                out.append(Slider(f.name, g, True, 0.0, FULL_TURN))
            else:
                low, high = _spread(trained, store, f, g[0])
                out.append(Slider(f.name, g, False, low, high))
    return out


def chosen_latents(trained: Trained, store: Store | None) -> dict[str, int]:
    """Per factor, the latent a run that ties none is judged on (`baseline_latent`)."""
    if store is None:
        raise DcignError(f"{trained.checkpoint} is a {trained.settings} run with no latent "
                         "tied to a factor; give --store so that its latents are chosen as "
                         "dcign-eval chooses them")
    check_same_kind(trained, store.spec, store.path)
    device = next(trained.model.parameters()).device
    return {f.name: baseline_latent(encode_split(trained.model, store, "test", f.name, device),
                                    store.spec.batch_size)
            for f in trained.factors if not f.is_intrinsic and f.ties_latents}


def _spread(trained: Trained, store: Store | None, factor: Factor, latent: int
            ) -> tuple[float, float]:
    if store is None:
        return -LATENT_RANGE, LATENT_RANGE
    device = next(trained.model.parameters()).device
    mu = encode_split(trained.model, store, "test", factor.name, device).mu[:, latent]
    lo, hi = float(mu.min()), float(mu.max())
    pad = 0.5 * (hi - lo)
    return (round(min(lo - pad, -MIN_RANGE), 2), round(max(hi + pad, MIN_RANGE), 2))


def read_image(data: bytes, size: int, channels: int = 1, name: str = "the image"
               ) -> np.ndarray:
    """Image file bytes (any format PIL reads) → uint8 (size, size) gray, or (size, size, 3)
    for a network trained on rgb (`channels` 3), as dcign-rerender reads its --image."""
    return model_image(io.BytesIO(data), size, channels, name)[0]


@torch.no_grad()
def encode(trained: Trained, gray: np.ndarray) -> np.ndarray:
    """uint8 (H, W), or (H, W, 3) rgb, at the model's size → its posterior mean, float32
    (latents,)."""
    device = next(trained.model.parameters()).device
    return trained.model.encode(to_tensor(gray[None], device))[0][0].float().cpu().numpy()


@torch.no_grad()
def decode(trained: Trained, code: np.ndarray) -> np.ndarray:
    """A code (latents,) → uint8 (H, W), or (H, W, 3) rgb, the decoder's mean output."""
    device = next(trained.model.parameters()).device
    z = torch.as_tensor(np.asarray(code, np.float32)[None], device=device)
    return decode_images(trained.model, z)[0]


def edited(code: np.ndarray, controls: list[Slider], values: Mapping[int, float]
           ) -> np.ndarray:
    """The code with slider k set to values[k] (sliders not named keep the code's value)."""
    out = np.array(code, np.float32)
    for k, value in values.items():
        controls[k].set(out, float(value), code)
    return out


def interpolate(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """The straight line from code a (t = 0) to code b (t = 1)."""
    return ((1.0 - t) * np.asarray(a, np.float32) + t * np.asarray(b, np.float32)
            ).astype(np.float32)


def same_edit(main: list[Slider], baseline: list[Slider], code: np.ndarray,
              main_code: np.ndarray) -> np.ndarray:
    """The baseline's code (`code`) with each factor's latent set to the value the main run's
    first latent of that factor has in `main_code` (its edited code)."""
    out = np.array(code, np.float32)
    first = {}
    for s in main:
        first.setdefault(s.factor, float(main_code[s.latents[0]]))
    for s in baseline:
        if s.factor in first:
            for i in s.latents:
                out[i] = first[s.factor]
    return out


def latent_text(value: float) -> str:
    """A latent value as the command writes it: the shortest decimal that reads back as the
    same float32, so the command re-renders the very code shown."""
    return np.format_float_positional(np.float32(value), trim="-")


def rerender_command(checkpoint: Path | str, image: Path | str, code: np.ndarray,
                     controls: list[Slider], tied: bool = True, out: str = "edit.png") -> str:
    """The `dcign-rerender` command that draws `code` (an edit of the image's code in the
    sliders' latents): every slider latent set with --set, one view of the first slider's
    first latent at its value (named with --latent for a run that ties none: `tied` False)."""
    latents = [i for s in controls for i in s.latents]
    if not latents:
        raise DcignError("no factor has a latent to set")
    first = controls[0]
    v = latent_text(code[first.latents[0]])
    args = ["dcign-rerender", "--checkpoint", str(checkpoint), "--image", str(image),
            "--factor", first.factor, f"--values={v}:{v}:1"]
    if not tied:
        args += ["--latent", str(first.latents[0] + 1)]
    for i in latents:
        args += ["--set", f"z{i + 1}={latent_text(code[i])}"]
    return shlex.join([*args, "--out", out])


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 (H, W) gray or (H, W, 3) rgb → PNG bytes (lossless: the page shows the decoder's
    very pixels)."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
