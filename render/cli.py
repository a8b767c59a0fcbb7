"""`dcign-render`: render one-factor minibatch datasets into Zarr stores.

Every default an option shows is read from the dataset's recipe (`default_of`) or its named
minibatch counts, so each is stated once, where the dataset is defined.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click
from tqdm import tqdm

from dcign.shared.cli import DcignGroup, default_of, split_choices
from dcign.shared.dask_cluster import SCHEDULER_VARIABLE, choose_scheduler
from dcign.shared.errors import DcignError
from dcign.shared.factors import CHAIR_VIEWS, FACE_FACTORS, chair_factors, factor_names
from dcign.shared.images import CHANNELS, GRAY
from dcign.shared.plans import PAPER_CHAIRS, paper_test_share
from dcign.shared.store import open_store
from dcign.shared.verify import verify_store

from .generators.aubry import AUBRY_MINIBATCHES, VARY, AubryRecipe
from .generators.base import DatasetGenerator, DatasetRecipe, MinibatchCounts
from .generators.chairs import CHAIR_MINIBATCHES, ChairRecipe
from .generators.faces import FACE_MINIBATCHES, FaceRecipe
from .generators.from_store import recipe_for
from .objects.aubry_tree import scan_tree
from .objects.mesh_folder import UP_AXES, FolderScan, scan_folder
from .renderer.platform import GL_PLATFORMS
from .writer import RenderRequest, RenderSummary, check_counts, render_store

PAPER_TEST_PERCENT = round(100 * PAPER_CHAIRS.test / PAPER_CHAIRS.chairs)
PAPER_CHAIR_IMAGES = 2 * (CHAIR_MINIBATCHES.train + CHAIR_MINIBATCHES.test) * default_of(
    ChairRecipe, "batch_size")  # azimuth and intrinsic minibatches

FACES_EPILOG = f"""\b
Examples:
  dcign-render faces                                  # the paper's layout: 4 factors x
                                                      # {FACE_MINIBATCHES.train} train + \
{FACE_MINIBATCHES.test} test minibatches
  dcign-render faces --vary light --batches 12000     # only light-varying minibatches
  dcign-render faces --size 64 --batches 200 --test-batches 20 --out datasets/faces64.zarr
  dcign-render faces --model 01_MorphableModel.mat    # the licensed Basel Face Model 2009
  dcign-render faces --scheduler tcp://10.0.0.5:8786  # on your Dask cluster
  dcign-render faces --out s3://my-bucket/faces.zarr  # straight into a bucket

Rerunning a command resumes where it stopped; a larger --batches extends the store and a
new --vary appends factors. A store made with another size, seed or model is refused
unless --overwrite is given. Inspect the result with `dcign-store info|verify|preview`.
"""


@click.group(cls=DcignGroup)
@click.version_option(package_name="dcign")
def main() -> None:
    """Render DC-IGN training data: grayscale minibatches in which exactly one factor varies."""


def _count_options(recipe: type, counts: MinibatchCounts, split_help: str) -> list:
    """--batches, --test-batches, --batch-size and --size, with the dataset's defaults."""
    return [
        click.option("--batches", default=counts.train, show_default=True,
                     help="Training minibatches per varying factor."),
        click.option("--test-batches", default=counts.test, show_default=True,
                     help=f"Test minibatches per varying factor ({split_help})."),
        click.option("--batch-size", default=default_of(recipe, "batch_size"),
                     show_default=True, help="Images per minibatch."),
        click.option("--size", default=default_of(recipe, "image_size"), show_default=True,
                     help="Image side in pixels."),
    ]


def _seed_option(recipe: type, help_text: str):
    return click.option("--seed", default=default_of(recipe, "seed"), show_default=True,
                        help=help_text)


