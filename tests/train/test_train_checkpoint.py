"""The checkpoint (issues 21 and 25): one typed format that every reader checks the same way,
hostile files refused in one line with bounded memory, resumption that writes only where the
run now lives, and writes that are durable and leave nothing behind when they fail."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import assert_one_line_error, train_run, tree_digest

from dcign.train.checkpoint import Checkpoint, read_checkpoint, snapshot_files
from dcign.train.cli import main as train_main
from dcign.train.eval.cli import main as eval_main
from dcign.train.eval.trained import load_trained
from dcign.train.model import small

TRAIN = ("--checkpoint-every", 1, "--log-every", 1, "--no-progress")
# A process that imports torch and reads a checkpoint stays well under this; building the
# 250,000-latent network a hostile checkpoint declared took 1.8 GiB.
READ_RSS_LIMIT_MIB = 700


def train(*args):
    return CliRunner().invoke(train_main, [str(a) for a in (*args, *TRAIN)])


def evaluate(run: Path, store: Path):
    return CliRunner().invoke(eval_main, ["--checkpoint", str(run), "--store", str(store)])


@pytest.fixture(scope="module")
def trained(tiny_store, tmp_path_factory) -> Path:
    """A run of 2 steps on the tiny faces store. Read-only: tests copy it."""
    return train_run(tiny_store, tmp_path_factory.mktemp("trained") / "runA", steps=2,
                     checkpoint_every=1, log_every=1)  # TRAIN's flags


def copy_run(run: Path, to: Path) -> Path:
    return shutil.copytree(run, to)


def checkpoint_with(trained: Path, to: Path, change) -> Path:
    """A run directory holding the trained checkpoint as `change(raw dict)` made it."""
    state = torch.load(trained / "checkpoint.pt", weights_only=True)
    state = change(state) or state
    to.mkdir()
    torch.save(state, to / "checkpoint.pt")
    return to


# ----------------------------------------------------------------------------- hostile files

def _walk(state, keys: list[str]):
    """The container a dotted path's last key is in (digits index lists and int-keyed dicts)."""
    for key in keys:
        state = state[int(key) if key.isdigit() and key not in state else key]
    return state


def _set(path: str | tuple[str, ...], value):
    """A change that sets one field of the raw dict, by a dotted path (a tuple where a key
    holds a dot: the weights' names)."""
    *parents, last = path.split(".") if isinstance(path, str) else path
    return lambda state: _walk(state, parents).__setitem__(last, value)


def _delete(path: str | tuple[str, ...]):
    *parents, last = path.split(".") if isinstance(path, str) else path
    return lambda state: _walk(state, parents).__delitem__(last)


class Payload:
    """What a pickle can carry besides data: a call made while loading (here a harmless one,
    whose output would break the one-line error if it ran)."""

    def __reduce__(self):
        return (print, ("a pickle payload ran",))


