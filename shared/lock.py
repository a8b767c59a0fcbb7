"""One writer per store: a lock object in the store's root naming its holder.

What is guaranteed, and how:

- Acquisition. A lock appears whole or not at all, and only where none exists: on a disk
  (local or NFS) its content is written to an unnamed file (or a temporary one) and published
  with link(2), which fails if the name exists; on S3 by a conditional PUT (If-None-Match: *),
  which S3 decides atomically. Of any number of writers starting at once exactly one holds
  the lock; each other is refused at once with the holder's host, process and start time.
- Heartbeat. While it writes, the holder renews its lock every HEARTBEAT_SECONDS: on a disk
  by touching its own lock file (through the descriptor it keeps, so it never touches a
  lock that replaced its own), on S3 by rewriting it conditionally on its last ETag
  (If-Match). A renewal that fails stops the writer (below) instead of letting its lock go
  stale under it.
- Stale. A lock is taken over only when its writer is gone: at once if it ran on this
  machine (same boot and pid namespace, recorded in the lock) and its process has exited;
  else when its heartbeat, watched from here, does not move for STALE_AFTER_SECONDS. The
  clocks of two hosts are never compared to decide that: a lock renewed within
  STALE_AFTER_SECONDS by this machine's clock is refused at once, and one that looks older
  is watched first, so a holder whose clock is behind (or a same-named host in another
  container) keeps its lock as long as it beats. A lock that cannot be read (a transient
  S3 error, a permission) is unknown, not stale: the writer refuses in one line.
- Takeover. One winner: on a disk the taker first links a claim to the very lock it judged
  stale (a second taker's claim fails), moves that lock aside, checks it is the one it
  judged, and publishes its own with link(2); on S3 it overwrites the stale lock only if its
  ETag is still the one watched (If-Match). Either way the new holder reads its lock back
  before it writes.
- Fencing. A writer whose lock was taken over (it was paused past the stale limit, or its
  heartbeat failed) finds out before its next write: the coordinator checks before each
  step that writes (the store, its arrays, its history) and after each shard, and each
  shard task, in whatever process runs it, re-reads the lock and compares its token before
  it writes (`check_holder`). It stops with one line and writes nothing more. What remains
  is the moment between a check and its write: a disk or S3 cannot refuse a write by token.

Object stores other than S3 (and S3-compatible servers that ignore If-None-Match/If-Match)
get the same protocol without the atomic steps: a note says one writer is not guaranteed.
Readers (training, evaluation, verify) never take the lock; an export takes it, so that the
store cannot change while it is read, and a writer it refuses is told the store is being
exported.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import StoreError
from .location import Location, locate

LOCK_NAME = "dcign-writer.lock"
HEARTBEAT_SECONDS = 15.0
STALE_AFTER_SECONDS = 120.0
CLAIM_SECONDS = 10.0  # a takeover claim older than this was left by a taker that died
HEARTBEAT_TRIES = 3  # a renewal that fails is tried again this many times, a second apart
# Why a lock is held, in it for the writers it refuses: to write the store, or to export it
# (an export holds it only so that the store cannot change while it is read)
WRITE, EXPORT = "write", "export"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _machine() -> str | None:
    """This machine and pid namespace: pids are comparable only between processes that share
    both (a container has its own namespace; a same-named host has another boot)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/pid:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return None


def _process_state(pid: int) -> tuple[str, str] | None:
    """(state, start time in ticks since boot) of a process on this machine, if known."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], fields[19]
    except (OSError, IndexError):
        return None


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a process we can ask about: assume alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    state = _process_state(pid)
    return state is None or state[0] != "Z"


def _holder(token: str, purpose: str) -> dict:
    pid = os.getpid()
    state = _process_state(pid)
    return {"host": socket.gethostname(), "pid": pid, "since": _now(),
            "heartbeat": time.time(), "beat": 0, "token": token, "machine": _machine(),
            "pid_start": state[1] if state else None, "purpose": purpose}


def gone_from_this_machine(lock: dict) -> bool:
    """Whether the lock's writer ran on this machine, in this pid namespace, and has exited
    (its pid is free, or taken by a process that started later)."""
    machine = _machine()
    pid = lock.get("pid")
    if machine is None or lock.get("machine") != machine or not isinstance(pid, int):
        return False
    if not _process_alive(pid):
        return True
    state = _process_state(pid)
    return state is not None and lock.get("pid_start") not in (None, state[1])


def _who(lock: dict) -> str:
    return (f"host {lock.get('host', 'unknown')}, pid {lock.get('pid', 'unknown')}, "
            f"since {lock.get('since', 'unknown')}")


class LockUnreadable(OSError):
    """The lock exists (or may) but cannot be read: its holder is unknown."""


class LockLost(Exception):
    """The holder's lock is no longer its own."""