def _workers_options(help_text: str) -> list:
    return [
        click.option("--workers", default=None, type=int,
                     help=f"{help_text} More than one runs a pool of worker processes on "
                          "this machine (no network: they talk over pipes). Default: all "
                          "cores. Given, the run stays on this machine even when "
                          f"{SCHEDULER_VARIABLE} is set."),
        click.option("--scheduler", default=None, metavar="ADDRESS",
                     help="Send the shard tasks to your Dask cluster instead (e.g. "
                          "tcp://10.0.0.5:8786); its workers need dcign installed, and what "
                          "they return is unpickled here: use a cluster you trust. Without "
                          f"--scheduler or --workers, {SCHEDULER_VARIABLE} is used when set "
                          "(announced on stderr and recorded in the store's history)."),
        click.option("--verbose", is_flag=True,
                     help="Show the local workers' output on the terminal. Otherwise it goes "
                          "to a file in the temporary directory, kept and named if the run "
                          "fails (a cluster of yours logs as you set it up)."),
    ]


def _out_option(default_out: str):
    return click.option("--out", default=default_out, show_default=True,
                        type=click.Path(file_okay=True, dir_okay=True),
                        help="The Zarr store to fill.")


OVERWRITE_OPTION = click.option(
    "--overwrite", is_flag=True,
    help="Replace an existing store made with different settings (a store made with the same "
         "settings is kept, and resumed or extended).")
QUIET_OPTION = click.option("--quiet", is_flag=True, help="No progress bar.")


def _decorate(options: list):
    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def render_options(recipe: type, counts: MinibatchCounts, default_out: str, vary_help: str):
    """The options every rendered dataset shares, with that dataset's defaults."""
    return _decorate([
        click.option("--vary", multiple=True, metavar="FACTOR[,FACTOR]", help=vary_help),
        *_count_options(recipe, counts, "identities disjoint from training"),
        _seed_option(recipe, "Seed of every random draw."),
        *_workers_options("Rendering processes, each with its own GL context."),
        _out_option(default_out),
        OVERWRITE_OPTION,
        click.option("--gl", "gl_platform", type=click.Choice(("auto",) + GL_PLATFORMS),
                     default="auto", show_default=True,
                     help="Offscreen OpenGL: EGL, falling back to OSMesa (or "
                          "PYOPENGL_PLATFORM)."),
        click.option("--color", type=click.Choice(tuple(CHANNELS)),
                     default=default_of(recipe, "color"), show_default=True,
                     help="gray: the paper's images; rgb: colour images, a channel axis "
                          "last (H, W, 3)."),
        QUIET_OPTION,
    ])


def _colour_record(color: str) -> dict:
    """What a run's history says of its colour: nothing for gray (a gray store's attributes
    stay as they were before colour existed)."""
    return {} if color == GRAY else {"color": color}


def _all_cores(workers: int | None) -> int:
    return workers if workers is not None else (os.cpu_count() or 1)


@dataclass(frozen=True)
class Placement:
    """Where the shard tasks run: `workers` local processes, or the cluster at `scheduler`
    (its address from `scheduler_from`: --scheduler or the environment)."""

    workers: int
    scheduler: str | None
    scheduler_from: str | None

    @classmethod
    def of(cls, workers: int | None, scheduler: str | None) -> Placement:
        address, source = choose_scheduler(scheduler, workers_given=workers is not None)
        return cls(_all_cores(workers), address, source)

    def record(self) -> dict:
        """What the store's history says of it."""
        return {"workers": self.workers, "scheduler": self.scheduler,
                "scheduler_from": self.scheduler_from}


def _run(command: str, recipe: DatasetRecipe, vary, batches, test_batches,
         placement: Placement, out, overwrite, gl_platform: str, quiet, verbose,
         generator: DatasetGenerator | None = None, **extra) -> RenderSummary:
    """Fill the store through the writer, recording the command in its history (the writer
    probes the GL platform only for a recipe that renders through GL)."""
    request = RenderRequest(vary=vary, batches=batches, test_batches=test_batches)
    config = {"command": command, "argv": sys.argv[1:], "vary": list(vary), "batches": batches,
              "test_batches": test_batches, **placement.record(),
              "gl": gl_platform if recipe.needs_gl else None, **extra}
    return render_store(out, recipe, request, workers=placement.workers,
                        gl_platform=gl_platform, overwrite=overwrite, progress=not quiet,
                        config=config, generator=generator, scheduler=placement.scheduler,
                        scheduler_from=placement.scheduler_from, verbose=verbose,
                        verb="rendering" if recipe.needs_gl else "importing")


