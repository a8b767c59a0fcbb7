"""A training run's configuration: `TrainConfig.validate` refuses what no run can use, in one
line each and before anything is opened or built, and every `dcign-train` default is
TrainConfig's."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from dcign.shared.cli import default_of
from dcign.shared.errors import DcignError
from dcign.train.cli import main as train_main
from dcign.train.config import TrainConfig

NOWHERE = "no/such/store.zarr"  # validation never opens the store


@pytest.mark.parametrize("fields, words", [
    ({"mode": "sgvb"}, "unknown mode 'sgvb' (choose dcign, vae, adagvae, betavae, betatcvae)"),
    ({"mode": "betavae", "beta": 0.0}, "--beta must be positive (got 0.0)"),
    ({"beta": 4.0}, "--beta is a setting of adagvae, betavae, betatcvae; --mode dcign has "
                    "none"),
    ({"mode": "betavae", "ada_mask": "oracle"},
     "--ada-mask apply to --mode adagvae only (this run is betavae)"),
    ({"ada_average": "ml", "ada_mask": "oracle"},
     "--ada-average and --ada-mask apply to --mode adagvae only (this run is dcign)"),
    ({"mode": "adagvae", "ada_mask": "psychic"},
     "unknown --ada-mask 'psychic' (choose threshold, oracle)"),
    ({"clamp": "median"}, "unknown clamping rule 'median' (choose mean or first)"),
    ({"steps": 0}, "--steps must be at least 1 (got 0)"),
    ({"minibatches_per_step": 0}, "--minibatches-per-step must be at least 1 (got 0)"),
    ({"log_every": 0}, "--log-every must be at least 1 (got 0)"),
    ({"checkpoint_every": -1}, "--checkpoint-every must be at least 1 (got -1)"),
    ({"lr": 0.0}, "--lr must be positive and --invariance non-negative (got 0.0 and 0.01)"),
    ({"invariance": -1.0}, "--lr must be positive and --invariance non-negative"),
    ({"optimizer": "sgd"}, "unknown optimizer 'sgd' (choose adam or rmsprop)"),
    ({"precision": "fp8"}, "--precision 'fp8': choose auto, fp32, bf16"),
    ({"latent_groups": ("azimuth",)}, "--latent-group 'azimuth' is not FACTOR=N"),
])
def test_validate_refuses_each_unusable_option_in_one_line_before_opening_the_store(
        fields, words):
    with pytest.raises(DcignError) as caught:
        TrainConfig(store=NOWHERE, **fields).validate()
    assert words in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("fields", [
    {}, {"mode": "vae"}, {"mode": "betatcvae", "beta": 2.0},
    {"mode": "adagvae", "ada_average": "ml", "ada_mask": "oracle"},
    {"clamp": "first", "invariance": 0.0, "optimizer": "rmsprop", "precision": "bf16",
     "latent_groups": ("azimuth=2",)},
])
def test_validate_accepts_every_usable_combination(fields):
    TrainConfig(store=NOWHERE, **fields).validate()


def test_every_dcign_train_default_is_train_configs_out_included():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    options = {p.name: p.default for p in train_main.params
               if p.name in fields and not p.required}
    # --store is required, --no-progress inverts progress, Adam's β₁ and β₂ have no flag
    assert set(options) == fields - {"store", "progress", "beta1", "beta2"}
    for name, default in options.items():
        assert default == default_of(TrainConfig, name), name


def test_the_default_run_directory_is_named_after_the_store_and_the_mode():
    assert TrainConfig(store="datasets/faces64.zarr", mode="vae").out == "runs/faces64-vae"
    assert TrainConfig(store="s3://bucket/chairs.zarr").out == "runs/chairs-dcign"
    assert TrainConfig(store="x.zarr", out="elsewhere").out == "elsewhere"


def test_the_command_reads_its_flags_from_the_methods_without_importing_torch():
    code = ("import sys; import dcign.train.cli; "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