@dataclass
class Seen:
    """A lock as read once: its content ({} if not JSON), a version that changes whenever it
    is renewed or replaced, and when it was last renewed by the storage's clock."""

    lock: dict
    version: Any
    renewed: float


@dataclass
class Mine:
    """What the holder keeps of its own lock."""

    token: str
    content: dict
    fd: int | None = None  # a disk: a descriptor of our lock file
    etag: str | None = None  # S3: the ETag of our last write
    extra: dict = field(default_factory=dict)


def _parse(data: bytes) -> dict:
    try:
        lock = json.loads(data.decode())
    except (ValueError, UnicodeDecodeError):
        return {}
    return lock if isinstance(lock, dict) else {}


# ------------------------------------------------------------------------------- a disk

class DiskLock:
    """The lock on a local or network disk: link(2) publishes, rename(2) removes."""

    guaranteed = True

    def __init__(self, location: Location):
        self.location = location
        self.path = location.key(LOCK_NAME)

    def _aside(self, tag: str) -> str:
        return self.location.key(f"{LOCK_NAME}.{tag}")

    def _publish(self, fd: int) -> bool:
        """Give the unnamed file `fd` the lock's name, only if the name is free."""
        proc = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.link(str(fd), self.path, src_dir_fd=proc, follow_symlinks=True)
            return True
        except FileExistsError:
            return False
        finally:
            os.close(proc)

    def create(self, mine: Mine) -> bool:
        data = json.dumps(mine.content).encode()
        try:  # a file with no name until it is complete: nothing to clean up after a crash
            fd = os.open(self.location.root, os.O_TMPFILE | os.O_RDWR, 0o644)
        except (OSError, AttributeError):
            fd = None
        if fd is not None:
            try:
                os.write(fd, data)
                if self._publish(fd):
                    mine.fd = fd
                    return True
                os.close(fd)
                return False
            except OSError:  # linking an unnamed file is not supported here
                os.close(fd)
        return self._create_named(mine, data)

    def _create_named(self, mine: Mine, data: bytes) -> bool:
        temporary = self._aside(f"{mine.token}.tmp")
        fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
        try:
            os.write(fd, data)
            try:
                os.link(temporary, self.path)
            except FileExistsError:
                os.close(fd)
                return False
            mine.fd = fd
            return True
        finally:
            with suppress(FileNotFoundError):
                os.unlink(temporary)

    def read(self) -> Seen | None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LockUnreadable(exc.errno, exc.strerror) from None
        try:  # content and version of one and the same file
            st = os.fstat(fd)
            data = b""
            while chunk := os.read(fd, 65536):
                data += chunk
        except OSError as exc:
            raise LockUnreadable(exc.errno, exc.strerror) from None
        finally:
            os.close(fd)
        return Seen(_parse(data), (st.st_dev, st.st_ino, st.st_mtime_ns), st.st_mtime)

    def holds(self, mine: Mine) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise LockUnreadable(exc.errno, exc.strerror) from None
        own = os.fstat(mine.fd)
        return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)

    def beat(self, mine: Mine) -> None:
        os.utime(mine.fd)  # our own file, wherever it is now
        if not self.holds(mine):
            raise LockLost

    def _remove_if(self, version: tuple, tag: str) -> bool:
        """Remove the lock only if it is the file `version` names; a lock moved aside by
        mistake (it was replaced meanwhile) is put back unless a newcomer took the name."""
        aside = self._aside(f"{tag}.removed")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        try:
            st = os.stat(aside)
            if (st.st_dev, st.st_ino) == version[:2]:
                return True
            with suppress(FileExistsError):
                os.link(aside, self.path)
            return False
        finally:
            with suppress(FileNotFoundError):
                os.unlink(aside)

    def take_over(self, seen: Seen, mine: Mine) -> bool | None:
        """Replace the stale lock `seen` by ours; None when another taker is at it."""
        claim = self._aside(f"{seen.version[1]}.takeover")
        try:
            os.link(self.path, claim)  # a second name for the lock there now
        except FileNotFoundError:
            return False
        except FileExistsError:
            return None
        try:
            st = os.stat(claim)
            if (st.st_dev, st.st_ino, st.st_mtime_ns) != seen.version:
                return False  # replaced, or renewed, since we judged it
            if not self._remove_if(seen.version, mine.token):
                return False
            return self.create(mine)
        finally:
            with suppress(FileNotFoundError):
                os.unlink(claim)

    def break_claim(self, seen: Seen) -> None:
        with suppress(FileNotFoundError):
            os.unlink(self._aside(f"{seen.version[1]}.takeover"))

    def release(self, mine: Mine) -> None:
        if mine.fd is None:
            return
        try:
            own = os.fstat(mine.fd)
            self._remove_if((own.st_dev, own.st_ino), mine.token)
        finally:
            os.close(mine.fd)
            mine.fd = None


