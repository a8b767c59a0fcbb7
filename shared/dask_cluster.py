"""A Dask cluster the user runs (`--scheduler ADDRESS`, or DASK_SCHEDULER_ADDRESS): which
address a command uses, and a client connected to it, refused in one line when unreachable.
What runs on it is the caller's: render's shard tasks, export's Parquet files. Its security,
HTTP and logging are the user's, and what its workers return is unpickled here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from .errors import DcignError

SCHEDULER_VARIABLE = "DASK_SCHEDULER_ADDRESS"
CONNECT_TIMEOUT = "10s"
TASK_RETRIES = 2  # a task that fails (a transient I/O error, a flaky worker) runs again


def choose_scheduler(option: str | None, workers_given: bool = False,
                     environ: Mapping[str, str] = os.environ
                     ) -> tuple[str | None, str | None]:
    """The scheduler to send the tasks to and where its address came from: `--scheduler`;
    else DASK_SCHEDULER_ADDRESS, unless `--workers` was given (an explicit --workers asks for
    processes on this machine); else none (this machine)."""
    if option:
        return option, "--scheduler"
    if not workers_given and environ.get(SCHEDULER_VARIABLE, "").strip():
        return environ[SCHEDULER_VARIABLE].strip(), SCHEDULER_VARIABLE
    return None, None


def announcement(address: str, source: str | None) -> str | None:
    """The one line a command prints (on stderr) when the address came from the environment:
    a cluster the user did not name on the command line is never used silently."""
    return f"using the Dask scheduler at {address} from {source}" \
        if source == SCHEDULER_VARIABLE else None


@contextmanager
def scheduler_client(address: str, source: str | None = None) -> Iterator:
    """A `distributed.Client` of the scheduler at `address`, closed after the block; one line
    if it does not answer within CONNECT_TIMEOUT, saying where the address came from if not
    from the command line."""
    from distributed import Client

    try:
        client = Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, TypeError, ValueError) as exc:
        where = "" if source in (None, "--scheduler") else f" (the address is {source}'s)"
        raise DcignError(f"cannot reach the Dask scheduler at {address} "
                         f"({type(exc).__name__}: {exc}){where}") from None
    with client:
        yield client
