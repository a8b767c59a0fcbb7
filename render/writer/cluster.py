"""Where the writer's shard tasks run: in this process (one worker), on a local Dask cluster of
one-thread worker processes, or on an existing Dask cluster (`--scheduler ADDRESS`, or
DASK_SCHEDULER_ADDRESS), which reaches SLURM through dask-jobqueue and Kubernetes through
dask-kubernetes. The same task function runs in all three.

The local cluster is private to the run (private_cluster.py: TLS with credentials made for
the run, no HTTP, its logs in a file). A cluster the user runs is used as it is: its
security, HTTP and logging are the user's, and what its workers return is unpickled here.
Whichever runs them, the coordinator decides which failed tasks run again (`run_on_dask`).
"""

from __future__ import annotations

import errno
import os
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from dcign.shared.errors import DcignError

from ..generators.base import DatasetGenerator, DatasetRecipe
from . import shards
from .shards import ShardTask, WorkerSettings, render_shard

SCHEDULER_VARIABLE = "DASK_SCHEDULER_ADDRESS"
CONNECT_TIMEOUT = "10s"
TASK_RETRIES = 2  # a task that fails (a transient I/O error, a flaky worker) runs again
# Failures of the disk (or bucket) itself: another try, on any worker, fails the same way.
DISK_ERRORS = {errno.ENOSPC: "no space left on the device",
               errno.EDQUOT: "the disk quota is exceeded",
               errno.EACCES: "permission denied", errno.EPERM: "permission denied",
               errno.EROFS: "the file system is read-only"}
# Read by numpy when a worker imports it: a BLAS pool of the worker's own cores. With one per
# machine core, OpenBLAS's idle threads spin on the cores the other workers render on (two
# workers: 220 → 330 images/s).
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


# Dask's housekeeping is set for long-lived shared clusters: a statistical profiler sampling
# every worker's stack every 10 ms, event-loop health checks every 20 ms, and memory and
# system monitors polling psutil several times a second, the nannies' in this process. Nobody
# reads them here, and on a machine whose every core renders they take time from the
# renderer: on 2 cores, 8,000 faces with two workers took a median 34.0 s with these
# settings against 37.5 s without, and 35.1 s on the multiprocessing pool this replaced
# (docs/results.md).
LOCAL_CLUSTER_QUIET = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "10s",
    "distributed.worker.memory.monitor-interval": "2s",
}


def is_disk_error(exc: BaseException) -> bool:
    """Whether a task failed because of the disk (no space, quota, permission, read-only):
    trying it again, here or on another worker, cannot help."""
    return isinstance(exc, OSError) and (exc.errno in DISK_ERRORS
                                         or isinstance(exc, PermissionError))


def choose_scheduler(option: str | None, workers_given: bool,
                     environ: Mapping[str, str] = os.environ) -> tuple[str | None, str | None]:
    """The scheduler to send the tasks to and where its address came from: `--scheduler`;
    else DASK_SCHEDULER_ADDRESS, unless `--workers` was given (an explicit --workers asks for
    processes on this machine); else none (this machine)."""
    if option:
        return option, "--scheduler"
    if not workers_given and environ.get(SCHEDULER_VARIABLE, "").strip():
        return environ[SCHEDULER_VARIABLE].strip(), SCHEDULER_VARIABLE
    return None, None


def cores_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def worker_env(cores: int) -> dict[str, str]:
    """Environment of a local cluster's worker processes (a user's own settings win)."""
    return {name: os.environ.get(name, str(cores)) for name in BLAS_THREAD_VARIABLES}


def new_cluster_log(store_name: str) -> str | None:
    """A file of its own, in the temporary directory, for one run's local cluster logs (the
    store's own disk may be the one that is full); None if none can be made there (the
    cluster's errors then reach the terminal)."""
    try:
        fd, path = tempfile.mkstemp(prefix=f"dcign-render-{store_name}-", suffix=".log")
    except OSError:
        return None
    os.close(fd)
    return path


@contextmanager
def dask_client(workers: int, scheduler: str | None, log: str | None = None,
                verbose: bool = False) -> Iterator:
    """A Dask client: to the given scheduler, or to a private local cluster of `workers`
    processes with one thread each, on 127.0.0.1 only, logging to the file `log` (or with
    `verbose` to the terminal; else only errors)."""
    from distributed import Client

    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, TypeError, ValueError) as exc:
            raise DcignError(f"cannot reach the Dask scheduler at {scheduler} "
                             f"({type(exc).__name__}: {exc})") from None
        with client:
            yield client
        return
    from .private_cluster import local_client

    with local_client(workers, worker_env(cores_per_worker(workers)), LOCAL_CLUSTER_QUIET, log,
                      verbose) as client:
        yield client


def check_scheduler(address: str, source: str | None = None) -> None:
    """Refuse an unreachable scheduler before anything is written, saying where its address
    came from if not from the command line."""
    try:
        with dask_client(0, address):
            pass
    except DcignError as exc:
        if source in (None, "--scheduler"):
            raise
        raise DcignError(f"{exc} (the address is {source}'s)") from None


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


class TaskFailed(Exception):
    """A shard task failed for good on Dask (`cause`: what it raised there)."""

    def __init__(self, task: ShardTask, cause: BaseException):
        super().__init__(f"{task.split}/{task.factor} minibatches {task.start}-{task.stop - 1}: "
                         f"{type(cause).__name__}: {cause}")
        self.task, self.cause = task, cause


def _retryable(exc: BaseException) -> bool:
    """Worth another try: not the disk (the same disk fails the same way), not one of our
    one-line errors (a lost lock, a damaged store), not a worker that died on it already as
    often as the scheduler allows (its own retries)."""
    from distributed import KilledWorker

    return not (is_disk_error(exc) or isinstance(exc, (DcignError, KilledWorker)))


def run_on_dask(tasks: list[ShardTask], recipe: DatasetRecipe, url: str,
                settings: WorkerSettings, workers: int, scheduler: str | None,
                log: str | None = None, verbose: bool = False
                ) -> Iterator[tuple[ShardTask, int]]:
    """Every task at once on Dask; yields each one with its count as it completes. A task
    that fails is submitted again (at most TASK_RETRIES times) unless its failure cannot be
    helped by that (`_retryable`); the first that fails for good raises TaskFailed."""
    from distributed import as_completed

    with dask_client(workers, scheduler, log, verbose) as client:
        shared = client.scatter(recipe, broadcast=True)  # sent once, not with every task
        run = uuid.uuid4().hex[:8]  # a long-lived cluster never takes one run's shard for another's

        def submit(task: ShardTask, attempt: int):
            return client.submit(render_shard, shared, url, task, settings, pure=False,
                                 key=f"dcign-{run}-{task.split}-{task.factor}-{task.start}"
                                     f"-{attempt}")

        futures = {submit(task, 0): (task, 0) for task in tasks}
        pending = as_completed(list(futures))
        try:
            for future in pending:
                task, attempt = futures.pop(future)
                if future.status != "error":
                    yield task, future.result()
                    continue
                cause = future.exception()
                if attempt >= TASK_RETRIES or not _retryable(cause):
                    raise TaskFailed(task, cause) from cause.with_traceback(future.traceback())
                again = submit(task, attempt + 1)
                futures[again] = (task, attempt + 1)
                pending.add(again)
        finally:
            client.cancel(list(futures))