def _echo_rendered(out, summary: RenderSummary, batch_size: int) -> None:
    """The one-line summary every render command ends with."""
    images = summary.rendered * batch_size
    click.echo(f"{out}: rendered {summary.rendered} minibatches ({images} images) in "
               f"{summary.seconds:.1f} s, "
               f"{summary.minibatches_per_second * batch_size:.0f} images/s;"
               f" {summary.already_there} were already there.")


@main.command(epilog=FACES_EPILOG)
@render_options(FaceRecipe, FACE_MINIBATCHES, "datasets/faces.zarr",
                f"Factor(s) to vary, one per minibatch type: "
                f"{', '.join(factor_names(FACE_FACTORS))}. Default: all four.")
@click.option("--model", "model_path", type=click.Path(dir_okay=False),
              default=default_of(FaceRecipe, "model_path"),
              help="A Basel Face Model file (2009 .mat or 2017 .h5). Default: the embedded "
                   "morphable model, which needs no licence or download.")
def faces(vary, batches, test_batches, batch_size, size, seed, workers, scheduler, verbose,
          out, overwrite, gl_platform, color, quiet, model_path) -> None:
    """Render morphable-model faces varying in azimuth, elevation, light or identity."""
    vary = split_choices(vary, factor_names(FACE_FACTORS), "factor") or tuple(
        factor_names(FACE_FACTORS))
    placement = Placement.of(workers, scheduler)
    check_counts(batch_size, batches, test_batches, size, placement.workers)
    recipe = FaceRecipe(seed=seed, image_size=size, batch_size=batch_size, model_path=model_path,
                        color=color)
    summary = _run("faces", recipe, vary, batches, test_batches, placement, out, overwrite,
                   gl_platform, quiet, verbose, **_colour_record(color))
    _echo_rendered(out, summary, batch_size)


CHAIRS_EPILOG = f"""\b
Examples:
  dcign-render chairs                                 # the paper's volume: \
{PAPER_CHAIRS.chairs} chairs,
                                                      # 30 azimuths x 2 elevations, azimuth
                                                      # and intrinsic minibatches \
(~{PAPER_CHAIR_IMAGES // 1000}k images)
  dcign-render chairs --size 64 --batches 200 --test-batches 20 --out datasets/chairs64.zarr
  dcign-render chairs --views continuous --vary azimuth,elevation,intrinsic
  dcign-render chairs --meshes ShapeNetCore.v2/03001627 --out datasets/shapenet-chairs.zarr
  dcign-render chairs --meshes my_chairs/ --up-axis z

Defaults: {PAPER_CHAIRS.chairs - PAPER_CHAIRS.test} training and {PAPER_CHAIRS.test} test \
chairs; --batches {CHAIR_MINIBATCHES.train} and --test-batches {CHAIR_MINIBATCHES.test} per
varying factor give {PAPER_CHAIR_IMAGES:,} images, the paper's {PAPER_CHAIRS.chairs} chairs \
x 60 views. On the grid, a
minibatch varies azimuth over at most 30 distinct values (--batch-size <= 30) and elevation
is held fixed; with --views continuous elevation may vary too. Rerunning resumes; a larger
--batches extends. Inspect with `dcign-store info|verify|preview`.
"""


def _chair_factors_to_vary(vary: tuple[str, ...], views: str) -> tuple[str, ...]:
    """The chosen factors; on the grid, elevation (two values) cannot vary."""
    allowed = factor_names(chair_factors(views))
    if views == "grid":
        allowed = [n for n in allowed if n != "elevation"]
        if any("elevation" in v for v in vary):
            raise DcignError("elevation is held fixed on the grid's 2 elevations: vary it "
                             "with --views continuous")
    return split_choices(vary, allowed, "factor") or tuple(allowed)


