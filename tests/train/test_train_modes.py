"""Today's methods as training modes beside DC-IGN: each loss pinned against a hand
computation on tiny tensors, every method class declaring what the rest of the code asks of
it (and a toy one plugging in from a test), and each mode trained, resumed exactly and
compared through the real CLIs; bad options are one line."""

from __future__ import annotations

import dataclasses
import json
import math
from functools import partial
from typing import ClassVar

import pytest
import torch
from click.testing import CliRunner
from conftest import assert_one_line_error, train_config, train_run

import dcign.train.loop as loop
from dcign.shared.errors import DcignError
from dcign.train.checkpoint import read_checkpoint
from dcign.train.cli import main as train_main
from dcign.train.config import TrainConfig
from dcign.train.eval.cli import main as eval_main
from dcign.train.eval.trained import load_trained
from dcign.train.method_math import (
    averaged,
    minibatch_pairs,
    pair_kl,
    shared_by_threshold,
    total_correlation,
)
from dcign.train.modes import METHODS, AdaGVAE, Method
from dcign.train.synthetic import write_blob_store


def gaussian_kl(mu_a, var_a, mu_b, var_b) -> float:
    return 0.5 * (math.log(var_b / var_a) + (var_a + (mu_a - mu_b) ** 2) / var_b - 1)


MU = torch.tensor([[0.0, 1.0, 2.0, -1.0], [0.1, -1.0, 2.0, 3.0]])
VAR = torch.tensor([[1.0, 1.0, 0.5, 2.0], [1.0, 2.0, 0.5, 1.0]])
PAIR = torch.tensor([[0, 1]])


def test_ada_gvae_shares_the_latents_whose_pair_kl_is_below_the_midpoint():
    delta = pair_kl(MU, VAR.log(), PAIR)[0]
    by_hand = [gaussian_kl(MU[0, j].item(), VAR[0, j].item(), MU[1, j].item(),
                           VAR[1, j].item()) for j in range(4)]
    assert torch.allclose(delta, torch.tensor(by_hand), atol=1e-6)
    tau = (max(by_hand) + min(by_hand)) / 2  # 0.005, 1.10, 0, 8.15 → τ = 4.08
    assert shared_by_threshold(delta[None])[0].tolist() == [d < tau for d in by_hand] == [
        True, True, True, False]


def test_shared_latents_take_the_pairs_average_posterior_and_the_others_keep_their_own():
    post = AdaGVAE().posterior(MU, VAR.log(), torch.ones(4, dtype=torch.bool), PAIR)
    for image in (0, 1):
        assert torch.allclose(post.mu[image, :3], (MU[0, :3] + MU[1, :3]) / 2)
        assert torch.allclose(post.logvar[image, :3].exp(), (VAR[0, :3] + VAR[1, :3]) / 2)
        assert post.mu[image, 3] == MU[image, 3]
    assert post.shared.item() == 3


def test_the_ml_average_is_the_product_of_the_two_gaussians():
    mu, logvar = averaged(MU[0], VAR[0].log(), MU[1], VAR[1].log(), "ml")
    var = 1 / (1 / VAR[0] + 1 / VAR[1])
    assert torch.allclose(logvar.exp(), var)
    assert torch.allclose(mu, var * (MU[0] / VAR[0] + MU[1] / VAR[1]))


def test_the_oracle_mask_shares_exactly_the_latents_outside_the_varying_factors_group():
    active = torch.tensor([True, False, False, False])  # this minibatch varies z1's factor
    post = AdaGVAE(ada_mask="oracle").posterior(MU, VAR.log(), active, PAIR)
    assert post.shared.item() == 3
    assert torch.equal(post.mu[:, 0], MU[:, 0])
    assert torch.allclose(post.mu[0, 1:], post.mu[1, 1:])


