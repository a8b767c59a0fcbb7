"""The local Dask cluster, private to one run.

Its scheduler, nannies and workers talk TLS with a key and certificate made for the run and
held only in memory (`Security.temporary()`): the scheduler requires them of every client
and worker, so another process on the machine cannot connect, let alone run code in the
workers. None of them serves HTTP. Its logs go to a file of the run's (or, `verbose`, to the
terminal), never to the terminal a worker's traceback for a task failure the coordinator
reports itself in one line.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import dask
from distributed import Client, LocalCluster, Security
from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

LOG_FORMAT = "%(asctime)s - %(process)d - %(name)s - %(levelname)s - %(message)s"
# The scheduler and every worker start an HTTP server whatever the dashboard setting (the
# scheduler's on 127.0.0.1:8787, answering /info, /json, /metrics and a proxy to anyone on
# the machine). No routes: nothing answers in the moment before the plugins below close
# them. The nannies hand this configuration on to their worker processes.
PRIVATE = {
    "distributed.scheduler.http.routes": [],
    "distributed.worker.http.routes": [],
}


class _LogFile(logging.Handler):
    """Records appended to a file. Not a StreamHandler: LocalCluster's `silence_logs` turns
    every StreamHandler of the "distributed" logger down to errors. A failed write (a full
    disk) is dropped, where logging's own handlers print a traceback to the terminal."""

    def __init__(self, path: str):
        super().__init__()
        self.file = open(path, "a")  # noqa: SIM115 - closed with the handler

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.file.write(self.format(record) + "\n")
            self.file.flush()
        except Exception:  # noqa: BLE001 - a log that cannot be written must not stop the run
            pass

    def close(self) -> None:
        self.file.close()
        super().close()


@contextmanager
def _logging_to(path: str | None) -> Iterator[None]:
    """While the cluster runs, this process's Dask logs (the scheduler's, the nannies') go to
    `path` as well; the terminal keeps only errors (LocalCluster's silence_logs)."""
    if path is None:
        yield
        return
    handler = _LogFile(path)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger = logging.getLogger("distributed")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()


class NoHttp(SchedulerPlugin):
    """Close the scheduler's HTTP server as it starts, before any client connects."""

    name = "dcign-no-http"

    async def start(self, scheduler) -> None:
        scheduler.http_server.stop()


class PrivateWorker(WorkerPlugin):
    """Run in each worker process before it joins the scheduler (and in any worker a nanny
    restarts): close its HTTP server and, given a log file, send there everything the process
    writes (Dask's logs in full, a failed task's traceback, a GL driver's warnings)."""

    name = "dcign-private-worker"

    def __init__(self, log: str | None):
        self.log = log

    def setup(self, worker) -> None:
        worker.http_server.stop()
        if self.log is None:
            return
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        for stream in (1, 2):  # stdout and stderr, at the descriptor: C libraries' too
            os.dup2(fd, stream)
        os.close(fd)
        formatter = logging.Formatter(LOG_FORMAT)
        for handler in logging.getLogger("distributed").handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setLevel(logging.NOTSET)  # the whole log, at Dask's configured level
                handler.setFormatter(formatter)


@contextmanager
def local_client(workers: int, env: dict[str, str], config: dict, log: str | None,
                 verbose: bool) -> Iterator[Client]:
    """A client of a private cluster of `workers` one-thread processes on 127.0.0.1, with
    `config` (and PRIVATE) set for it; logging to the file `log`, or with `verbose` to the
    terminal, else only errors."""
    with dask.config.set(config | PRIVATE), _logging_to(None if verbose else log), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                         host="127.0.0.1", protocol="tls://", security=Security.temporary(),
                         dashboard_address=None,
                         silence_logs=logging.INFO if verbose else logging.ERROR,
                         # port 0: the scheduler's HTTP server would take 8787, and warn
                         # on the terminal when another program (or run) has it
                         scheduler_kwargs={"plugins": [NoHttp()],
                                           "dashboard_address": "127.0.0.1:0"},
                         plugins=(PrivateWorker(None if verbose else log),),
                         env=env) as cluster, \
            Client(cluster) as client:
        yield client
