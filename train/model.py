"""The DC-IGN network: a convolutional VAE encoder and an upsample-then-convolve decoder.

`paper150` is exactly the authors' released network for 150×150 grayscale images:

    encoder  (conv 5×5 → max-pool 2×2 → ReLU) × 3, channels 96/48/24: 150→146→73→69→34→30→15
             two linear heads 24·15·15 = 5400 → 200 (μ and log σ²)
    decoder  linear 200 → 5400, ReLU, reshape 24×15×15, then four blocks of nearest-neighbour
             upsampling ×2 and a 7×7 convolution without padding, channels 48/96/96/1:
             15→30→24→48→42→84→78→156→150; ReLU after the first three, sigmoid at the end.

`mirror_odd` (off by default, so `paper150` stays the released function) names latents whose
posterior mean is made odd under a left-right mirror of the image, μᵢ(x) = ½(hᵢ(x) − hᵢ(x̄)),
with log σ²ᵢ made even. For a factor that a mirror negates (face azimuth, light azimuth) this
excludes the folded code that rises to the frontal view and falls on both sides: that code is
even. The weights are the same; the encoder sees each image twice.

Colour: both architectures take the store's channel count (1 gray, 3 rgb) as their input's
channels and their last decoder layer's (`Architecture.channels`, which is the last of
`dec_channels`, so a gray architecture's record is what it was before colour existed).

`small` keeps that shape of computation with "same" padding and fewer channels so that any
image size divisible by 8 (32, 64, 128, ...) trains at a practical speed on a CPU.
The decoder returns logits; the sigmoid is folded into the loss (numerically stable BCE) and
into `reconstruct`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from dcign.shared.errors import DcignError
from dcign.shared.factors import LATENT_SIZE


@dataclass(frozen=True)
class Architecture:
    name: str
    image_size: int
    latent_size: int = LATENT_SIZE
    enc_channels: tuple[int, ...] = (96, 48, 24)
    enc_kernel: int = 5
    enc_padding: int = 0
    dec_start: int = 15  # spatial size of the decoder's first feature map
    dec_channels: tuple[int, ...] = (48, 96, 96, 1)
    dec_kernel: int = 7
    dec_padding: int = 0
    mirror_odd: tuple[int, ...] = ()  # latent indices with a mirror-odd posterior mean

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def channels(self) -> int:
        """The images' colour channels: the encoder's input, the decoder's output."""
        return self.dec_channels[-1]

    def describe(self) -> str:
        odd = ", ".join(f"z{i + 1}" for i in self.mirror_odd)
        return (f"{self.name} {self.image_size}×{self.image_size}"
                + ("" if self.channels == 1 else f"×{self.channels}")
                + (f" (mirror-odd {odd})" if odd else ""))

    @classmethod
    def from_dict(cls, d: dict) -> Architecture:
        return cls(**d | {"enc_channels": tuple(d["enc_channels"]),
                          "dec_channels": tuple(d["dec_channels"]),
                          "mirror_odd": tuple(d.get("mirror_odd", ()))})


PAPER150 = Architecture("paper150", 150)


def small(image_size: int, channels: int = 1) -> Architecture:
    """The CPU-sized family: three conv/pool stages down, three upsample/conv stages up."""
    if image_size < 32 or image_size % 8:
        raise DcignError(f"the small architecture needs an image size divisible by 8 and at "
                         f"least 32; this store has {image_size}×{image_size}")
    # 16/32/32 and 32/16/1 channels: ~230 training images/s at 64×64 on 2 CPU cores, where
    # 32/64/64 gave ~90 and learnt no better in the time a CPU run has.
    return Architecture("small", image_size, enc_channels=(16, 32, 32), enc_padding=2,
                        dec_start=image_size // 8, dec_channels=(32, 16, channels), dec_kernel=5,
                        dec_padding=2)


def architecture_for(name: str, image_size: int, mirror_odd: tuple[int, ...] = (),
                     channels: int = 1) -> Architecture:
    """Resolve --arch against the store's image size ('auto': paper150 at 150, else small)
    and channels (1 gray, 3 rgb)."""
    return replace(_named_architecture(name, image_size, channels), mirror_odd=tuple(mirror_odd))


