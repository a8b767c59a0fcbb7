"""Where shard tasks run on this machine: in this process (one worker), or on a pool of
worker processes (`concurrent.futures.ProcessPoolExecutor`, spawned, one per worker).

Why a pool and not a local Dask cluster: on an even load (one shard per worker, start-up
included) the private Dask cluster this replaced took 10.7 % longer than a plain pool running
the same tasks (docs/results.md): its TLS credentials, scheduler, a nanny beside each worker
and the task round trips cost ~1.3 s a run, and it buys nothing a single machine needs. A
pool talks to its workers over pipes, so nothing listens on a port and no other process can
reach them. Dask stays for clusters (`--scheduler`, cluster.py).

What the pool provides that the cluster did: each worker's output (a GL driver's warnings, a
failed task's traceback) goes to the run's log file, not the terminal; a task that fails for
a reason another try can help runs again (failures.py); a worker process that dies (killed
for its memory) takes the pool with it, so the pool is started again and the tasks it was
running are charged a try.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import traceback
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

from ..generators.base import DatasetGenerator, DatasetRecipe
from . import shards
from .failures import TASK_RETRIES, TaskFailed, WorkerDied, retryable
from .shards import ShardTask, WorkerSettings, render_shard

# Read by numpy when a worker imports it: a BLAS pool of the worker's own cores. With one per
# machine core, OpenBLAS's idle threads spin on the cores the other workers render on (two
# workers: 220 → 330 images/s).
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def cores_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def worker_env(cores: int) -> dict[str, str]:
    """Environment of the pool's worker processes (a user's own settings win)."""
    return {name: os.environ.get(name, str(cores)) for name in BLAS_THREAD_VARIABLES}


def new_worker_log(store_name: str) -> str | None:
    """A file of its own, in the temporary directory, for one run's worker output (the
    store's own disk may be the one that is full); None if none can be made there (the
    workers' output then reaches the terminal)."""
    try:
        fd, path = tempfile.mkstemp(prefix=f"dcign-render-{store_name}-", suffix=".log")
    except OSError:
        return None
    os.close(fd)
    return path


def run_in_process(tasks: list[ShardTask], recipe: DatasetRecipe, generator: DatasetGenerator,
                   url: str, settings: WorkerSettings) -> Iterator[tuple[ShardTask, int]]:
    """Each task in turn, here, with the coordinator's generator (loading the model again
    would only repeat the work)."""
    shards.adopt(shards.WorkerState(recipe, settings, generator))
    try:
        for task in tasks:
            yield task, render_shard(recipe, url, task, settings)
    finally:
        shards.release()


# ------------------------------------------------------------------ inside a worker process

_worker: dict = {}  # this worker's recipe and settings, given once when it starts


def _start_worker(names, recipe: DatasetRecipe, settings: WorkerSettings,
                  log: str | None) -> None:
    """A worker's first act: take its number (which GPU it renders on, on a multi-GPU node)
    and send what it writes, C libraries' output included, to the run's log."""
    shards.name_worker(names.get())
    _worker.update(recipe=recipe, settings=settings)
    if log is not None:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        for stream in (1, 2):
            os.dup2(fd, stream)
        os.close(fd)


def _run_task(url: str, task: ShardTask, attempt: int) -> int:
    try:
        return render_shard(_worker["recipe"], url, task, _worker["settings"])
    except BaseException:
        print(f"shard task {task}, try {attempt + 1} of {TASK_RETRIES + 1}, failed in process "
              f"{os.getpid()}:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        raise


# ------------------------------------------------------------------------ in the coordinator

@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in this process's environment while workers are spawned (they inherit it
    before they import numpy), and the environment as it was afterwards."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _stop_now(pool: ProcessPoolExecutor) -> None:
    """End the workers mid-task (a task failed for good, the lock was lost, Ctrl-C): what
    they are writing is a shard's temporary file, removed by the next run."""
    terminate = getattr(pool, "terminate_workers", None)  # Python ≥ 3.14
    if terminate is not None:
        terminate()
    else:  # before 3.14 only through the pool's table of its processes
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def _new_pool(workers: int, recipe: DatasetRecipe, settings: WorkerSettings,
              log: str | None) -> ProcessPoolExecutor:
    # spawned, not forked: a fork would copy this process's threads and any GL state
    context = multiprocessing.get_context("spawn")
    names = context.Queue()
    for name in range(workers):
        names.put(name)
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                               initargs=(names, recipe, settings, log))


def run_on_pool(tasks: list[ShardTask], recipe: DatasetRecipe, url: str,
                settings: WorkerSettings, workers: int, log: str | None = None
                ) -> Iterator[tuple[ShardTask, int]]:
    """The tasks on a pool of `workers` processes, each with `settings.cores` cores, no more
    tasks in flight than workers (so a pool that breaks names the tasks it was running);
    yields each task with its count as it completes. A task that fails runs again at most
    TASK_RETRIES times if another try can help (`retryable`); the first that fails for good,
    or whose worker died each time, raises TaskFailed."""
    waiting = deque((task, 0) for task in tasks)
    with _environment(worker_env(settings.cores)):
        while waiting:
            pool = _new_pool(workers, recipe, settings, log)
            try:
                yield from _drain(pool, waiting, url, workers, log)
            except BaseException:
                _stop_now(pool)
                raise
            pool.shutdown(wait=True)


def _log_death(log: str | None, running: list[ShardTask]) -> None:
    """Say in the workers' log (where their own output would have been) that one died."""
    names = ", ".join(str(t) for t in running)
    line = (f"a worker process died while the pool ran {names}; those tasks run again on a "
            "fresh pool unless they have had their tries\n")
    if log is None:
        sys.stderr.write(line)
        return
    with open(log, "a") as file:
        file.write(line)


def _drain(pool: ProcessPoolExecutor, waiting: deque, url: str, workers: int,
           log: str | None) -> Iterator[tuple[ShardTask, int]]:
    """Run the waiting tasks on `pool` until none is left or the pool breaks (a worker
    died): then every task it was running waits again, one try spent."""
    in_flight: dict[Future, tuple[ShardTask, int]] = {}
    broken = False
    while in_flight or (waiting and not broken):
        while waiting and not broken and len(in_flight) < workers:
            task, attempt = waiting.popleft()
            try:
                in_flight[pool.submit(_run_task, url, task, attempt)] = (task, attempt)
            except BrokenProcessPool:  # a worker died since the last result came back
                waiting.appendleft((task, attempt))  # never started: no try spent
                _log_death(log, [t for t, _ in in_flight.values()])
                broken = True
        if not in_flight:
            return
        done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
        for future in done:
            task, attempt = in_flight.pop(future)
            cause = future.exception()
            if cause is None:
                yield task, future.result()
                continue
            if isinstance(cause, BrokenProcessPool):
                if not broken:
                    _log_death(log, [task, *(t for t, _ in in_flight.values())])
                broken, cause = True, WorkerDied(str(cause))
            if attempt >= TASK_RETRIES or not retryable(cause):
                raise TaskFailed(task, cause) from cause
            waiting.appendleft((task, attempt + 1))
