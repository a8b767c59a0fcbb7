"""The training loop: store → typed minibatches → clamped VAE step → run log and checkpoints,
then the held-out check of `eval/held_out.py`.

One optimiser step shows `minibatches_per_step` minibatches, each clamped separately (its own
varying factor, its own batch means), with gradients accumulated; one per step is the paper.
Checkpoints are written atomically (temporary file, then rename) every `checkpoint_every`
steps and at the end, so a killed run loses at most the steps since the last one; a
non-finite loss stops the run before the optimiser touches the weights.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from dcign.shared.errors import DamagedMinibatch, DcignError
from dcign.shared.factors import LATENT_SIZE, MIRROR_NEGATED, latent_slice
from dcign.shared.store import StoreSpec

from .checkpoint import CHECKPOINT_NAME, read_checkpoint, store_fingerprint, write_checkpoint
from .clamping import active_mask
from .config import TrainConfig
from .data import Step, StepDataset, TrainingData, make_loader, open_training_data
from .device import Execution, execution_for
from .distributed import (
    Ranks,
    any_rank,
    join,
    launched_ranks,
    leave,
    summed,
    summed_gradients,
)
from .eval import held_out
from .model import DCIGN, Architecture, architecture_for
from .objective import MinibatchLoss, minibatch_noise
from .runlog import RunLog


class NonFiniteLoss(DcignError):
    """The loss or the gradient became NaN or infinite (every rank sees it at once)."""


class RankError(DcignError):
    """A failure one rank of a data-parallel run meets alone (the others raise nothing):
    that rank reports it. Every other error is met by all ranks alike and rank 0 reports it."""


@dataclass
class Run:
    cfg: TrainConfig
    data: TrainingData
    model: DCIGN
    optimizer: torch.optim.Optimizer
    execution: Execution
    loss: nn.Module  # a MinibatchLoss over `model`: data-parallel, then compiled, if asked
    masks: list[torch.Tensor]  # active latents per batch type
    step: int = 0
    out: Path = field(default_factory=Path)
    ranks: Ranks = field(default_factory=Ranks)
    parallel: DistributedDataParallel | None = None  # the DDP wrapper under torchrun

    @property
    def device(self) -> torch.device:
        return self.execution.device

    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT_NAME


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":  # what the released "rmsprop" file really implemented
        return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.beta2, eps=1e-8)
    raise DcignError(f"unknown optimizer {cfg.optimizer!r} (choose adam or rmsprop)")


def mirror_odd_latents(spec: StoreSpec, names: tuple[str, ...], latent_size: int
                       ) -> tuple[int, ...]:
    """The latents of the named factors, each one that a left-right mirror negates."""
    negated = MIRROR_NEGATED.get(spec.dataset, ())
    latents: list[int] = []
    for name in dict.fromkeys(names):  # each factor once, in the order given
        if name not in negated:
            raise DcignError(f"--mirror-odd {name}: a left-right mirror does not negate "
                             f"{spec.dataset}' {name} (it negates: "
                             f"{', '.join(negated) or 'no factor of this dataset'})")
        latents += range(latent_size)[latent_slice(spec.factor(name), latent_size)]
    return tuple(latents)


def build_run(cfg: TrainConfig) -> Run:
    if cfg.mode not in ("dcign", "vae"):
        raise DcignError(f"unknown mode {cfg.mode!r} (choose dcign or vae)")
    if cfg.clamp not in ("mean", "first"):
        raise DcignError(f"unknown clamping rule {cfg.clamp!r} (choose mean or first)")
    for flag, value in (("--steps", cfg.steps), ("--minibatches-per-step",
                        cfg.minibatches_per_step), ("--log-every", cfg.log_every),
                        ("--checkpoint-every", cfg.checkpoint_every)):
        if value < 1:
            raise DcignError(f"{flag} must be at least 1 (got {value})")
    if not cfg.lr > 0 or not cfg.invariance >= 0:
        raise DcignError(f"--lr must be positive and --invariance non-negative (got "
                         f"{cfg.lr} and {cfg.invariance})")
    execution, ranks = execution_for(cfg), launched_ranks()
    execution = replace(execution, device=join(ranks, execution.device,
                                               cfg.minibatches_per_step))
    data = open_training_data(cfg.store, cfg.mode, cfg.ratio, LATENT_SIZE)
    arch = architecture_for(cfg.arch, data.spec.image_size,
                            mirror_odd_latents(data.spec, cfg.mirror_odd, LATENT_SIZE))
    torch.manual_seed(cfg.seed)  # weight initialisation, the same on every rank
    model = DCIGN(arch).to(execution.device)
    if execution.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss = MinibatchLoss(model, cfg.mode, cfg.clamp, cfg.invariance, execution)
    parallel = None
    if ranks.distributed:  # DDP wraps the loss before torch.compile sees it
        parallel = loss = DistributedDataParallel(
            loss, device_ids=[execution.device] if execution.on_cuda else None)
        parallel.register_comm_hook(None, summed_gradients)
    if cfg.compile:  # the clamp compiles with the network (DDP splits the graph at buckets)
        loss = torch.compile(loss, fullgraph=not ranks.distributed)
    masks = [active_mask(t.latents, arch.latent_size, execution.device) for t in data.types]
    return Run(cfg, data, model, make_optimizer(cfg, model.parameters()), execution, loss,
               masks, out=Path(cfg.out), ranks=ranks, parallel=parallel)


def train_step(run: Run, step: Step) -> dict:
    """One optimiser step over this rank's share of a step's minibatches, each clamped on its
    own, gradients accumulated (and summed over the ranks).

    Returns the step's summed nats and image count over all ranks."""
    cfg, ex, ranks = run.cfg, run.execution, run.ranks
    stacked = step.images.to(ex.device, non_blocking=ex.pin_memory)
    run.optimizer.zero_grad(set_to_none=True)
    totals = torch.zeros(3, device=ex.device)  # bce, kl, images
    last = len(step.kinds) - 1
    for j, (kind, place, images) in enumerate(zip(step.kinds.tolist(), step.places.tolist(),
                                                  stacked, strict=True)):
        x = images.unsqueeze(1).float().div_(255)
        if ex.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        eps = minibatch_noise(cfg.seed, run.step, place, (len(images), run.model.arch.latent_size))
        # gradients are summed over the ranks once, when the last minibatch's backward runs
        with (run.parallel.no_sync() if run.parallel is not None and j < last
              else contextlib.nullcontext()):
            terms = run.loss(x, run.masks[kind], eps.to(ex.device, non_blocking=ex.pin_memory))
            terms.sum().backward()
        totals[:2] += terms.detach()
        totals[2] += len(images)
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), float("inf"))
    # the step's one sync (with several ranks, one all-reduce of the three sums)
    bce, kl, n, gn = torch.cat([summed(totals, ranks), grad_norm.reshape(1)]).tolist()
    if not (math.isfinite(bce + kl) and math.isfinite(gn)):
        raise NonFiniteLoss(f"loss became {bce + kl} (gradient norm {gn}) at step {run.step + 1}")
    run.optimizer.step()
    run.step += 1
    return {"bce": bce, "kl": kl, "images": int(n), "grad_norm": gn}


