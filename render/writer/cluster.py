"""Shard tasks on a Dask cluster the user runs (`--scheduler ADDRESS`, or
DASK_SCHEDULER_ADDRESS), which reaches SLURM through dask-jobqueue and Kubernetes through
dask-kubernetes; the same task function runs there as on this machine (local_pool.py). The
cluster is used as it is: its security, HTTP and logging are the user's, and what its workers
return is unpickled here. The coordinator decides which failed tasks run again
(`run_on_dask`); a task whose worker died is retried by the scheduler itself (its
`allowed-failures`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from dcign.shared.errors import DcignError

from ..generators.base import DatasetRecipe
from .failures import TASK_RETRIES, TaskFailed, WorkerDied, retryable
from .shards import ShardTask, WorkerSettings, render_shard

SCHEDULER_VARIABLE = "DASK_SCHEDULER_ADDRESS"
CONNECT_TIMEOUT = "10s"


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


@contextmanager
def dask_client(scheduler: str) -> Iterator:
    """A client of the Dask scheduler at `scheduler`; one line if it cannot be reached."""
    from distributed import Client

    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, TypeError, ValueError) as exc:
        raise DcignError(f"cannot reach the Dask scheduler at {scheduler} "
                         f"({type(exc).__name__}: {exc})") from None
    with client:
        yield client


def check_scheduler(address: str, source: str | None = None) -> None:
    """Refuse an unreachable scheduler before anything is written, saying where its address
    came from if not from the command line."""
    try:
        with dask_client(address):
            pass
    except DcignError as exc:
        if source in (None, "--scheduler"):
            raise
        raise DcignError(f"{exc} (the address is {source}'s)") from None


def run_on_dask(tasks: list[ShardTask], recipe: DatasetRecipe, url: str,
                settings: WorkerSettings, scheduler: str) -> Iterator[tuple[ShardTask, int]]:
    """Every task at once on the cluster at `scheduler`; yields each one with its count as
    it completes. A task that fails is submitted again (at most TASK_RETRIES times) unless
    its failure cannot be helped by that (`retryable`), or its worker died as often as the
    scheduler allows; the first that fails for good raises TaskFailed."""
    from distributed import KilledWorker, as_completed

    with dask_client(scheduler) as client:
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
