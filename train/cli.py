"""`dcign-train`: train DC-IGN (or the plain-VAE baseline, or today's methods) on a dcign Zarr
store, then measure the network on the store's held-out minibatches.

This is where training meets evaluation: the loop (`loop.py`) is handed the held-out
measurement (`eval/held_out.py`) to run once training ends, and never imports `eval/`.
The flags are built from `TrainConfig` (every default) and the method registry (`--mode`,
`--beta` and each method's own flags); torch is imported only once the arguments parse.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from tqdm import tqdm

from dcign.shared.cli import DcignCommand, default_of
from dcign.shared.errors import DcignError

from .config import CLAMP_RULES, OPTIMIZERS, PRECISIONS, TrainConfig
from .modes import METHODS, beta_weighted

if TYPE_CHECKING:
    from .loop import Result, Run
    from .runlog import RunLog


def default(name: str):
    """The option's default is TrainConfig's: one place for each."""
    return default_of(TrainConfig, name)


MODE_HELP = ("; ".join(f"{name}: {cls.summary}" for name, cls in METHODS.items())
             + ". All train the same network with the same loss convention "
               "(see train/modes.py).")
BETA_HELP = ("β of "
             + ", ".join(f"{name} (default {METHODS[name].default_beta:g})"
                         for name in beta_weighted())
             + ": the KL's weight; β-TCVAE's weighs its total-correlation term alone.")


def method_flags(command):
    """Each method's own flags, as its class declares them (modes.py)."""
    for cls in reversed(METHODS.values()):
        for option in reversed(cls.options):
            command = click.option(option.flag, option.field, type=click.Choice(option.choices),
                                   default=default(option.field),
                                   help=f"{cls.name}: {option.help}")(command)
    return command


EPILOG = """\b
Examples:
  # DC-IGN on a faces store, CPU-sized defaults (small network unless the store is 150×150)
  dcign-train --store datasets/faces.zarr               # → runs/faces-dcign/
\b
  # the paper's entangled baseline: the same network and data, no clamping
  dcign-train --store datasets/faces.zarr --mode vae    # → runs/faces-vae/
\b
  # today's methods on the same data and network (Locatello 2020, Higgins 2017, Chen 2018)
  dcign-train --store datasets/faces.zarr --mode adagvae --ada-mask oracle
  dcign-train --store datasets/faces.zarr --mode betatcvae --beta 6
\b
  # z1 odd under a left-right mirror, which rules out a folded azimuth code (not in the paper)
  dcign-train --store datasets/faces.zarr --mirror-odd azimuth
\b
  # the released network on 150×150 faces, 8 clamped minibatches per step to fill a GPU
  dcign-train --store datasets/faces150.zarr --arch paper150 --minibatches-per-step 8 --compile
\b
  # continue a run that was stopped or killed, now up to 20000 steps
  dcign-train --store datasets/faces.zarr --resume --steps 20000
  dcign-train --store datasets/faces.zarr --resume runs/copied-run   # a copied or moved run
\b
  # every GPU of a node, data-parallel (--minibatches-per-step counts all processes')
  torchrun --nproc-per-node 8 "$(which dcign-train)" --store datasets/faces.zarr \\
           --arch paper150 --minibatches-per-step 64
"""