HOSTILE = {
    "absurd latent count": (_set("arch.latent_size", 250_000), "arch.latent_size is 250000"),
    "image size of the wrong type": (_set("arch.image_size", "32"),
                                     "arch.image_size must be int, not '32'"),
    "negative channel count": (_set("arch.enc_channels", [16, -1, 32]),
                               "arch.enc_channels[1] is -1"),
    "too many layers": (_set("arch.dec_channels", [8] * 20), "arch.dec_channels (layers)"),
    "kernel larger than its input": (_set("arch.enc_kernel", 31),
                                     "leaves encoder 1 no pixels of a 32×32 image"),
    "network too big to allocate": (_set("arch", small(1024).to_dict()), "arch (parameters)"),
    "mirror-odd latent out of range": (_set("arch.mirror_odd", [500]), "arch.mirror_odd[0]"),
    "unknown architecture field": (_set("arch.colour", "red"), "arch.'colour' is not a field"),
    "weights of another shape": (_set(("model", "to_mu.weight"), torch.zeros(3, 3)),
                                 "model.to_mu.weight has shape (3, 3)"),
    "weights that are not tensors": (_set(("model", "to_mu.bias"), [0.0] * 200),
                                     "model.to_mu.bias must be a floating-point tensor"),
    "a missing weight": (_delete(("model", "to_mu.bias")), "model.to_mu.bias is missing"),
    "an extra weight": (_set("model.extra", torch.zeros(1)), "holds 'extra'"),
    "optimiser state of another shape": (_set("optimizer.state.0.exp_avg", torch.zeros(2)),
                                         "optimizer.state[0].exp_avg has shape (2,)"),
    "optimiser settings of the wrong type": (_set("optimizer.param_groups.0.lr", "fast"),
                                             "optimizer.param_groups.lr"),
    "generator state of the wrong size": (_set("rng.torch", torch.zeros(3, dtype=torch.uint8)),
                                          "rng.torch is not a CPU random generator's state"),
    "negative step": (_set("step", -1), "step is -1"),
    "step of the wrong type": (_set("step", "10"), "step must be int"),
    "learning rate of the wrong type": (_set("config.lr", "fast"), "config.lr must be float"),
    "mirror-odd factors of the wrong type": (_set("config.mirror_odd", 5), "config.mirror_odd"),
    "unknown optimiser": (_set("config.optimizer", "sgd"), "config.optimizer is 'sgd'"),
    "store spec missing": (_delete("store.spec"), "store.spec is missing"),
    "factor table of the wrong type": (_set("factors", [{"name": 3}]), "factors[0]"),
    "unknown format version": (_set("format", "dcign-train-checkpoint/9"),
                               "format 'dcign-train-checkpoint/9'; this dcign reads "
                               "dcign-train-checkpoint/1"),
    "another program's file": (_set("format", "someone-else/1"),
                               "not a dcign-train checkpoint"),
    "a list, not a dict": (lambda state: [state], "not a dcign-train checkpoint"),
    "a pickle payload": (lambda state: state | {"step": Payload()}, "not a readable checkpoint"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_checkpoint_is_one_line_naming_the_field_for_eval_and_resume(
        case, trained, tiny_store, tmp_path):
    change, needle = HOSTILE[case]
    run = checkpoint_with(trained, tmp_path / "run", change)
    for result in (evaluate(run, tiny_store),
                   train("--store", tiny_store, "--resume", run, "--steps", 4)):
        assert_one_line_error(result, needle)


def test_a_truncated_checkpoint_is_one_line_for_eval_and_resume(trained, tiny_store, tmp_path):
    run = copy_run(trained, tmp_path / "run")
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[:len(data) // 2])
    assert_one_line_error(evaluate(run, tiny_store), "not a readable checkpoint")
    assert_one_line_error(train("--store", tiny_store, "--resume", run, "--steps", 4),
                          "not a readable checkpoint")


# Runs argv[2:] and writes its peak resident memory (kB) to argv[1]. A fresh small process,
# since a child's peak counts what it held before exec, and a child of pytest holds pytest.
MEASURED = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[2:]); "
            "_, status, usage = os.wait4(p.pid, 0); "
            "open(sys.argv[1], 'w').write(str(usage.ru_maxrss)); "
            "sys.exit(os.waitstatus_to_exitcode(status))")


def _peak_rss_mib(args: list[str], tmp_path: Path) -> tuple[int, str, int]:
    """Run a command: its exit status, its output and its peak resident memory in MiB."""
    peak = tmp_path / "peak-kb"
    result = subprocess.run([sys.executable, "-c", MEASURED, str(peak), *args],
                            capture_output=True, text=True)
    return result.returncode, result.stdout + result.stderr, int(peak.read_text()) // 1024


def test_a_checkpoint_claiming_250000_latents_is_refused_in_bounded_memory(trained, tiny_store,
                                                                           tmp_path):
    run = checkpoint_with(trained, tmp_path / "run", _set("arch.latent_size", 250_000))
    code = "import sys; from dcign.train.eval.cli import main; sys.exit(main())"
    status, output, peak = _peak_rss_mib(
        [sys.executable, "-c", code, "--checkpoint", str(run), "--store", str(tiny_store)],
        tmp_path)
    assert status != 0
    assert output.strip().splitlines() == [
        f"Error: {run / 'checkpoint.pt'} does not hold a network this dcign can build: "
        f"arch.latent_size is 250000; a checkpoint may declare 1…4096"], output
    assert peak < READ_RSS_LIMIT_MIB, f"peak RSS {peak} MiB"


def test_a_checkpoint_from_before_latent_groups_mirror_odd_and_positional_noise_is_migrated(
        trained, tiny_store, tmp_path):
    def as_first_written(state):
        del state["factors"], state["arch"]["mirror_odd"], state["config"]["latent_groups"]
        state["rng"]["noise"] = torch.zeros(16, dtype=torch.uint8)
    run = checkpoint_with(trained, tmp_path / "old", as_first_written)
    old = Checkpoint.read(run / "checkpoint.pt")
    assert old.factors == old.store.factors and old.arch.mirror_odd == ()
    assert old.config.latent_groups == ()
    assert load_trained(run, torch.device("cpu")).step == 2
    result = train("--store", tiny_store, "--resume", run, "--steps", 3)
    assert result.exit_code == 0, result.output
    assert read_checkpoint(run / "checkpoint.pt")["step"] == 3  # written in the current form
    assert "noise" not in read_checkpoint(run / "checkpoint.pt")["rng"]


# ----------------------------------------------------------------------------- resuming

def test_a_copied_run_resumes_where_it_now_lives_after_the_original_is_deleted(
        trained, tiny_store, tmp_path):
    run_a = copy_run(trained, tmp_path / "runA")
    run_b = copy_run(run_a, tmp_path / "runB")
    shutil.rmtree(run_a)
    result = train("--store", tiny_store, "--resume", run_b, "--steps", 4)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runB"]  # nothing written elsewhere
    saved = Checkpoint.read(run_b / "checkpoint.pt")
    assert saved.step == 4 and saved.config.out == str(run_b)
    assert f"checkpoint: {run_b / 'checkpoint.pt'}" in result.output


def test_resume_with_out_writes_into_out_not_the_directory_the_checkpoint_records(
        trained, tiny_store, tmp_path):
    run_a = copy_run(trained, tmp_path / "runA")
    run_b = copy_run(run_a, tmp_path / "runB")  # its checkpoint still records runA's out
    before = tree_digest(run_a)
    result = train("--store", tiny_store, "--out", run_b, "--resume", "--steps", 3)
    assert result.exit_code == 0, result.output
    assert tree_digest(run_a) == before
    assert Checkpoint.read(run_b / "checkpoint.pt").step == 3


def test_resume_takes_the_checkpoint_file_as_well_as_its_directory(trained, tiny_store,
                                                                   tmp_path):
    run = copy_run(trained, tmp_path / "run")
    result = train("--store", tiny_store, "--resume", run / "checkpoint.pt", "--steps", 3)
    assert result.exit_code == 0, result.output
    assert Checkpoint.read(run / "checkpoint.pt").step == 3


def test_resume_with_an_out_naming_another_directory_is_refused_and_writes_nothing(
        trained, tiny_store, tmp_path):
    run = copy_run(trained, tmp_path / "runB")
    before = tree_digest(run)
    result = train("--store", tiny_store, "--resume", run, "--out", tmp_path / "runC",
                   "--steps", 4)
    assert_one_line_error(result, f"--resume {run} continues the run in {run}",
                          f"--out {tmp_path / 'runC'} names another directory")
    assert tree_digest(run) == before and not (tmp_path / "runC").exists()


def test_resume_from_a_file_that_is_not_a_run_checkpoint_is_refused(trained, tiny_store,
                                                                   tmp_path):
    other = tmp_path / "weights.pt"
    shutil.copy(trained / "checkpoint.pt", other)
    assert_one_line_error(train("--store", tiny_store, "--resume", other),
                          "--resume takes a run directory or its checkpoint.pt")


def test_help_says_where_a_resumed_run_writes():
    text = " ".join(CliRunner().invoke(train_main, ["--help"]).output.split())
    assert "--resume [RUN]" in text
    assert "writes only into the directory its checkpoint is in" in text


# ----------------------------------------------------------------------------- writing

def _writes_then_fails(error: Exception):
    """A torch.save that writes part of the file, then fails as a full disk does."""
    def save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise error
    return save


@pytest.mark.parametrize("error", [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed "
                 "writing file data/0: file write failed"),
], ids=["OSError", "torch's RuntimeError"])
def test_a_failed_checkpoint_write_keeps_the_old_checkpoint_and_leaves_no_temporary_file(
        error, trained, tiny_store, tmp_path, monkeypatch):
    run = copy_run(trained, tmp_path / "run")
    before = (run / "checkpoint.pt").read_bytes()
    monkeypatch.setattr(torch, "save", _writes_then_fails(error))
    result = train("--store", tiny_store, "--resume", run, "--steps", 4)
    assert_one_line_error(result, f"could not write the checkpoint {run / 'checkpoint.pt'}",
                          "the previous checkpoint, if any, is unchanged")
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    assert (run / "checkpoint.pt").read_bytes() == before