# ----------------------------------------------------------------------------- checkpoints

def save_checkpoint(run: Run) -> Path:
    """Write model, optimiser, step, RNG states, config and store fingerprint atomically
    (rank 0 only: the others hold the same state and never write)."""
    if not run.ranks.is_main:
        return run.checkpoint_path
    return write_checkpoint({
        "arch": run.model.arch.to_dict(),
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "step": run.step,
        "rng": {"torch": torch.get_rng_state()},
        "config": run.cfg.to_dict(),
        "store": store_fingerprint(run.data.spec),
        "store_counts": {t.factor.name: len(t.indices) for t in run.data.types},
    }, run.checkpoint_path)


def restore(run: Run, state: dict, path: Path) -> None:
    """Load a checkpoint into a freshly built run, refusing another architecture or store."""
    theirs, ours = Architecture.from_dict(state["arch"]), run.model.arch
    if theirs != ours:
        raise DcignError(f"{path} holds a {theirs.describe()} network; this run builds "
                         f"{ours.describe()}")
    fp = store_fingerprint(run.data.spec)["sha256"]
    if state["store"]["sha256"] != fp:
        raise DcignError(f"{path} was trained on another store (fingerprint "
                         f"{state['store']['sha256']}, this store {fp})")
    counts = {t.factor.name: len(t.indices) for t in run.data.types}
    if state.get("store_counts") != counts:
        tqdm.write(f"note: the store's complete minibatches changed since the checkpoint "
                   f"({state.get('store_counts')} → {counts}); the schedule differs from here on")
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    run.step = int(state["step"])


# ----------------------------------------------------------------------------- the run

@dataclass
class Result:
    checkpoint: Path
    run_log: Path
    figures: list[Path]
    held_out: dict  # the end-of-run check's numbers ({} without test minibatches)


def prepare(cli: TrainConfig, resume: bool) -> Run:
    """Build the run from the command line, or from its checkpoint with --resume."""
    out = Path(cli.out)
    ckpt = out / CHECKPOINT_NAME
    if resume:
        if not ckpt.is_file():
            raise DcignError(f"no checkpoint to resume at {ckpt}")
        state = read_checkpoint(ckpt)
        run = build_run(TrainConfig.from_dict(state["config"]).resumed_with(cli))
        restore(run, state, ckpt)
        return run
    if ckpt.exists():
        raise DcignError(f"{out} already holds a run; pass --resume to continue it or choose "
                         f"another --out")
    run = build_run(cli)
    if run.ranks.is_main:
        out.mkdir(parents=True, exist_ok=True)
    return run


