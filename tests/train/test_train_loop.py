"""The training loop: clamped steps, exact resumption, NaN stop, metrics, learning; and the
held-out measurement dcign-train hands it to run after training."""

import json
from functools import partial

import pytest
import torch
from conftest import train_config

import dcign.train.loop as loop
import dcign.train.objective as objective
from dcign.shared.errors import DcignError
from dcign.train.checkpoint import read_checkpoint
from dcign.train.cli import train_and_measure
from dcign.train.data import StepDataset
from dcign.train.loop import NonFiniteLoss, build_run, train, train_step
from dcign.train.synthetic import write_blob_store


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    return str(write_blob_store(tmp_path_factory.mktemp("loop") / "blobs.zarr", 32, 4, 1))


# 8-step runs that checkpoint at step 4, where a killed run resumes; tests override the rest.
config = partial(train_config, steps=8, checkpoint_every=4, log_every=2)


def record_posterior_means(monkeypatch) -> list[torch.Tensor]:
    """Capture the μ each minibatch hands to the sampler (i.e. after clamping)."""
    seen, original = [], objective.sample_latents

    def recording(mu, logvar, eps):
        seen.append(mu.detach().clone())
        return original(mu, logvar, eps)

    monkeypatch.setattr(objective, "sample_latents", recording)
    return seen


def test_dcign_steps_clamp_each_minibatch_outside_its_own_factors_group(blobs, tmp_path,
                                                                        monkeypatch):
    run = build_run(config(blobs, tmp_path, minibatches_per_step=4))
    seen = record_posterior_means(monkeypatch)
    step = StepDataset(run.data, 0, 4)[0]
    kinds = step.kinds
    train_step(run, step)
    assert len(set(kinds)) > 1  # several batch types in one step
    for kind, mu in zip(kinds, seen, strict=True):
        active = run.masks[kind]
        assert torch.allclose(mu[:, ~active], mu[:1, ~active].expand(20, -1))
        assert (mu[:, active].std(0) > 0).all()  # the varying factor's group is free


def test_vae_mode_trains_the_same_network_without_clamping(blobs, tmp_path, monkeypatch):
    run = build_run(config(blobs, tmp_path, mode="vae"))
    seen = record_posterior_means(monkeypatch)
    train_step(run, StepDataset(run.data, 0, 1)[0])
    assert (seen[0].std(0) > 0).all()


def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(blobs, tmp_path,
                                                                    monkeypatch):
    train(config(blobs, tmp_path / "straight"))
    straight = read_checkpoint(tmp_path / "straight" / "checkpoint.pt")

    # a run killed at step 6 keeps the step-4 checkpoint and loses only steps 5 and 6
    real_step = loop.train_step

    def dies_after_six(run, step):
        if run.step == 6:
            raise RuntimeError("killed")
        return real_step(run, step)

    monkeypatch.setattr(loop, "train_step", dies_after_six)
    with pytest.raises(RuntimeError, match="killed"):
        train(config(blobs, tmp_path / "killed"))
    assert read_checkpoint(tmp_path / "killed" / "checkpoint.pt")["step"] == 4
    monkeypatch.setattr(loop, "train_step", real_step)

    train(config(blobs, tmp_path / "killed"), resume=True)
    resumed = read_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    assert resumed["step"] == straight["step"] == 8
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    for a, b in zip(straight["optimizer"]["state"].values(),
                    resumed["optimizer"]["state"].values(), strict=True):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"],
                                                                       b["exp_avg_sq"])


