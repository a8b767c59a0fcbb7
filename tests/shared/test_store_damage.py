"""Damaged stores and failing disks: every reader names the damaged minibatch in one line,
`dcign-store verify` lists each, `dcign-render repair` renders exactly those again into a
byte-identical store, a disk that fails mid-run ends in one line with the progress made, and
one writer holds a store at a time."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (
    TINY,
    as_schema_1,
    assert_one_line_error,
    content_digest,
    file_digests,
    garble,
    installed,
    invoke,
    render,
    shard_file,
    store_tool,
)

from dcign.render.cli import main as render_main
from dcign.shared.lock import LOCK_NAME
from dcign.shared.store import open_store
from dcign.train.cli import main as train_main
from dcign.train.eval.cli import main as eval_main


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.fixture
def damaged(fresh_store):
    """The tiny store damaged three ways: garbage in train/light minibatch 1's images, the
    train/azimuth factors shard cut in half, the test/intrinsic images shard deleted."""
    garble(shard_file(fresh_store, "train", "light", "images"), 1)
    truncate(shard_file(fresh_store, "train", "azimuth", "factors"))
    shard_file(fresh_store, "test", "intrinsic", "images").unlink()
    return fresh_store


def test_verify_names_each_damaged_minibatch_on_a_line_of_its_own(damaged):
    result = store_tool(["verify", damaged])
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.output.splitlines()
    assert any(line.endswith("FAIL train/light/1: checksum mismatch") for line in lines)
    assert not any("train/light/0" in line or "train/light/2" in line for line in lines)
    for k in range(3):
        assert any(f"FAIL train/azimuth/{k}: " in line for line in lines)
    for k in range(2):
        assert any(f"FAIL test/intrinsic/{k}: missing chunk (images" in line for line in lines)
    assert lines[-1].startswith("Error: 6 damaged minibatches") and "dcign-render repair" in (
        lines[-1])


def test_a_missing_shard_is_found_by_its_absence_not_by_its_pixels(fresh_store):
    shard_file(fresh_store, "train", "elevation", "identity").unlink()  # no pixel is missing
    lines = store_tool(["verify", fresh_store]).output.splitlines()
    assert sum("missing chunk (identity: its shard file is gone)" in line for line in lines) == 3


def test_repair_renders_exactly_the_damaged_minibatches_into_a_byte_identical_store(
        tiny_store, damaged):
    result = invoke(render_main, ["repair", damaged, "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "repaired 6 damaged minibatches (6 rendered again" in result.output
    assert file_digests(damaged) == file_digests(tiny_store)
    assert store_tool(["verify", damaged]).exit_code == 0
    history = open_store(damaged).history
    assert history[-1]["config"]["command"] == "repair"


def test_repair_of_an_intact_store_changes_nothing(fresh_store):
    before = file_digests(fresh_store)
    result = invoke(render_main, ["repair", fresh_store, "--quiet"])
    assert result.exit_code == 0 and "nothing to repair" in result.output
    assert file_digests(fresh_store) == before


def test_the_trainer_names_the_damaged_minibatch_and_keeps_its_checkpoint(damaged, tmp_path):
    args = ["--store", damaged, "--out", tmp_path, "--steps", "30", "--checkpoint-every", "100",
            "--ratio", "1:0:1:0", "--no-progress"]
    result = invoke(train_main, args)
    assert_one_line_error(result, "is damaged", "dcign-render repair")
    assert "train/light/1" in result.output or "train/azimuth/" in result.output
    assert (tmp_path / "checkpoint.pt").is_file()  # the weights so far, for --resume
    in_memory = invoke(train_main, [*args, "--in-memory", "--out", tmp_path / "m"])
    assert_one_line_error(in_memory, "is damaged", "dcign-render repair")


def test_evaluation_on_a_damaged_test_split_is_one_line(damaged, tmp_path):
    run = tmp_path / "run"
    trained = invoke(train_main, ["--store", damaged, "--out", run, "--steps", "2",
                                  "--ratio", "0:1:0:0", "--no-progress"])
    assert trained.exit_code != 0  # its own held-out check meets the damage too
    assert_one_line_error(trained, "test/intrinsic/0 is damaged", "missing chunk")
    result = invoke(eval_main, ["--checkpoint", run, "--store", damaged, "--out",
                                tmp_path / "report", "--samples", "100"])
    assert_one_line_error(result, "is damaged", "dcign-render repair")


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left on the device"),
                                         (errno.EACCES, "permission denied"),
                                         (errno.EROFS, "the file system is read-only")])
def test_a_disk_that_fails_mid_run_is_one_line_and_a_rerun_completes_the_store(
        tmp_path, monkeypatch, tiny_store, code, words):
    import zarr.storage._local as local

    real_put, chunks = local._put, []

    def failing_put(path, value, exclusive=False):
        if "/c/" in str(path):
            chunks.append(path)
            if len(chunks) > 6:  # a shard is 4 files: after the first and half the second
                raise OSError(code, os.strerror(code), str(path))
        return real_put(path, value, exclusive=exclusive)

    out = tmp_path / "faces.zarr"
    monkeypatch.setattr(local, "_put", failing_put)
    assert_one_line_error(render([*TINY, "--out", out]), words, "3 of 20 minibatches are "
                          "complete", "Rerunning the same command resumes")  # train/azimuth
    monkeypatch.setattr(local, "_put", real_put)
    result = render([*TINY, "--out", out])
    assert result.exit_code == 0 and "3 were already there" in result.output
    assert content_digest(out) == content_digest(tiny_store)
    assert not list(out.rglob("*.partial")) and not (out / LOCK_NAME).exists()


def _start_slow_render(out: Path) -> subprocess.Popen:
    args = [installed("dcign-render"), "faces", "--size", "32",
            "--batch-size",
            "4", "--batches", "400", "--test-batches", "1", "--vary", "light", "--workers", "1",
            "--quiet", "--out", str(out)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not (out / LOCK_NAME).exists():
        assert process.poll() is None and time.monotonic() < deadline, "no writer started"
        time.sleep(0.1)
    return process


def test_a_second_writer_is_refused_at_once_and_a_dead_writers_lock_is_taken_over(tmp_path):
    out = tmp_path / "faces.zarr"
    first = _start_slow_render(out)
    try:
        started = time.monotonic()
        second = render([*TINY, "--vary", "light", "--out", out])
        assert time.monotonic() - started < 20
        assert_one_line_error(second, "is being written by another dcign process",
                              f"pid {first.pid}", "since")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert (out / LOCK_NAME).exists()  # a killed writer leaves its lock behind
    resumed = render([*TINY, "--vary", "light", "--out", out])
    assert resumed.exit_code == 0, resumed.output
    assert "taking over" in resumed.output and f"pid {first.pid}" in resumed.output
    assert not (out / LOCK_NAME).exists()


def test_readers_need_no_lock(fresh_store):
    (fresh_store / LOCK_NAME).write_text('{"host": "elsewhere", "pid": 1, "heartbeat": 9e99}')
    assert store_tool(["verify", fresh_store]).exit_code == 0


# ----------------------------------------------------------------------------- schema 1

def test_a_schema_1_store_is_refused_with_the_way_to_convert_it(tiny_store, tmp_path):
    old = tmp_path / "old.zarr"
    as_schema_1(tiny_store, old)
    assert_one_line_error(invoke(train_main, ["--store", old, "--out", tmp_path / "r"]),
                          "schema 1", f"dcign-store migrate {old}")
    assert_one_line_error(render([*TINY, "--out", old]), "schema 1", "--overwrite")
    info = store_tool(["info", old])
    assert info.exit_code == 0 and "schema 1" in info.output and "migrate" in info.output


def test_migrate_converts_schema_1_to_the_same_minibatches_in_schema_2(tiny_store, tmp_path):
    old, new = tmp_path / "old.zarr", tmp_path / "new.zarr"
    as_schema_1(tiny_store, old)
    before = file_digests(old)
    result = store_tool(["migrate", old, new])
    assert result.exit_code == 0 and "20 minibatches copied" in result.output
    assert content_digest(new) == content_digest(tiny_store)
    assert file_digests(new) == file_digests(tiny_store)  # the same shards, byte for byte
    assert file_digests(old) == before  # the source is only read
    assert "schema 2" in store_tool(["info", new]).output
    assert_one_line_error(store_tool(["migrate", old, new]), "already exists")
