"""The network: paper150 is exactly the released 150×150 DC-IGN; `small` fits other sizes."""

import pytest
import torch

from dcign.shared.errors import DcignError
from dcign.train.model import (
    DCIGN,
    PAPER150,
    Architecture,
    architecture_for,
    count_parameters,
    small,
)


def test_paper150_has_the_released_layer_shapes():
    model = DCIGN(PAPER150)
    x = torch.zeros(2, 1, 150, 150)
    shapes = []
    for layer in model.encoder:
        x = layer(x)
        if isinstance(layer, torch.nn.ReLU):
            shapes.append(tuple(x.shape[1:]))
    assert shapes == [(96, 73, 73), (48, 34, 34), (24, 15, 15)]
    assert tuple(x.shape) == (2, 5400)
    assert model.to_mu.weight.shape == model.to_logvar.weight.shape == (200, 5400)

    z = model.from_z(torch.zeros(2, 200)).view(-1, 24, 15, 15)
    sizes = []
    for layer in model.decoder:
        z = layer(z)
        if isinstance(layer, torch.nn.Conv2d):
            assert layer.kernel_size == (7, 7) and layer.padding == (0, 0)
            sizes.append((z.shape[1], z.shape[2]))
    assert sizes == [(48, 24), (96, 42), (96, 78), (1, 150)]


def test_paper150_has_the_released_parameter_count():
    # conv 2496 + 115248 + 28824, heads 2·1080200, decoder linear 1085400,
    # deconv 56496 + 225888 + 451680 + 4705
    assert count_parameters(DCIGN(PAPER150)) == 4_131_137


@pytest.mark.parametrize("size", [32, 64, 128])
def test_small_family_decodes_images_of_its_own_size(size):
    model = DCIGN(small(size))
    mu, logvar = model.encode(torch.rand(3, 1, size, size))
    assert mu.shape == logvar.shape == (3, 200)
    out = model.reconstruct(torch.rand(3, 1, size, size))
    assert out.shape == (3, 1, size, size)
    assert 0 <= out.min() and out.max() <= 1


def test_auto_architecture_is_paper150_only_at_150_pixels():
    assert architecture_for("auto", 150) == PAPER150
    assert architecture_for("auto", 64).name == "small"


def test_paper150_refuses_another_image_size():
    with pytest.raises(DcignError, match="paper150 needs 150×150"):
        architecture_for("paper150", 64)


def test_small_refuses_a_size_it_cannot_decode():
    with pytest.raises(DcignError, match="divisible by 8"):
        small(60)


def test_a_mirror_odd_latent_changes_sign_when_the_image_is_mirrored_and_keeps_its_variance():
    torch.manual_seed(0)
    model = DCIGN(architecture_for("small", 32, mirror_odd=(0, 2)))
    x = torch.rand(3, 1, 32, 32)
    mu, logvar = model.encode(x)
    mu_mirrored, logvar_mirrored = model.encode(x.flip(-1))
    assert torch.allclose(mu_mirrored[:, [0, 2]], -mu[:, [0, 2]], atol=1e-7)
    assert torch.allclose(logvar_mirrored[:, [0, 2]], logvar[:, [0, 2]], atol=1e-7)
    # the other latents stay free: a mirror changes them without any sign rule
    assert not torch.allclose(mu_mirrored[:, 1], -mu[:, 1], atol=1e-4)
    assert not torch.allclose(mu_mirrored[:, 1], mu[:, 1], atol=1e-4)


def test_mirror_odd_latents_share_the_weights_of_the_plain_network():
    plain, odd = DCIGN(PAPER150), DCIGN(architecture_for("paper150", 150, mirror_odd=(0,)))
    assert count_parameters(odd) == count_parameters(plain)
    assert odd.state_dict().keys() == plain.state_dict().keys()


def test_an_architecture_recorded_before_mirror_odd_existed_reads_as_the_plain_one():
    recorded = small(64).to_dict()
    del recorded["mirror_odd"]
    assert Architecture.from_dict(recorded) == small(64)