@click.command(cls=DcignCommand, epilog=EPILOG,
               context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--store", required=True, help="The dcign Zarr store to train on.")
@click.option("--out", default=default("out"),
              help="Run directory: checkpoint.pt, metrics.jsonl, figures. "
                   "Default: runs/<store name>-<mode>.")
@click.option("--mode", type=click.Choice(list(METHODS)), default=default("mode"),
              show_default=True, help=MODE_HELP)
@click.option("--beta", type=float, default=default("beta"), help=BETA_HELP)
@method_flags
@click.option("--clamp", type=click.Choice(CLAMP_RULES), default=default("clamp"),
              show_default=True,
              help="Shared value of clamped latents: batch mean (paper) or first sample "
                   "(released code).")
@click.option("--invariance", type=float, default=default("invariance"),
              show_default=True,
              help="λ of the invariance gradient on clamped latents (relative to the summed "
                   "loss); 0 is the released code's default.")
@click.option("--ratio", default=default("ratio"),
              help="Batch-type weights in factor-table order, e.g. 1:1:1:10 for faces "
                   "(azimuth:elevation:light:intrinsic). Default: 1 per extrinsic factor, 10 "
                   "for intrinsic.")
@click.option("--arch", type=click.Choice(["auto", "paper150", "small"]),
              default=default("arch"),
              show_default=True, help="auto: paper150 for 150×150 stores, small otherwise.")
@click.option("--mirror-odd", multiple=True, metavar="FACTOR", default=default("mirror_odd"),
              help="Make this factor's latents odd under a left-right mirror of the image "
                   "(repeatable; not in the paper): rules out the folded azimuth code. "
                   "Faces: --mirror-odd azimuth.")
@click.option("--latent-group", "latent_groups", multiple=True, metavar="FACTOR=N",
              default=default("latent_groups"),
              help="Give a factor N latents instead of the store's group (repeatable; not in "
                   "the paper): a full turn of chairs azimuth needs 2, as one scalar cannot "
                   "be continuous round a circle. --latent-group azimuth=2")
@click.option("--steps", type=int, default=default("steps"), show_default=True,
              help="Optimiser steps in total (a resumed run continues up to this).")
@click.option("--max-minutes", type=float, default=default("max_minutes"),
              help="Stop after this much wall time (then checkpoint and evaluate as at the end).")
@click.option("--minibatches-per-step", type=int, default=default("minibatches_per_step"),
              show_default=True,
              help="Minibatches per optimiser step, each clamped separately; 1 is the paper.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=default("optimizer"),
              show_default=True,
              help="adam(β=0.9, 0.99) is what the released 'rmsprop' really was.")
@click.option("--lr", type=float, default=default("lr"), show_default=True)
@click.option("--seed", type=int, default=default("seed"), show_default=True,
              help="Seeds the weights, the batch schedule and the sampling noise.")
@click.option("--device", default=default("device"), show_default=True,
              help="auto, cpu, cuda, cuda:1, …")
@click.option("--precision", type=click.Choice(PRECISIONS), default=default("precision"),
              show_default=True,
              help="Arithmetic of the network: bf16 autocast or fp32 (auto: bf16 on CUDA and on "
                   "a CPU with AMX, 1.8x fp32's steps/s there; fp32 on other CPUs). Losses, "
                   "clamping and the optimiser stay fp32.")
@click.option("--channels-last/--no-channels-last", default=default("channels_last"),
              help="Channels-last memory layout (default: on CUDA only).")
@click.option("--workers", type=int, default=default("workers"), show_default=True,
              help="Loader processes; -1: 4 on CUDA, 0 on the CPU, where reading a minibatch "
                   "costs ~1 ms against a ~100 ms step and workers would steal its cores.")
@click.option("--pin-memory/--no-pin-memory", default=default("pin_memory"),
              help="Pinned host memory and non-blocking copies (default: on CUDA only).")
@click.option("--in-memory", is_flag=True, default=default("in_memory"),
              help="Read the train split into memory first (then no loader workers).")
@click.option("--compile", is_flag=True, default=default("compile"),
              help="torch.compile the network.")
@click.option("--log-every", type=int, default=default("log_every"), show_default=True,
              help="Steps per metrics line.")
@click.option("--checkpoint-every", type=int, default=default("checkpoint_every"),
              show_default=True,
              help="Steps between checkpoints (a killed run loses at most these).")
@click.option("--snapshot-every", type=int, default=default("snapshot_every"), metavar="N",
              help="Also keep the checkpoint of every N-th step as snapshots/step-N.pt, for a "
                   "learning curve (dcign-eval --curve RUN).")
@click.option("--resume", is_flag=False, flag_value="", default=None, metavar="[RUN]",
              help="Continue a run from its checkpoint: RUN (a run directory or its "
                   "checkpoint.pt), or --out's run when RUN is left out. The resumed run "
                   "writes only into the directory its checkpoint is in, wherever the run was "
                   "first written, so a copied or moved run continues where it is now; an "
                   "--out naming another directory is refused.")
@click.option("--no-progress", is_flag=True, help="No progress bar (for logs).")
def main(out, mirror_odd, latent_groups, resume, no_progress, **fields):
    """Train the Deep Convolutional Inverse Graphics Network on a dcign store.

    Latent groups come from the store's factor table (faces: z1 azimuth, z2 elevation,
    z3 light, z4..z200 intrinsic). Each minibatch varies one factor; in dcign mode every latent
    outside that factor's group is clamped to its batch mean. Prints where the checkpoint,
    metrics and figures are when done.
    """
    if resume:
        out = resumed_run(resume, out)
    cfg = TrainConfig(out=out, mirror_odd=tuple(mirror_odd), latent_groups=tuple(latent_groups),
                      progress=not no_progress, **fields)
    from .distributed import launched_ranks  # torch imports only after the arguments are sane
    from .loop import RankError

    main_rank = launched_ranks().is_main
    try:
        result = train_and_measure(cfg, resume=resume is not None)
    except DcignError as exc:  # under torchrun, one line per failure, not one per rank
        if main_rank or isinstance(exc, RankError):
            raise
        sys.exit(1)
    if not main_rank:
        return
    held = result.measured
    if held:
        click.echo(f"held-out ELBO: {held['elbo_per_image']:.1f} nats/image")
        for name, r in held["correlations"].items():
            click.echo(f"  {name:<10} r(z{r['latent'] + 1}) = {r['r']:+.3f}   "
                       f"best single latent z{r['best_latent'] + 1}: {r['best_r']:+.3f}")
    click.echo(f"checkpoint: {result.checkpoint}")
    click.echo(f"metrics:    {result.run_log}")
    for f in result.figures:
        click.echo(f"figure:     {f}")


def train_and_measure(cfg: TrainConfig, resume: bool = False) -> Result:
    """What dcign-train runs: training (`loop.train`), then, on rank 0, the held-out
    measurement beside the checkpoint."""
    from .loop import train

    return train(cfg, resume, after=measure_after_training)


def measure_after_training(run: Run, log: RunLog) -> tuple[dict, list[Path]]:
    """Held-out ELBO, latent-factor correlations and figures, written beside the checkpoint
    and into the run log (its numbers a line of metrics.jsonl, its grid a TensorBoard
    image)."""
    from .eval.held_out import measure_held_out

    if not run.data.test_factors:
        tqdm.write("note: the store has no complete test minibatches; skipping the held-out "
                   "check")
        return {}, []
    run.model.eval()
    held = measure_held_out(run.model, run.data.store, run.data.factors,
                            run.data.test_factors, run.device, run.cfg.seed, run.step, run.out)
    run.model.train()
    log.log(held.numbers)
    log.image("reconstructions", held.grid, run.step)
    return held.numbers, held.figures


def resumed_run(resume: str, out: str | None) -> str:
    """The directory `--resume RUN` continues (RUN, or the directory of RUN's checkpoint.pt);
    one line if --out names another."""
    from .checkpoint import CHECKPOINT_NAME  # torch: only once a run is to be resumed

    run = Path(resume)
    if run.is_file():
        if run.name != CHECKPOINT_NAME:
            raise DcignError(f"--resume takes a run directory or its {CHECKPOINT_NAME}, not "
                             f"{resume}")
        run = run.parent
    if out is not None and Path(out).resolve() != run.resolve():
        raise DcignError(f"--resume {resume} continues the run in {run} and writes only there; "
                         f"--out {out} names another directory (leave --out out)")
    return str(run)


if __name__ == "__main__":  # python -m, as torchrun -m runs it
    main()
