"""`dcign-train` as a user meets it: help, a run that reports its outputs, one-line errors."""

import json
import shutil

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from dcign.shared.store import open_store
from dcign.train.cli import main
from dcign.train.synthetic import write_blob_store


def invoke(*args):
    return CliRunner().invoke(main, [*map(str, args), "--no-progress"])


def assert_one_line_error(result, fragment):
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert fragment in lines[0]


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    return write_blob_store(tmp_path_factory.mktemp("cli") / "blobs.zarr", 32, 3, 1)


def test_help_explains_the_command_with_examples():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and "--mode vae" in result.output
    for flag in ("--clamp", "--invariance", "--ratio", "--minibatches-per-step", "--resume"):
        assert flag in result.output


def test_a_run_prints_where_its_checkpoint_metrics_and_figures_are(blobs, tmp_path):
    out = tmp_path / "run"
    result = invoke("--store", blobs, "--out", out, "--steps", 4)
    assert result.exit_code == 0, result.output
    assert f"checkpoint: {out / 'checkpoint.pt'}" in result.output
    assert f"metrics:    {out / 'metrics.jsonl'}" in result.output
    assert "figure:     " in result.output and (out / "reconstructions.png").is_file()
    assert (out / "latents_vs_factors.png").is_file()
    assert "r(z1)" in result.output


def test_resume_through_the_cli_extends_a_run(blobs, tmp_path):
    assert invoke("--store", blobs, "--out", tmp_path, "--steps", 3).exit_code == 0
    result = invoke("--store", blobs, "--out", tmp_path, "--steps", 5, "--resume")
    assert result.exit_code == 0, result.output
    steps = [json.loads(x).get("step") for x in (tmp_path / "metrics.jsonl").open()]
    assert max(s for s in steps if s is not None) == 5


def test_a_missing_store_is_a_one_line_error(tmp_path):
    assert_one_line_error(invoke("--store", tmp_path / "nope.zarr"), "no store at")


def test_a_zarr_store_that_is_not_a_dcign_dataset_is_refused(tmp_path):
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    assert_one_line_error(invoke("--store", tmp_path / "other.zarr"), "not a dcign dataset")


def test_a_store_of_another_schema_version_is_refused(blobs, tmp_path):
    path = shutil.copytree(blobs, tmp_path / "old.zarr")
    group = zarr.open_group(str(path), mode="r+")
    group.attrs["dcign"] = group.attrs["dcign"] | {"schema_version": 99}
    assert_one_line_error(invoke("--store", path), "schema 99")


def test_a_store_without_a_factor_dcign_needs_is_refused_but_trains_the_vae(blobs, tmp_path):
    path = shutil.copytree(blobs, tmp_path / "partial.zarr")
    shutil.rmtree(path / "train" / "elevation")
    assert_one_line_error(invoke("--store", path, "--out", tmp_path / "a"),
                          "no complete train/elevation minibatches")
    assert invoke("--store", path, "--out", tmp_path / "b", "--ratio", "1:0:1:10",
                  "--steps", 2).exit_code == 0
    assert invoke("--store", path, "--out", tmp_path / "c", "--mode", "vae",
                  "--steps", 2).exit_code == 0


def test_an_empty_train_split_is_refused(blobs, tmp_path):
    path = shutil.copytree(blobs, tmp_path / "empty.zarr")
    store = open_store(path, mode="r+")
    for split, factor in store.sections():
        if split == "train":
            store.arrays(split, factor).complete[:] = np.zeros(3, bool)
    assert_one_line_error(invoke("--store", path, "--mode", "vae"), "empty train split")


def test_a_checkpoint_from_another_architecture_is_refused(blobs, tmp_path):
    assert invoke("--store", blobs, "--out", tmp_path, "--steps", 2).exit_code == 0
    bigger = write_blob_store(tmp_path / "64.zarr", 64, 1, 1)
    assert_one_line_error(invoke("--store", bigger, "--out", tmp_path, "--resume"),
                          "holds a small 32×32 network; this run builds small 64×64")


def test_a_file_that_is_not_a_checkpoint_is_refused(blobs, tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert_one_line_error(invoke("--store", blobs, "--out", tmp_path, "--resume"),
                          "not a readable checkpoint")


def test_resume_without_a_checkpoint_is_refused(blobs, tmp_path):
    assert_one_line_error(invoke("--store", blobs, "--out", tmp_path, "--resume"),
                          "no checkpoint to resume")


def test_paper150_on_a_small_store_is_refused(blobs):
    assert_one_line_error(invoke("--store", blobs, "--arch", "paper150"),
                          "paper150 needs 150×150 images")


@pytest.mark.parametrize("flag, value, fragment", [
    ("--steps", 0, "--steps must be at least 1"),
    ("--log-every", 0, "--log-every must be at least 1"),
    ("--checkpoint-every", 0, "--checkpoint-every must be at least 1"),
    ("--snapshot-every", 0, "--snapshot-every must be at least 1"),
    ("--minibatches-per-step", 0, "--minibatches-per-step must be at least 1"),
    ("--lr", -1, "--lr must be positive"),
    ("--invariance", -0.5, "--invariance non-negative"),
])
def test_counts_and_rates_out_of_range_are_one_line_errors(blobs, tmp_path, flag, value,
                                                           fragment):
    assert_one_line_error(invoke("--store", blobs, "--out", tmp_path / "run", flag, value),
                          fragment)
    assert not (tmp_path / "run").exists()
