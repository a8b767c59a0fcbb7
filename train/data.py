"""From the Zarr store to typed minibatches: validation, the batch-type schedule, the loader.

A training step is a pure function of (seed, step): which batch types it shows and which
stored minibatches it reads are drawn from `np.random.default_rng((seed, step))`. So the
loader is a map-style dataset indexed by step number, any number of workers can prefetch
steps in parallel, and a resumed run simply starts the index at the checkpoint's step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from dcign.shared.errors import DcignError, StoreError
from dcign.shared.export_reader import is_export
from dcign.shared.factors import MIRROR_NEGATED, Factor, factor_named, latent_slice, regroup
from dcign.shared.images import GRAY_LEVELS, from_unit
from dcign.shared.store import Store, StoreSpec, draw_from_pools, identities_in_both, open_store

from .modes import method_class


def default_ratio(factors: tuple[Factor, ...]) -> list[float]:
    """The paper's ratio: 1 per extrinsic factor, 10 for intrinsic (faces 1:1:1:10, chairs 1:10);
    0 for a factor tied to no latent, which no minibatch varies (chairs' grid elevation)."""
    return [10.0 if f.is_intrinsic else float(f.ties_latents) for f in factors]


def parse_ratio(text: str | None, factors: tuple[Factor, ...]) -> list[float]:
    if text is None:
        return default_ratio(factors)
    names = ":".join(f.name for f in factors)
    try:
        weights = [float(w) for w in text.split(":")]
    except ValueError:
        raise DcignError(f"--ratio {text!r} is not numbers separated by ':' ({names})") from None
    if len(weights) != len(factors) or min(weights) < 0 or sum(weights) <= 0:
        raise DcignError(f"--ratio {text!r} needs {len(factors)} non-negative weights, "
                         f"not all zero, for {names}")
    return weights


@dataclass(frozen=True)
class BatchType:
    """A kind of minibatch the schedule draws: the factor that varies in it."""

    factor: Factor
    weight: float
    latents: slice  # the code's group tied to the factor: the active latents when clamping
    indices: np.ndarray  # the complete train minibatches of this type


@dataclass(frozen=True)
class TrainingData:
    store: Store
    types: tuple[BatchType, ...]
    test_factors: tuple[str, ...]  # factors with complete test minibatches
    factors: tuple[Factor, ...]  # the store's table, with the run's latent groups

    @property
    def spec(self) -> StoreSpec:
        return self.store.spec

    @property
    def train_images(self) -> int:
        """Images in the batch types' complete train minibatches."""
        return sum(len(t.indices) for t in self.types) * self.spec.batch_size

    def counts(self) -> dict[str, int]:
        """Complete minibatches per batch type: the schedule's input besides the seed."""
        return {t.factor.name: len(t.indices) for t in self.types}

    def mirror_odd_latents(self, names: tuple[str, ...], latent_size: int) -> tuple[int, ...]:
        """The latents of the named factors (--mirror-odd), each one that a left-right mirror
        negates in this dataset; one line for any other."""
        negated = MIRROR_NEGATED.get(self.spec.dataset, ())
        latents: list[int] = []
        for name in dict.fromkeys(names):  # each factor once, in the order given
            if name not in negated:
                raise DcignError(f"--mirror-odd {name}: a left-right mirror does not negate "
                                 f"{self.spec.dataset}' {name} (it negates: "
                                 f"{', '.join(negated) or 'no factor of this dataset'})")
            factor = factor_named(self.factors, name)
            latents += range(latent_size)[latent_slice(factor, latent_size)]
        return tuple(latents)


def open_training_data(path: str, mode: str, ratio: str | None, latent_size: int,
                       latent_groups: dict[str, int] | None = None) -> TrainingData:
    """Open a store and check it can train `mode` (a method's name); one-line errors.
    `latent_groups` resizes factors' latent groups (`--latent-group`)."""
    clamps = method_class(mode).clamps
    if is_export(path):  # the loader reads whole steps from Zarr; an export is rows
        card = f"{str(path).rstrip('/')}/README.md"  # a URL too: not a Path
        raise DcignError(f"{path} is a dcign export (Parquet rows for Hugging Face datasets), "
                         "which dcign-train does not read: train on the store (re-render it "
                         f"with the command in {card}), or read the export "
                         "with dcign.train.dataset.MinibatchDataset for a model of your own")
    store = open_store(path)
    factors = regroup(store.spec.factors, latent_groups or {}, latent_size)
    weights = parse_ratio(ratio, factors)
    present = {f for _, f in store.sections("train")}
    types = []
    for f, w in zip(factors, weights, strict=True):
        if w > 0 and clamps and not f.ties_latents:
            raise DcignError(f"--ratio gives {f.name} weight {w:g}, but the store ties it to no "
                             "latent group, so clamping would hold every latent: give it 0")
        idx = store.complete("train", f.name) if f.name in present else np.empty(0, int)
        if w > 0 and len(idx) == 0:
            if not clamps and ratio is None:
                continue  # an unclamped mode needs images, not every batch type
            raise DcignError(
                f"{path} has no complete train/{f.name} minibatches, which {mode} training "
                f"with this ratio needs (give it weight 0 in --ratio to leave it out)")
        if w > 0:
            types.append(BatchType(f, w, latent_slice(f, latent_size), idx))
    if not types:
        raise DcignError(f"{path} has no complete train minibatches (empty train split)")
    test = tuple(store.factors_present("test"))
    check_disjoint_identities(store)
    return TrainingData(store, tuple(types), test, factors)


def check_disjoint_identities(store: Store) -> None:
    """Refuse a store whose test identities appear in training: held-out must mean unseen."""
    shared = identities_in_both(store.identities("train"), store.identities("test"))
    if shared.size:
        raise DcignError(f"{store.path}: {shared.size} identities are in both the train and "
                         f"the test split (e.g. {int(shared[0])}); refusing to train on test faces")


def network_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, H, W), or rgb (N, H, W, 3), on any device → float32 (N, C, H, W)
    in [0, 1]: what the network reads. (`dcign.shared.images.to_unit` is numpy's; torch's is
    its own so that uint8, a quarter of the bytes, is what crosses to the device.)"""
    if images.dtype != torch.uint8:
        raise TypeError(f"network_input takes uint8 images, not {images.dtype}")
    if images.ndim == 4:  # rgb: the channel axis moves from last (the store's) to second
        return images.permute(0, 3, 1, 2).float().div_(GRAY_LEVELS)
    return images.unsqueeze(1).float().div_(GRAY_LEVELS)


def network_output(values: torch.Tensor) -> np.ndarray:
    """The network's images (N, C, H, W) in [0, 1] → uint8 as a store holds them: (N, H, W),
    or (N, H, W, 3) for rgb."""
    values = values.float().cpu()
    values = values.squeeze(1) if values.shape[1] == 1 else values.permute(0, 2, 3, 1)
    return from_unit(values.numpy())


def check_independent_draws(data: TrainingData, per_step: int) -> None:
    """Refuse a store too small for a step of images drawn independently, without
    replacement."""
    needed = per_step * data.spec.batch_size
    if data.train_images < needed:
        raise DcignError(f"{data.store.path} has {data.train_images} training images; a step of "
                         f"independent draws needs {needed}")


def draw_images(types: tuple[BatchType, ...], seed: int, step: int, count: int, size: int
                ) -> list[list[tuple[int, int, int]]]:
    """`count` draws of `size` (batch type, stored minibatch, image) images without
    replacement, uniformly over every training image: a pure function of its arguments."""
    kind, within = draw_from_pools([len(t.indices) * size for t in types], count * size,
                                   np.random.default_rng((seed, step)))
    minibatch, image = np.divmod(within, size)
    drawn = [(int(t), int(types[t].indices[m]), int(i))
             for t, m, i in zip(kind, minibatch, image, strict=True)]
    return [drawn[g * size:(g + 1) * size] for g in range(count)]


def draw_step(types: tuple[BatchType, ...], seed: int, step: int, count: int
              ) -> list[tuple[int, int]]:
    """The (batch type, stored minibatch) pairs shown at `step`: a pure function of its args."""
    rng = np.random.default_rng((seed, step))
    w = np.array([t.weight for t in types], dtype=float)
    kinds = rng.choice(len(types), size=count, p=w / w.sum())
    return [(int(k), int(types[k].indices[rng.integers(len(types[k].indices))])) for k in kinds]


class Step(NamedTuple):
    """One training step's minibatches (this process's share of them).

    Only the images are a tensor: a loader worker hands each tensor over through a file
    descriptor of its own (a socket connection to the worker, each time), and two small
    tensors beside the images cost the 2-worker loader a fifth of its rate."""

    kinds: list[int]  # which batch type (varying factor) each minibatch is
    images: torch.Tensor  # uint8 (m, B, H, W), or (m, B, H, W, 3) rgb
    places: list[int]  # each minibatch's place in the whole step


def shared_uint8(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised uint8 tensor in shared memory. `share_memory_()` on an empty tensor
    copies it into a new segment (4 ms for a 150×150 step of 8 minibatches, against 0.5 ms):
    torch's own `default_collate` allocates its worker batches in place like this."""
    new_shared = getattr(torch.UntypedStorage, "_new_shared", None)
    if new_shared is None:  # a torch without it: the slower public way
        return torch.empty(shape, dtype=torch.uint8).share_memory_()
    return torch.empty(0, dtype=torch.uint8).set_(new_shared(math.prod(shape))).view(shape)