def train(cli: TrainConfig, resume: bool = False) -> Result:
    run = prepare(cli, resume)
    try:
        return _train(run)
    finally:
        leave(run.ranks)


def _train(run: Run) -> Result:
    cfg, main = run.cfg, run.ranks.is_main
    log = RunLog(run.out, enabled=main)
    if run.step >= cfg.steps and main:
        tqdm.write(f"the checkpoint is already at step {run.step} of {cfg.steps}")
    dataset = StepDataset(run.data, cfg.seed, cfg.minibatches_per_step, cfg.in_memory,
                          share=run.ranks.share(cfg.minibatches_per_step))
    ex = run.execution
    loader = make_loader(dataset, run.step, cfg.steps, ex.workers, pin_memory=ex.pin_memory)
    log.log({"event": "start", "step": run.step, "config": cfg.to_dict(),
             "device": str(run.device), "execution": ex.describe(),
             "loader_workers": ex.workers, "processes": run.ranks.world,
             "arch": run.model.arch.to_dict(),
             "batch_types": [t.factor.name for t in run.data.types]})
    bar = tqdm(total=cfg.steps, initial=run.step, disable=not (cfg.progress and main),
               unit="step")
    window = {"bce": 0.0, "kl": 0.0, "images": 0, "t": time.perf_counter()}
    try:  # the run log (and TensorBoard's writer) close however the run ends
        deadline = time.monotonic() + 60 * cfg.max_minutes if cfg.max_minutes else math.inf
        try:
            for step in loader:
                if any_rank(time.monotonic() > deadline, run.ranks, run.device):
                    if main:
                        tqdm.write(f"--max-minutes {cfg.max_minutes} reached at step {run.step}")
                    break
                if isinstance(step, DamagedMinibatch):
                    raise step
                out = train_step(run, step)
                for k in ("bce", "kl", "images"):
                    window[k] += out[k]
                bar.update(1)
                if run.step % cfg.log_every == 0 or run.step == cfg.steps:
                    log_window(run, log, bar, window, out["grad_norm"])
                if run.step % cfg.checkpoint_every == 0:
                    save_checkpoint(run)
        except NonFiniteLoss as exc:
            last = f"the last good checkpoint is {run.checkpoint_path}" \
                if run.checkpoint_path.exists() else "no checkpoint was written yet"
            log.log({"event": "non-finite", "step": run.step, "message": str(exc)})
            raise NonFiniteLoss(f"{exc}; stopped, {last}") from None
        except KeyboardInterrupt:
            save_checkpoint(run)
            raise DcignError(f"interrupted at step {run.step}; checkpoint saved to "
                             f"{run.checkpoint_path}, --resume continues") from None
        except DamagedMinibatch as exc:  # the weights are sound: keep them for --resume
            save_checkpoint(run)
            log.log({"event": "damaged-store", "step": run.step, "message": str(exc)})
            who = f"rank {run.ranks.rank}: " if run.ranks.distributed else ""
            raise RankError(f"{who}{exc}; the run stopped at step {run.step} with its "
                            "checkpoint saved, and --resume continues after the "
                            "repair") from None
        finally:
            bar.close()
        path = save_checkpoint(run)
        numbers, figures = end_of_run_check(run, log) if main else ({}, [])
    finally:
        log.close()
    return Result(path, log.path, figures, numbers)


def log_window(run: Run, log: RunLog, bar: tqdm, window: dict, grad_norm: float) -> None:
    now = time.perf_counter()
    n = max(window["images"], 1)
    loss = (window["bce"] + window["kl"]) / n
    rate = window["images"] / max(now - window["t"], 1e-9)
    log.log({"step": run.step, "images": window["images"],
                 "loss_per_image": loss, "elbo_per_image": -loss,
                 "bce_per_image": window["bce"] / n, "kl_per_image": window["kl"] / n,
                 "grad_norm": grad_norm, "images_per_s": rate, "time": time.time()})
    bar.set_postfix(loss=f"{loss:.1f}", img_s=f"{rate:.0f}")
    window.update(bce=0.0, kl=0.0, images=0, t=now)


def end_of_run_check(run: Run, log: RunLog) -> tuple[dict, list[Path]]:
    """Held-out ELBO, latent-factor correlations and figures, written beside the checkpoint."""
    if not run.data.test_groups:
        tqdm.write("note: the store has no complete test minibatches; skipping the held-out "
                   "check")
        return {}, []
    run.model.eval()
    result = held_out.check(run.model, run.data.store, run.data.test_groups, run.device,
                            run.cfg.seed, run.step, run.out)
    run.model.train()
    log.log(result.numbers)
    log.image("reconstructions", result.grid, run.step)
    return result.numbers, result.figures
