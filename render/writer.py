"""Fills a store from any dataset generator: resumable, extendable, parallel.

A dataset is a picklable recipe whose `load()` gives a generator (both described in
`generators.base`): faces, chairs and the Aubry import alike. Resumption, run history and
progress live here, once.

The parent process refuses requests the generator cannot fill, creates or grows the arrays
and decides which minibatches are missing (those whose completeness marker is unset); worker
processes each load their own generator (and GL context), render whole minibatches and write
them straight into their own chunks.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from dcign.shared.errors import DcignError
from dcign.shared.store import Store, create_or_open_store, open_store

from .generators.base import DatasetGenerator, DatasetRecipe

Task = tuple[str, str, int]  # (split, factor, minibatch index)


@dataclass(frozen=True)
class RenderRequest:
    """How many minibatches of which factors a run should leave in the store."""

    vary: tuple[str, ...]
    batches: int  # training minibatches per varying factor
    test_batches: int


@dataclass
class RenderSummary:
    rendered: int  # minibatches rendered by this run
    already_there: int  # minibatches the store held before
    seconds: float

    @property
    def images_per_second(self) -> float:
        return 0.0 if self.seconds == 0 else self.rendered / self.seconds


def _missing(store: Store, request: RenderRequest) -> tuple[list[Task], int]:
    """Create/grow arrays and list the minibatches not yet complete, in a fixed order."""
    tasks, present = [], 0
    for split, count in (("train", request.batches), ("test", request.test_batches)):
        for factor in request.vary:
            arrays = store.require_arrays(split, factor, count)
            done = arrays.completed()[:count]
            present += int(done.sum())
            tasks += [(split, factor, int(k)) for k in np.flatnonzero(~done)]
    return tasks, present


def rasteriser_threads(cores: int) -> int:
    """llvmpipe's LP_NUM_THREADS for a process that may use `cores` cores: with one, 0
    rasterises in the calling thread, 1.2x faster than handing each frame to one helper."""
    return 0 if cores <= 1 else cores


# Worker state: one generator (and GL context) and one opened store per process.
_worker: dict[str, Any] = {}


def _init_worker(recipe: DatasetRecipe, store_path: str, gl_platform: str | None,
                 threads_per_worker: int, generator: DatasetGenerator | None = None) -> None:
    if gl_platform is not None:  # before the generator's first Renderer imports PyOpenGL
        os.environ["PYOPENGL_PLATFORM"] = gl_platform
        os.environ.setdefault("LP_NUM_THREADS", str(rasteriser_threads(threads_per_worker)))
    _worker["generator"] = generator or recipe.load()
    _worker["store"] = open_store(store_path, mode="r+")


def _render_task(task: Task) -> Task:
    split, factor_name, k = task
    generator, store = _worker["generator"], _worker["store"]
    plan = generator.plan(split, factor_name, k)
    images = generator.render(plan)
    store.arrays(split, factor_name).write(k, images, plan.values, plan.identities)
    return task


def _run_in_process(tasks, recipe, generator, store_path, gl_platform) -> Iterator[Task]:
    # the parent's generator: loading the model again would only repeat the work
    _init_worker(recipe, store_path, gl_platform, threads_per_worker=os.cpu_count() or 1,
                 generator=generator)
    try:
        yield from map(_render_task, tasks)
    finally:
        _worker.pop("generator").close()


BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextmanager
def _blas_threads_for_children(threads: int) -> Iterator[None]:
    """Spawned workers inherit os.environ, and numpy reads these when they import it: a BLAS
    pool the size of a worker's share of the cores. With one per machine core, OpenBLAS's idle
    threads spin on the cores the other workers render on (two workers: 220 → 330 images/s)."""
    saved = {name: os.environ.get(name) for name in BLAS_THREAD_VARIABLES}
    for name in BLAS_THREAD_VARIABLES:
        os.environ.setdefault(name, str(threads))  # a user's own setting wins
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run_in_pool(tasks, recipe, store_path, gl_platform, workers) -> Iterator[Task]:
    # spawn, not fork: each worker must make its own GL context from a clean process
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")
    with _blas_threads_for_children(threads):
        pool = ctx.Pool(workers, initializer=_init_worker,
                        initargs=(recipe, store_path, gl_platform, threads))
    with pool:
        yield from pool.imap_unordered(_render_task, tasks, chunksize=1)


def render_store(out: str | Path, recipe: DatasetRecipe, request: RenderRequest, *,
                 workers: int, gl_platform: str | None, overwrite: bool = False,
                 progress: bool = True, config: dict | None = None,
                 generator: DatasetGenerator | None = None,
                 verb: str = "rendering") -> RenderSummary:
    """Render every missing minibatch of `request` into the store at `out`.

    `gl_platform` is the chosen one (`renderer.platform.choose_gl_platform`) when the recipe
    needs GL, else None; `generator` is the recipe's, if the caller has loaded it already.
    """
    if recipe.needs_gl and gl_platform is None:
        raise ValueError("this dataset renders through OpenGL: choose a GL platform first")
    generator = generator or recipe.load()
    store = _checked_store(out, generator, request, overwrite)
    tasks, present = _missing(store, request)
    started = time.perf_counter()
    if tasks:
        workers = max(1, min(workers, len(tasks)))
        run = (_run_in_process(tasks, recipe, generator, str(out), gl_platform)
               if workers == 1 else _run_in_pool(tasks, recipe, str(out), gl_platform, workers))
        with tqdm(total=len(tasks) * recipe.batch_size, unit="img", disable=not progress,
                  desc=f"{verb} {Path(out).name}", smoothing=0.1) as bar:
            for _ in run:
                bar.update(recipe.batch_size)
    seconds = time.perf_counter() - started
    store.append_history({
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": config or {},
        "rendered_minibatches": len(tasks),
        "seconds": round(seconds, 2),
    })
    return RenderSummary(len(tasks), present, seconds)


def _checked_store(out: str | Path, generator: DatasetGenerator, request: RenderRequest,
                   overwrite: bool) -> Store:
    """The store to fill, opened or created only once the request is known to be possible."""
    spec = generator.spec
    for name in request.vary:
        spec.factor(name)  # refuses unknown factors before anything is written
    generator.check(request.vary)
    return create_or_open_store(out, spec, overwrite=overwrite)


def check_counts(batch_size: int, batches: int, test_batches: int, size: int,
                 workers: int) -> None:
    """Refuse non-positive counts and sizes with one clear line."""
    for name, value, minimum in (("--batch-size", batch_size, 2), ("--batches", batches, 1),
                                 ("--test-batches", test_batches, 1), ("--size", size, 8),
                                 ("--workers", workers, 1)):
        if value < minimum:
            raise DcignError(f"{name} must be at least {minimum} (got {value})")