# ------------------------------------------------------------------------------------ S3

def _precondition_failed(exc: BaseException) -> bool:
    """A conditional PUT refused (412). Recent s3fs raises FileExistsError for it; 2024.6
    a plain OSError whose cause is botocore's error, so the code is read from that."""
    if isinstance(exc, FileExistsError):
        return True
    response = getattr(exc.__cause__, "response", None) or {}
    return response.get("Error", {}).get("Code") in ("PreconditionFailed", "412")


class S3Lock:
    """The lock on S3: conditional PUTs (If-None-Match to create, If-Match to renew and
    take over), which S3 (and moto) decide atomically."""

    guaranteed = True

    def __init__(self, location: Location):
        self.location = location
        self.fs = location.fs
        self.bucket, self.key, _ = self.fs.split_path(location.key(LOCK_NAME))

    def _put(self, content: dict, **condition) -> str:
        response = self.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key,
                                   Body=json.dumps(content).encode(), **condition)
        return response["ETag"]

    def create(self, mine: Mine) -> bool:
        if not self._put_if_absent(mine):
            return False
        if self._put_if_absent(mine):  # the same create again must fail, or this server
            self.guaranteed = False    # ignores the condition
        return True

    def _put_if_absent(self, mine: Mine) -> bool:
        try:
            mine.etag = self._put(mine.content, IfNoneMatch="*")
        except OSError as exc:
            if _precondition_failed(exc):
                return False
            raise
        return True

    def read(self) -> Seen | None:
        from fsspec.asyn import sync

        async def get() -> tuple[bytes, str, datetime]:
            response = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=self.key)
            body = await response["Body"].read()
            return body, response["ETag"], response["LastModified"]

        try:
            body, etag, modified = sync(self.fs.loop, get)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LockUnreadable(getattr(exc, "errno", None) or errno.EIO, str(exc)) from None
        return Seen(_parse(body), etag, modified.timestamp())

    def holds(self, mine: Mine) -> bool:
        seen = self.read()
        return seen is not None and seen.lock.get("token") == mine.token

    def beat(self, mine: Mine) -> None:
        content = mine.content | {"beat": mine.content["beat"] + 1, "heartbeat": time.time()}
        try:
            mine.etag = self._put(content, IfMatch=mine.etag)
        except FileNotFoundError:
            raise LockLost from None
        except OSError as exc:
            if _precondition_failed(exc):
                raise LockLost from None
            raise
        mine.content = content

    def take_over(self, seen: Seen, mine: Mine) -> bool | None:
        try:
            mine.etag = self._put(mine.content, IfMatch=seen.version)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if _precondition_failed(exc):
                return False
            raise
        return True

    def break_claim(self, seen: Seen) -> None:
        pass

    def release(self, mine: Mine) -> None:
        try:
            self.fs.call_s3("delete_object", Bucket=self.bucket, Key=self.key,
                            IfMatch=mine.etag)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if not _precondition_failed(exc) and self.holds(mine):
                self.location.remove(LOCK_NAME)  # a server without conditional deletes


# ------------------------------------------------------------------- any other filesystem

