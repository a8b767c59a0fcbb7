"""The writer's one task, run alike in this process, in a local pool of worker processes or
on a Dask cluster: render one shard of one (split, factor) and write it whole.

A worker process keeps one generator (and its GL context) for its lifetime. All GL work runs
on one thread the worker owns, whatever thread Dask runs a task on, so the context stays
current where it was made. Before the generator's first render the worker's environment is
set: its GL platform, llvmpipe's threads, its BLAS pool, and on a multi-GPU node the EGL
device it renders on (pyrender reads EGL_DEVICE_ID and ignores CUDA_VISIBLE_DEVICES).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dcign.shared.errors import DamagedMinibatch
from dcign.shared.lock import check_holder
from dcign.shared.store_writer import open_for_writing, write_block

from ..generators.base import DatasetGenerator, DatasetRecipe
from ..renderer.platform import choose_gl_platform

GPU_COUNT_VARIABLE = "DCIGN_RENDER_GPUS"  # how many GPUs workers spread over (default: all)
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


@dataclass(frozen=True)
class ShardTask:
    """Minibatches [start, stop) of (split, factor): one shard, written by one task."""

    split: str
    factor: str
    start: int
    stop: int
    redo: frozenset[int] = frozenset()  # complete but damaged: render them again
    # the writer lock it writes under: checked before the shard is written (fencing)
    lock_token: str | None = field(default=None, compare=False)

    @property
    def size(self) -> int:
        return self.stop - self.start

    def __str__(self) -> str:  # as messages and the workers' log name it
        return f"{self.split}/{self.factor} minibatches {self.start}-{self.stop - 1}"


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker process sets up before its first render."""

    gl_platform: str | None  # None: the recipe needs no GL; "auto": probe in the worker
    cores: int  # cores the worker may use: llvmpipe's and the BLAS pool's threads


def rasteriser_threads(cores: int) -> int:
    """llvmpipe's LP_NUM_THREADS for a process that may use `cores` cores: with one, 0
    rasterises in the calling thread, 1.2x faster than handing each frame to one helper."""
    return 0 if cores <= 1 else cores


def gpu_count(environ: dict) -> int:
    """The GPUs render workers spread over: DCIGN_RENDER_GPUS, else the NVIDIA GPUs found."""
    if environ.get(GPU_COUNT_VARIABLE, "").strip():
        return int(environ[GPU_COUNT_VARIABLE])
    return len(list(NVIDIA_GPUS.iterdir())) if NVIDIA_GPUS.is_dir() else 0


def egl_device_for(worker: Any, environ: dict) -> str | None:
    """The EGL device a worker renders on, or None for the default (a machine without GPUs).

    An EGL_DEVICE_ID already set wins; a worker given one GPU by CUDA_VISIBLE_DEVICES (as
    dask-jobqueue and Kubernetes GPU workers are) renders on it; local workers numbered
    0, 1, … take the node's GPUs in turn."""
    if environ.get("EGL_DEVICE_ID", "").strip():
        return environ["EGL_DEVICE_ID"]
    visible = [v.strip() for v in environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
               if v.strip()]
    if len(visible) == 1 and visible[0].isdigit():
        return visible[0]
    gpus = gpu_count(environ)
    if gpus and isinstance(worker, int):
        return str(worker % gpus)
    return None


def worker_environment(settings: WorkerSettings, worker: Any, environ: dict) -> dict[str, str]:
    """The variables a worker sets before its generator first renders (a user's own
    settings win)."""
    wanted: dict[str, str] = {}
    if settings.gl_platform is not None:
        wanted["LP_NUM_THREADS"] = str(rasteriser_threads(settings.cores))
        device = egl_device_for(worker, environ)
        if device is not None:
            wanted["EGL_DEVICE_ID"] = device
    return {k: v for k, v in wanted.items() if not environ.get(k)}


_name: dict[str, int] = {}  # this process's number in a local pool (`name_worker`)


def name_worker(name: int) -> None:
    """Number this process as the local pool's worker `name` (0, 1, …)."""
    _name["worker"] = name


