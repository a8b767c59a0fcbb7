"""The local render cluster is private to its run: TLS with credentials made for the run, so
another process on the machine is refused at the handshake; no HTTP server on the scheduler
or the workers. A scheduler taken from DASK_SCHEDULER_ADDRESS is announced and recorded, and
an explicit --workers stays on this machine. A disk that fills under a local cluster ends
in one line on the terminal (the workers' tracebacks go to a log file), each failing shard
tried once, and the rerun completes the store. Every server listens on 127.0.0.1 and stops
inside its test."""

from __future__ import annotations

import asyncio
import operator
import os
import re
import shutil
import socket
import subprocess
import sys
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
from dcign.render.writer.cluster import SCHEDULER_VARIABLE, dask_client

DCIGN_RENDER = installed("dcign-render")
REFUSED_WITHIN = 10.0  # seconds: a refusal comes at the handshake, not after a timeout
NO_WORKERS = [a for i, a in enumerate(TINY) if "--workers" not in (a, TINY[i - 1])]


def _listening(pid: int) -> set[int]:
    return {c.laddr.port for c in psutil.Process(pid).net_connections("inet")
            if c.status == psutil.CONN_LISTEN}


@pytest.fixture(scope="module")
def private_cluster():
    """The cluster `dcign-render --workers 2` runs, and the ports this process listened on
    before it started."""
    before = _listening(os.getpid())
    with dask_client(2, None) as client:
        client.wait_for_workers(2, timeout=60)
        yield client, before


def _refused(connect) -> BaseException:
    started = time.monotonic()
    try:
        connect()
    except Exception as exc:  # noqa: BLE001 - which error depends on where it is refused
        assert time.monotonic() - started < REFUSED_WITHIN
        return exc
    raise AssertionError("connected without the run's credentials")


# Another process on the machine, trying the scheduler's address as the issue did (plainly),
# with credentials of its own, or in plain TCP.
STRANGER = """
import sys, time
from distributed import Client, Security

address, how = sys.argv[1:]
options = {"security": Security.temporary()} if how == "own-credentials" else {}
started = time.monotonic()
try:
    Client(address.replace("tls://", "tcp://") if how == "tcp" else address, timeout="5s",
           **options)
except Exception as exc:
    print(f"refused after {time.monotonic() - started:.2f} s: {type(exc).__name__}: {exc}")
    sys.exit(1)
print("connected")
"""


@pytest.mark.parametrize("how", ["plainly", "own-credentials", "tcp"])
def test_another_process_without_the_runs_credentials_is_refused(private_cluster, how):
    client, _ = private_cluster
    address = client.scheduler.address
    assert address.startswith("tls://127.0.0.1:")
    assert client.submit(operator.add, 1, 2).result() == 3  # the run's own client works
    stranger = subprocess.run([sys.executable, "-c", STRANGER, address, how],
                              capture_output=True, text=True, timeout=120)
    assert stranger.returncode == 1, stranger.stdout + stranger.stderr
    refused = re.match(r"refused after ([\d.]+) s: ", stranger.stdout)
    assert refused and float(refused[1]) < REFUSED_WITHIN, stranger.stdout


async def _say_hello(address: str, security) -> object:
    from distributed.comm import connect

    comm = await connect(address, timeout=5, **security.get_connection_args("client"))
    try:  # TLS 1.3 reports a refused client certificate at the first exchange
        await comm.write({"op": "identity"})
        return await asyncio.wait_for(comm.read(), 5)
    finally:
        comm.abort()


def test_only_the_clusters_tls_ports_listen_and_each_refuses_strangers(private_cluster):
    from distributed import Security

    client, before = private_cluster
    workers = client.scheduler_info()["workers"]
    comm = {client.scheduler.address, *workers, *(w["nanny"] for w in workers.values())}
    ports = {int(a.rsplit(":", 1)[1]) for a in comm}
    pids = client.run(os.getpid).values()
    listening = (_listening(os.getpid()) - before).union(*(_listening(p) for p in pids))
    assert listening == ports
    http = [client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.http_server.port),
            *client.run(lambda dask_worker: dask_worker.http_server.port).values()]
    assert http[0] != 8787 and http[0] not in ports  # not Dask's dashboard port: see below
    for port in http:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    stranger = Security.temporary()  # a valid certificate, but not the run's
    for address in sorted(comm):
        _refused(lambda a=address: asyncio.run(_say_hello(a, stranger)))



def test_a_two_worker_render_says_nothing_more_when_port_8787_is_taken(tmp_path):
    """Dask's scheduler takes 8787 for its HTTP server by default, and warns on the terminal
    when another program (a notebook's cluster, a second render) has it; ours binds none."""
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 8787))
        taken.listen()
    except OSError:
        pass  # someone else holds it: the case itself
    try:
        done = subprocess.run([DCIGN_RENDER, "faces", *TINY[:-3], "--workers", "2", "--quiet",
                               "--out", str(tmp_path / "faces.zarr")],
                              capture_output=True, text=True, timeout=300)
    finally:
        taken.close()
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and "8787" not in done.stdout

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
    command = [DCIGN_RENDER, "faces", *[a if a != "1" or TINY[i - 1] != "--workers" else "2"
                                        for i, a in enumerate(TINY)], "--out",
               str(disk / "faces.zarr")]
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
        failed = re.findall(r"Key:\s+dcign-\w+-(\S+)", log.read_text())
        assert "Compute Failed" in log.read_text() and failed  # the tracebacks went here
        # each failing shard was tried once, at most once per worker: no retries
        assert len(failed) <= 2 and all(key.endswith("-0") for key in failed), failed
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
    import dask
    import distributed  # noqa: F401 - its config defaults, before a key of it is set

    from dcign.render.writer import RenderRequest, render_store
    from dcign.shared.errors import DcignError

    monkeypatch.setenv("PYTHONPATH", worker_pythonpath(__file__))  # workers import BrokenFaces
    out = tmp_path / "faces.zarr"
    # the scheduler (in this process) gives up on a task after its first worker death
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            pytest.raises(DcignError) as raised:
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
            assert "ValueError('a bug in the generator')" in text
            split, factor, start = re.search(r"failed: (\w+)/(\w+) minibatches (\d+)-",
                                             message).groups()
            tries = re.findall(rf"Compute Failed\nKey:\s+dcign-\w+-{split}-{factor}-{start}-"
                               r"(\d+)", text)
            assert sorted(tries) == ["0", "1", "2"], tries
    finally:
        log.unlink(missing_ok=True)
