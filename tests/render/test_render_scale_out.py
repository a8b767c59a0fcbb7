"""Rendering beyond one process: the same shard tasks on a local pool of workers, on a Dask
cluster started from the command line, into an S3 bucket; retried when they fail or their
worker dies; each worker with its GL settings and, on a multi-GPU node, its own EGL device.
Every server listens on 127.0.0.1 and stops inside its test."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    TINY,
    assert_one_line_error,
    content_digest,
    installed,
    render,
    store_tool,
    worker_pythonpath,
)

from dcign.render.generators.faces import FaceRecipe
from dcign.render.writer import RenderRequest, render_store
from dcign.render.writer.local_pool import _environment, _new_pool, worker_env
from dcign.render.writer.shards import WorkerSettings, _worker_name, worker_environment
from dcign.shared.store import open_store

SERVER_START_SECONDS = 60


def test_two_local_workers_write_the_store_one_process_writes(tiny_store, tmp_path):
    out = tmp_path / "faces.zarr"
    args = [a if a != "1" or TINY[i - 1] != "--workers" else "2" for i, a in enumerate(TINY)]
    result = render([*args, "--out", out])
    assert result.exit_code == 0, result.output
    assert content_digest(out) == content_digest(tiny_store)
    store = open_store(out)  # one shard file per array of each group: 8 groups x 4 arrays
    assert len([f for f in store.location.files() if "/c/" in f]) == 32


def environment_seen(_: int) -> dict:
    """What a pool worker's generator would see (top level: the workers import it)."""
    time.sleep(0.05)  # long enough for every worker to take some
    settings = WorkerSettings(gl_platform="egl", cores=1)
    return dict(os.environ) | worker_environment(settings, _worker_name(),
                                                 dict(os.environ)) | {"name": _worker_name()}


