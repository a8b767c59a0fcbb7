"""`dcign-eval --curve RUN` (issue 23): a run's learning curve, the held-out reconstruction and
novel-view error at each snapshot `dcign-train --snapshot-every N` kept, as a table, report.json
and curve.png; what cannot be drawn is one line."""

import json

import pytest
from click.testing import CliRunner
from conftest import assert_one_line_error, train_run

from dcign.train.eval.cli import main as eval_main
from dcign.train.synthetic import write_blob_store


def run_eval(*args):
    return CliRunner().invoke(eval_main, [str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A blob store and a DC-IGN run of 4 steps that kept a snapshot every step."""
    root = tmp_path_factory.mktemp("curve")
    store = write_blob_store(root / "blobs.zarr", 32, train_batches=2, test_batches=2)
    return {"store": store, "root": root,
            "run": train_run(store, root / "dcign", steps=4, snapshot_every=1)}


def test_a_curve_measures_each_snapshot_and_draws_it(run):
    out = run["root"] / "curve"
    result = run_eval("--curve", run["run"], "--store", run["store"], "--out", out)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "report.json").read_text())
    points = data["points"]
    assert [p["step"] for p in points] == [1, 2, 3, 4]  # the last snapshot is the checkpoint
    factors = set(points[0]["novel_view"])
    assert factors and factors <= {"azimuth", "elevation", "light"}
    for p in points:
        assert 0 < p["mse_per_pixel"] < 1 and p["elbo_per_image"] < 0
        assert all(0 < v < 1 for v in p["novel_view"].values())
    assert points[0]["floors"] == points[-1]["floors"]  # the store's, not the step's
    assert (out / "curve.png").stat().st_size > 5000
    assert "novel view" in result.output and f"report: {out / 'curve.png'}" in result.output


def test_points_thins_the_snapshots_keeping_the_first_and_last(run):
    out = run["root"] / "curve-2"
    result = run_eval("--curve", run["run"], "--store", run["store"], "--out", out,
                      "--points", 2)
    assert result.exit_code == 0, result.output
    assert [p["step"] for p in json.loads((out / "report.json").read_text())["points"]] == [1, 4]


def test_a_run_without_snapshots_is_told_how_to_keep_them(run, tmp_path):
    plain = train_run(run["store"], tmp_path / "plain", steps=1)
    assert_one_line_error(run_eval("--curve", plain, "--store", run["store"]),
                          "kept no snapshots", "--snapshot-every N")
    assert not (plain / "curve").exists()


def test_a_curve_takes_no_other_run(run):
    assert_one_line_error(run_eval("--curve", run["run"], "--checkpoint", run["run"],
                                   "--store", run["store"]), "--curve RUN takes one run")
