"""`dcign-eval` as a user meets it: real checkpoints from `dcign-train`, one report folder with
figures, report.json and a self-contained report.html; `--compare`; one-line errors."""

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner
from conftest import assert_one_line_error, train_run

from dcign.shared.factors import FACE_FACTORS, Factor
from dcign.shared.store import open_store
from dcign.train.eval.cli import main as eval_main
from dcign.train.eval.encoding import EncodedSplit, encode_split
from dcign.train.eval.held_out import factor_correlations
from dcign.train.eval.measures import EncodedTest, choose_latents
from dcign.train.eval.trained import load_trained
from dcign.train.modes import VAE
from dcign.train.synthetic import write_blob_store

FAST = ["--sweep", "-3:3:3", "--traversal-images", "2", "--samples", "200"]
FIGURES = ["traversal_azimuth.png", "traversal_elevation.png", "traversal_light.png",
           "traversal_intrinsic.png", "inferred_vs_true.png", "novel_views_azimuth.png",
           "novel_view_pairs_azimuth.png", "novel_view_pairs_elevation.png",
           "novel_view_pairs_light.png"]


def run_eval(*args):
    return CliRunner().invoke(eval_main, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A blob store, a DC-IGN run and a VAE-baseline run trained on it (3 steps each)."""
    root = tmp_path_factory.mktemp("eval")
    store = write_blob_store(root / "blobs.zarr", 32, train_batches=2, test_batches=2)
    return {"store": store, "dcign": train_run(store, root / "dcign", steps=3),
            "vae": train_run(store, root / "vae", "--mode", "vae", steps=3), "root": root}


@pytest.fixture(scope="module")
def report(runs):
    out = runs["root"] / "report"
    result = run_eval("--checkpoint", runs["dcign"], "--baseline", runs["vae"],
                      "--store", runs["store"], "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    return {"out": out, "output": result.output,
            "numbers": json.loads((out / "report.json").read_text())}


def test_the_report_folder_holds_small_figures_its_numbers_and_a_page(report):
    out = report["out"]
    for name in FIGURES:
        assert (out / name).stat().st_size < 200_000, name
    assert sorted(report["numbers"]["figures"]) == sorted(FIGURES)
    assert (out / "report.html").is_file()


def test_report_html_inlines_every_figure_and_loads_nothing_from_outside(report):
    page = (report["out"] / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == len(FIGURES)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    pngs = {base64.b64decode(s.split(",", 1)[1]) for s in sources}
    assert pngs == {(report["out"] / name).read_bytes() for name in FIGURES}
    assert "<table>" in page and "href=" not in page


def test_report_json_states_how_each_number_was_computed_with_counts_and_seeds(report):
    m = report["numbers"]
    d = m["disentanglement"]
    assert d["samples"] == 160 and d["seed"] == 0 and d["bins"] == 20
    assert d["pooled_from"] == {"azimuth": 40, "elevation": 40, "light": 40, "intrinsic": 40}
    assert "identity" in d and "default_rng(0)" in d["sampling"]
    for score in (d["mig"], d["sap"], d["factorvae"], *d["dci"].values()):
        assert 0.0 <= score <= 1.0
    rec = m["reconstruction"]
    assert set(rec["per_type"]) == {"azimuth", "elevation", "light", "intrinsic"}
    assert 0.0 < rec["overall"]["mse_per_pixel"] < 1.0 and rec["overall"]["elbo_per_image"] < 0
    assert "2.7722e-4" in rec["how"] and "3" in rec["how"]
    assert set(m["inferred_vs_true"]) == {"azimuth", "elevation", "light"}
    assert m["latents"]["azimuth"]["latent"] == 0 and m["latents"]["light"]["latent"] == 2
    assert m["traversal"]["values"] == [-3.0, 0.0, 3.0]
    for run, latent_count in ((m, 1), (m["baseline"], 1)):
        scores = run["novel_view"]["scores"]
        assert set(scores) == {"azimuth", "elevation", "light"}
        for score in scores.values():
            assert 0 < score["mse_per_pixel"] < 1 and score["pairs"] == 40 * 19
            assert 0 < score["floor_input_unchanged"] < 1
            assert 0 < score["floor_training_mean_of_view"] < 1
            assert len(score["latents"]) == latent_count and score["views"] == 20


def test_the_terminal_shows_a_table_and_the_report_path(report):
    lines = report["output"].splitlines()
    assert lines[-1] == f"report: {report['out'] / 'report.html'}"
    for name in ("MSE/pixel all", "MIG", "DCI-D", "SAP", "FactorVAE", "azimuth z1 Pearson"):
        assert any(line.startswith(name) for line in lines), name


def test_the_vae_baselines_factor_latent_is_the_one_of_largest_variance_as_at_the_end_of_training(
        report, runs):
    chosen = report["numbers"]["baseline"]["latents"]["azimuth"]
    store = open_store(runs["store"])
    trained = load_trained(runs["vae"], torch.device("cpu"))
    mu = encode_split(trained.model, store, "test", "azimuth", torch.device("cpu")).mu
    within = mu.reshape(-1, store.spec.batch_size, mu.shape[1]).var(axis=1).mean(axis=0)
    assert chosen["latent"] == int(np.argmax(within)) and "largest" in chosen["rule"]
    held = json.loads((runs["vae"] / "held_out.json").read_text())
    assert held["correlations"]["azimuth"]["baseline_latent"] == chosen["latent"]
    assert report["numbers"]["baseline"]["novel_views"]["factor"] == "azimuth"


def test_the_end_of_training_and_dcign_eval_choose_a_baselines_latent_by_the_papers_rule():
    """Latent 0 swings widely within each minibatch but ignores azimuth; latent 1 follows it
    closely and barely moves. The paper's rule (largest variance inside the factor's
    minibatches) takes z1 in both places; the labelled best |r| (z2) is reported beside it
    as a diagnostic, never as the baseline's choice."""
    rng = np.random.default_rng(0)
    truth = np.tile(np.linspace(-80, 80, 20), 4)
    mu = np.stack([rng.normal(0, 5, truth.size), 0.01 * truth + rng.normal(0, 0.01, truth.size),
                   np.zeros(truth.size)], axis=1)
    values = np.stack([truth, np.zeros_like(truth), np.zeros_like(truth)], axis=1)
    enc = EncodedSplit(mu, values, np.zeros((truth.size, 2, 2), np.uint8))
    azimuth = FACE_FACTORS[0]

    held = factor_correlations({"azimuth": enc}, (azimuth,), latent_size=3, batch_size=20)
    baseline = SimpleNamespace(model=SimpleNamespace(arch=SimpleNamespace(latent_size=3)),
                               factors=(azimuth,), method=VAE())
    chosen = choose_latents(baseline, EncodedTest({"azimuth": enc}, batch_size=20))
    assert held["azimuth"]["baseline_latent"] == chosen["azimuth"]["latent"] == 0
    assert held["azimuth"]["best_latent"] == 1
    assert abs(held["azimuth"]["best_r"]) > 0.99 > abs(held["azimuth"]["baseline_r"])