class BestEffortLock:
    """Other fsspec filesystems: the same protocol with look-then-write steps, which two
    writers starting within moments of each other can both pass."""

    guaranteed = False

    def __init__(self, location: Location):
        self.location = location

    def _write(self, content: dict) -> None:
        self.location.write_text(json.dumps(content), LOCK_NAME)

    def create(self, mine: Mine) -> bool:
        if self.location.exists(LOCK_NAME):
            return False
        self._write(mine.content)
        return self.holds(mine)

    def read(self) -> Seen | None:
        try:
            lock = _parse(self.location.fs.cat_file(self.location.key(LOCK_NAME)))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LockUnreadable(getattr(exc, "errno", None) or errno.EIO, str(exc)) from None
        renewed = lock.get("heartbeat")
        return Seen(lock, (lock.get("token"), lock.get("beat")),
                    float(renewed) if isinstance(renewed, int | float) else 0.0)

    def holds(self, mine: Mine) -> bool:
        seen = self.read()
        return seen is not None and seen.lock.get("token") == mine.token

    def beat(self, mine: Mine) -> None:
        if not self.holds(mine):
            raise LockLost
        mine.content = mine.content | {"beat": mine.content["beat"] + 1,
                                        "heartbeat": time.time()}
        self._write(mine.content)

    def take_over(self, seen: Seen, mine: Mine) -> bool | None:
        now = self.read()
        if now is None or now.version != seen.version:
            return False
        self._write(mine.content)
        return self.holds(mine)

    def break_claim(self, seen: Seen) -> None:
        pass

    def release(self, mine: Mine) -> None:
        if self.holds(mine):
            self.location.remove(LOCK_NAME)


def lock_for(location: Location) -> DiskLock | S3Lock | BestEffortLock:
    if location.is_local:
        return DiskLock(location)
    protocols = location.fs.protocol
    protocols = (protocols,) if isinstance(protocols, str) else tuple(protocols)
    if {"s3", "s3a"} & set(protocols) and hasattr(location.fs, "call_s3"):
        return S3Lock(location)
    return BestEffortLock(location)


# ------------------------------------------------------------------------- the holder

class HeldLock:
    """The lock this writer holds. `check()` before every write: it raises a StoreError
    once the lock is no longer this writer's, or its heartbeat failed."""

    def __init__(self, location: Location, backend, mine: Mine):
        self.location, self.backend, self.mine = location, backend, mine
        self.token = mine.token
        self.problem: str | None = None  # set when the heartbeat fails or finds the lock lost
        self._stop = threading.Event()
        self._heart = threading.Thread(target=self._beat, daemon=True,
                                       name="dcign-lock-heartbeat")

    def _lost(self) -> str:
        try:
            seen = self.backend.read()
        except LockUnreadable:
            seen = None
        return _lost_message(self.location.url, seen)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            for attempt in range(HEARTBEAT_TRIES):
                try:
                    self.backend.beat(self.mine)
                    break
                except LockLost:
                    self.problem = self._lost()
                    return
                except Exception as exc:  # noqa: BLE001 - any failure stops the writer
                    if attempt + 1 == HEARTBEAT_TRIES:
                        self.problem = (
                            f"stopped writing {self.location.url}: its writer lock could not "
                            f"be renewed ({type(exc).__name__}: {exc}), and another writer "
                            "could take it over; rerunning the same command resumes")
                        return
                    if self._stop.wait(1.0):
                        return

    def check(self) -> None:
        """Raise a StoreError unless this writer still holds its lock."""
        if self.problem is None:
            try:
                if not self.backend.holds(self.mine):
                    self.problem = self._lost()
            except LockUnreadable as exc:
                raise StoreError(_unknown(self.location, exc)) from None
        if self.problem is not None:
            raise StoreError(self.problem)

    def start(self) -> None:
        _HELD[self.token] = self
        self._heart.start()

    def release(self) -> None:
        self._stop.set()
        if self._heart.is_alive():
            self._heart.join()
        _HELD.pop(self.token, None)
        if self.problem is None:
            with suppress(OSError):
                self.backend.release(self.mine)
        elif isinstance(self.mine.fd, int):
            os.close(self.mine.fd)
            self.mine.fd = None


_HELD: dict[str, HeldLock] = {}  # the locks this process holds, by token


def _lost_message(url: str, seen: Seen | None) -> str:
    now = (f"another writer holds it now: {_who(seen.lock)}" if seen is not None
           else "it was taken over, and is released by now")
    return (f"stopped writing {url}: this writer lost its lock ({now}) after it was paused, "
            f"or could not renew the lock, for over {STALE_AFTER_SECONDS:.0f} s; it writes "
            "nothing more, and rerunning the same command resumes")


def _unknown(location: Location, exc: BaseException) -> str:
    return (f"cannot read the writer lock of {location.url} ({exc.strerror or exc}); whether "
            "another writer holds it is unknown, so nothing is written: rerun when it can "
            "be read")


def check_holder(url: str, token: str) -> None:
    """The fence of a write under the lock `token`, in any process (a Dask worker's too):
    raise a StoreError unless the store's lock is still that one."""
    held = _HELD.get(token)
    if held is not None:
        held.check()
        return
    location = locate(url)
    backend = lock_for(location)
    try:
        seen = backend.read()
    except LockUnreadable as exc:
        raise StoreError(_unknown(location, exc)) from None
    if seen is None or seen.lock.get("token") != token:
        raise StoreError(_lost_message(url, seen))


