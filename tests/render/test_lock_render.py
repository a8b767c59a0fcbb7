"""One writer, really, through `dcign-render`: a render paused past the stale limit loses
the store to the next run and, resumed, stops in one line without writing another byte;
renders started together leave the store one render alone writes."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, content_digest, installed, read_group, render, tree_digest

from dcign.shared import lock as lock_module
from dcign.shared.lock import LOCK_NAME

DCIGN_RENDER = installed("dcign-render")
SLOW = ["--size", "32", "--batch-size", "4", "--test-batches", "1", "--vary", "light",
        "--workers", "1", "--quiet"]


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_a_paused_render_that_lost_its_lock_stops_in_one_line_and_writes_nothing_more(
        tmp_path, monkeypatch, tiny_store):
    out = tmp_path / "faces.zarr"
    first = subprocess.Popen([DCIGN_RENDER, "faces", *SLOW, "--batches", "400", "--out",
                              str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        # every array is made before the first shard renders: pause it while it renders
        _wait_for(out / "test" / "light" / "complete" / "zarr.json", first)
        first.send_signal(signal.SIGSTOP)
        then = time.time() - 3600  # as if it had been paused for an hour
        os.utime(out / LOCK_NAME, (then, then))
        monkeypatch.setattr(lock_module, "STALE_AFTER_SECONDS", 0.5)
        second = render([*SLOW, "--batches", "3", "--out", out])
        assert second.exit_code == 0, second.output
        assert "taking over" in second.output and f"pid {first.pid}" in second.output
        written = tree_digest(out)
    finally:
        first.send_signal(signal.SIGCONT)
    output, _ = first.communicate(timeout=120)
    lines = [line for line in output.splitlines() if line.strip()]
    assert first.returncode != 0 and len(lines) == 1, output
    assert lines[0].startswith("Error: stopped writing") and "lost its lock" in lines[0]
    assert tree_digest(out) == written  # not a byte more from the writer that lost
    assert not (out / LOCK_NAME).exists()
    ours, alone = read_group(out, "train", "light"), read_group(tiny_store, "train", "light")
    assert ours["complete"][:3].all() and not ours["complete"][3:].any()
    assert np.array_equal(ours["images"][:3], alone["images"][:3])
    assert np.array_equal(ours["factors"][:3], alone["factors"][:3])



def _taken_over_then(error: OSError, out: Path):
    """A stand-in for a write that fails because another writer took the lock over while
    this one was paused (it removes the paused writer's half-written files)."""
    def write(*args, **kwargs):
        (out / LOCK_NAME).unlink()
        (out / LOCK_NAME).write_text('{"pid": 1, "host": "elsewhere"}')
        raise error
    return write


@pytest.mark.parametrize("where", ["creating the arrays", "writing a shard"])
def test_a_write_that_fails_after_the_lock_was_taken_over_reports_the_lost_lock(
        where, tmp_path, monkeypatch):
    from dcign.render.writer import coordinator, shards

    out = tmp_path / "faces.zarr"
    gone = FileNotFoundError(errno.ENOENT, "No such file or directory", "zarr.json.partial")
    if where == "creating the arrays":
        monkeypatch.setattr(coordinator, "plan_shards", _taken_over_then(gone, out))
    else:
        monkeypatch.setattr(shards, "write_block", _taken_over_then(gone, out))
    result = render([*TINY, "--out", out])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "lost its lock" in lines[0], result.output
    assert "No such file" not in result.output

def test_renders_started_together_leave_the_store_one_render_alone_writes(tmp_path,
                                                                          tiny_store):
    out = tmp_path / "faces.zarr"
    renders = [subprocess.Popen([DCIGN_RENDER, "faces", *TINY, "--out", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    results = [(r.wait(timeout=300), r.communicate()[0]) for r in renders]
    refused = [output for code, output in results if code != 0]
    for output in refused:  # one line naming the other, or none refused (one ran after)
        lines = [line for line in output.splitlines() if line.strip()]
        assert len(lines) == 1 and "is being written by another dcign process" in lines[0], (
            output)
    assert len(refused) <= 1
    assert content_digest(out) == content_digest(tiny_store)
    assert not (out / LOCK_NAME).exists()
