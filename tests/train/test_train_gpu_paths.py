"""Every branch CUDA switches on runs on the CPU too: bf16 autocast, the clamp under autocast
and compiled whole, channels-last, loader worker processes, pinned memory, and checkpoints
that move between device kinds. A user's first GPU run is not where these first execute.
(Spawned loader workers giving the same steps as none: tests/train/test_train_data.py.)"""

from __future__ import annotations

import io
from functools import partial
from unittest import mock

import pytest
import torch
import torch.serialization
from conftest import train_config, train_run

import dcign.train.loop as loop
import dcign.train.objective as objective
from dcign.train.checkpoint import read_checkpoint
from dcign.train.clamping import active_mask, clamp
from dcign.train.data import StepDataset
from dcign.train.device import execution_for
from dcign.train.eval.trained import load_trained
from dcign.train.loop import build_run, train, train_step
from dcign.train.method_math import minibatch_pairs
from dcign.train.model import DCIGN
from dcign.train.objective import minibatch_noise
from dcign.train.synthetic import write_blob_store

# bf16 keeps 8 bits of mantissa (0.4% per value); over a minibatch's summed BCE and KL the
# rounding averages out to well under this.
BF16_LOSS_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    return str(write_blob_store(tmp_path_factory.mktemp("gpu") / "blobs.zarr", 32, 4, 1))


# 4-step runs that checkpoint at step 2, where the halves stop; tests override the rest.
config = partial(train_config, steps=4, checkpoint_every=2, log_every=2)


def one_minibatch_loss(run):
    kinds, images, _ = StepDataset(run.data, 0, 1)[0]
    x = images[0].unsqueeze(1).float() / 255
    if run.execution.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    terms = run.loss(x, run.masks[int(kinds[0])], minibatch_noise(0, 0, 0, (20, 200)),
                     minibatch_pairs(0, 0, 0, 20))
    terms = terms[:2]  # BCE and KL: DC-IGN has no penalty and shares no latents
    terms.sum().backward()
    grad = torch.cat([p.grad.flatten() for p in run.model.parameters()])
    return terms.detach(), grad


def test_auto_means_bf16_and_channels_last_on_cuda_and_fp32_on_a_cpu_without_amx(blobs, tmp_path):
    with mock.patch("torch.cpu._is_amx_tile_supported", return_value=False):
        cpu = execution_for(config(blobs, tmp_path))
    assert (cpu.precision, cpu.channels_last, cpu.pin_memory, cpu.workers) == (
        "fp32", False, False, 0)
    with mock.patch("torch.cuda.is_available", return_value=True):
        cuda = execution_for(config(blobs, tmp_path, workers=-1))
    assert (cuda.device.type, cuda.precision, cuda.channels_last, cuda.pin_memory,
            cuda.workers) == ("cuda", "bf16", True, True, 4)


def test_auto_means_bf16_on_a_cpu_with_amx_and_an_explicit_precision_wins(blobs, tmp_path):
    with mock.patch("torch.cpu._is_amx_tile_supported", return_value=True):
        assert execution_for(config(blobs, tmp_path)).precision == "bf16"
        assert execution_for(config(blobs, tmp_path, precision="fp32")).precision == "fp32"
    with mock.patch("torch.cpu._is_amx_tile_supported", return_value=False):
        assert execution_for(config(blobs, tmp_path, precision="bf16")).precision == "bf16"


def test_bf16_autocast_gives_the_fp32_loss_and_gradient_on_the_same_batch(blobs, tmp_path):
    fp32, g32 = one_minibatch_loss(build_run(config(blobs, tmp_path)))
    bf16, g16 = one_minibatch_loss(build_run(config(blobs, tmp_path, precision="bf16",
                                                    channels_last=True)))
    assert abs(bf16.sum() - fp32.sum()) / fp32.sum() < BF16_LOSS_TOLERANCE
    assert torch.nn.functional.cosine_similarity(g16, g32, dim=0) > 0.99


