"""`dcign-render`: render one-factor minibatch datasets into Zarr stores."""

from __future__ import annotations

import os
import sys

import click

from dcign.shared.cli import DcignGroup, split_choices
from dcign.shared.errors import DcignError
from dcign.shared.factors import CHAIR_VIEWS, FACE_FACTORS, chair_factors, factor_names

from .aubry import VARY as AUBRY_VARY
from .aubry import ImportRequest, import_aubry
from .chairs import ChairRecipe
from .faces import FaceRecipe
from .objects.mesh_folder import UP_AXES, scan_folder
from .plans import paper_test_share
from .renderer.platform import GL_PLATFORMS, choose_gl_platform
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


def render_options(default_out: str, batches: int, test_batches: int, vary_help: str):
    """The options every rendered dataset shares, with that dataset's defaults."""
    options = [
        click.option("--vary", multiple=True, metavar="FACTOR[,FACTOR]", help=vary_help),
        click.option("--batches", default=batches, show_default=True,
                     help="Training minibatches per varying factor."),
        click.option("--test-batches", default=test_batches, show_default=True,
                     help="Test minibatches per varying factor (identities disjoint from "
                          "training)."),
        click.option("--batch-size", default=20, show_default=True,
                     help="Images per minibatch."),
        click.option("--size", default=150, show_default=True, help="Image side in pixels."),
        click.option("--seed", default=0, show_default=True, help="Seed of every random draw."),
        click.option("--workers", default=None, type=int,
                     help="Rendering processes, each with its own GL context. Default: all "
                          "cores."),
        click.option("--out", default=default_out, show_default=True,
                     type=click.Path(file_okay=True, dir_okay=True),
                     help="The Zarr store to fill."),
        click.option("--overwrite", is_flag=True,
                     help="Replace an existing store made with different settings."),
        click.option("--gl", "gl_platform", type=click.Choice(("auto",) + GL_PLATFORMS),
                     default="auto", show_default=True,
                     help="Offscreen OpenGL: EGL, falling back to OSMesa (or "
                          "PYOPENGL_PLATFORM)."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
    ]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _run(command: str, recipe, vary, batches, test_batches, workers, out, overwrite,
         gl_platform, quiet, **extra):
    """Render the request and print the one-line summary every render command ends with."""
    request = RenderRequest(vary=vary, batches=batches, test_batches=test_batches)
    platform = choose_gl_platform(gl_platform)
    config = {"command": command, "argv": sys.argv[1:], "vary": list(vary), "batches": batches,
              "test_batches": test_batches, "workers": workers, "gl": platform, **extra}
    summary = render_store(out, recipe, request, workers=workers, gl_platform=platform,
                           overwrite=overwrite, progress=not quiet, config=config)
    images = summary.rendered * recipe.batch_size
    click.echo(f"{out}: rendered {summary.rendered} minibatches ({images} images) in "
               f"{summary.seconds:.1f} s, "
               f"{summary.images_per_second * recipe.batch_size:.0f} images/s;"
               f" {summary.already_there} were already there.")


@main.command(epilog=FACES_EPILOG)
@render_options("datasets/faces.zarr", 3000, 350,
                f"Factor(s) to vary, one per minibatch type: "
                f"{', '.join(factor_names(FACE_FACTORS))}. Default: all four.")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="A Basel Face Model file (2009 .mat or 2017 .h5). Default: the embedded "
                   "morphable model, which needs no licence or download.")
def faces(vary, batches, test_batches, batch_size, size, seed, model_path, workers, out,
          overwrite, gl_platform, quiet) -> None:
    """Render morphable-model faces varying in azimuth, elevation, light or identity."""
    vary = split_choices(vary, factor_names(FACE_FACTORS), "factor") or tuple(
        factor_names(FACE_FACTORS))
    workers = workers if workers is not None else (os.cpu_count() or 1)
    check_counts(batch_size, batches, test_batches, size, workers)
    recipe = FaceRecipe(seed=seed, image_size=size, batch_size=batch_size, model_path=model_path)
    _run("faces", recipe, vary, batches, test_batches, workers, out, overwrite, gl_platform,
         quiet)


CHAIRS_EPILOG = """\b
Examples:
  dcign-render chairs                                 # the paper's volume: 1357 chairs,
                                                      # 30 azimuths x 2 elevations, azimuth
                                                      # and intrinsic minibatches (~81k images)
  dcign-render chairs --size 64 --batches 200 --test-batches 20 --out datasets/chairs64.zarr
  dcign-render chairs --views continuous --vary azimuth,elevation,intrinsic
  dcign-render chairs --meshes ShapeNetCore.v2/03001627 --out datasets/shapenet-chairs.zarr
  dcign-render chairs --meshes my_chairs/ --up-axis z

Defaults: 1207 training and 150 test chairs; --batches 1800 and --test-batches 225 per
varying factor give 81,000 images, the paper's 1357 chairs x 60 views. On the grid, a
minibatch varies azimuth over at most 30 distinct values (--batch-size <= 30) and elevation
is held fixed; with --views continuous elevation may vary too. Rerunning resumes; a larger
--batches extends. Inspect with `dcign-store info|verify|preview`.
"""


@main.command(epilog=CHAIRS_EPILOG)
@render_options("datasets/chairs.zarr", 1800, 225,
                "Factor(s) to vary, one per minibatch type: azimuth, intrinsic (and elevation "
                "with --views continuous). Default: every one the views allow.")
@click.option("--views", type=click.Choice(CHAIR_VIEWS), default="grid", show_default=True,
              help="grid: 30 azimuths x elevations 20 and 30 degrees, as the paper; "
                   "continuous: azimuth over the full circle, elevation over 10-40 degrees.")