def test_the_total_correlation_estimate_is_chens_minibatch_weighted_formula():
    z = torch.tensor([[0.3, -0.2], [1.0, 0.5], [-0.4, 0.9]])
    mu = torch.tensor([[0.2, 0.0], [0.8, 0.4], [-0.5, 1.0]])
    var = torch.tensor([[0.5, 1.0], [0.3, 0.6], [1.2, 0.4]])
    n, dataset = 3, 1000

    def density(x, m, v):
        return math.exp(-0.5 * (x - m) ** 2 / v) / math.sqrt(2 * math.pi * v)

    expected = 0.0
    for i in range(n):
        joint = math.log(sum(density(z[i, 0], mu[j, 0], var[j, 0]) *
                             density(z[i, 1], mu[j, 1], var[j, 1]) for j in range(n))
                         / (dataset * n))
        marginals = sum(math.log(sum(density(z[i, k], mu[j, k], var[j, k]) for j in range(n))
                                 / (dataset * n)) for k in range(2))
        expected += joint - marginals
    assert math.isclose(total_correlation(z, mu, var.log(), dataset).item(), expected,
                        rel_tol=1e-5)


def test_a_minibatch_is_split_into_disjoint_pairs_by_the_runs_seed():
    pairs = minibatch_pairs(0, 3, 1, 20)
    assert pairs.shape == (10, 2) and sorted(pairs.flatten().tolist()) == list(range(20))
    assert torch.equal(pairs, minibatch_pairs(0, 3, 1, 20))
    assert not torch.equal(pairs, minibatch_pairs(0, 4, 1, 20))


# ----------------------------------------------------------------------------- the registry

@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_class_declares_what_the_loop_config_cli_and_evaluation_ask(name):
    cls = METHODS[name]
    assert cls.name == name and cls.label and cls.summary
    assert cls.default_beta is None or cls.default_beta > 0
    config_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    flags = {p.name for p in train_main.params}
    for option in cls.options:  # recorded by the checkpoint, offered by dcign-train
        assert option.field in config_fields and option.field in flags and option.choices
    method = cls.from_settings(TrainConfig(store="s.zarr", mode=name))
    assert isinstance(method, cls) and method.describe().startswith(cls.label)
    assert isinstance(method.assigns_latents, bool)
    post = method.posterior(MU, VAR.log(), torch.tensor([True, False, False, False]), PAIR)
    assert post.mu.shape == post.logvar.shape == MU.shape and post.shared.shape == ()
    assert method.penalty(post.mu, post.mu, post.logvar, 100).shape == ()
    assert isinstance(method.logged({"bce": 1.0, "kl": 1.0, "penalty": 0.0}, {}), dict)


@dataclasses.dataclass(frozen=True)
class HalfKL(Method):
    """A toy method: the plain VAE with its KL weighed by ½ unless --beta says otherwise,
    logging its KL under a name of its own."""

    name: ClassVar[str] = "halfkl"
    label: ClassVar[str] = "Half-KL VAE"
    summary: ClassVar[str] = "a test's toy"
    default_beta: ClassVar[float | None] = 0.5

    def logged(self, per_image, shared) -> dict:
        return {"toy_kl_per_image": per_image["kl"]}


def test_a_method_class_defined_in_a_test_plugs_in_without_editing_another_module(
        runs, tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "halfkl", HalfKL)
    store = str(runs["store"])
    with pytest.raises(DcignError, match="--ada-mask apply to --mode adagvae only"):
        TrainConfig(store=store, mode="halfkl", ada_mask="oracle").validate()
    result = loop.train(train_config(store, tmp_path / "toy", mode="halfkl", steps=2,
                                     log_every=1))
    lines = [json.loads(line) for line in result.run_log.read_text().splitlines()]
    windows = [r for r in lines if "event" not in r]
    assert [r["step"] for r in windows] == [1, 2]
    for r in windows:
        assert r["toy_kl_per_image"] == r["kl_per_image"]
        assert math.isclose(r["loss_per_image"], r["bce_per_image"] + 0.5 * r["kl_per_image"])
    trained = load_trained(tmp_path / "toy", torch.device("cpu"))
    assert trained.settings == "Half-KL VAE, β=0.5" and not trained.method.assigns_latents


# ----------------------------------------------------------------------------- the CLIs

MODES = {"adagvae": [], "adagvae-oracle": ["--ada-mask", "oracle"],
         "adagvae-ml": ["--ada-average", "ml"], "betavae": [], "betatcvae": []}