def test_a_checkpoint_holds_everything_resumption_needs(blobs, tmp_path):
    train(config(blobs, tmp_path, steps=4))
    state = read_checkpoint(tmp_path / "checkpoint.pt")
    assert {"model", "optimizer", "step", "rng", "config", "store", "arch"} <= set(state)
    assert state["store"]["model_fingerprint"] == "blob-v1"
    assert state["store"]["generator"]["seed"] == 0
    assert state["config"]["lr"] == 5e-4 and state["arch"]["name"] == "small"
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, then renamed


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(blobs, tmp_path,
                                                                     monkeypatch):
    real_kl, calls = objective.kl_nats, []

    def kl_turns_nan_at_step_six(mu, logvar):
        calls.append(1)
        return real_kl(mu, logvar) * (float("nan") if len(calls) > 5 else 1.0)

    monkeypatch.setattr(objective, "kl_nats", kl_turns_nan_at_step_six)
    with pytest.raises(NonFiniteLoss, match=r"loss became nan .* at step 6; stopped, the last "
                                            r"good checkpoint is .*checkpoint.pt"):
        train(config(blobs, tmp_path))
    state = read_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 4
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_the_run_log_has_one_json_record_per_line_with_loss_and_throughput(blobs, tmp_path):
    result = train_and_measure(config(blobs, tmp_path))
    records = [json.loads(line) for line in result.run_log.read_text().splitlines()]
    steps = [r for r in records if "event" not in r]
    assert [r["step"] for r in steps] == [2, 4, 6, 8]
    assert all(r["images_per_s"] > 0 and r["elbo_per_image"] < 0 for r in steps)
    assert records[-1]["event"] == "held_out"
    assert set(records[-1]["correlations"]) == {"azimuth", "elevation", "light"}


def test_tensorboard_gets_the_metrics_scalars_and_the_reconstruction_grid(blobs, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_and_measure(config(blobs, tmp_path))
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss_per_image")] == [2, 4, 6, 8]
    assert "train/images_per_s" in events.Tags()["scalars"]
    assert [e.step for e in events.Images("reconstructions")] == [8]


def test_the_loop_alone_measures_nothing_and_runs_what_it_is_handed_once_at_the_end(
        blobs, tmp_path):
    alone = train(config(blobs, tmp_path / "alone", steps=2))
    assert alone.measured == {} and alone.figures == []
    assert not (tmp_path / "alone" / "held_out.json").exists()
    seen = []

    def after(run, log):
        seen.append((run.step, read_checkpoint(run.checkpoint_path)["step"]))
        log.log({"event": "after", "step": run.step})
        return {"answer": 42}, [run.out / "figure.png"]

    result = train(config(blobs, tmp_path / "handed", steps=2), after=after)
    assert seen == [(2, 2)]  # once, after the last checkpoint was written
    assert result.measured == {"answer": 42}
    assert result.figures == [tmp_path / "handed" / "figure.png"]
    last = json.loads(result.run_log.read_text().splitlines()[-1])
    assert last == {"event": "after", "step": 2}


def test_an_existing_run_is_not_overwritten_without_resume(blobs, tmp_path):
    train(config(blobs, tmp_path, steps=2))
    with pytest.raises(DcignError, match="already holds a run"):
        train(config(blobs, tmp_path, steps=2))


@pytest.mark.slow
def test_clamping_ties_z1_to_azimuth_and_z2_to_elevation_where_a_plain_vae_does_not(tmp_path):
    store = str(write_blob_store(tmp_path / "b.zarr", 32, 30, 3, seed=1))
    # blobs' light only tilts their shading, too faint to learn in seconds: leave it out
    budget = dict(steps=500, checkpoint_every=1000, ratio="1:1:0:2")  # 300: r 0.4-0.97 by seed
    dcign = train_and_measure(config(store, tmp_path / "dcign", **budget)).measured
    vae = train_and_measure(config(store, tmp_path / "vae", mode="vae", **budget)).measured
    dcign, vae = dcign["correlations"], vae["correlations"]
    assert abs(dcign["azimuth"]["r"]) > 0.9 and abs(dcign["elevation"]["r"]) > 0.9, dcign
    assert min(abs(vae["azimuth"]["r"]), abs(vae["elevation"]["r"])) < 0.9, vae