def test_the_default_report_folder_is_beside_the_run_and_a_rerun_replaces_it(runs):
    args = ["--checkpoint", runs["dcign"], "--store", runs["store"], *FAST]
    for _ in range(2):
        result = run_eval(*args)
        assert result.exit_code == 0, result.output
    assert (runs["dcign"] / "report" / "report.html").is_file()


def test_a_folder_that_is_not_a_report_is_refused_before_any_work(runs, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    result = run_eval("--checkpoint", runs["dcign"], "--store", runs["store"],
                      "--out", tmp_path / "mine", *FAST)
    assert_one_line_error(result, "not a dcign-eval report")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_compare_puts_several_runs_in_one_table_and_one_plot(runs, tmp_path):
    result = run_eval("--compare", runs["dcign"], runs["vae"], "--store", runs["store"],
                      "--out", tmp_path, "--samples", "200")
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "report.json").read_text())
    assert [r["run"] for r in m["runs"]] == ["dcign", "vae"]
    assert [r["mode"] for r in m["runs"]] == ["dcign", "vae"]
    assert m["figures"] == ["compare.png"] and (tmp_path / "compare.png").is_file()
    table = result.output.splitlines()
    assert any(line.startswith("dcign ") for line in table)
    assert any(line.startswith("vae ") for line in table)
    assert table[0].split()[:3] == ["run", "method", "step"]


def test_a_rendered_faces_store_is_evaluated_without_code_changes(tiny_store, tmp_path):
    run = train_run(tiny_store, tmp_path / "run", steps=3)
    result = run_eval("--checkpoint", run, "--store", tiny_store, "--out", tmp_path / "r",
                      *FAST)
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "r" / "report.json").read_text())
    assert m["dataset"] == "faces"
    assert m["disentanglement"]["factors"] == ["azimuth", "elevation", "light"]


