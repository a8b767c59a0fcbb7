"""`dcign-rerender`: the learned decoder as a graphics engine. One image in, a strip of novel
views out: the input, its reconstruction, then the code with one factor's latent set to each
requested value (paper figures 4, 5 and 7)."""

from __future__ import annotations

from pathlib import Path

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
"""


def load_gray(path: Path, size: int) -> np.ndarray:
    """Any PIL-readable image → uint8 (size, size) gray; warns on stderr when resizing."""
    return load_image(path, size, channels=1)


def load_image(path: Path, size: int, channels: int = 1) -> np.ndarray:
    """Any PIL-readable image → uint8 (size, size) gray, or (size, size, 3) for a network
    trained on rgb; warns on stderr when resizing."""
    if not path.is_file():
        raise DcignError(f"no image at {path}")
    try:
        with Image.open(path) as im:
            im.load()
            rgb = np.asarray(im.convert("RGB"), dtype=np.float64)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DcignError(f"{path} is not a readable image ({type(exc).__name__})") from None
    image = Image.fromarray(rgb.astype(np.uint8) if channels == 3 else
                            to_gray(rgb).round().clip(0, 255).astype(np.uint8))
    if image.size != (size, size):
        w, h = image.size
        click.echo(f"warning: {path} is {w}×{h}; resized to the model's {size}×{size}",
                   err=True)
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(image)


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
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The strip PNG.")
@click.option("--device", default="auto", show_default=True)
def main(checkpoint, image_path, factor, values_text, latent, out, device):
    """Re-render one image at new values of one factor with the learned decoder.

    The strip shows the input (gray, model-sized), its reconstruction, then one view per
    value, each labelled with the latent value it was decoded with.
    """
    values = parse_values(values_text)
    dev = pick_device(device)
    trained = load_trained(checkpoint, dev)
    z = resolve_latent(trained, factor, latent)
    image = load_image(image_path, trained.image_size, trained.model.arch.channels)
    row = sweep(trained.model, image[None], z, values, dev)[0]
    try:
        strip_image(row, strip_labels(values, z)).save(out)
    except (OSError, ValueError) as exc:
        raise DcignError(f"cannot write {out}: {exc}") from None
    click.echo(f"strip: {out} ({len(values)} views of {factor}, z{z + 1} from "
               f"{values[0]:+g} to {values[-1]:+g})")


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