# Each mode's runs checkpoint at step 2, where the halves stop and resume, and log every step.
train_mode_run = partial(train_run, checkpoint_every=2, log_every=1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("modes")
    store = write_blob_store(root / "blobs.zarr", 32, train_batches=3, test_batches=2)
    made = {}
    for name, extra in MODES.items():
        mode = name.split("-")[0]
        straight = train_mode_run(store, root / name, "--mode", mode, *extra, steps=4)
        halves = train_mode_run(store, root / f"{name}-halves", "--mode", mode, *extra, steps=2)
        train_mode_run(store, halves, steps=4, resume=True)
        made[name] = (straight, halves)
    return {"root": root, "store": store, "made": made}


@pytest.mark.parametrize("name", list(MODES))
def test_each_mode_trains_and_resumes_exactly(runs, name):
    straight, halves = (read_checkpoint(p / "checkpoint.pt") for p in runs["made"][name])
    assert straight["step"] == halves["step"] == 4
    for key, tensor in straight["model"].items():
        assert torch.equal(tensor, halves["model"][key]), key


def test_ada_gvae_logs_the_latents_it_shares_per_factor(runs):
    log = [json.loads(line) for line in (runs["made"]["adagvae"][0] / "metrics.jsonl").open()]
    shared = {k for record in log for k in record if k.startswith("shared_latents_")}
    assert shared and shared <= {f"shared_latents_{f}" for f in ("azimuth", "elevation",
                                                                   "light", "intrinsic")}
    oracle = [json.loads(line) for line in
              (runs["made"]["adagvae-oracle"][0] / "metrics.jsonl").open()]
    for record in oracle:  # the oracle shares every latent outside the factor's group
        assert record.get("shared_latents_intrinsic", 3) == 3
        assert all(record.get(f"shared_latents_{f}", 199) == 199
                   for f in ("azimuth", "elevation", "light"))


def test_one_comparison_puts_every_mode_in_one_table_with_its_settings(runs):
    out = runs["root"] / "compare"
    result = CliRunner().invoke(eval_main, [
        "--compare", *[str(p[0]) for p in runs["made"].values()], "--store", str(runs["store"]),
        "--out", str(out), "--samples", "200"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    methods = [r["method"] for r in report["runs"]]
    assert methods == ["Ada-GVAE, β=1, gvae average, threshold mask",
                       "Ada-GVAE, β=1, gvae average, oracle mask",
                       "Ada-GVAE, β=1, ml average, threshold mask", "β-VAE, β=4", "β-TCVAE, β=6"]
    assert all(set(r["novel_view"]["scores"]) == {"azimuth", "elevation", "light"}
               for r in report["runs"])
    header = result.output.splitlines()[0]
    for column in ("MIG", "DCI-D", "SAP", "FactorVAE", "novel-view MSE azimuth"):
        assert column in header


@pytest.mark.parametrize("args, words", [
    (["--mode", "betavae", "--beta", "0"], "--beta must be positive"),
    (["--beta", "4"], "--mode dcign has none"),
    (["--mode", "betavae", "--ada-mask", "oracle"], "apply to --mode adagvae only"),
    (["--mode", "betatcvae", "--minibatches-per-step", "100"], "a step of independent draws"),
])
def test_mode_options_that_do_not_apply_are_one_line_errors(runs, tmp_path, args, words):
    result = CliRunner().invoke(train_main, ["--store", str(runs["store"]), "--out",
                                             str(tmp_path / "r"), "--steps", "1", *args])
    assert_one_line_error(result, words)


def test_beta_tcvae_weighs_only_its_total_correlation_by_beta_and_beta_vae_the_whole_kl():
    """Chen et al.'s β-TCVAE minimises BCE + KL + (β − 1)·TC; β-VAE minimises BCE + β·KL."""
    from dcign.train.modes import BetaTCVAE, BetaVAE
    from dcign.train.objective import loss_of

    bce, kl, penalty = 100.0, 10.0, 3.0
    terms = torch.tensor([bce, kl, penalty, 0.0])
    assert float(loss_of(terms, BetaTCVAE(beta=6.0))) == bce + kl + penalty
    assert float(loss_of(terms, BetaVAE(beta=4.0))) == bce + 4 * kl + penalty
    z = mu = torch.zeros(4, 3)
    logvar = torch.zeros(4, 3)
    assert float(BetaTCVAE(beta=1.0).penalty(z, mu, logvar, dataset_size=100)) == 0.0
