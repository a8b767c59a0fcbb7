"""One writer, really (issue 21): the writer lock cannot be held twice.

Writers race here for real: processes released together by a barrier on a local disk,
threads against an S3 server (moto) on 127.0.0.1. Every trial counts its holders; one is
the only right answer. A writer that lost its lock finds out before its next write."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import dead_pid, lock_file

from dcign.shared import lock as lock_module
from dcign.shared.errors import StoreError
from dcign.shared.location import locate
from dcign.shared.lock import (
    LOCK_NAME,
    DiskLock,
    LockUnreadable,
    acquire,
    check_holder,
    read_lock,
    writer_lock,
)

RACERS = 4
FORK = multiprocessing.get_context("fork")


def quiet(_: str) -> None:
    pass


def attempt(url: str) -> tuple[str, object]:
    """One writer's try: ("held", lock), ("refused", message) or ("failed", what)."""
    try:
        return "held", acquire(locate(url), note=quiet)
    except StoreError as exc:
        if "is being written by another dcign process" in str(exc):
            return "refused", str(exc)
        return "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - a traceback is a failure of its own
        return "failed", f"{type(exc).__name__}: {exc}"


def _racer(urls: list[str], barrier, results) -> None:
    """One process: for each trial, start with the others, hold what it won until every
    racer has tried, then let go."""
    for trial, url in enumerate(urls):
        barrier.wait()
        outcome, held = attempt(url)
        barrier.wait()  # everyone has tried while the winner still holds it
        if outcome == "held":
            held.release()
        results.put((trial, outcome, None if outcome == "held" else held))


def race_processes(urls: list[str]) -> list[list[tuple[str, object]]]:
    """RACERS processes start together on each store in turn; each trial's outcomes."""
    barrier, results = FORK.Barrier(RACERS, timeout=60), FORK.Queue()
    racers = [FORK.Process(target=_racer, args=(urls, barrier, results))
              for _ in range(RACERS)]
    for racer in racers:
        racer.start()
    outcomes: list[list] = [[] for _ in urls]
    for _ in range(RACERS * len(urls)):
        trial, outcome, what = results.get(timeout=120)
        outcomes[trial].append((outcome, what))
    for racer in racers:
        racer.join(timeout=30)
        assert racer.exitcode == 0
    return outcomes