def test_a_checkpoint_is_fsynced_before_its_rename_and_its_directory_after(trained, tmp_path,
                                                                          monkeypatch):
    saved = Checkpoint.read(trained / "checkpoint.pt")
    events, real_fsync, real_replace = [], os.fsync, os.replace

    def fsync(fd):
        events.append("fsync directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst):
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    saved.write(tmp_path / "checkpoint.pt")
    assert events == ["fsync file", "rename", "fsync directory"]
    assert Checkpoint.read(tmp_path / "checkpoint.pt").step == saved.step


def test_snapshot_every_keeps_each_nth_steps_checkpoint_untouched_by_later_steps(
        tiny_store, tmp_path):
    run = train_run(tiny_store, tmp_path / "run", steps=4, snapshot_every=2, checkpoint_every=3)
    kept = snapshot_files(run)
    assert [f.name for f in kept] == ["step-2.pt", "step-4.pt"]
    first = kept[0].read_bytes()
    assert [Checkpoint.read(f).step for f in kept] == [2, 4]
    result = train("--store", tiny_store, "--resume", run, "--steps", 6, "--snapshot-every", 2)
    assert result.exit_code == 0, result.output
    assert [f.name for f in snapshot_files(run)] == ["step-2.pt", "step-4.pt", "step-6.pt"]
    assert kept[0].read_bytes() == first  # a hard link: the renamed checkpoint left it alone
    a, b = (Checkpoint.read(f).weights for f in (kept[0], run / "checkpoint.pt"))
    assert any(not torch.equal(a[k], b[k]) for k in a)