def _named_architecture(name: str, image_size: int, channels: int) -> Architecture:
    if name == "auto":
        name = "paper150" if image_size == 150 else "small"
    if name == "paper150":
        if image_size != 150:
            raise DcignError(f"architecture paper150 needs 150×150 images; this store has "
                             f"{image_size}×{image_size} (use --arch small)")
        return replace(PAPER150, dec_channels=(*PAPER150.dec_channels[:-1], channels))
    if name == "small":
        return small(image_size, channels)
    raise DcignError(f"unknown architecture {name!r} (choose auto, paper150 or small)")


class DCIGN(nn.Module):
    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        a = arch
        # Values of every convolution's output for one image, most of what a forward pass
        # holds: train/checkpoint.py bounds it for an architecture a file declares.
        self.feature_values = 0
        layers, c_in, size = [], a.channels, a.image_size
        for i, c in enumerate(a.enc_channels):
            layers += [nn.Conv2d(c_in, c, a.enc_kernel, padding=a.enc_padding),
                       nn.MaxPool2d(2), nn.ReLU()]
            conv = self._pixels(size + 2 * a.enc_padding - a.enc_kernel + 1, f"encoder {i}")
            self.feature_values += c * conv * conv
            c_in, size = c, self._pixels(conv // 2, f"encoder {i}'s pooling")
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        flat = c_in * size * size
        self.to_mu = nn.Linear(flat, a.latent_size)
        self.to_logvar = nn.Linear(flat, a.latent_size)

        self.dec_shape = (a.enc_channels[-1], a.dec_start, a.dec_start)
        self.from_z = nn.Sequential(
            nn.Linear(a.latent_size, a.enc_channels[-1] * a.dec_start ** 2), nn.ReLU())
        layers, c_in, out = [], a.enc_channels[-1], a.dec_start
        for i, c in enumerate(a.dec_channels):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(c_in, c, a.dec_kernel, padding=a.dec_padding)]
            if i < len(a.dec_channels) - 1:
                layers.append(nn.ReLU())
            out = self._pixels(2 * out + 2 * a.dec_padding - a.dec_kernel + 1, f"decoder {i}")
            c_in, self.feature_values = c, self.feature_values + c * out * out
        self.decoder = nn.Sequential(*layers)
        if out != a.image_size:
            raise DcignError(f"architecture {a.name} decodes {out}×{out}, not {a.image_size}")
        for m in self.modules():
            # as released: N(0, 0.01) linear weights (not on the meta device, where
            # train/checkpoint.py learns shapes: there normal_ costs a 1 s import of dynamo)
            if isinstance(m, nn.Linear) and not m.weight.is_meta:
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
        odd = torch.zeros(a.latent_size, dtype=torch.bool)
        odd[list(a.mirror_odd)] = True
        self.register_buffer("odd", odd, persistent=False)

    def _pixels(self, size: int, layer: str) -> int:
        """A feature map's side; one line where a layer would have none (a kernel larger than
        its input), which would otherwise fail only when the network first runs."""
        if size < 1:
            raise DcignError(f"architecture {self.arch.name} leaves {layer} no pixels of a "
                             f"{self.arch.image_size}×{self.arch.image_size} image")
        return size

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (N, C, H, W) in [0, 1] → μ, log σ² (N, latent_size)."""
        if not self.arch.mirror_odd:
            h = self.encoder(x)
            return self.to_mu(h), self.to_logvar(h)
        h, h_mirrored = self.encoder(torch.cat([x, x.flip(-1)])).chunk(2)
        mu, mu_mirrored = self.to_mu(h), self.to_mu(h_mirrored)
        logvar, logvar_mirrored = self.to_logvar(h), self.to_logvar(h_mirrored)
        return (torch.where(self.odd, (mu - mu_mirrored) / 2, mu),
                torch.where(self.odd, (logvar + logvar_mirrored) / 2, logvar))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (N, latent_size) → pixel logits (N, C, H, W), one per pixel and channel."""
        return self.decoder(self.from_z(z).view(-1, *self.dec_shape))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean's decoding, as images in [0, 1]."""
        return torch.sigmoid(self.decode(self.encode(x)[0]))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