def race_threads(urls: list[str]) -> list[list[tuple[str, object]]]:
    """RACERS threads start together on each store, every store at once (a thread waits for
    its own store's racers only); each store's outcomes."""
    outcomes: list[list] = [[] for _ in urls]
    held, barriers = [], [threading.Barrier(RACERS, timeout=60) for _ in urls]

    def one(trial: int) -> None:
        barriers[trial].wait()
        outcome, what = attempt(urls[trial])
        outcomes[trial].append((outcome, what))
        if outcome == "held":
            held.append(what)
        barriers[trial].wait()

    threads = [threading.Thread(target=one, args=(trial,))
               for trial in range(len(urls)) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for lock in held:
        lock.release()
    return outcomes


def assert_one_holder_each(outcomes: list[list[tuple[str, object]]]) -> None:
    failed = [what for trial in outcomes for outcome, what in trial if outcome == "failed"]
    assert not failed, failed[:3]
    holders = [sum(outcome == "held" for outcome, _ in trial) for trial in outcomes]
    assert holders == [1] * len(outcomes), [(i, n) for i, n in enumerate(holders) if n != 1]


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def leftovers(store: Path) -> list[str]:
    return sorted(p.name for p in store.iterdir())


# ------------------------------------------------------------------------ local disk

def test_of_writers_starting_together_on_a_new_local_store_exactly_one_holds_it(tmp_path):
    urls = [str(tmp_path / f"store-{i}.zarr") for i in range(200)]
    assert_one_holder_each(race_processes(urls))
    assert all(leftovers(Path(url)) == [] for url in urls)  # released, nothing left behind


def test_of_writers_taking_over_a_dead_writers_lock_together_exactly_one_holds_it(tmp_path):
    machine, pid = lock_module._machine(), dead_pid()
    urls = []
    for i in range(200):
        store = tmp_path / f"store-{i}.zarr"
        lock_file(store, host=socket.gethostname(), pid=pid, machine=machine)
        urls.append(str(store))
    assert_one_holder_each(race_processes(urls))
    assert all(leftovers(Path(url)) == [] for url in urls)


def test_of_writers_taking_over_a_lock_whose_heartbeat_stopped_exactly_one_holds_it(
        tmp_path, monkeypatch):
    # the racers inherit these: a short stale limit, and a winner that beats well within it
    monkeypatch.setattr(lock_module, "STALE_AFTER_SECONDS", 0.2)
    monkeypatch.setattr(lock_module, "HEARTBEAT_SECONDS", 0.02)
    urls = []
    for i in range(30):
        store = tmp_path / f"store-{i}.zarr"
        age(lock_file(store, machine="another-machine"), 3600)
        urls.append(str(store))
    assert_one_holder_each(race_processes(urls))


def test_a_lock_is_never_seen_empty_or_half_written(tmp_path):
    store, seen, done = tmp_path / "faces.zarr", [], threading.Event()
    store.mkdir()

    def watch() -> None:
        while not done.is_set():
            try:
                seen.append((store / LOCK_NAME).read_text())
            except FileNotFoundError:
                pass

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(300):
            with writer_lock(locate(store), note=quiet):
                pass
    finally:
        done.set()
        watcher.join()
    assert seen and all(json.loads(text)["token"] for text in seen)


def test_a_second_writer_is_refused_at_once_naming_the_first(tmp_path):
    location = locate(tmp_path / "faces.zarr")
    with writer_lock(location, note=quiet):
        started = time.monotonic()
        with pytest.raises(StoreError, match=f"pid {os.getpid()}, since"):
            acquire(location, note=quiet)
        assert time.monotonic() - started < 1


def test_a_dead_writer_on_this_machine_is_taken_over_at_once(tmp_path):
    store, notes = tmp_path / "faces.zarr", []
    pid = dead_pid()
    lock_file(store, host=socket.gethostname(), pid=pid, machine=lock_module._machine())
    started = time.monotonic()
    with writer_lock(locate(store), note=notes.append):
        assert time.monotonic() - started < 1
    assert any("taking over" in n and f"pid {pid}" in n for n in notes), notes


def test_a_same_named_host_in_another_pid_namespace_is_not_judged_by_its_pid(tmp_path):
    """A container on this host (or a host of the same name) whose pid is not running here
    keeps its lock while its heartbeat is fresh."""
    store = tmp_path / "faces.zarr"
    lock_file(store, host=socket.gethostname(), pid=dead_pid(),
              machine=f"{lock_module._machine()}-another-namespace")
    with pytest.raises(StoreError, match="is being written by another dcign process"):
        acquire(locate(store), note=quiet)
    assert (store / LOCK_NAME).exists()


def test_a_holder_whose_clock_is_behind_keeps_its_lock_while_it_beats(tmp_path, monkeypatch):
    monkeypatch.setattr(lock_module, "STALE_AFTER_SECONDS", 1.0)
    store, notes, stop = tmp_path / "faces.zarr", [], threading.Event()
    path = lock_file(store, machine="another-machine")

    def beat_two_minutes_behind() -> None:
        while not stop.wait(0.1):
            age(path, 120)

    age(path, 120)
    beater = threading.Thread(target=beat_two_minutes_behind)
    beater.start()
    try:
        with pytest.raises(StoreError, match="is being written by another dcign process"):
            acquire(locate(store), note=notes.append)
    finally:
        stop.set()
        beater.join()
    assert any("watching its heartbeat" in n for n in notes)
    # once it stops beating, the same watch takes it over
    with writer_lock(locate(store), note=notes.append):
        pass
    assert any("taking over" in n for n in notes)


def test_an_unreadable_lock_is_unknown_and_refused_not_taken_over(tmp_path, monkeypatch):
    store = tmp_path / "faces.zarr"
    path = lock_file(store, host=socket.gethostname(), pid=dead_pid(),
                     machine=lock_module._machine())  # stale, were it readable
    before = path.read_bytes()

    def unreadable(self):
        raise LockUnreadable(5, "Input/output error")

    monkeypatch.setattr(DiskLock, "read", unreadable)
    with pytest.raises(StoreError, match="cannot read the writer lock .* unknown"):
        acquire(locate(store), note=quiet)
    assert path.read_bytes() == before


def test_a_writer_paused_past_the_stale_limit_loses_its_lock_and_its_next_write_is_refused(
        tmp_path, monkeypatch):
    monkeypatch.setattr(lock_module, "HEARTBEAT_SECONDS", 3600.0)  # paused: it never beats
    store, notes = tmp_path / "faces.zarr", []
    location = locate(store)
    first = acquire(location, note=quiet)
    age(store / LOCK_NAME, 3600)
    monkeypatch.setattr(lock_module, "STALE_AFTER_SECONDS", 0.2)
    second = acquire(location, note=notes.append)
    assert any("taking over" in n for n in notes)
    with pytest.raises(StoreError, match="lost its lock"):
        first.check()
    with pytest.raises(StoreError, match="lost its lock"):
        check_holder(str(store), first.token)  # a shard task under the first's lock

    def worker_check(token: str, answer) -> None:  # a worker process reads the lock itself
        try:
            check_holder(str(store), token)
            answer.put("allowed")
        except StoreError as exc:
            answer.put(str(exc))

    answer = FORK.Queue()
    for token in (first.token, second.token):
        process = FORK.Process(target=worker_check, args=(token, answer))
        process.start()
        process.join(timeout=30)
    assert "lost its lock" in answer.get(timeout=5) and answer.get(timeout=5) == "allowed"
    second.check()
    first.release()  # the loser lets go of nothing: the lock is the second's
    assert read_lock(location)["token"] == second.token
    second.release()
    assert leftovers(store) == []


def test_a_heartbeat_that_fails_stops_the_writer(tmp_path, monkeypatch):
    monkeypatch.setattr(lock_module, "HEARTBEAT_SECONDS", 0.01)
    monkeypatch.setattr(lock_module, "HEARTBEAT_TRIES", 1)
    location = locate(tmp_path / "faces.zarr")
    with writer_lock(location, note=quiet) as held:
        held.check()

        def failing(self, mine):
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(DiskLock, "beat", failing)
        deadline = time.monotonic() + 5
        while held.problem is None and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(StoreError, match="could not be renewed"):
            held.check()


def test_a_writer_notices_a_lost_lock_from_its_heartbeat(tmp_path, monkeypatch):
    monkeypatch.setattr(lock_module, "HEARTBEAT_SECONDS", 0.01)
    store = tmp_path / "faces.zarr"
    with writer_lock(locate(store), note=quiet) as held:
        (store / LOCK_NAME).unlink()
        lock_file(store)  # someone else's now
        deadline = time.monotonic() + 5
        while held.problem is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert held.problem and "lost its lock" in held.problem
    assert (store / LOCK_NAME).exists()  # not removed by the writer that lost it


# -------------------------------------------------------------------------------- S3

def test_of_writers_starting_together_on_s3_exactly_one_holds_it(bucket):
    for group in range(5):  # 50 stores, ten at a time
        assert_one_holder_each(race_threads(
            [f"{bucket}/store-{group}-{i}.zarr" for i in range(10)]))
    fs = locate(bucket).fs
    fs.invalidate_cache()
    assert fs.find(bucket) == []  # every lock released


def test_of_writers_taking_over_a_stale_lock_on_s3_exactly_one_holds_it(bucket, monkeypatch):
    fs = locate(bucket).fs
    urls = [f"{bucket}/store-{i}.zarr" for i in range(20)]
    for url in urls:
        fs.pipe_file(f"{url}/{LOCK_NAME}", json.dumps(
            {"host": "elsewhere", "pid": 1, "token": "dead", "machine": "other"}).encode())
    # above S3's one-second resolution of a write's time, so that a new holder's lock
    # never looks old; all stores race at once to keep the watching short
    monkeypatch.setattr(lock_module, "STALE_AFTER_SECONDS", 2.0)
    monkeypatch.setattr(lock_module, "HEARTBEAT_SECONDS", 0.5)  # the winner beats meanwhile
    time.sleep(2.5)
    assert_one_holder_each(race_threads(urls))


def test_an_s3_writer_that_lost_its_lock_is_refused_and_leaves_the_new_one(bucket,
                                                                            monkeypatch):
    monkeypatch.setattr(lock_module, "HEARTBEAT_SECONDS", 3600.0)
    location = locate(f"{bucket}/faces.zarr")
    first = acquire(location, note=quiet)
    monkeypatch.setattr(lock_module, "STALE_AFTER_SECONDS", 0.2)
    time.sleep(1.5)  # its only renewal is now older than the stale limit
    second = acquire(location, note=quiet)
    with pytest.raises(StoreError, match="lost its lock"):
        first.check()
    with pytest.raises(lock_module.LockLost):
        first.backend.beat(first.mine)  # its conditional renewal fails: not its lock
    first.release()
    assert read_lock(location)["token"] == second.token
    second.release()
    assert read_lock(location) is None