class StepDataset(Dataset):
    """Item `step` = that step's minibatches, stacked, as a `Step`.

    One stacked tensor per step means one shared-memory transfer from a worker and one pinned
    copy. Each worker process reads through its own copy of the store (`Store.read_images`
    reads a step's minibatches concurrently); `in_memory` reads the train split once, up
    front, instead. `share` keeps only some places of every step's draw (a rank's share
    under torchrun); the step itself is drawn whole, so it is the same on every rank.
    """

    def __init__(self, data: TrainingData, seed: int, per_step: int, in_memory: bool = False,
                 share: list[int] | None = None, independent: bool = False):
        self.store, self.types = data.store, data.types
        self.seed, self.per_step = seed, per_step
        self.share = list(range(per_step)) if share is None else share
        self.independent = independent  # images drawn independently, not one-factor groups
        self.memory = None
        if in_memory:
            self.memory = [data.store.read_complete("train", t.factor.name) for t in self.types]

    def __len__(self) -> int:
        return 2**62  # any step number; the sampler decides which are read

    def _read(self, drawn: list[tuple[int, int]], out: np.ndarray | None = None
              ) -> list[np.ndarray] | np.ndarray:
        if self.memory is not None:
            read = [self.memory[kind].images[np.searchsorted(self.memory[kind].indices, k)]
                    for kind, k in drawn]
            return read if out is None else np.stack(read, out=out)
        return self.store.read_images("train", [(self.types[kind].factor.name, k)
                                                for kind, k in drawn], out)

    def _step_tensor(self, minibatches: int) -> torch.Tensor:
        """An empty uint8 tensor for a step's images; in a loader worker, in shared memory
        already: the step is decoded straight into it and crosses to the trainer as it is
        (a tensor made elsewhere is copied into shared memory when it is sent, after the
        stack that made it had copied every minibatch once)."""
        spec = self.store.spec
        shape = (minibatches, spec.batch_size, *spec.image_shape)  # rgb: a channel axis last
        if get_worker_info() is None:
            return torch.empty(shape, dtype=torch.uint8)
        return shared_uint8(shape)

    def __getitem__(self, step: int) -> Step | StoreError:
        """The step's minibatches; or, when one of them is damaged or cannot be read, the
        error itself, as data: a loader worker's exception reaches the main process re-worded
        with its traceback, and the trainer must say what happened in one line."""
        try:
            if self.independent:
                return self._independent(step)
            whole_step = draw_step(self.types, self.seed, step, self.per_step)
            drawn = [whole_step[place] for place in self.share]
            images = self._step_tensor(len(drawn))
            self._read(drawn, images.numpy())
        except StoreError as exc:
            return exc
        return Step([kind for kind, _ in drawn], images, list(self.share))

    def _independent(self, step: int) -> Step:
        """The step's images drawn one by one over the whole train split (batch type -1)."""
        b = self.store.spec.batch_size
        whole_step = draw_images(self.types, self.seed, step, self.per_step, b)
        draws = [whole_step[place] for place in self.share]
        needed = list(dict.fromkeys((kind, k) for draw in draws for kind, k, _ in draw))
        read = dict(zip(needed, self._read(needed), strict=True))
        images = self._step_tensor(len(draws))
        np.stack([np.stack([read[(kind, k)][i] for kind, k, i in draw]) for draw in draws],
                 out=images.numpy())
        return Step([-1] * len(draws), images, list(self.share))


def make_loader(dataset: StepDataset, start: int, stop: int, workers: int, pin_memory: bool
                ) -> DataLoader:
    """Steps start..stop-1 in order, prefetched by `workers` processes.

    Workers are spawned, never forked: zarr and fsspec run event-loop threads, and a fork
    copies them dead into the child."""
    return DataLoader(dataset, batch_size=None, sampler=range(start, stop),
                      num_workers=workers, pin_memory=pin_memory,
                      prefetch_factor=4 if workers else None,
                      multiprocessing_context="spawn" if workers else None,
                      persistent_workers=False)