# ------------------------------------------------------------------------ acquisition

def read_lock(location: Location) -> dict | None:
    """The lock's content, {} if it is not a lock we can parse, None if there is none."""
    seen = lock_for(location).read()
    return None if seen is None else seen.lock


def _refusal(location: Location, lock: dict) -> StoreError:
    doing = "exported" if lock.get("purpose") == EXPORT else "written"
    return StoreError(f"{location.url} is being {doing} by another dcign process "
                      f"({_who(lock)}); wait for it to finish, or stop it and rerun")


def _gone(backend, seen: Seen, location: Location, note: Callable[[str], None]) -> bool | None:
    """Whether the lock `seen` was left by a writer that is gone: True, False (it is alive),
    or None (it changed hands meanwhile: look again)."""
    if gone_from_this_machine(seen.lock):
        return True
    age = time.time() - seen.renewed
    if age < STALE_AFTER_SECONDS:
        return False
    note(f"note: the writer lock of {location.url} ({_who(seen.lock)}) was last renewed "
         f"{age:.0f} s ago by this machine's clock; watching its heartbeat for "
         f"{STALE_AFTER_SECONDS:.0f} s before taking it over")
    deadline = time.monotonic() + STALE_AFTER_SECONDS
    while time.monotonic() < deadline:
        time.sleep(min(1.0, STALE_AFTER_SECONDS / 20))
        now = backend.read()
        if now is None or now.version != seen.version:
            if now is not None and now.lock.get("token") == seen.lock.get("token"):
                return False  # it beat: its writer is alive
            return None
    return True


def acquire(location: Location, note: Callable[[str], None] = print,
            purpose: str = WRITE) -> HeldLock:
    """Take the store's writer lock (creating the store's root), or raise a StoreError;
    `purpose` is what a writer it refuses is told."""
    backend = lock_for(location)
    token = uuid.uuid4().hex
    claims: dict[Any, float] = {}  # a takeover claim seen → since when
    try:
        location.make_root()
    except OSError as exc:
        raise StoreError(f"cannot create a store at {location.url}: "
                         f"{exc.strerror or exc or type(exc).__name__}") from None
    for _ in range(10_000):
        mine = Mine(token, _holder(token, purpose))
        try:
            won = backend.create(mine)
        except LockUnreadable as exc:
            raise StoreError(_unknown(location, exc)) from None
        except OSError as exc:
            raise StoreError(f"cannot create a store at {location.url}: "
                             f"{exc.strerror or exc or type(exc).__name__}") from None
        taken_from = None
        if not won:
            try:
                seen = backend.read()
                if seen is None:
                    continue  # released between our two looks
                gone = _gone(backend, seen, location, note)
                if gone is None:
                    continue
                if not gone:
                    raise _refusal(location, seen.lock)
                won = backend.take_over(seen, mine)
            except LockUnreadable as exc:
                raise StoreError(_unknown(location, exc)) from None
            if won is None:  # another taker is at work: wait for it, or for its claim to age
                first = claims.setdefault(seen.version, time.monotonic())
                if time.monotonic() - first > CLAIM_SECONDS:
                    backend.break_claim(seen)
                    claims.pop(seen.version)
                time.sleep(0.005)
                continue
            taken_from = seen.lock
        if not won:
            continue
        held = HeldLock(location, backend, mine)
        try:
            if not backend.holds(mine):  # read back before use
                held.problem = "lost"
                held.release()
                continue
        except LockUnreadable as exc:
            raise StoreError(_unknown(location, exc)) from None
        if taken_from is not None:
            note(f"note: taking over {location.url} from a writer that is gone "
                 f"({_who(taken_from)})")
        if not backend.guaranteed:
            note(f"note: {location.url} is on storage without atomic conditional writes: "
                 "one writer at a time is not guaranteed there; start one at a time")
        held.start()
        return held
    raise StoreError(f"could not take the writer lock of {location.url}: it kept changing "
                     "hands; rerun")


@contextmanager
def writer_lock(location: Location, note: Callable[[str], None] = print,
                purpose: str = WRITE) -> Iterator[HeldLock]:
    """Hold the store's writer lock for the block; refuse at once if another writer holds it.
    The block calls `check()` on what it is given before each write."""
    held = acquire(location, note, purpose)
    try:
        yield held
    finally:
        held.release()