def test_a_factor_stored_without_a_latent_gets_no_traversal_and_no_scatter_panel(tmp_path):
    # the chairs' grid layout: elevation is stored for every image but tied to no latent
    table = (Factor("azimuth", "degree", -86.0, 86.0, (0, 1), 0, "turn"),
             Factor("elevation", "degree", -23.0, 23.0, (1, 1), 1, "stored only"),
             Factor("light", "degree", -80.0, 80.0, (1, 2), 2, "light"),
             Factor("intrinsic", "identity", None, None, (2, None), None, "identity"))
    store = write_blob_store(tmp_path / "s.zarr", 32, 2, 1, factors=table)
    run = train_run(store, tmp_path / "run", "--ratio", "1:0:1:10", steps=3)
    result = run_eval("--checkpoint", run, "--store", store, "--out", tmp_path / "r", *FAST)
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "r" / "report.json").read_text())
    assert m["latents"]["elevation"] == {"latent": None, "rule": "stored only, no latent"}
    assert set(m["inferred_vs_true"]) == {"azimuth", "light"}
    assert "traversal_elevation.png" not in m["figures"]
    assert "elevation" in m["disentanglement"]["factors"]  # still ground truth for metrics


# ----------------------------------------------------------------------------- bad input

@pytest.fixture(scope="module")
def bad(runs):
    """Stores and checkpoints that must be refused."""
    root = runs["root"] / "bad"
    root.mkdir()
    no_test = shutil.copytree(runs["store"], root / "no-test.zarr")
    s = open_store(no_test, mode="r+")
    for factor in ("azimuth", "elevation", "light", "intrinsic"):
        s.arrays("test", factor).complete[:] = np.zeros(2, bool)
    other_kind = shutil.copytree(runs["store"], root / "kind.zarr")
    group = zarr.open_group(str(other_kind), mode="r+")
    group.attrs["dcign"] = group.attrs["dcign"] | {"dataset": "chairs"}
    state = torch.load(runs["dcign"] / "checkpoint.pt", weights_only=True)
    state["arch"]["enc_channels"] = [8, 8, 8]
    (root / "arch").mkdir()
    torch.save(state, root / "arch" / "checkpoint.pt")
    (root / "junk").mkdir()
    (root / "junk" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    return {"no_test": no_test, "kind": other_kind, "arch": root / "arch",
            "junk": root / "junk", "big": write_blob_store(root / "64.zarr", 64, 1, 1)}


@pytest.mark.parametrize("case, needle", [
    ("missing checkpoint", "no checkpoint at"),
    ("missing store", "no store at"),
    ("store without a test split", "no complete test minibatches"),
    ("store of another kind", "trained on a 'blobs' store"),
    ("store of another image size", "holds a 32×32 network"),
    ("checkpoint of another architecture", "does not hold a network"),
    ("file that is not a checkpoint", "not a readable checkpoint"),
    ("bad sweep", "is not START:STOP:N"),
    ("compare with one run", "at least two runs"),
    ("no checkpoint given", "give --checkpoint"),
    ("compare with --checkpoint too", "not --checkpoint or --baseline"),
])
def test_bad_input_is_one_line_with_a_non_zero_exit(case, needle, runs, bad, tmp_path):
    ckpt, store = runs["dcign"], runs["store"]
    args = {
        "missing checkpoint": ["--checkpoint", tmp_path / "none", "--store", store],
        "missing store": ["--checkpoint", ckpt, "--store", tmp_path / "none.zarr"],
        "store without a test split": ["--checkpoint", ckpt, "--store", bad["no_test"]],
        "store of another kind": ["--checkpoint", ckpt, "--store", bad["kind"]],
        "store of another image size": ["--checkpoint", ckpt, "--store", bad["big"]],
        "checkpoint of another architecture": ["--checkpoint", bad["arch"], "--store", store],
        "file that is not a checkpoint": ["--checkpoint", bad["junk"], "--store", store],
        "bad sweep": ["--checkpoint", ckpt, "--store", store, "--sweep", "1:2"],
        "compare with one run": ["--compare", ckpt, "--store", store],
        "no checkpoint given": ["--store", store],
        "compare with --checkpoint too": ["--compare", ckpt, ckpt, "--checkpoint", ckpt,
                                          "--store", store],
    }[case]
    assert_one_line_error(run_eval(*args, "--out", tmp_path / "out"), needle)
    assert not (tmp_path / "out").exists()


def test_the_installed_command_reports_errors_in_one_line(tmp_path):
    exe = shutil.which("dcign-eval", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("dcign-eval is not installed in this environment")
    proc = subprocess.run([exe, "--checkpoint", tmp_path, "--store", tmp_path / "none.zarr"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [f"Error: no store at {tmp_path / 'none.zarr'}"]
