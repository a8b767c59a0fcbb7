"""One writer per store: a lock object in the store's root naming its holder.

A second writer is refused at once with the first's host, process and start time. A lock
left by a killed writer is stale and taken over: on the same host when its process is gone,
anywhere when its heartbeat (rewritten every HEARTBEAT_SECONDS while the writer runs) is
older than STALE_AFTER_SECONDS. Readers (training, evaluation, verify) never take it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from .errors import StoreError
from .location import Location

LOCK_NAME = "dcign-writer.lock"
HEARTBEAT_SECONDS = 15.0
STALE_AFTER_SECONDS = 120.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _holder() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": _now(),
            "heartbeat": time.time(), "token": uuid.uuid4().hex}


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def stale(lock: dict) -> bool:
    """Whether a lock's writer is gone: its process on this host, or its heartbeat anywhere."""
    if lock.get("host") == socket.gethostname() and not _process_alive(int(lock.get("pid", -1))):
        return True
    return time.time() - float(lock.get("heartbeat", 0)) > STALE_AFTER_SECONDS


def read_lock(location: Location) -> dict | None:
    try:
        return json.loads(location.read_text(LOCK_NAME))
    except FileNotFoundError:
        return None
    except (ValueError, OSError):
        return {}  # a torn or foreign lock file: stale by its missing heartbeat


def _claimed(location: Location, lock: dict) -> bool:
    """Create the store's root and write the lock, only if none exists; one line when the
    place cannot be written (a missing bucket, a read-only disk)."""
    try:
        location.make_root()
        return _create(location, lock)
    except OSError as exc:
        raise StoreError(f"cannot create a store at {location.url}: "
                         f"{exc.strerror or exc or type(exc).__name__}") from None


def _create(location: Location, lock: dict) -> bool:
    """Write the lock only if none exists (atomically on a local disk)."""
    text = json.dumps(lock)
    if location.is_local:
        try:
            fd = os.open(location.key(LOCK_NAME), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return True
    if location.exists(LOCK_NAME):
        return False
    location.write_text(text, LOCK_NAME)
    return json.loads(location.read_text(LOCK_NAME)).get("token") == lock["token"]


@contextmanager
def writer_lock(location: Location, note: Callable[[str], None] = print) -> Iterator[dict]:
    """Hold the store's writer lock for the block; refuse at once if another writer holds it."""
    lock = _holder()
    while not _claimed(location, lock):
        held = read_lock(location)
        if held is None:
            continue  # released between our two looks
        if not stale(held):
            raise StoreError(
                f"{location.url} is being written by another dcign process (host "
                f"{held.get('host')}, pid {held.get('pid')}, since {held.get('since')}); "
                "wait for it to finish, or stop it and rerun")
        note(f"note: taking over {location.url} from a writer that is gone (host "
             f"{held.get('host')}, pid {held.get('pid')}, since {held.get('since')})")
        location.remove(LOCK_NAME)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            location.write_text(json.dumps(lock | {"heartbeat": time.time()}), LOCK_NAME)

    heart = threading.Thread(target=beat, daemon=True, name="dcign-lock-heartbeat")
    heart.start()
    try:
        yield lock
    finally:
        stop.set()
        heart.join()
        if (read_lock(location) or {}).get("token") == lock["token"]:
            location.remove(LOCK_NAME)