def _scan_meshes(meshes_dir: str, up_axis: str) -> FolderScan:
    scan = scan_folder(meshes_dir, up_axis)
    for name, reason in scan.skipped:
        click.echo(f"warning: skipping {name}: {reason}", err=True)
    return scan


@main.command(epilog=CHAIRS_EPILOG)
@render_options(ChairRecipe, CHAIR_MINIBATCHES, "datasets/chairs.zarr",
                "Factor(s) to vary, one per minibatch type: azimuth, intrinsic (and elevation "
                "with --views continuous). Default: every one the views allow.")
@click.option("--views", type=click.Choice(CHAIR_VIEWS), default=default_of(ChairRecipe, "views"),
              show_default=True,
              help="grid: 30 azimuths x elevations 20 and 30 degrees, as the paper; "
                   "continuous: azimuth over the full circle, elevation over 10-40 degrees.")
@click.option("--chairs", default=default_of(ChairRecipe, "chairs"), show_default=True,
              help="Procedural chairs in all (train + test).")
@click.option("--test-chairs", default=None, type=int,
              help=f"Chairs kept for the test split. Default: "
                   f"{default_of(ChairRecipe, 'test_chairs')}, or {PAPER_TEST_PERCENT}% of a "
                   "--meshes folder.")
@click.option("--meshes", "meshes_dir", type=click.Path(file_okay=False), default=None,
              help="Render your own chairs: a folder of OBJ/GLB/glTF/PLY/OFF meshes "
                   "(ShapeNet's <id>/models/model_normalized.obj layout works).")
@click.option("--up-axis", type=click.Choice(UP_AXES), default=default_of(ChairRecipe, "up_axis"),
              show_default=True, help="Which axis of the --meshes files points up.")
def chairs(vary, batches, test_batches, batch_size, size, seed, workers, scheduler, verbose,
           out, overwrite, gl_platform, color, quiet, views, chairs, test_chairs, meshes_dir,
           up_axis) -> None:
    """Render CAD chairs on white varying in azimuth (and elevation) or identity."""
    vary = _chair_factors_to_vary(vary, views)
    placement = Placement.of(workers, scheduler)
    check_counts(batch_size, batches, test_batches, size, placement.workers)
    scan = _scan_meshes(meshes_dir, up_axis) if meshes_dir is not None else None
    if test_chairs is None:
        test_chairs = (paper_test_share(len(scan.readable)) if scan
                       else default_of(ChairRecipe, "test_chairs"))
    recipe = ChairRecipe(seed=seed, image_size=size, batch_size=batch_size, views=views,
                         chairs=len(scan.readable) if scan else chairs, test_chairs=test_chairs,
                         meshes=scan.readable if scan else (),
                         mesh_root=str(scan.root.resolve()) if scan else "",
                         mesh_fingerprint=scan.fingerprint if scan else "", up_axis=up_axis,
                         color=color)
    summary = _run("chairs", recipe, vary, batches, test_batches, placement, out, overwrite,
                   gl_platform, quiet, verbose, views=views, chairs=recipe.total_chairs,
                   test_chairs=test_chairs, meshes=meshes_dir, **_colour_record(color))
    _echo_rendered(out, summary, batch_size)
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
@_decorate([
    _out_option("datasets/chairs-aubry.zarr"),
    click.option("--vary", multiple=True, metavar="FACTOR[,FACTOR]",
                 help=f"Factor(s) to vary: {', '.join(VARY)}. Default: both."),
    *_count_options(AubryRecipe, AUBRY_MINIBATCHES, "chairs disjoint from training"),
    click.option("--crop", default=default_of(AubryRecipe, "crop"), show_default=True,
                 help="Side of the central square kept from each 600x600 render."),
    click.option("--test-chairs", default=default_of(AubryRecipe, "test_chairs"), type=int,
                 help=f"Chairs kept for the test split. Default: {PAPER_TEST_PERCENT}% (the "
                      f"paper's {PAPER_CHAIRS.test} of {PAPER_CHAIRS.chairs})."),
    _seed_option(AubryRecipe, "Seed of the chair split and the minibatch draws."),
    *_workers_options("Importing processes, each reading its share of the renders."),
    OVERWRITE_OPTION,
    QUIET_OPTION,
])
def import_aubry_command(tree, out, overwrite, vary, batches, test_batches, batch_size, size,
                         seed, workers, scheduler, verbose, crop, test_chairs, quiet) -> None:
    """Convert the Aubry et al. "Seeing 3D chairs" renders into a chairs store."""
    vary = split_choices(vary, list(VARY), "factor") or VARY
    placement = Placement.of(workers, scheduler)
    check_counts(batch_size, batches, test_batches, size, placement.workers)
    found = scan_tree(tree)
    recipe = AubryRecipe(found, image_size=size, batch_size=batch_size, crop=crop, seed=seed,
                         test_chairs=test_chairs)
    generator = recipe.load()
    generator.check(vary)  # before the warnings: a refused request prints its one line only
    for name in found.malformed:
        click.echo(f"warning: skipping {name}: not image_NNN_pEEE_tAAA_rDDD.png", err=True)
    summary = _run("import-aubry", recipe, vary, batches, test_batches, placement, out,
                   overwrite, "auto", quiet, verbose, generator=generator, tree=str(Path(tree)),
                   batch_size=batch_size, size=size, crop=crop, seed=seed,
                   test_chairs=generator.test_chairs)
    written = summary.rendered
    click.echo(f"{out}: imported {written} minibatches ({written * batch_size} images) from "
               f"{len(found.chairs)} chairs; {summary.already_there} were already there.")
    if found.malformed:
        click.echo(f"skipped {len(found.malformed)} files with malformed names (warnings "
                   "above)", err=True)


