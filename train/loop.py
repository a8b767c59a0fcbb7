"""The training loop, read top to bottom as one run: build it (or restore it from its
checkpoint), take its steps (store → typed minibatches → the method's VAE step → run log and
checkpoints), write the last checkpoint, then run whatever the caller asked for after
training (`dcign-train` measures the network on held-out minibatches: `cli.py`). The loop
itself evaluates nothing and never imports `eval/`.

One optimiser step shows `minibatches_per_step` minibatches, each shaped separately by the
method (DC-IGN clamps each on its own: its own varying factor, its own batch means), with
gradients accumulated; one per step is the paper. Checkpoints are written atomically
(temporary file, then rename) every `checkpoint_every` steps and at the end, so a killed run
loses at most the steps since the last one; a non-finite loss stops the run before the
optimiser touches the weights.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from dcign.shared.errors import DamagedMinibatch, DcignError, StoreError
from dcign.shared.factors import LATENT_SIZE

from .checkpoint import CHECKPOINT_NAME, Checkpoint, keep_snapshot, store_sha256
from .clamping import active_mask
from .config import TrainConfig
from .data import (
    Step,
    StepDataset,
    TrainingData,
    check_independent_draws,
    make_loader,
    network_input,
    open_training_data,
)
from .device import Execution, execution_for
from .distributed import Ranks, any_rank, join, launched_ranks, leave, summed, summed_gradients
from .method_math import minibatch_pairs
from .model import DCIGN, architecture_for
from .modes import Method, method_for
from .objective import MinibatchLoss, loss_of, minibatch_noise
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
    method: Method
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


@dataclass
class Result:
    checkpoint: Path
    run_log: Path
    figures: list[Path]  # written by what ran after training
    measured: dict  # what ran after training returned ({} when nothing ran)


# Run on rank 0 once the last checkpoint is written, given the run (its network still on its
# device) and its open run log: returns its numbers and the figures it wrote.
AfterTraining = Callable[[Run, RunLog], tuple[dict, list[Path]]]


# ----------------------------------------------------------------------------- the run

def train(cli: TrainConfig, resume: bool = False, after: AfterTraining | None = None
          ) -> Result:
    """Train from the command line's configuration (or continue its checkpoint), then call
    `after` on rank 0."""
    run = prepare(cli, resume)
    try:
        log = RunLog(run.out, enabled=run.ranks.is_main)
        try:
            take_steps(run, log)
            path = save_checkpoint(run)
            ran_after = after is not None and run.ranks.is_main
            measured, figures = after(run, log) if ran_after else ({}, [])
        finally:
            log.close()
        return Result(path, log.path, figures, measured)
    finally:
        leave(run.ranks)


def prepare(cli: TrainConfig, resume: bool) -> Run:
    """Build the run from the command line, or with --resume from the checkpoint in
    `cli.out`, the run then writing only there (wherever the run was first written)."""
    out = Path(cli.out)
    ckpt = out / CHECKPOINT_NAME
    if resume:
        if not ckpt.is_file():
            raise DcignError(f"no checkpoint to resume at {ckpt}")
        saved = Checkpoint.read(ckpt)
        run = build_run(saved.config.resumed_with(cli))
        restore(run, saved, ckpt)
        return run
    if ckpt.exists():
        raise DcignError(f"{out} already holds a run; pass --resume to continue it or choose "
                         f"another --out")
    run = build_run(cli)
    if run.ranks.is_main:
        out.mkdir(parents=True, exist_ok=True)
    return run


def build_run(cfg: TrainConfig) -> Run:
    """The configuration checked, then the store, network, loss and optimiser it names."""
    cfg.validate()
    method = method_for(cfg)
    execution, ranks = execution_for(cfg), launched_ranks()
    execution = replace(execution, device=join(ranks, execution.device,
                                               cfg.minibatches_per_step))
    data = open_training_data(cfg.store, cfg.mode, cfg.ratio, LATENT_SIZE, cfg.group_sizes())
    if method.draws_independently:
        check_independent_draws(data, cfg.minibatches_per_step)
    arch = architecture_for(cfg.arch, data.spec.image_size,
                            data.mirror_odd_latents(cfg.mirror_odd, LATENT_SIZE),
                            channels=data.spec.channels)
    torch.manual_seed(cfg.seed)  # weight initialisation, the same on every rank
    model = DCIGN(arch).to(execution.device)
    if execution.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss = MinibatchLoss(model, method, execution, data.train_images)
    parallel = None
    if ranks.distributed:  # DDP wraps the loss before torch.compile sees it
        parallel = loss = DistributedDataParallel(
            loss, device_ids=[execution.device] if execution.on_cuda else None)
        parallel.register_comm_hook(None, summed_gradients)
    if cfg.compile:  # the clamp compiles with the network (DDP splits the graph at buckets)
        loss = torch.compile(loss, fullgraph=not ranks.distributed)
    masks = [active_mask(t.latents, arch.latent_size, execution.device) for t in data.types]
    return Run(cfg, data, model, make_optimizer(cfg, model.parameters()), execution, loss,
               masks, method, out=Path(cfg.out), ranks=ranks, parallel=parallel)


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":  # what the released "rmsprop" file really implemented
        return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8)
    return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.beta2, eps=1e-8)  # validated


def restore(run: Run, saved: Checkpoint, path: Path) -> None:
    """Load a checkpoint into a freshly built run, refusing another architecture or store."""
    theirs, ours = saved.arch, run.model.arch
    if theirs != ours:
        raise DcignError(f"{path} holds a {theirs.describe()} network; this run builds "
                         f"{ours.describe()}")
    fp = store_sha256(run.data.spec)
    if saved.store_sha256 != fp:
        raise DcignError(f"{path} was trained on another store (fingerprint "
                         f"{saved.store_sha256}, this store {fp})")
    counts = run.data.counts()
    if saved.store_counts != counts:
        tqdm.write(f"note: the store's complete minibatches changed since the checkpoint "
                   f"({saved.store_counts} → {counts}); the schedule differs from here on")
    run.model.load_state_dict(saved.weights)
    run.optimizer.load_state_dict(saved.optimizer)
    torch.set_rng_state(saved.rng)
    run.step = saved.step


def take_steps(run: Run, log: RunLog) -> None:
    """The run's steps up to `steps` (or --max-minutes): a failure ends in one line, with a
    checkpoint saved wherever the weights are still sound."""
    cfg, main = run.cfg, run.ranks.is_main
    if run.step >= cfg.steps and main:
        tqdm.write(f"the checkpoint is already at step {run.step} of {cfg.steps}")
    dataset = StepDataset(run.data, cfg.seed, cfg.minibatches_per_step, cfg.in_memory,
                          share=run.ranks.share(cfg.minibatches_per_step),
                          independent=run.method.draws_independently)
    ex = run.execution
    loader = make_loader(dataset, run.step, cfg.steps, ex.workers, pin_memory=ex.pin_memory)
    log.log({"event": "start", "step": run.step, "config": cfg.to_dict(),
             "device": str(run.device), "execution": ex.describe(),
             "loader_workers": ex.workers, "processes": run.ranks.world,
             "arch": run.model.arch.to_dict(),
             "batch_types": [t.factor.name for t in run.data.types]})
    bar = tqdm(total=cfg.steps, initial=run.step, disable=not (cfg.progress and main),
               unit="step")
    try:
        step_through(run, loader, log, bar)
    except NonFiniteLoss as exc:
        last = f"the last good checkpoint is {run.checkpoint_path}" \
            if run.checkpoint_path.exists() else "no checkpoint was written yet"
        log.log({"event": "non-finite", "step": run.step, "message": str(exc)})
        raise NonFiniteLoss(f"{exc}; stopped, {last}") from None
    except KeyboardInterrupt:
        save_checkpoint(run)
        raise DcignError(f"interrupted at step {run.step}; checkpoint saved to "
                         f"{run.checkpoint_path}, --resume continues") from None
    except StoreError as exc:  # damaged or unreadable: the weights are sound, keep them
        save_checkpoint(run)
        damaged = isinstance(exc, DamagedMinibatch)
        log.log({"event": "damaged-store" if damaged else "store-read-error",
                 "step": run.step, "message": str(exc)})
        who = f"rank {run.ranks.rank}: " if run.ranks.distributed else ""
        kept = ("with its checkpoint saved, and --resume continues" if run.ranks.is_main
                else "and --resume continues from rank 0's last checkpoint")
        when = " after the repair" if damaged else ""
        raise RankError(f"{who}{exc}; the run stopped at step {run.step} {kept}{when}"
                        ) from None
    finally:
        bar.close()


def step_through(run: Run, loader: DataLoader, log: RunLog, bar: tqdm) -> None:
    """Each step the loader yields: trained, logged every `log_every`, checkpointed every
    `checkpoint_every`, until the steps or the deadline run out."""
    cfg = run.cfg
    deadline = time.monotonic() + 60 * cfg.max_minutes if cfg.max_minutes else math.inf
    window = new_window()
    for step in loader:
        if any_rank(time.monotonic() > deadline, run.ranks, run.device):
            if run.ranks.is_main:
                tqdm.write(f"--max-minutes {cfg.max_minutes} reached at step {run.step}")
            break
        if isinstance(step, StoreError):
            raise step
        out = train_step(run, step)
        add_to_window(window, out)
        bar.update(1)
        if run.step % cfg.log_every == 0 or run.step == cfg.steps:
            log_window(run, log, bar, window, out["grad_norm"])
        snapshot = cfg.snapshot_every is not None and run.step % cfg.snapshot_every == 0
        if run.step % cfg.checkpoint_every == 0 or snapshot:
            save_checkpoint(run)
        if snapshot and run.ranks.is_main:
            keep_snapshot(run.checkpoint_path, run.step)


# ----------------------------------------------------------------------------- one step

def train_step(run: Run, step: Step) -> dict:
    """One optimiser step over this rank's share of a step's minibatches, each shaped by the
    method on its own (clamped, for DC-IGN), gradients accumulated (and summed over ranks).

    Returns the step's summed nats and image count over all ranks, and per batch type the
    latents the method shared per pair."""
    cfg, ex, ranks = run.cfg, run.execution, run.ranks
    stacked = step.images.to(ex.device, non_blocking=ex.pin_memory)
    run.optimizer.zero_grad(set_to_none=True)
    types = len(run.data.types)
    # bce, kl, penalty, images, then per batch type: latents shared per pair, minibatches
    totals = torch.zeros(4 + 2 * types, device=ex.device)
    batches = _batches(run, step, stacked)
    no_pairs = torch.empty((0, 2), dtype=torch.long, device=ex.device)
    for j, (kind, place, images) in enumerate(batches):
        x = network_input(images)
        if ex.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        eps = minibatch_noise(cfg.seed, run.step, place, (len(images), run.model.arch.latent_size))
        # drawn only for a method that reads them: a host-to-device copy per minibatch otherwise
        pairs = (minibatch_pairs(cfg.seed, run.step, place, len(images)).to(ex.device)
                 if run.method.pairs_images else no_pairs)
        active = run.masks[kind] if kind >= 0 else run.masks[0]  # independent draws: unused
        # gradients are summed over the ranks once, when the last minibatch's backward runs
        with (run.parallel.no_sync() if run.parallel is not None and j < len(batches) - 1
              else contextlib.nullcontext()):
            terms = run.loss(x, active, eps.to(ex.device, non_blocking=ex.pin_memory), pairs)
            loss_of(terms, run.method).backward()
        totals[:3] += terms[:3].detach()
        totals[3] += len(images)
        if kind >= 0:
            totals[4 + kind] += terms[3].detach()
            totals[4 + types + kind] += 1
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), float("inf"))
    # the step's one sync (with several ranks, one all-reduce of the sums)
    numbers = torch.cat([summed(totals, ranks), grad_norm.reshape(1)]).tolist()
    bce, kl, penalty, n, gn = numbers[:4] + numbers[-1:]
    shared = ({kind: (numbers[4 + kind], numbers[4 + types + kind]) for kind in range(types)
               if numbers[4 + types + kind]} if run.method.pairs_images else {})
    if not (math.isfinite(bce + kl + penalty) and math.isfinite(gn)):
        raise NonFiniteLoss(f"loss became {bce + kl + penalty} (gradient norm {gn}) at step "
                            f"{run.step + 1}")
    run.optimizer.step()
    run.step += 1
    return {"bce": bce, "kl": kl, "penalty": penalty, "images": int(n), "grad_norm": gn,
            "shared": shared}


def _batches(run: Run, step: Step, stacked: torch.Tensor) -> list[tuple[int, int, torch.Tensor]]:
    """(batch type, place in the step, images) per forward pass. A method that draws images
    independently sees the step's images as one batch: β-TCVAE's estimate is over all of
    them."""
    kinds, places = step.kinds, step.places
    if run.method.draws_independently:
        return [(-1, places[0], stacked.reshape(-1, *stacked.shape[2:]))]
    return list(zip(kinds, places, stacked, strict=True))


# ----------------------------------------------------------------------------- the run log

def new_window() -> dict:
    return {"bce": 0.0, "kl": 0.0, "penalty": 0.0, "images": 0, "shared": {},
            "t": time.perf_counter()}


def add_to_window(window: dict, out: dict) -> None:
    for k in ("bce", "kl", "penalty", "images"):
        window[k] += out[k]
    for kind, (value, count) in out["shared"].items():
        total, seen = window["shared"].get(kind, (0.0, 0))
        window["shared"][kind] = (total + value, seen + count)


def log_window(run: Run, log: RunLog, bar: tqdm, window: dict, grad_norm: float) -> None:
    """One run-log line: the objective (BCE + β·KL + penalty), the ELBO, their parts, and
    what the method adds (β-TCVAE its penalty, Ada-GVAE the latents shared per pair in each
    batch type's minibatches)."""
    now = time.perf_counter()
    n = max(window["images"], 1)
    per_image = {k: window[k] / n for k in ("bce", "kl", "penalty")}
    loss = (window["bce"] + run.method.beta * window["kl"] + window["penalty"]) / n
    rate = window["images"] / max(now - window["t"], 1e-9)
    record = {"step": run.step, "images": window["images"],
              "loss_per_image": loss, "elbo_per_image": -(window["bce"] + window["kl"]) / n,
              "bce_per_image": per_image["bce"], "kl_per_image": per_image["kl"],
              "grad_norm": grad_norm, "images_per_s": rate, "time": time.time()}
    shared = {run.data.types[kind].factor.name: total / count
              for kind, (total, count) in sorted(window["shared"].items())}
    log.log(record | run.method.logged(per_image, shared))
    bar.set_postfix(loss=f"{loss:.1f}", img_s=f"{rate:.0f}")
    window.update(new_window())


# ----------------------------------------------------------------------------- checkpoints

def save_checkpoint(run: Run) -> Path:
    """Write model, optimiser, step, RNG states, config and store fingerprint atomically
    (rank 0 only: the others hold the same state and never write)."""
    if not run.ranks.is_main:
        return run.checkpoint_path
    spec = run.data.spec
    return Checkpoint(
        arch=run.model.arch, weights=run.model.state_dict(),
        optimizer=run.optimizer.state_dict(), step=run.step, rng=torch.get_rng_state(),
        config=run.cfg, store=spec, store_sha256=store_sha256(spec),
        factors=tuple(run.data.factors),  # with the run's latent groups
        store_counts=run.data.counts(),
    ).write(run.checkpoint_path)