def _clamped(x, active, lam=0.01):
    x = x.detach().requires_grad_(True)
    out = clamp(x, active, "mean", lam)
    out.backward(torch.ones_like(out))
    return out, x.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_clamp_keeps_its_forward_and_backward_invariants_under_autocast(dtype):
    x = torch.randn(20, 6).to(dtype)
    active = active_mask(slice(0, 2), 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, grad = _clamped(x, active)
    exact = x.float()
    mean = exact.mean(0, keepdim=True)  # in fp32, as the clamp must take it
    assert out.dtype == torch.float32
    assert torch.equal(out[:, :2], exact[:, :2])
    assert torch.equal(out[:, 2:], mean[:, 2:].expand(20, -1))
    assert torch.equal(grad[:, :2], torch.ones(20, 2, dtype=grad.dtype))
    expected = (0.01 * (exact[:, 2:] - mean[:, 2:])).to(grad.dtype)
    assert torch.equal(grad[:, 2:], expected)


def test_the_clamp_compiles_whole_with_fullgraph_and_matches_eager_both_ways():
    x, active = torch.randn(20, 6), active_mask(slice(3, None), 6)

    def step(x, active):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return clamp(x * 2, active, "mean", 0.01)

    def forward_and_backward(fn):
        leaf = x.clone().requires_grad_(True)
        out = fn(leaf, active)
        (out * torch.arange(6.0)).sum().backward()
        return out.detach(), leaf.grad

    eager = forward_and_backward(step)
    compiled = forward_and_backward(torch.compile(step, fullgraph=True))
    for a, b in zip(compiled, eager, strict=True):  # inductor fuses the mean its own way
        assert torch.allclose(a, b, rtol=0, atol=1e-6)


def test_compiled_bf16_channels_last_training_resumes_exactly(blobs, tmp_path):
    fast = dict(compile=True, precision="bf16", channels_last=True)
    train(config(blobs, tmp_path / "straight", **fast))
    train(config(blobs, tmp_path / "halves", steps=2, **fast))
    train(config(blobs, tmp_path / "halves", **fast), resume=True)
    straight = read_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    halves = read_checkpoint(tmp_path / "halves" / "checkpoint.pt")
    assert straight["step"] == halves["step"] == 4
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, halves["model"][name]), name


def record_execution(monkeypatch) -> dict:
    """What the run really did: its loader's workers and pinning, and on the first forward
    pass the autocast dtype, the dtype of μ and the layout of a convolution's weights."""
    seen, real_loader, real_encode = {}, loop.make_loader, DCIGN.encode

    def make_loader(*args, **kwargs):
        loader = real_loader(*args, **kwargs)
        seen["loader"] = (loader.num_workers, loader.pin_memory)
        return loader

    def encode(self, x):
        mu, logvar = real_encode(self, x)
        weight = self.encoder[3].weight  # 16 input channels: its two layouts differ
        seen.setdefault("forward", (
            torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None,
            mu.dtype, weight.is_contiguous(memory_format=torch.channels_last)
            and not weight.is_contiguous()))
        return mu, logvar

    monkeypatch.setattr(loop, "make_loader", make_loader)
    monkeypatch.setattr(DCIGN, "encode", encode)
    return seen


def test_the_cli_trains_with_every_gpu_path_switched_on(blobs, tmp_path, monkeypatch):
    seen = record_execution(monkeypatch)
    train_run(blobs, tmp_path, "--steps", "3", "--log-every", "1", "--precision", "bf16",
              "--channels-last", "--workers", "2", "--pin-memory")
    assert seen["loader"] == (2, True)
    assert seen["forward"] == (torch.bfloat16, torch.bfloat16, True)


def _as_if_written_on_cuda(path):
    """Rewrite a checkpoint with every tensor's storage tagged cuda:0, as torch.save on a GPU
    machine writes it; loading it without map_location fails on a CPU-only machine."""
    state = torch.load(path, weights_only=True)
    registry = [(0, lambda _: "cuda:0", None), *torch.serialization._package_registry]
    with mock.patch.object(torch.serialization, "_package_registry", registry):
        buffer = io.BytesIO()
        torch.save(state, buffer)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(path, weights_only=True)


def test_a_checkpoint_written_on_cuda_resumes_and_evaluates_on_the_cpu(blobs, tmp_path):
    train(config(blobs, tmp_path / "straight"))
    train(config(blobs, tmp_path / "moved", steps=2))
    _as_if_written_on_cuda(tmp_path / "moved" / "checkpoint.pt")
    trained = load_trained(tmp_path / "moved", torch.device("cpu"))
    assert trained.step == 2
    train(config(blobs, tmp_path / "moved"), resume=True)
    straight = read_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    moved = read_checkpoint(tmp_path / "moved" / "checkpoint.pt")
    for name, tensor in straight["model"].items():  # no state only one device kind reads
        assert torch.equal(tensor, moved["model"][name]), name


def test_reparameterisation_noise_depends_only_on_seed_step_and_minibatch():
    a = minibatch_noise(3, 10, 1, (4, 5))
    assert torch.equal(a, minibatch_noise(3, 10, 1, (4, 5)))
    for other in ((4, 10, 1), (3, 11, 1), (3, 10, 0)):
        assert not torch.equal(a, minibatch_noise(*other, (4, 5)))


def test_a_training_step_samples_with_the_noise_of_its_seed_step_and_minibatch(
        blobs, tmp_path, monkeypatch):
    run = build_run(config(blobs, tmp_path, seed=3, minibatches_per_step=2))
    run.step = 5
    seen, real = [], objective.sample_latents
    monkeypatch.setattr(objective, "sample_latents",
                        lambda mu, logvar, eps: seen.append(eps) or real(mu, logvar, eps))
    step = StepDataset(run.data, 3, 2)[5]
    train_step(run, step)
    assert [torch.equal(eps, minibatch_noise(3, 5, place, (20, 200)))
            for eps, place in zip(seen, step.places, strict=True)] == [True, True]
