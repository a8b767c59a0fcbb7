"""Data-parallel training as torchrun runs it: real `dcign-train` processes with torchrun's
environment (RANK, WORLD_SIZE, …) joining one gloo group. The rendezvous store is hosted
here, as torchrun's agent hosts it, but bound to 127.0.0.1 only, and stops with the test.

Proof: 2 ranks × 1 minibatch per step end with the weights of 1 process × 2 minibatches per
step; a run killed under one world size resumes exactly under another; only rank 0 writes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from conftest import garble, shard_file

from dcign.train.checkpoint import read_checkpoint
from dcign.train.synthetic import write_blob_store

TIMEOUT = 240


def dcign_train() -> str:
    exe = shutil.which("dcign-train", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("dcign-train is not installed in this environment")
    return exe


def start(args: list, world: int) -> tuple[list[subprocess.Popen], object]:
    """`world` dcign-train processes as `torchrun --nproc-per-node world` starts them."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    store = dist.TCPStore("127.0.0.1", port, world, True, timedelta(seconds=TIMEOUT),
                          wait_for_workers=False, master_listen_fd=listener.fileno())
    processes = []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                   LOCAL_WORLD_SIZE=str(world), GROUP_RANK="0", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), TORCHELASTIC_USE_AGENT_STORE="True",
                   GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
        processes.append(subprocess.Popen([dcign_train(), *map(str, args)], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True))
    return processes, (store, listener)


def finish(processes: list[subprocess.Popen]) -> list[tuple[int, str]]:
    try:
        return [(p.wait(timeout=TIMEOUT), p.stdout.read()) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()


def launch(args: list, world: int) -> list[tuple[int, str]]:
    processes, keep_alive = start(args, world)
    results = finish(processes)
    del keep_alive
    return results


def one_process(args: list) -> str:
    done = subprocess.run([dcign_train(), *map(str, args)], capture_output=True, text=True,
                          timeout=TIMEOUT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    return write_blob_store(tmp_path_factory.mktemp("ddp") / "blobs.zarr", 32, 4, 1)


def run_args(store, out, steps, per_step=2, *extra):
    return ["--store", store, "--out", out, "--steps", steps, "--minibatches-per-step",
            per_step, "--checkpoint-every", 3, "--log-every", 1, "--no-progress", *extra]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(out / "checkpoint.pt")["model"]


def test_two_ranks_with_one_minibatch_each_end_where_one_process_with_two_does(blobs,
                                                                           tmp_path):
    one_process(run_args(blobs, tmp_path / "one", 6))
    results = launch(run_args(blobs, tmp_path / "two", 6), world=2)
    assert [code for code, _ in results] == [0, 0], results
    single, data_parallel = weights(tmp_path / "one"), weights(tmp_path / "two")
    for name, tensor in single.items():
        assert torch.equal(tensor, data_parallel[name]), name  # summed: bit for bit
    # rank 0 alone wrote: one run log with one start, and it alone printed the summary
    log = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").open()]
    assert [r["event"] for r in log if "event" in r][0] == "start"
    assert sum(r.get("event") == "start" for r in log) == 1 and log[0]["processes"] == 2
    assert [r["images"] for r in log if "event" not in r] == [40] * 6  # both ranks' images
    assert "checkpoint:" in results[0][1] and "checkpoint:" not in results[1][1]


def test_a_run_killed_under_two_ranks_resumes_exactly_in_one_process(blobs, tmp_path):
    one_process(run_args(blobs, tmp_path / "straight", 30))
    processes, keep_alive = start(run_args(blobs, tmp_path / "killed", 1000), world=2)
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.monotonic() + TIMEOUT
    while not checkpoint.exists():
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes)
        time.sleep(0.05)
    for p in processes:
        p.send_signal(signal.SIGKILL)
    finish(processes)
    del keep_alive
    killed_at = read_checkpoint(checkpoint)["step"]
    assert 3 <= killed_at < 30
    one_process(["--store", blobs, "--out", tmp_path / "killed", "--steps", 30, "--resume",
                 "--no-progress"])
    straight, resumed = weights(tmp_path / "straight"), weights(tmp_path / "killed")
    for name, tensor in straight.items():
        assert torch.equal(tensor, resumed[name]), name


def test_more_processes_than_minibatches_per_step_is_one_line(blobs, tmp_path):
    results = launch(run_args(blobs, tmp_path / "r", 2, 1), world=2)
    assert [code for code, _ in results] == [1, 1]
    lines = [line for _, out in results for line in out.splitlines() if line.strip()]
    assert lines == ["Error: 2 processes share 1 minibatches per step: give "
                     "--minibatches-per-step 2 or more (it counts minibatches over all "
                     "processes)"]
    assert not (tmp_path / "r").exists()


def test_a_rank_that_fails_alone_says_so_in_one_line_naming_itself(tmp_path):
    """A damaged minibatch in one rank's share fails that rank alone; it stops with one line
    that names it and the minibatch (torchrun's agent then stops the others, as it does
    whenever a worker exits with an error; here the test plays the agent)."""
    store = write_blob_store(tmp_path / "blobs.zarr", 32, 4, 1)
    garble(shard_file(store, "train", "light", "images"), 3)
    processes, keep_alive = start(run_args(store, tmp_path / "r", 40, 2, "--ratio", "0:0:1:0"),
                                  world=2)
    try:
        deadline = time.monotonic() + TIMEOUT
        while all(p.poll() is None for p in processes) and time.monotonic() < deadline:
            time.sleep(0.2)
        failed = [(rank, p) for rank, p in enumerate(processes) if p.poll() is not None]
        assert failed, "no rank stopped"
        for p in processes:  # the agent's part: the first failure ends the run
            if p.poll() is None:
                p.kill()
        for rank, p in failed:
            assert p.returncode == 1
            lines = [line for line in p.stdout.read().splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith(f"Error: rank {rank}: "), lines
            assert "train/light/3" in lines[0] and "dcign-render repair" in lines[0]
            assert "--resume continues" in lines[0]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
        del keep_alive
