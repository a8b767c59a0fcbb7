"""`dcign-render`: render one-factor minibatch datasets into Zarr stores."""

from __future__ import annotations

import os
import sys

import click

from dcign.shared.cli import DcignGroup, split_choices
from dcign.shared.factors import FACE_FACTORS, factor_names

from .backend import GL_PLATFORMS, choose_gl_platform
from .faces import FaceRecipe
from .writer import RenderRequest, check_counts, render_store

FACES_EPILOG = """\b
Examples:
  dcign-render faces                                  # the paper's layout: 4 factors x
                                                      # 3000 train + 350 test minibatches
  dcign-render faces --vary light --batches 12000     # only light-varying minibatches
  dcign-render faces --size 64 --batches 200 --test-batches 20 --out datasets/faces64.zarr
  dcign-render faces --model 01_MorphableModel.mat    # the licensed Basel Face Model 2009

Rerunning a command resumes where it stopped; a larger --batches extends the store and a
new --vary appends factors. A store made with another size, seed or model is refused
unless --overwrite is given. Inspect the result with `dcign-store info|verify|preview`.
"""


@click.group(cls=DcignGroup)
@click.version_option(package_name="dcign")
def main() -> None:
    """Render DC-IGN training data: grayscale minibatches in which exactly one factor varies."""


@main.command(epilog=FACES_EPILOG)
@click.option("--vary", multiple=True, metavar="FACTOR[,FACTOR]",
              help=f"Factor(s) to vary, one per minibatch type: "
                   f"{', '.join(factor_names(FACE_FACTORS))}. Default: all four.")
@click.option("--batches", default=3000, show_default=True,
              help="Training minibatches per varying factor.")
@click.option("--test-batches", default=350, show_default=True,
              help="Test minibatches per varying factor (identities disjoint from training).")
@click.option("--batch-size", default=20, show_default=True, help="Images per minibatch.")
@click.option("--size", default=150, show_default=True, help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True, help="Seed of every random draw.")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="A Basel Face Model file (2009 .mat or 2017 .h5). Default: the embedded "
                   "morphable model, which needs no licence or download.")
@click.option("--workers", default=None, type=int,
              help="Rendering processes, each with its own GL context. Default: all cores.")
@click.option("--out", default="datasets/faces.zarr", show_default=True,
              type=click.Path(file_okay=True, dir_okay=True), help="The Zarr store to fill.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing store made with different settings.")
@click.option("--gl", "gl_platform", type=click.Choice(("auto",) + GL_PLATFORMS),
              default="auto", show_default=True,
              help="Offscreen OpenGL: EGL, falling back to OSMesa (or PYOPENGL_PLATFORM).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def faces(vary, batches, test_batches, batch_size, size, seed, model_path, workers, out,
          overwrite, gl_platform, quiet) -> None:
    """Render morphable-model faces varying in azimuth, elevation, light or identity."""
    vary = split_choices(vary, factor_names(FACE_FACTORS), "factor") or tuple(
        factor_names(FACE_FACTORS))
    workers = workers if workers is not None else (os.cpu_count() or 1)
    check_counts(batch_size, batches, test_batches, size, workers)
    recipe = FaceRecipe(seed=seed, image_size=size, batch_size=batch_size, model_path=model_path)
    request = RenderRequest(vary=vary, batches=batches, test_batches=test_batches)
    platform = choose_gl_platform(gl_platform)
    config = {"command": "faces", "argv": sys.argv[1:], "vary": list(vary), "batches": batches,
              "test_batches": test_batches, "workers": workers, "gl": platform}
    summary = render_store(out, recipe, request, workers=workers, gl_platform=platform,
                           overwrite=overwrite, progress=not quiet, config=config)
    images = summary.rendered * batch_size
    click.echo(f"{out}: rendered {summary.rendered} minibatches ({images} images) in "
               f"{summary.seconds:.1f} s, {summary.images_per_second * batch_size:.0f} images/s;"
               f" {summary.already_there} were already there.")
