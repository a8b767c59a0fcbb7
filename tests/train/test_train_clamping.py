"""Clamping (paper §3.1) and invariance targeting (§3.2), checked against hand computations."""

import torch

from dcign.train.clamping import active_mask, clamp

X = torch.tensor([[1.0, 2.0, 3.0],
                  [3.0, 6.0, 0.0],
                  [5.0, 1.0, 6.0]])  # 3 images, 3 latents; batch means 3, 3, 3
ACTIVE = torch.tensor([True, False, False])  # latent 0 is the varying factor's group


def test_forward_replaces_clamped_latents_by_their_batch_mean():
    out = clamp(X, ACTIVE, "mean", 0.01)
    assert torch.equal(out[:, 0], X[:, 0])
    assert torch.equal(out[:, 1:], torch.full((3, 2), 3.0))


def test_first_rule_copies_the_first_samples_value_as_the_released_code_did():
    out = clamp(X, ACTIVE, "first", 0.0)
    assert torch.equal(out[:, 0], X[:, 0])
    assert torch.equal(out[:, 1:], X[:1, 1:].expand(3, 2))


def test_backward_passes_the_active_gradient_and_gives_clamped_latents_lambda_times_deviation():
    x = X.clone().requires_grad_()
    upstream = torch.tensor([[0.5, 9.0, 9.0], [-1.0, 9.0, 9.0], [2.0, 9.0, 9.0]])
    clamp(x, ACTIVE, "mean", 0.01).backward(upstream)
    # by hand: column 0 unchanged; columns 1, 2: 0.01 · (x − 3), the upstream 9s discarded
    expected = torch.tensor([[0.5, -0.01, 0.00],
                             [-1.0, 0.03, -0.03],
                             [2.0, -0.02, 0.03]])
    torch.testing.assert_close(x.grad, expected)


def test_the_invariance_gradient_is_the_same_under_the_first_sample_rule():
    x = X.clone().requires_grad_()
    clamp(x, ACTIVE, "first", 0.5).sum().backward()
    torch.testing.assert_close(x.grad[:, 1:], 0.5 * (X[:, 1:] - 3.0))


def test_lambda_zero_gives_clamped_latents_no_gradient_as_in_the_released_default():
    x = X.clone().requires_grad_()
    clamp(x, ACTIVE, "mean", 0.0).pow(2).sum().backward()
    assert torch.equal(x.grad[:, 1:], torch.zeros(3, 2))
    torch.testing.assert_close(x.grad[:, 0], 2 * X[:, 0])


def test_a_descent_step_pulls_clamped_latents_toward_their_batch_mean():
    x = X.clone().requires_grad_()
    clamp(x, ACTIVE, "mean", 0.1).sum().backward()
    stepped = X - x.grad
    assert (stepped[:, 1:].std(0) < X[:, 1:].std(0)).all()
    torch.testing.assert_close(stepped[:, 1:].mean(0), X[:, 1:].mean(0))


def test_active_mask_covers_exactly_the_factors_latent_group():
    mask = active_mask(slice(3, 200), 200)
    assert mask.sum() == 197 and not mask[:3].any()