REPAIR_EPILOG = """\b
Examples:
  dcign-store verify datasets/faces.zarr       # names each damaged minibatch
  dcign-render repair datasets/faces.zarr      # renders exactly those again
  dcign-render repair datasets/chairs-aubry.zarr   # an import: read again from its tree

Each minibatch is a pure function of the store's recipe and its index, so a repaired store
is byte-identical to one that was never damaged. A Basel model file, a mesh folder or an
Aubry tree must still be where the store says it was, unchanged.
"""


@main.command(epilog=REPAIR_EPILOG)
@click.argument("store_path", metavar="STORE")
@_decorate([
    *_workers_options("Rendering processes, each with its own GL context."),
    click.option("--gl", "gl_platform", type=click.Choice(("auto",) + GL_PLATFORMS),
                 default="auto", show_default=True, help="Offscreen OpenGL, as for rendering."),
    QUIET_OPTION,
])
def repair(store_path, workers, scheduler, verbose, gl_platform, quiet) -> None:
    """Render the damaged minibatches of a store again (missing chunks, checksum failures,
    unreadable or broken ones), found as `dcign-store verify` finds them."""
    store = open_store(store_path)
    with tqdm(total=sum(len(store.complete(s, f)) for s, f in store.sections()),
              unit="minibatch", desc="checking", leave=False, disable=quiet) as bar:
        findings = verify_store(store, on_minibatch=lambda: bar.update(1))
    if not findings.damaged:
        click.echo(f"{store.path}: nothing to repair: every complete minibatch reads back "
                   "intact")
        return
    recipe = recipe_for(store.spec, store.path)
    placement = Placement.of(workers, scheduler)
    config = {"command": "repair", "argv": sys.argv[1:], **placement.record(),
              "gl": gl_platform if recipe.needs_gl else None, "damaged": findings.damaged_count}
    summary = render_store(store.path, recipe, None, workers=placement.workers,
                           gl_platform=gl_platform, progress=not quiet, config=config,
                           scheduler=placement.scheduler,
                           scheduler_from=placement.scheduler_from, damaged=findings.damaged,
                           verb="repairing", verbose=verbose)
    click.echo(f"{store.path}: repaired {findings.damaged_count} damaged minibatches "
               f"({summary.rendered} rendered again in {summary.seconds:.1f} s); check it "
               f"with `dcign-store verify {store.path}`")


if __name__ == "__main__":  # python -m, as torchrun -m runs it
    main()