def test_each_worker_receives_its_gl_settings_blas_pool_and_egl_device(monkeypatch):
    monkeypatch.setenv("DCIGN_RENDER_GPUS", "2")  # as on a node with two GPUs
    monkeypatch.setenv("PYTHONPATH", worker_pythonpath(__file__))
    for name in ("EGL_DEVICE_ID", "CUDA_VISIBLE_DEVICES", "LP_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    settings = WorkerSettings(gl_platform="egl", cores=1)
    with _environment(worker_env(settings.cores)):
        pool = _new_pool(2, FaceRecipe(image_size=32, batch_size=4), settings, None)
        with pool:
            seen = list(pool.map(environment_seen, range(40)))
    by_name = {env["name"]: env for env in seen}
    assert sorted(by_name) == [0, 1]
    for name, env in by_name.items():
        assert env["EGL_DEVICE_ID"] == str(name)
        assert env["LP_NUM_THREADS"] == "0" and env["OMP_NUM_THREADS"] == "1"
    assert "OMP_NUM_THREADS" not in os.environ  # this process's environment as it was


@pytest.mark.parametrize("environ, worker, device", [
    ({"EGL_DEVICE_ID": "3", "DCIGN_RENDER_GPUS": "2"}, 1, "3"),  # the user's choice wins
    ({"CUDA_VISIBLE_DEVICES": "5"}, 0, "5"),  # a jobqueue or Kubernetes GPU worker
    ({"DCIGN_RENDER_GPUS": "4"}, 6, "2"),  # local workers take the GPUs in turn
    ({"DCIGN_RENDER_GPUS": "0"}, 1, None),  # no GPU: EGL's default device
])
def test_a_worker_renders_on_the_egl_device_its_environment_names(environ, worker, device):
    env = worker_environment(WorkerSettings("egl", 1), worker, environ)
    assert env.get("EGL_DEVICE_ID", environ.get("EGL_DEVICE_ID")) == device


@dataclass(frozen=True)
class FlakyFaces(FaceRecipe):
    """Faces whose first task in every fresh worker process fails (a marker file per
    process), or with `exit` whose first task of all kills its worker process (as the
    kernel does for memory): the task must run again."""

    marker_dir: str = ""
    exit: bool = False

    def load(self):
        generator = super().load()
        marker = Path(self.marker_dir) / ("died" if self.exit else f"died-{os.getpid()}")
        if not marker.exists():
            marker.write_text("once")
            if self.exit:
                os._exit(9)
            raise OSError("a worker lost its disk for a moment")
        return generator


@pytest.mark.parametrize("exit", [False, True], ids=["task-fails", "worker-dies"])
def test_a_task_that_fails_or_kills_its_worker_is_retried_and_the_store_completes(
        exit, tiny_store, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", worker_pythonpath(__file__))  # workers import FlakyFaces
    recipe = FlakyFaces(image_size=32, batch_size=4, marker_dir=str(tmp_path), exit=exit)
    out = tmp_path / "faces.zarr"
    summary = render_store(out, recipe, RenderRequest(("azimuth", "elevation", "light",
                                                       "intrinsic"), 3, 2),
                           workers=2, progress=False, generator=FaceRecipe(
                               image_size=32, batch_size=4).load())
    assert summary.rendered == 20 and len(list(tmp_path.glob("died*"))) >= 1
    assert content_digest(out) == content_digest(tiny_store)


class _PoolThatBreaks:
    """An executor whose worker dies once `breaks_after` tasks were submitted: the next
    submit raises as a real pool's does once its manager has seen a worker die."""

    def __init__(self, breaks_after: int):
        self.breaks_after, self.submitted = breaks_after, []

    def submit(self, fn, url, task, attempt):
        from concurrent.futures import Future
        from concurrent.futures.process import BrokenProcessPool

        if len(self.submitted) >= self.breaks_after:
            raise BrokenProcessPool("a child process terminated abruptly")
        self.submitted.append((task, attempt))
        done = Future()
        done.set_result(task.size)
        return done

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def test_a_worker_dying_between_two_results_loses_no_task(monkeypatch):
    """A pool can break after one result came back and before the next task is submitted:
    that task was never started, so it waits for the fresh pool with no try spent, and
    every task is yielded exactly once."""
    from dcign.render.writer import local_pool
    from dcign.render.writer.shards import ShardTask

    pools = iter([_PoolThatBreaks(1), _PoolThatBreaks(99)])
    made = []
    monkeypatch.setattr(local_pool, "_new_pool",
                        lambda *args: made.append(next(pools)) or made[-1])
    tasks = [ShardTask("train", "light", s, s + 10) for s in (0, 10, 20)]
    done = list(local_pool.run_on_pool(tasks, None, "unused", WorkerSettings(None, 1), 2))
    assert sorted((task for task, _ in done), key=lambda t: t.start) == tasks  # each once
    assert len(made) == 2
    assert [attempt for _, attempt in made[1].submitted] == [0, 0]  # no try charged


def _wait_for(path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while not path.exists():
        assert process.poll() is None and time.monotonic() < deadline, "no scheduler"
        time.sleep(0.2)


@pytest.fixture
def command_line_cluster(tmp_path):
    """`dask scheduler` and one `dask worker`, started as a user would, on 127.0.0.1."""
    dask = installed("dask")
    scheduler_file = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                  "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        _wait_for(scheduler_file, scheduler)
        worker = subprocess.Popen([dask, "worker", "--scheduler-file", str(scheduler_file),
                                   "--nthreads", "1", "--nworkers", "1", "--host", "127.0.0.1",
                                   "--no-dashboard"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import json

        yield json.loads(scheduler_file.read_text())["address"]
    finally:
        for process in (worker, scheduler):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)


def test_an_existing_cluster_renders_the_same_store(command_line_cluster, tiny_store,
                                                    tmp_path):
    out = tmp_path / "faces.zarr"
    result = render([*TINY, "--scheduler", command_line_cluster, "--out", out])
    assert result.exit_code == 0, result.output
    assert content_digest(out) == content_digest(tiny_store)


def test_an_unreachable_scheduler_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "faces.zarr"
    result = render([*TINY, "--scheduler", "tcp://127.0.0.1:9", "--out", out])
    assert_one_line_error(result, "cannot reach the Dask scheduler at tcp://127.0.0.1:9")
    assert not out.exists()


def test_a_store_written_to_a_bucket_holds_what_a_local_one_does(bucket, tiny_store):
    url = f"{bucket}/faces.zarr"
    args = [a if a != "1" or TINY[i - 1] != "--workers" else "2" for i, a in enumerate(TINY)]
    result = render([*args, "--out", url])
    assert result.exit_code == 0, result.output
    assert content_digest(url) == content_digest(tiny_store)
    verified = store_tool(["verify", url])
    assert verified.exit_code == 0 and "OK: 20 minibatches" in verified.output
    again = render([*TINY, "--out", url])
    assert again.exit_code == 0 and "20 were already there" in again.output


def test_a_bucket_that_cannot_be_written_is_one_line(bucket):
    assert_one_line_error(render([*TINY, "--out", "s3://no-such-bucket/faces.zarr"]),
                          "cannot create a store at s3://no-such-bucket/faces.zarr")
