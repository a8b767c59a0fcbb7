"""`dcign-train` on stores rendered by the real `dcign-render` (conftest's tiny 32×32 faces)."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import TINY, assert_one_line_error, render

import dcign.train.objective as objective
from dcign.shared.store import open_store
from dcign.train.checkpoint import read_checkpoint
from dcign.train.cli import main
from dcign.train.eval.encoding import to_tensor
from dcign.train.eval.trained import load_trained
from dcign.train.synthetic import write_blob_store


def train_cli(*args):
    return CliRunner().invoke(main, [*map(str, args), "--no-progress"])


def test_trains_dcign_on_a_rendered_faces_store_and_reports_held_out_results(tiny_store,
                                                                            tmp_path):
    result = train_cli("--store", tiny_store, "--out", tmp_path, "--steps", 6)
    assert result.exit_code == 0, result.output
    for factor in ("azimuth", "elevation", "light"):
        assert factor in result.output
    assert "held-out ELBO" in result.output and "checkpoint: " in result.output
    state = read_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 6
    assert state["store"]["spec"]["generator"]["name"] == "dcign.render.faces"


def test_the_vae_baseline_trains_on_the_same_store(tiny_store, tmp_path):
    result = train_cli("--store", tiny_store, "--out", tmp_path, "--mode", "vae", "--steps", 3)
    assert result.exit_code == 0, result.output
    assert read_checkpoint(tmp_path / "checkpoint.pt")["config"]["mode"] == "vae"


def test_resume_on_a_rendered_store_ends_where_an_uninterrupted_run_does(tiny_store, tmp_path):
    common = ("--store", tiny_store, "--checkpoint-every", 3, "--minibatches-per-step", 2)
    assert train_cli(*common, "--out", tmp_path / "a", "--steps", 6).exit_code == 0
    assert train_cli(*common, "--out", tmp_path / "b", "--steps", 3).exit_code == 0
    assert train_cli(*common, "--out", tmp_path / "b", "--steps", 6, "--resume").exit_code == 0
    a = read_checkpoint(tmp_path / "a" / "checkpoint.pt")
    b = read_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert a["step"] == b["step"] == 6
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_a_mirror_odd_azimuth_is_trained_kept_on_resume_and_used_by_the_saved_network(
        tiny_store, tmp_path):
    common = ("--store", tiny_store, "--out", tmp_path, "--checkpoint-every", 2)
    assert train_cli(*common, "--steps", 2, "--mirror-odd", "azimuth").exit_code == 0
    result = train_cli(*common, "--steps", 4, "--resume")
    assert result.exit_code == 0, result.output
    assert "r(z1)" in result.output
    state = read_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 4 and list(state["config"]["mirror_odd"]) == ["azimuth"]
    trained = load_trained(tmp_path, torch.device("cpu"))
    assert trained.model.arch.mirror_odd == (0,)
    faces = to_tensor(open_store(tiny_store).arrays("test", "azimuth").images[0],
                      torch.device("cpu"))
    with torch.no_grad():
        z1, z1_mirrored = (trained.model.encode(x)[0][:, 0] for x in (faces, faces.flip(-1)))
    assert torch.allclose(z1_mirrored, -z1, atol=1e-6)


@pytest.mark.parametrize("factor", ["elevation", "intrinsic"])
def test_mirror_odd_refuses_a_factor_a_mirror_does_not_negate(tiny_store, tmp_path, factor):
    assert_one_line_error(train_cli("--store", tiny_store, "--out", tmp_path / "run",
                                    "--mirror-odd", factor),
                          f"a left-right mirror does not negate faces' {factor}")
    assert not (tmp_path / "run").exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own, from compiling
def test_compile_trains_the_same_network_as_eager_mode(tmp_path):
    store = write_blob_store(tmp_path / "blobs.zarr", 32, 3, 1)
    common = ("--store", store, "--steps", 2, "--log-every", 1)
    eager = train_cli(*common, "--out", tmp_path / "eager")
    compiled = train_cli(*common, "--out", tmp_path / "compiled", "--compile")
    assert eager.exit_code == 0 and compiled.exit_code == 0, compiled.output

    def first_loss(run):
        return json.loads((run / "metrics.jsonl").read_text().splitlines()[1])["loss_per_image"]

    # the first step's loss comes from the initial weights: only rounding may differ
    assert first_loss(tmp_path / "compiled") == pytest.approx(first_loss(tmp_path / "eager"),
                                                              rel=1e-4)
    a = read_checkpoint(tmp_path / "eager" / "checkpoint.pt")["model"]
    b = read_checkpoint(tmp_path / "compiled" / "checkpoint.pt")["model"]
    assert a.keys() == b.keys()  # a compiled run's checkpoint loads into the plain network


def test_a_nan_loss_is_a_one_line_error_that_keeps_the_last_good_checkpoint(tiny_store,
                                                                           tmp_path,
                                                                           monkeypatch):
    real_kl, calls = objective.kl_nats, []

    def kl_turns_nan_at_the_fifth_step(mu, logvar):
        calls.append(1)
        return real_kl(mu, logvar) * (float("nan") if len(calls) >= 5 else 1.0)

    monkeypatch.setattr(objective, "kl_nats", kl_turns_nan_at_the_fifth_step)
    result = train_cli("--store", tiny_store, "--out", tmp_path, "--steps", 8,
                       "--checkpoint-every", 2)
    assert_one_line_error(result, "loss became nan", "at step 5", "last good checkpoint")
    state = read_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 4
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_a_store_rendered_without_elevation_and_light_trains_only_what_it_can(tmp_path):
    store = tmp_path / "two.zarr"
    assert render([*TINY, "--vary", "azimuth,intrinsic", "--out", store]).exit_code == 0
    assert_one_line_error(train_cli("--store", store, "--out", tmp_path / "a"),
                          "no complete train/elevation minibatches")
    result = train_cli("--store", store, "--out", tmp_path / "b", "--ratio", "1:0:0:10",
                       "--steps", 2)
    assert result.exit_code == 0, result.output


def test_an_empty_rendered_train_split_is_refused(fresh_store, tmp_path):
    import zarr

    for factor in ("azimuth", "elevation", "light", "intrinsic"):
        complete = zarr.open_array(str(fresh_store / "train" / factor / "complete"), mode="r+")
        complete[:] = False
    assert_one_line_error(train_cli("--store", fresh_store, "--out", tmp_path, "--mode", "vae"),
                          "empty train split")


def installed_train_command() -> str:
    exe = shutil.which("dcign-train", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("dcign-train is not installed in this environment")
    return exe


def test_a_run_killed_by_sigkill_resumes_from_its_last_checkpoint_to_the_same_weights(tmp_path):
    store = write_blob_store(tmp_path / "blobs.zarr", 32, 3, 1)
    common = [str(a) for a in (installed_train_command(), "--store", store, "--steps", 300,
                                "--checkpoint-every", 20, "--no-progress")]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*common, "--out", killed], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (killed / "checkpoint.pt").exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint within 4 minutes"
            time.sleep(0.05)
        time.sleep(0.3)  # kill it somewhere between checkpoints (or mid-write)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        proc.kill()  # SIGKILL: no handler, no last checkpoint
        proc.wait()
    at_kill = read_checkpoint(killed / "checkpoint.pt")["step"]
    assert 20 <= at_kill < 300 and at_kill % 20 == 0
    resumed = subprocess.run([*common, "--out", killed, "--resume"], capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    straight = subprocess.run([*common, "--out", tmp_path / "straight"], capture_output=True,
                              text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr
    a = read_checkpoint(killed / "checkpoint.pt")
    b = read_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    assert a["step"] == b["step"] == 300
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_the_installed_command_reports_errors_in_one_line_without_a_traceback(tmp_path):
    proc = subprocess.run([installed_train_command(), "--store", tmp_path / "missing.zarr"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [f"Error: no store at {tmp_path / 'missing.zarr'}"]
