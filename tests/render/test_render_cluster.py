"""Rendering with several workers on this machine is private to its run: a pool of worker
processes that talk over pipes, so nothing listens on a port, and their output goes to a log
file, not the terminal. A scheduler taken from DASK_SCHEDULER_ADDRESS is announced and
recorded, and an explicit --workers stays on this machine. A disk that fills under two
workers ends in one line on the terminal (the workers' tracebacks go to the log), each
failing shard tried once, and the rerun completes the store. A task that keeps failing, or
kills its worker each time, ends in one line naming the log. Every server listens on
127.0.0.1 and stops inside its test."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import zarr
from conftest import (
    TINY,
    assert_one_line_error,
    content_digest,
    installed,
    render,
    users_dask_cluster,
    worker_pythonpath,
)

from dcign.render.generators.faces import FaceRecipe
from dcign.shared.dask_cluster import SCHEDULER_VARIABLE

DCIGN_RENDER = installed("dcign-render")
NO_WORKERS = [a for i, a in enumerate(TINY) if "--workers" not in (a, TINY[i - 1])]
TWO_WORKERS = [a if a != "1" or TINY[i - 1] != "--workers" else "2" for i, a in enumerate(TINY)]


def _process_tree(pid: int) -> list[psutil.Process]:
    try:
        process = psutil.Process(pid)
        return [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _ports_listening(processes: list[psutil.Process]) -> set[int]:
    ports = set()
    for process in processes:
        try:
            ports |= {c.laddr.port for c in process.net_connections("all")
                      if c.status == psutil.CONN_LISTEN}
        except psutil.NoSuchProcess:
            pass
    return ports


def test_a_two_worker_render_listens_on_no_port_and_writes_nothing_on_the_terminal(tmp_path):
    """Its workers are this run's child processes, reached over pipes only: no other process
    on the machine can connect to them or run code in them."""
    out = tmp_path / "faces.zarr"
    run = subprocess.Popen([DCIGN_RENDER, "faces", *TWO_WORKERS, "--quiet", "--out", str(out)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers_seen, ports = set(), set()
    deadline = time.monotonic() + 300
    while run.poll() is None and time.monotonic() < deadline:
        tree = _process_tree(run.pid)
        workers_seen |= {p.pid for p in tree[1:]}
        ports |= _ports_listening(tree)
        time.sleep(0.05)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 0, stderr
    assert len(workers_seen) >= 2  # the pool's workers (and multiprocessing's helper)
    assert ports == set()
    assert stderr == "" and "rendered 20 minibatches" in stdout


def test_ctrl_c_under_two_workers_is_one_line_and_leaves_no_worker_behind(tmp_path):
    """Ctrl-C reaches the whole foreground process group: the run stops at once, says how to
    resume, and no worker process outlives it; the rerun completes the store."""
    args = [DCIGN_RENDER, "faces", *TWO_WORKERS[:-3], "--workers", "2", "--batches", "1500",
            "--vary", "elevation", "--out", str(tmp_path / "faces.zarr")]
    run = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True,  # its own group, as a terminal's job
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while len(workers := _process_tree(run.pid)[1:]) < 2:
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.1)
    time.sleep(1)  # the workers are rendering
    os.killpg(run.pid, signal.SIGINT)
    _, stderr = run.communicate(timeout=60)
    lines = [line for line in stderr.replace("\r", "\n").splitlines()
             if line.strip() and "img/s" not in line]
    assert run.returncode == 130 and "Traceback" not in stderr
    assert lines == ["interrupted: finished work is kept; rerun the same command to resume"]
    psutil.wait_procs(workers, timeout=10)
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    again = subprocess.run(args + ["--quiet"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr


# ------------------------------------------------------------ a scheduler from the environment

@pytest.fixture
def users_cluster():
    """A plain Dask cluster of one worker process on 127.0.0.1, as a user would run one."""
    with users_dask_cluster(1) as address:
        yield address


def _history(store: Path) -> list[dict]:
    return zarr.open_group(str(store), mode="r").attrs["dcign"]["history"]


def test_a_scheduler_from_the_environment_is_announced_and_recorded(users_cluster, tiny_store,
                                                                    tmp_path, monkeypatch):
    monkeypatch.setenv(SCHEDULER_VARIABLE, users_cluster)
    out = tmp_path / "faces.zarr"
    result = render([*NO_WORKERS, "--out", out])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"using the Dask scheduler at {users_cluster} from {SCHEDULER_VARIABLE}"]
    config = _history(out)[-1]["config"]
    assert config["scheduler"] == users_cluster
    assert config["scheduler_from"] == SCHEDULER_VARIABLE
    assert content_digest(out) == content_digest(tiny_store)


def test_an_explicit_workers_renders_here_whatever_the_environment_says(tmp_path, monkeypatch):
    monkeypatch.setenv(SCHEDULER_VARIABLE, "tcp://127.0.0.1:9")  # nothing listens there
    out = tmp_path / "faces.zarr"
    result = render([*TINY, "--out", out])  # TINY has --workers 1
    assert result.exit_code == 0, result.output
    assert SCHEDULER_VARIABLE not in result.output
    config = _history(out)[-1]["config"]
    assert config["scheduler"] is None and config["scheduler_from"] is None


def test_an_unreachable_scheduler_from_the_environment_says_where_it_came_from(tmp_path,
                                                                             monkeypatch):
    monkeypatch.setenv(SCHEDULER_VARIABLE, "tcp://127.0.0.1:9")
    out = tmp_path / "faces.zarr"
    assert_one_line_error(render([*NO_WORKERS, "--out", out]),
                          "cannot reach the Dask scheduler at tcp://127.0.0.1:9",
                          SCHEDULER_VARIABLE)
    assert not out.exists()


# ---------------------------------------------------------------------- a disk that fills

def _failed_tries(log: str) -> list[tuple[str, str, str]]:
    """(split/factor, first minibatch, try) of each failed task a worker logged."""
    return re.findall(r"shard task (\S+) minibatches (\d+)-\d+, try (\d) of 3, failed", log)


# A size-limited disk for every process of a run (the workers too), for machines where the
# test cannot mount one: each zarr write checks the bytes already under DISK first.
FULL_DISK_HOOK = '''
import errno, os
from pathlib import Path
import zarr.storage._local as local

_disk, _limit = os.environ["DCIGN_TEST_DISK"], int(os.environ["DCIGN_TEST_DISK_BYTES"])
_put = local._put


def _size(p):
    try:  # another worker's temporary file can be renamed or removed meanwhile
        return p.stat().st_size if p.is_file() else 0
    except FileNotFoundError:
        return 0


def _limited_put(path, value, exclusive=False):
    if str(path).startswith(_disk):
        used = sum(_size(p) for p in Path(_disk).rglob("*"))
        if used + len(value.as_buffer_like()) > _limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return _put(path, value, exclusive=exclusive)


local._put = _limited_put
'''

# The run, then the same command once the disk has room, in one shell: a tmpfs mounted in a
# mount namespace of its own exists only as long as the processes inside it.
RUN_TWICE = '''
set -e
{prepare}
set +e
{render} > {out}/first.txt 2>&1
set -e
{free}
{render} > {out}/second.txt 2>&1
cp -a {disk}/faces.zarr {out}/kept.zarr
'''


def _can_mount_a_tmpfs(where: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            f"mount -t tmpfs -o size=64k tmpfs {where}"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


def _store_bytes(store: Path) -> tuple[int, int]:
    """(bytes of metadata, bytes of shard files) of a store."""
    files = [p for p in store.rglob("*") if p.is_file()]
    shards = sum(p.stat().st_size for p in files if "/c/" in str(p))
    return sum(p.stat().st_size for p in files) - shards, shards


@pytest.mark.parametrize("disk_kind", ["tmpfs", "injected"])
def test_a_disk_that_fills_under_two_workers_is_one_line_and_the_rerun_completes(
        disk_kind, tiny_store, tmp_path):
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir()
    out.mkdir()
    command = [DCIGN_RENDER, "faces", *TWO_WORKERS, "--out", str(disk / "faces.zarr")]
    env = dict(os.environ)
    if disk_kind == "tmpfs":
        if not _can_mount_a_tmpfs(disk):
            pytest.skip("no user namespace to mount a small tmpfs in")
        # about 4 of the 8 shards fit beside the arrays' metadata (tmpfs counts 4 kB pages)
        script = RUN_TWICE.format(prepare=f"mount -t tmpfs -o size=260k tmpfs {disk}",
                                  free=f"mount -o remount,size=16m {disk}",
                                  render=" ".join(command), out=out, disk=disk)
        run = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script]
    else:
        hook = tmp_path / "hook"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(FULL_DISK_HOOK)
        metadata, shards = _store_bytes(tiny_store)
        env |= {"PYTHONPATH": str(hook), "DCIGN_TEST_DISK": str(disk),
                "DCIGN_TEST_DISK_BYTES": str(metadata + shards * 4 // 10)}
        script = RUN_TWICE.format(prepare=":", free="unset DCIGN_TEST_DISK_BYTES PYTHONPATH",
                                  render=" ".join(command), out=out, disk=disk)
        run = ["sh", "-c", script]
    subprocess.run(run, env=env, check=True, timeout=600)

    terminal = (out / "first.txt").read_text()
    lines = [line for line in terminal.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in terminal, terminal
    found = re.fullmatch(r"Error: rendering \S+ stopped: no space left on the device; (\d+) of "
                         r"20 minibatches are complete\. Rerunning the same command resumes\. "
                         r"The render workers' log: (\S+)", lines[0])
    assert found, lines[0]
    assert 0 < int(found[1]) < 20  # it stopped mid-run
    log = Path(found[2])
    try:
        text = log.read_text()
        failed = _failed_tries(text)
        assert failed and "Traceback" in text  # the tracebacks went here
        # each failing shard was tried once, at most once per worker: no retries
        assert len(failed) <= 2 and all(t == "1" for *_, t in failed), failed
    finally:
        log.unlink(missing_ok=True)
    second = (out / "second.txt").read_text()
    assert second.startswith(f"{disk / 'faces.zarr'}: rendered {20 - int(found[1])} "), second
    assert content_digest(out / "kept.zarr") == content_digest(tiny_store)


# ------------------------------------------------------------- other failures of a shard task

@dataclass(frozen=True)
class BrokenFaces(FaceRecipe):
    """Faces whose workers fail: `how` is "bug" (every task raises a ValueError) or "die"
    (the worker process exits, as one killed for its memory)."""

    how: str = "bug"

    def load(self):
        if self.how == "die":
            os._exit(1)
        raise ValueError("a bug in the generator")


@pytest.mark.parametrize("how, needle", [
    ("bug", "a shard task failed: "),
    ("die", "a worker process died each time it rendered"),
])
def test_a_task_that_keeps_failing_is_one_line_naming_the_workers_log(how, needle, tmp_path,
                                                                      monkeypatch):
    from dcign.render.writer import RenderRequest, render_store
    from dcign.shared.errors import DcignError

    monkeypatch.setenv("PYTHONPATH", worker_pythonpath(__file__))  # workers import BrokenFaces
    out = tmp_path / "faces.zarr"
    with pytest.raises(DcignError) as raised:
        render_store(out, BrokenFaces(image_size=32, batch_size=4, how=how),
                     RenderRequest(("light",), 3, 2), workers=2, progress=False,
                     generator=FaceRecipe(image_size=32, batch_size=4).load())
    message = str(raised.value)
    assert "\n" not in message and needle in message, message
    assert "0 of 5 minibatches are complete" in message
    log = Path(message.rsplit("The render workers' log: ", 1)[1].split()[0])
    try:
        text = log.read_text()
        if how == "bug":  # the shard named was tried three times: once, then TASK_RETRIES more
            assert "ValueError: a bug in the generator" in text
            split, factor, start = re.search(r"failed: (\w+)/(\w+) minibatches (\d+)-",
                                             message).groups()
            tries = [t for task, first, t in _failed_tries(text)
                     if (task, first) == (f"{split}/{factor}", start)]
            assert sorted(tries) == ["1", "2", "3"], tries
        else:  # a fresh pool each time, three in all
            assert text.count("a worker process died") == 3, text
    finally:
        log.unlink(missing_ok=True)
