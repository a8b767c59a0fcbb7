"""`dcign-store migrate` is a writer like the renderer: an interrupted migration is resumed by
the same command into a store equal to one migrated at once, and the migration holds the
target's writer lock and checks it before every write."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest
import zarr
from conftest import (
    as_schema_1,
    assert_one_line_error,
    content_digest,
    file_digests,
    store_tool,
    tree_digest,
)
from tqdm import tqdm

from dcign.shared import store_cli, store_writer
from dcign.shared.location import locate
from dcign.shared.lock import LOCK_NAME, writer_lock
from dcign.shared.migrate import MARKER_NAME


@pytest.fixture(scope="module")
def old_and_migrated(tiny_store, tmp_path_factory) -> tuple[Path, Path]:
    """A schema-1 copy of the tiny store and its migration, run once without a hitch."""
    where = tmp_path_factory.mktemp("migrate")
    old, migrated = where / "old.zarr", where / "migrated.zarr"
    as_schema_1(tiny_store, old)
    result = store_tool(["migrate", old, migrated])
    assert result.exit_code == 0, result.output
    return old, migrated


@pytest.fixture(autouse=True)
def no_progress_bar(monkeypatch):
    """migrate's progress bar, erased on a terminal, stays in a captured output beside the
    one-line errors."""
    monkeypatch.setattr(store_cli, "tqdm", functools.partial(tqdm, disable=True))


def _history(store: Path) -> list[dict]:
    history = zarr.open_group(str(store), mode="r").attrs["dcign"]["history"]
    return [{k: v for k, v in entry.items() if k != "time"} for entry in history]


def _after_writes(monkeypatch, writes: int, then) -> None:
    """Call `then()` once `writes` shards are written, before the next shard's write."""
    written, write_block = [], store_writer.write_block

    def counted(*args, **kwargs):
        write_block(*args, **kwargs)
        written.append(1)
        if len(written) == writes:
            then()

    monkeypatch.setattr(store_writer, "write_block", counted)


def test_an_interrupted_migration_is_resumed_into_the_store_one_run_makes(
        old_and_migrated, tmp_path, monkeypatch):
    old, migrated = old_and_migrated
    new = tmp_path / "new.zarr"

    def interrupt():
        raise KeyboardInterrupt  # as Ctrl-C

    _after_writes(monkeypatch, 3, interrupt)
    stopped = store_tool(["migrate", old, new])
    assert stopped.exit_code == 130 and "rerun the same command to resume" in stopped.output
    assert (new / MARKER_NAME).exists() and not (new / LOCK_NAME).exists()
    monkeypatch.undo()
    resumed = store_tool(["migrate", old, new])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming the unfinished migration" in resumed.stderr
    assert "20 minibatches copied" in resumed.stdout
    assert not (new / MARKER_NAME).exists()
    assert file_digests(new) == file_digests(migrated)  # the same shards, byte for byte
    assert content_digest(new) == content_digest(migrated)
    assert _history(new) == _history(migrated)  # one migration recorded, not two
    verified = store_tool(["verify", new])
    assert verified.exit_code == 0 and "OK: 20 minibatches" in verified.output
    assert_one_line_error(store_tool(["migrate", old, new]), "already exists")


def test_a_killed_migrations_lock_is_taken_over_by_the_rerun(old_and_migrated, tmp_path,
                                                            monkeypatch):
    old, migrated = old_and_migrated
    new = tmp_path / "new.zarr"

    def die():  # what a killed migration leaves: its lock, naming a process that is gone
        lock = json.loads((new / LOCK_NAME).read_text()) | {"pid": 2 ** 22 + 7}
        (new / LOCK_NAME).unlink()
        (new / LOCK_NAME).write_text(json.dumps(lock))
        raise SystemExit(137)

    _after_writes(monkeypatch, 2, die)
    with pytest.raises(SystemExit):
        from dcign.shared.migrate import migrate, prepare_migration

        migrate(prepare_migration(old, new))
    monkeypatch.undo()
    assert (new / LOCK_NAME).exists()
    resumed = store_tool(["migrate", old, new])
    assert resumed.exit_code == 0, resumed.output
    assert "taking over" in resumed.stderr
    assert file_digests(new) == file_digests(migrated)


def test_a_migration_into_a_store_another_writer_holds_is_refused(old_and_migrated,
                                                                  tmp_path):
    old, _ = old_and_migrated
    new = tmp_path / "new.zarr"
    with writer_lock(locate(new), note=lambda line: None):
        assert_one_line_error(store_tool(["migrate", old, new]),
                              "is being written by another dcign process", f"pid {os.getpid()}")
    assert [p.name for p in new.iterdir()] == []


def test_a_migration_that_lost_its_lock_stops_before_its_next_write(old_and_migrated,
                                                                    tmp_path, monkeypatch):
    old, _ = old_and_migrated
    new = tmp_path / "new.zarr"
    after = {}

    def taken_over():  # another writer took the store over (this one was paused too long)
        other = new / "other.lock"
        other.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "theirs"}))
        os.replace(other, new / LOCK_NAME)
        after["digest"] = tree_digest(new)

    _after_writes(monkeypatch, 2, taken_over)
    assert_one_line_error(store_tool(["migrate", old, new]), "lost its lock", "host elsewhere")
    assert tree_digest(new) == after["digest"]  # not a byte more


def test_a_target_holding_another_sources_unfinished_migration_is_refused(old_and_migrated,
                                                                          tmp_path):
    old, _ = old_and_migrated
    new = tmp_path / "new.zarr"
    new.mkdir()
    (new / MARKER_NAME).write_text(json.dumps({"from": "file:///elsewhere/old.zarr"}))
    assert_one_line_error(store_tool(["migrate", old, new]), "unfinished migration from "
                          "file:///elsewhere/old.zarr")
