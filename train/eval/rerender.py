"""`dcign-rerender`: the learned decoder as a graphics engine. One image in, a strip of novel
views out: the input, its reconstruction, then the code with one factor's latent set to each
requested value (paper figures 4, 5 and 7)."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import click
import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from dcign.shared.cli import DcignCommand
from dcign.shared.errors import DcignError
from dcign.shared.factors import factor_names
from dcign.shared.images import to_gray

from ..device import pick_device
from .trained import load_trained, parse_values, sweep, tied_latent

EPILOG = """\b
Examples:
  # turn a face from -15 to +15 along the azimuth latent, 9 views
  dcign-rerender --checkpoint runs/faces64-dcign --image face.png --factor azimuth \\
                 --values -15:15:9 --out strip.png
\b
  # relight it
  dcign-rerender --checkpoint runs/faces64-dcign --image face.png --factor light \\
                 --values -3:3:7 --out relit.png
\b
  # an edit made in dcign-explore: its latents set, one view
  dcign-rerender --checkpoint runs/faces64-dcign --image face.png --factor azimuth \\
                 --values 1.2:1.2:1 --set z1=1.2 --set z3=-2.5 --out edit.png
"""


def load_gray(path: Path, size: int) -> np.ndarray:
    """Any PIL-readable image → uint8 (size, size) gray; warns on stderr when resizing."""
    return load_image(path, size, channels=1)


def load_image(path: Path, size: int, channels: int = 1) -> np.ndarray:
    """Any PIL-readable image → uint8 (size, size) gray, or (size, size, 3) for a network
    trained on rgb; warns on stderr when resizing."""
    if not path.is_file():
        raise DcignError(f"no image at {path}")
    with open(path, "rb") as f:
        image, (w, h) = model_image(f, size, channels, str(path))
    if (w, h) != (size, size):
        click.echo(f"warning: {path} is {w}×{h}; resized to the model's {size}×{size}",
                   err=True)
    return image


def model_image(file: BinaryIO, size: int, channels: int, name: str
                ) -> tuple[np.ndarray, tuple[int, int]]:
    """An open image file → (uint8 (size, size) gray, or (size, size, 3) for a network trained
    on rgb; its original (width, height)): colour made gray with the paper's weights for a
    gray network, other sizes resized (Lanczos). dcign-rerender and dcign-explore read images
    alike through it, so an explorer's edit re-renders the same."""
    try:
        with Image.open(file) as im:
            im.load()
            rgb = np.asarray(im.convert("RGB"), dtype=np.float64)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise DcignError(f"{name} is not a readable image ({type(exc).__name__})") from None
    image = Image.fromarray(rgb.astype(np.uint8) if channels == 3 else
                            to_gray(rgb).round().clip(0, 255).astype(np.uint8))
    original = image.size
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(image), original


TILE_MIN = 96  # tiles narrower than this are enlarged (nearest) so the labels fit
LABEL_HEIGHT = 16
GAP = 2


def tile_size(image_size: int) -> int:
    return max(image_size, TILE_MIN)


def strip_labels(values: np.ndarray, latent: int) -> list[str]:
    return ["input", "recon."] + [f"z{latent + 1}={v:+.3g}" for v in values]


def strip_image(row: np.ndarray, labels: list[str]) -> Image.Image:
    """uint8 (T, H, W) tiles, or rgb (T, H, W, 3), side by side on white, each under its
    label."""
    tile = tile_size(row.shape[2])
    width = len(row) * (tile + GAP) - GAP
    rgb = row.ndim == 4
    strip = Image.new("RGB" if rgb else "L", (width, tile + LABEL_HEIGHT),
                      (255,) * 3 if rgb else 255)
    draw = ImageDraw.Draw(strip)
    for i, (image, label) in enumerate(zip(row, labels, strict=True)):
        x = i * (tile + GAP)
        strip.paste(Image.fromarray(image).resize((tile, tile), Image.Resampling.NEAREST),
                    (x, LABEL_HEIGHT))
        draw.text((x + 2, 2), label, fill=(0,) * 3 if rgb else 0)
    return strip


