"""Data-parallel training under torchrun: `torchrun --nproc-per-node N dcign-train …`.

Launched by torchrun (RANK, WORLD_SIZE and LOCAL_RANK in the environment), each process
joins one process group (NCCL on CUDA, gloo on the CPU) and trains the same network on its
share of every step. A step's draw is a pure function of (seed, step) and identical on every
rank; `--minibatches-per-step` counts minibatches over all ranks, and minibatch i of a step
goes to rank i mod N. Every minibatch is still clamped on its own, and its noise is seeded by
its place in the step, not by the rank, so a run's numbers do not depend on N. Gradients are
summed over the ranks, which is what one process accumulating the whole step gets. (DDP
averages by default; scaling each rank's loss by N would undo that for the reconstruction
and KL terms but not for the clamp's invariance gradient, which does not scale with the loss.)

Rank 0 alone writes checkpoints, the run log and figures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dcign.shared.errors import DcignError


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def share(self, minibatches: int) -> list[int]:
        """The step's minibatches this rank trains on (their places in the step)."""
        return list(range(self.rank, minibatches, self.world))


def launched_ranks() -> Ranks:
    """The ranks torchrun describes in the environment (one process without it)."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Ranks()
    return Ranks(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                 int(os.environ.get("LOCAL_RANK", "0")))


def join(ranks: Ranks, device: torch.device, minibatches_per_step: int) -> torch.device:
    """Join the process group; each rank's device (cuda:LOCAL_RANK on a GPU node)."""
    if ranks.world > minibatches_per_step:
        raise DcignError(f"{ranks.world} processes share {minibatches_per_step} minibatches per "
                         f"step: give --minibatches-per-step {ranks.world} or more (it counts "
                         "minibatches over all processes)")
    if not ranks.distributed:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                device_id=device if device.type == "cuda" else None)
    return device


def leave(ranks: Ranks) -> None:
    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()


def summed(values: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """`values` summed over the ranks (itself with one process)."""
    if ranks.distributed:
        values = values.clone()
        dist.all_reduce(values)
    return values


def any_rank(flag: bool, ranks: Ranks, device: torch.device) -> bool:
    """Whether any rank says so: every rank must leave the loop at the same step."""
    if not ranks.distributed:
        return flag
    return bool(summed(torch.tensor([float(flag)], device=device), ranks).item())


def summed_gradients(state, bucket):  # DDP checks the annotations: none, or real types
    """A DDP communication hook: all-reduce a bucket of gradients as a sum, not a mean."""
    del state
    future = dist.all_reduce(bucket.buffer(), async_op=True).get_future()
    return future.then(lambda done: done.value()[0])
