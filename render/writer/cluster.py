"""Shard tasks on a Dask cluster the user runs (`--scheduler ADDRESS`, or
DASK_SCHEDULER_ADDRESS: `dcign.shared.dask_cluster` chooses it and connects), which reaches
SLURM through dask-jobqueue and Kubernetes through dask-kubernetes; the same task function
runs there as on this machine (local_pool.py). The cluster is used as it is: its security,
HTTP and logging are the user's, and what its workers return is unpickled here. The
coordinator decides which failed tasks run again (`run_on_dask`); a task whose worker died is
retried by the scheduler itself (its `allowed-failures`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from dcign.shared.dask_cluster import scheduler_client

from ..generators.base import DatasetRecipe
from .failures import TASK_RETRIES, TaskFailed, WorkerDied, retryable
from .shards import ShardTask, WorkerSettings, render_shard


def run_on_dask(tasks: list[ShardTask], recipe: DatasetRecipe, url: str,
                settings: WorkerSettings, scheduler: str) -> Iterator[tuple[ShardTask, int]]:
    """Every task at once on the cluster at `scheduler`; yields each one with its count as
    it completes. A task that fails is submitted again (at most TASK_RETRIES times) unless
    its failure cannot be helped by that (`retryable`), or its worker died as often as the
    scheduler allows; the first that fails for good raises TaskFailed."""
    from distributed import KilledWorker, as_completed

    with scheduler_client(scheduler) as client:
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
                if isinstance(cause, KilledWorker):  # the scheduler's own retries are spent
                    raise TaskFailed(task, WorkerDied(str(cause))) from cause
                if attempt >= TASK_RETRIES or not retryable(cause):
                    raise TaskFailed(task, cause) from cause.with_traceback(future.traceback())
                again = submit(task, attempt + 1)
                futures[again] = (task, attempt + 1)
                pending.add(again)
        finally:
            client.cancel(list(futures))