@click.command(cls=DcignCommand, epilog=EPILOG,
               context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--checkpoint", required=True, help="Run directory or checkpoint.pt.")
@click.option("--image", "image_path", required=True, type=click.Path(path_type=Path),
              help="Any image PIL reads; colour is converted to gray, other sizes resized.")
@click.option("--factor", required=True, help="Which factor's latent to sweep (e.g. azimuth).")
@click.option("--values", "values_text", default="-15:15:9", show_default=True,
              help="START:STOP:N latent values.")
@click.option("--latent", type=click.IntRange(1), default=None,
              help="Sweep this latent (1-based) instead of the factor's; needed for a VAE run, "
                   "whose factors have no tied latent (dcign-eval reports its best guesses).")
@click.option("--set", "fixed_text", multiple=True, metavar="zN=V",
              help="Set latent N (1-based) to V before the sweep; repeatable (dcign-explore "
                   "writes its edits this way).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The strip PNG.")
@click.option("--device", default="auto", show_default=True)
def main(checkpoint, image_path, factor, values_text, latent, fixed_text, out, device):
    """Re-render one image at new values of one factor with the learned decoder.

    The strip shows the input (gray, model-sized), its reconstruction, then one view per
    value, each labelled with the latent value it was decoded with.
    """
    values = parse_values(values_text)
    dev = pick_device(device)
    trained = load_trained(checkpoint, dev)
    z = resolve_latent(trained, factor, latent)
    fixed = parse_fixed(fixed_text, trained.model.arch.latent_size)
    image = load_image(image_path, trained.image_size, trained.model.arch.channels)
    row = sweep(trained.model, image[None], z, values, dev, fixed)[0]
    try:
        strip_image(row, strip_labels(values, z)).save(out)
    except (OSError, ValueError) as exc:
        raise DcignError(f"cannot write {out}: {exc}") from None
    click.echo(f"strip: {out} ({len(values)} views of {factor}, z{z + 1} from "
               f"{values[0]:+g} to {values[-1]:+g})")


def parse_fixed(texts: tuple[str, ...], size: int) -> dict[int, float]:
    """`--set zN=V` options → {latent index (0-based): value}; one line for a bad one."""
    fixed = {}
    for text in texts:
        name, _, value = text.partition("=")
        try:
            if not (name[:1] in "zZ" and name[1:].isdigit()):
                raise ValueError
            index, number = int(name[1:]), float(value)
        except ValueError:
            raise DcignError(f"--set {text!r} is not zN=V (e.g. z3=1.5)") from None
        if not 1 <= index <= size or not np.isfinite(number):
            raise DcignError(f"--set {text!r}: the code has latents z1 to z{size} and V must "
                             "be finite")
        fixed[index - 1] = number
    return fixed


def resolve_latent(trained, factor: str, latent: int | None) -> int:
    names = factor_names(trained.store_spec.factors)
    if factor not in names:
        raise DcignError(f"{trained.checkpoint} has no factor {factor!r} (choose from "
                         f"{', '.join(names)})")
    size = trained.model.arch.latent_size
    if latent is not None:
        if latent > size:
            raise DcignError(f"--latent {latent}: the code has {size} latents")
        return latent - 1
    if not trained.method.assigns_latents:
        raise DcignError(f"{trained.checkpoint} is a {trained.settings} run with no latent tied "
                         f"to {factor}; give --latent N (dcign-eval reports its best guess)")
    z = tied_latent(trained.factor(factor), size)
    if z is None:
        raise DcignError(f"{factor} is stored only and has no latent in this run's factor table")
    return z


if __name__ == "__main__":  # python -m, as torchrun -m runs it
    main()
