"""render_store: fill a store from any dataset generator, resumable, extendable, parallel.

The coordinator holds the store's writer lock, refuses requests the generator cannot fill,
creates or grows every array and writes the attributes before any task runs (nothing is
resized while workers write), and lists the shards that hold missing minibatches (those
whose completeness marker is unset) or damaged ones (repair). Each shard is one task, and
each task owns its shard: no two writers ever touch one shard file. A rerun of the same
command resumes; a failing disk ends in one line that says how far the store got.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from dcign.shared.dask_cluster import announcement, scheduler_client
from dcign.shared.errors import DcignError, StoreError
from dcign.shared.location import Location, locate
from dcign.shared.lock import LOCK_NAME, writer_lock
from dcign.shared.store import Store, differences, open_store, read_spec
from dcign.shared.store_writer import (
    append_history,
    check_target,
    create_or_open_store,
    require_arrays,
)
from dcign.shared.verify import Damaged  # (split, factor) → minibatches to render again

from ..generators.base import DatasetGenerator, DatasetRecipe
from ..renderer.platform import choose_gl_platform
from .cluster import run_on_dask
from .failures import DISK_ERRORS, TaskFailed, WorkerDied
from .local_pool import cores_per_worker, new_worker_log, run_in_process, run_on_pool
from .shards import ShardTask, WorkerSettings


@dataclass(frozen=True)
class RenderRequest:
    """How many minibatches of which factors a run should leave in the store."""

    vary: tuple[str, ...]
    batches: int  # training minibatches per varying factor
    test_batches: int


@dataclass
class RenderSummary:
    rendered: int  # minibatches rendered by this run
    already_there: int  # minibatches the store held before
    seconds: float

    @property
    def minibatches_per_second(self) -> float:
        return 0.0 if self.seconds == 0 else self.rendered / self.seconds


def plan_shards(store: Store, request: RenderRequest) -> tuple[list[ShardTask], int]:
    """Create or grow every array the request needs, then list the shards holding minibatches
    to render, in a fixed order; and how many minibatches were there already."""
    tasks, present = [], 0
    for split, count in (("train", request.batches), ("test", request.test_batches)):
        for factor in request.vary:
            arrays = require_arrays(store, split, factor, count)
            done = arrays.completed()[:count]
            present += int(done.sum())
            tasks += [ShardTask(split, factor, shard.start, shard.stop)
                      for shard in arrays.shard_ranges(count)
                      if not done[shard.start:shard.stop].all()]
    return tasks, present


def repair_shards(store: Store, damaged: Damaged) -> tuple[list[ShardTask], int]:
    """The shards holding damaged minibatches, each to render exactly those again (and any
    minibatch of the shard whose marker is unset); nothing is created or grown."""
    tasks = []
    for (split, factor), ks in sorted(damaged.items()):
        arrays = store.arrays(split, factor)
        for shard in arrays.shard_ranges():
            mine = frozenset(k for k in ks if k in shard)
            if mine:
                tasks.append(ShardTask(split, factor, shard.start, shard.stop, mine))
    present = sum(len(store.complete(s, f)) for s, f in store.sections())
    return tasks, present


def _same_settings(location: Location, spec) -> bool:
    """Whether the target is a store of this schema made with exactly these settings."""
    try:
        return location.exists("zarr.json") and not differences(read_spec(location.url), spec)
    except StoreError:
        return False


def _check_request(location: Location, generator: DatasetGenerator,
                   request: RenderRequest | None, overwrite: bool,
                   note: Callable[[str], None]) -> bool:
    """Refuse, before anything is written (the lock included), a request the generator
    cannot fill or a target that is not ours or was made differently. Returns whether the
    target is to be replaced: `overwrite` replaces only a store made with other settings;
    one made with these is kept, and resumed or extended."""
    spec = generator.spec
    if request is not None:
        for name in request.vary:
            spec.factor(name)
        generator.check(request.vary)
    if overwrite and _same_settings(location, spec):
        note(f"note: {location.url} was made with these settings: its minibatches are kept "
             "(--overwrite replaces only a store made with other settings)")
        overwrite = False
    check_target(location.url, spec, overwrite, keep=(LOCK_NAME,))
    return overwrite


def _remove_partial_writes(location: Location) -> None:
    """Zarr writes a file beside its target and renames it; a killed writer leaves the
    temporary one. Under the writer lock no one else is writing, so they can go."""
    if location.is_local:
        for partial in Path(location.root).rglob("*.partial"):
            partial.unlink(missing_ok=True)


def _progress(location: Location, request: RenderRequest | None) -> str:
    """How far the store got, for a run that stopped."""
    try:
        store = open_store(location.url)
        done = sum(len(store.complete(s, f)) for s, f in store.sections())
        wanted = (len(request.vary) * (request.batches + request.test_batches) if request
                  else sum(len(store.arrays(s, f)) for s, f in store.sections()))
        return f"{done} of {wanted} minibatches are complete"
    except (StoreError, OSError):
        return "the minibatches written so far are kept"


def _has_content(log: str | None) -> bool:
    return bool(log) and Path(log).is_file() and Path(log).stat().st_size > 0


def _where_logged(log: str | None) -> str:
    return f" The render workers' log: {log}" if _has_content(log) else ""


def _disk_error(exc: OSError, location: Location, request: RenderRequest | None, verb: str,
                log: str | None = None) -> DcignError:
    """One line for a disk that fails mid-run: what, how far the store got, what to do."""
    what = DISK_ERRORS.get(exc.errno, exc.strerror or str(exc))
    return DcignError(f"{verb} {location.url} stopped: {what}; {_progress(location, request)}"
                      f". Rerunning the same command resumes.{_where_logged(log)}")


def _task_error(failure: TaskFailed, location: Location, request: RenderRequest | None,
                verb: str, log: str | None) -> BaseException:
    """What a shard task that failed for good is reported as: a disk error as one;
    our own one-line errors (a lost lock, a damaged store) as they are; a worker that kept
    dying, or a fault of the code, in one line naming the log that holds its traceback (or,
    with no log, the failure itself with its traceback)."""
    cause = failure.cause
    if isinstance(cause, OSError):
        return _disk_error(cause, location, request, verb, log)
    if isinstance(cause, DcignError):
        return cause
    if isinstance(cause, WorkerDied):
        return DcignError(f"{verb} {location.url} stopped: a worker process died each time it "
                          f"rendered {failure.task} (out of memory?); "
                          f"{_progress(location, request)}. Rerunning the same command "
                          f"resumes.{_where_logged(log)}")
    if log:
        return DcignError(f"{verb} {location.url} stopped: a shard task failed: {failure}; "
                          f"{_progress(location, request)}.{_where_logged(log)} (its "
                          "traceback is there)")
    return cause


def _run(tasks: list[ShardTask], recipe: DatasetRecipe, generator: DatasetGenerator,
         url: str, settings: WorkerSettings, workers: int, scheduler: str | None,
         log: str | None) -> Iterator[tuple[ShardTask, int]]:
    if scheduler is not None:
        return run_on_dask(tasks, recipe, url, settings, scheduler)
    if min(workers, len(tasks)) <= 1:
        return run_in_process(tasks, recipe, generator, url, settings)
    return run_on_pool(tasks, recipe, url, settings, min(workers, len(tasks)), log)


def render_store(out: str | Path, recipe: DatasetRecipe, request: RenderRequest | None, *,
                 workers: int, gl_platform: str = "auto", overwrite: bool = False,
                 progress: bool = True, config: dict | None = None,
                 generator: DatasetGenerator | None = None, verb: str = "rendering",
                 scheduler: str | None = None, scheduler_from: str | None = None,
                 damaged: Damaged | None = None, verbose: bool = False,
                 note: Callable[[str], None] | None = None) -> RenderSummary:
    """Render every missing minibatch of `request` into the store at `out`, a local path or a
    URL; or, with `damaged` (and no request), exactly the damaged minibatches of the store.

    `gl_platform` is the one asked for (auto, egl, osmesa); it is probed here for local
    workers, and by each worker of a remote cluster. `generator` is the recipe's, if the
    caller has loaded it already. `scheduler` sends the tasks to an existing Dask cluster
    (the environment is not read here: `cluster.choose_scheduler` is the caller's);
    `scheduler_from` says where its address came from, and one taken from the environment
    is announced through `note` (stderr by default) once it is reached. More than one
    worker and no scheduler run a pool of worker processes whose output goes to a file in
    the temporary directory (kept if the run fails, and named in its error), or with
    `verbose` to the terminal."""
    note = note or (lambda line: tqdm.write(line, file=sys.stderr))
    generator = generator or recipe.load()
    location = locate(out)
    overwrite = _check_request(location, generator, request, overwrite, note)
    if scheduler:
        with scheduler_client(scheduler, scheduler_from):  # refused before anything is written
            pass
        if announcement(scheduler, scheduler_from):
            note(announcement(scheduler, scheduler_from))
    log, finished = None, False
    with writer_lock(location, note=note) as lock:
        try:  # a disk that fills, here or in a task, ends in one line
            lock.check()  # fencing: before each write, here and in every shard task
            _remove_partial_writes(location)
            store = create_or_open_store(location.url, generator.spec, overwrite,
                                         keep=(LOCK_NAME,))
            lock.check()
            tasks, present = (repair_shards(store, damaged) if damaged is not None
                              else plan_shards(store, request))
            tasks = [dataclasses.replace(t, lock_token=lock.token) for t in tasks]
            platform = None
            if recipe.needs_gl:
                platform = gl_platform if scheduler else choose_gl_platform(gl_platform)
            settings = WorkerSettings(platform,
                                      cores_per_worker(min(workers, max(1, len(tasks)))))
            if scheduler is None and min(workers, len(tasks)) > 1 and not verbose:
                log = new_worker_log(location.name)
            started, rendered = time.perf_counter(), 0
            with tqdm(total=sum(t.size for t in tasks) * recipe.batch_size, unit="img",
                      disable=not progress or not tasks, desc=f"{verb} {location.name}",
                      smoothing=0.1) as bar:
                for task, count in (_run(tasks, recipe, generator, location.url, settings,
                                         workers, scheduler, log) if tasks else ()):
                    rendered += count
                    bar.update(task.size * recipe.batch_size)
                    lock.check()  # a lost lock stops the run: the tasks left are cancelled
            seconds = time.perf_counter() - started
            lock.check()
            append_history(store, {
                "time": datetime.now(UTC).isoformat(timespec="seconds"),
                "config": config or {},
                "rendered_minibatches": rendered,
                "seconds": round(seconds, 2),
            })
            finished = True
        except OSError as exc:
            # A writer paused past the lock's staleness loses it, and the writer that takes
            # over removes its half-written files (ENOENT when it resumes): the lost lock is
            # the cause to report, not the disk.
            lock.check()
            raise _disk_error(exc, location, request, verb, log) from None
        except TaskFailed as failure:
            raise _task_error(failure, location, request, verb, log) from None
        finally:  # a log is kept only to explain a failure, and only if it has something
            if log and (finished or not _has_content(log)):
                Path(log).unlink(missing_ok=True)
    return RenderSummary(rendered, present, seconds)


def check_counts(batch_size: int, batches: int, test_batches: int, size: int,
                 workers: int) -> None:
    """Refuse non-positive counts and sizes with one clear line."""
    for name, value, minimum in (("--batch-size", batch_size, 2), ("--batches", batches, 1),
                                 ("--test-batches", test_batches, 1), ("--size", size, 8),
                                 ("--workers", workers, 1)):
        if value < minimum:
            raise DcignError(f"{name} must be at least {minimum} (got {value})")
