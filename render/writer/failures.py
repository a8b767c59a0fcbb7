"""What a failed shard task means, wherever it ran: a failure of the disk (or bucket) itself,
which another try cannot help; one of our own one-line errors (a lost lock, a damaged store);
a worker process that died; or anything else, which runs again at most TASK_RETRIES times."""

from __future__ import annotations

import errno

from dcign.shared.dask_cluster import TASK_RETRIES  # the export's tasks retry as often
from dcign.shared.errors import DcignError

from .shards import ShardTask

__all__ = ["DISK_ERRORS", "TASK_RETRIES", "TaskFailed", "WorkerDied", "is_disk_error",
           "retryable"]
# Failures of the disk (or bucket) itself: another try, on any worker, fails the same way.
DISK_ERRORS = {errno.ENOSPC: "no space left on the device",
               errno.EDQUOT: "the disk quota is exceeded",
               errno.EACCES: "permission denied", errno.EPERM: "permission denied",
               errno.EROFS: "the file system is read-only"}


class WorkerDied(Exception):
    """The process running a task ended without an answer (killed for its memory, a crash in
    a C library)."""


class TaskFailed(Exception):
    """A shard task failed for good (`cause`: what it raised, or WorkerDied)."""

    def __init__(self, task: ShardTask, cause: BaseException):
        super().__init__(f"{task}: {type(cause).__name__}: {cause}")
        self.task, self.cause = task, cause


def is_disk_error(exc: BaseException) -> bool:
    """Whether a task failed because of the disk (no space, quota, permission, read-only):
    trying it again, here or on another worker, cannot help."""
    return isinstance(exc, OSError) and (exc.errno in DISK_ERRORS
                                         or isinstance(exc, PermissionError))


def retryable(exc: BaseException) -> bool:
    """Worth another try: not the disk (the same disk fails the same way), not one of our
    one-line errors (a lost lock, a damaged store), not an interrupt or exit."""
    return isinstance(exc, Exception) and not (is_disk_error(exc)
                                               or isinstance(exc, DcignError))