@click.option("--chairs", default=1357, show_default=True,
              help="Procedural chairs in all (train + test).")
@click.option("--test-chairs", default=None, type=int,
              help="Chairs kept for the test split. Default: 150, or 11% of a --meshes "
                   "folder.")
@click.option("--meshes", "meshes_dir", type=click.Path(file_okay=False), default=None,
              help="Render your own chairs: a folder of OBJ/GLB/glTF/PLY/OFF meshes "
                   "(ShapeNet's <id>/models/model_normalized.obj layout works).")
@click.option("--up-axis", type=click.Choice(UP_AXES), default="y", show_default=True,
              help="Which axis of the --meshes files points up.")
def chairs(vary, batches, test_batches, batch_size, size, seed, workers, out, overwrite,
           gl_platform, quiet, views, chairs, test_chairs, meshes_dir, up_axis) -> None:
    """Render CAD chairs on white varying in azimuth (and elevation) or identity."""
    allowed = factor_names(chair_factors(views))
    if views == "grid":
        allowed = [n for n in allowed if n != "elevation"]
        if any("elevation" in v for v in vary):
            raise DcignError("elevation is held fixed on the grid's 2 elevations: vary it "
                             "with --views continuous")
    vary = split_choices(vary, allowed, "factor") or tuple(allowed)
    workers = workers if workers is not None else (os.cpu_count() or 1)
    check_counts(batch_size, batches, test_batches, size, workers)
    scan = None
    if meshes_dir is not None:
        scan = scan_folder(meshes_dir, up_axis)
        for name, reason in scan.skipped:
            click.echo(f"warning: skipping {name}: {reason}", err=True)
        chairs = len(scan.readable)
        test_chairs = paper_test_share(chairs) if test_chairs is None else test_chairs
    test_chairs = 150 if test_chairs is None else test_chairs
    if not 0 < test_chairs < chairs:
        raise DcignError(f"--test-chairs must lie between 1 and {chairs - 1} "
                         f"(got {test_chairs})")
    recipe = ChairRecipe(seed=seed, image_size=size, batch_size=batch_size, views=views,
                         chairs=chairs, test_chairs=test_chairs,
                         meshes=scan.readable if scan else (),
                         mesh_root=str(scan.root.resolve()) if scan else "",
                         mesh_fingerprint=scan.fingerprint if scan else "", up_axis=up_axis)
    _run("chairs", recipe, vary, batches, test_batches, workers, out, overwrite, gl_platform,
         quiet, views=views, chairs=chairs, test_chairs=test_chairs, meshes=meshes_dir)
    if scan is not None and scan.skipped:
        click.echo(f"skipped {len(scan.skipped)} of {scan.total} files (warnings above)",
                   err=True)


AUBRY_EPILOG = """\b
Examples:
  dcign-render import-aubry rendered_chairs/ --out datasets/chairs-aubry.zarr
  dcign-render import-aubry rendered_chairs/ --size 64 --batches 200 --test-batches 20

The tree is the public "Seeing 3D chairs" archive: <model-id>/renders/
image_NNN_pEEE_tAAA_r096.png (600x600 RGB on white; p elevation, t azimuth). Each image is
cropped to its central --crop square, turned gray (0.21 R + 0.72 G + 0.07 B) and reduced to
--size. Files with other names are reported and skipped. Chairs are split disjointly into
train and test from --seed; rerunning resumes.
"""


@main.command("import-aubry", epilog=AUBRY_EPILOG)
@click.argument("tree", type=click.Path(file_okay=False))
@click.option("--out", default="datasets/chairs-aubry.zarr", show_default=True,
              type=click.Path(file_okay=True, dir_okay=True), help="The Zarr store to fill.")
@click.option("--vary", multiple=True, metavar="FACTOR[,FACTOR]",
              help="Factor(s) to vary: azimuth, intrinsic. Default: both.")
@click.option("--batches", default=1800, show_default=True,
              help="Training minibatches per varying factor.")
@click.option("--test-batches", default=225, show_default=True,
              help="Test minibatches per varying factor (chairs disjoint from training).")
@click.option("--batch-size", default=20, show_default=True, help="Images per minibatch.")
@click.option("--size", default=150, show_default=True, help="Image side in pixels.")
@click.option("--crop", default=450, show_default=True,
              help="Side of the central square kept from each 600x600 render.")
@click.option("--test-chairs", default=None, type=int,
              help="Chairs kept for the test split. Default: 11% (the paper's 150 of 1357).")
@click.option("--seed", default=0, show_default=True,
              help="Seed of the chair split and the minibatch draws.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing store made with different settings.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def import_aubry_command(tree, out, vary, batches, test_batches, batch_size, size, crop,
                         test_chairs, seed, overwrite, quiet) -> None:
    """Convert the Aubry et al. "Seeing 3D chairs" renders into a chairs store."""
    vary = split_choices(vary, list(AUBRY_VARY), "factor") or AUBRY_VARY
    check_counts(batch_size, batches, test_batches, size, 1)
    request = ImportRequest(size=size, batch_size=batch_size, crop=crop, seed=seed,
                            test_chairs=test_chairs, batches=batches,
                            test_batches=test_batches, vary=vary)
    written, present, found = import_aubry(
        tree, out, request, overwrite=overwrite, progress=not quiet,
        warn=lambda m: click.echo(f"warning: {m}", err=True))
    click.echo(f"{out}: imported {written} minibatches ({written * batch_size} images) from "
               f"{len(found.chairs)} chairs; {present} were already there.")
    if found.malformed:
        click.echo(f"skipped {len(found.malformed)} files with malformed names (warnings "
                   "above)", err=True)
