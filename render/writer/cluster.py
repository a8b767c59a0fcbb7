"""Where the writer's shard tasks run: in this process (one worker), on a local Dask cluster of
one-thread worker processes, or on an existing Dask cluster (`--scheduler ADDRESS` or
DASK_SCHEDULER_ADDRESS), which reaches SLURM through dask-jobqueue and Kubernetes through
dask-kubernetes. The same task function runs in all three.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from dcign.shared.errors import DcignError

from ..generators.base import DatasetGenerator, DatasetRecipe
from . import shards
from .shards import ShardTask, WorkerSettings, render_shard

SCHEDULER_VARIABLE = "DASK_SCHEDULER_ADDRESS"
CONNECT_TIMEOUT = "10s"
TASK_RETRIES = 2  # a task that dies (a lost worker, a transient I/O error) runs again
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


def scheduler_address(option: str | None) -> str | None:
    return option or os.environ.get(SCHEDULER_VARIABLE) or None


def cores_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def worker_env(cores: int) -> dict[str, str]:
    """Environment of a local cluster's worker processes (a user's own settings win)."""
    return {name: os.environ.get(name, str(cores)) for name in BLAS_THREAD_VARIABLES}


@contextmanager
def dask_client(workers: int, scheduler: str | None) -> Iterator:
    """A Dask client: to the given scheduler, or to a local cluster of `workers` processes
    with one thread each, listening on 127.0.0.1 only."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise DcignError(f"cannot reach the Dask scheduler at {scheduler} "
                             f"({type(exc).__name__}: {exc})") from None
        with client:
            yield client
        return
    import dask

    with dask.config.set(LOCAL_CLUSTER_QUIET), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                         host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR,
                         env=worker_env(cores_per_worker(workers))) as cluster, \
            Client(cluster) as client:
        yield client


def check_scheduler(address: str) -> None:
    """Refuse an unreachable scheduler before anything is written."""
    with dask_client(0, address):
        pass


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


def run_on_dask(tasks: list[ShardTask], recipe: DatasetRecipe, url: str,
                settings: WorkerSettings, workers: int, scheduler: str | None
                ) -> Iterator[tuple[ShardTask, int]]:
    """Every task at once on Dask; yields each one with its count as it completes."""
    from distributed import as_completed

    with dask_client(workers, scheduler) as client:
        shared = client.scatter(recipe, broadcast=True)  # sent once, not with every task
        run = uuid.uuid4().hex[:8]  # a long-lived cluster never takes one run's shard for another's
        futures = {client.submit(render_shard, shared, url, task, settings,
                                 retries=TASK_RETRIES, pure=False,
                                 key=f"dcign-{run}-{task.split}-{task.factor}-{task.start}"): task
                   for task in tasks}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            client.cancel(futures)