def _worker_name() -> Any:
    """This worker's name: its number in a local pool, its Dask worker name, or None."""
    if "worker" in _name:
        return _name["worker"]
    try:
        from distributed import get_worker

        return get_worker().name
    except (ImportError, ValueError):
        return None


class WorkerState:
    """One process's generator and the GL thread it renders on."""

    def __init__(self, recipe: DatasetRecipe, settings: WorkerSettings,
                 generator: DatasetGenerator | None = None):
        os.environ.update(worker_environment(settings, _worker_name(), dict(os.environ)))
        if settings.gl_platform is not None:  # before PyOpenGL's first import fixes it
            os.environ["PYOPENGL_PLATFORM"] = (
                choose_gl_platform() if settings.gl_platform == "auto"  # a remote worker probes
                else settings.gl_platform)  # the coordinator probed it for local workers
        self.recipe, self.settings = recipe, settings
        self.gl = ThreadPoolExecutor(1, thread_name_prefix="dcign-gl")
        self.generator = generator or recipe.load()

    def render(self, split: str, factor: str, k: int):
        plan = self.generator.plan(split, factor, k)
        return plan, self.gl.submit(self.generator.render, plan).result()

    def close(self) -> None:
        self.gl.submit(self.generator.close).result()
        self.gl.shutdown()


_state: dict[str, WorkerState] = {}  # this process's worker state, made by its first task


def state_for(recipe: DatasetRecipe, settings: WorkerSettings) -> WorkerState:
    current = _state.get("worker")
    if current is None or current.recipe != recipe or current.settings != settings:
        if current is not None:
            current.close()
        _state["worker"] = WorkerState(recipe, settings)
    return _state["worker"]


def adopt(state: WorkerState) -> None:
    """Use `state` (e.g. one whose generator the coordinator already loaded) in this process."""
    _state["worker"] = state


def release() -> None:
    """Close this process's generator and GL thread (the in-process run, when done)."""
    state = _state.pop("worker", None)
    if state is not None:
        state.close()


def render_shard(recipe: DatasetRecipe, url: str, task: ShardTask,
                 settings: WorkerSettings) -> int:
    """Render the shard's missing (and damaged) minibatches, keep its intact ones, and write
    the whole shard, completeness markers last. Returns how many minibatches it rendered.

    With `task.lock_token`, nothing is written unless the store's writer lock is still that
    one (checked first, so a retry fails fast, and again just before the write)."""
    if task.lock_token:
        check_holder(url, task.lock_token)
    state = state_for(recipe, settings)
    # opened by each task: a worker of a long-lived cluster outlives a run, and the next run
    # may have grown the arrays
    store = open_for_writing(url)
    arrays = store.arrays(task.split, task.factor)
    done = arrays.completed()[task.start:task.stop]
    b, f = store.spec.batch_size, store.spec.n_columns
    images = np.empty((task.size, b, *store.spec.image_shape), np.uint8)
    values = np.empty((task.size, b, f), np.float32)
    identity = np.empty((task.size, b), np.int64)
    rendered = 0
    for i, k in enumerate(range(task.start, task.stop)):
        if done[i] and k not in task.redo:
            try:
                kept = store.minibatch(task.split, task.factor, k)
                images[i], values[i], identity[i] = kept.images, kept.values, kept.identity
                continue
            except DamagedMinibatch:
                pass  # damaged since it was written: render it again
        plan, images[i] = state.render(task.split, task.factor, k)
        values[i], identity[i] = plan.values, plan.identities
        rendered += 1
    if task.lock_token:
        check_holder(url, task.lock_token)
    try:
        write_block(arrays, task.start, images, values, identity)
    except OSError:
        # A writer paused between the check and the write can lose its lock meanwhile, and
        # the one that took over removes its half-written files (ENOENT here): the lost
        # lock is the cause to report, not the disk.
        if task.lock_token:
            check_holder(url, task.lock_token)
        raise
    return rendered
