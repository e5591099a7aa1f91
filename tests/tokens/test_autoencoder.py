"""The tokenizer model: the tokenizer interface, the protocol's network, a normalised
decoder likelihood (enumerated), a scale term that trains only the scale, and `sample`
drawing codes from the usage histogram."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from genlab.tokens.autoencoder import VQAutoencoder
from genlab.tokens.nets import conv_pair, resnet_pair
from genlab.tokens.protocol import Tokenizer
from genlab.tokens.quantizers import FSQ
from genlab.tokens.vq import VectorQuantizer


def _tiny(log_scale: str = "predicted", **kwargs) -> VQAutoencoder:
    """2x2 images of 3 levels, a 1x1 grid of FSQ codes (K = 3)."""
    torch.manual_seed(0)
    model = VQAutoencoder(*conv_pair(1, 1, channels=4), FSQ((3,)), (1, 2, 2), 3,
                          log_scale=log_scale, **kwargs)  # fmt: skip
    with torch.no_grad():  # a non-trivial scale head and location
        for p in model.log_scale.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def test_the_model_is_a_tokenizer_with_its_grid_and_codebook() -> None:
    model = VQAutoencoder(*resnet_pair(1, 8, channels=8), VectorQuantizer(8, 16), (1, 8, 8), 17)
    assert isinstance(model, Tokenizer)
    assert model.codebook_size == 16 and model.grid == (4, 4)
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    codes = model.encode(x)
    assert codes.shape == (3, 4, 4) and codes.dtype == torch.int64
    assert model.decode(codes).shape == (3, 1, 8, 8)
    assert model.decoder_log_prob(x, codes).shape == (3,)
    with pytest.raises(ValueError, match="0..15"):
        model.decode(torch.full((1, 4, 4), 16))


def test_conv_architecture_is_the_protocols_network() -> None:
    """Encoder Conv(1->32, 3, pad 1) SiLU, Conv(32->32, 4, stride 2, pad 1) SiLU,
    Conv(32->32, 3, pad 1) SiLU, Conv(32->z, 1); decoder Conv(z->32, 3) SiLU,
    ConvTranspose(32->32, 4, stride 2, pad 1) SiLU, Conv(32->32, 3) SiLU, Conv(32->1, 3)."""
    enc, dec = conv_pair(1, 32)

    def spec(m: nn.Module) -> tuple:
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            return (type(m).__name__, m.in_channels, m.out_channels, m.kernel_size[0],
                    m.stride[0], m.padding[0])  # fmt: skip
        return (type(m).__name__,)

    conv, convt, silu = "Conv2d", "ConvTranspose2d", ("SiLU",)
    expected = [(conv, 1, 32, 3, 1, 1), silu, (conv, 32, 32, 4, 2, 1), silu,
                (conv, 32, 32, 3, 1, 1), silu, (conv, 32, 32, 1, 1, 0)]  # fmt: skip
    assert [spec(m) for m in enc] == expected
    layers = [*dec.body, dec.last_layer]
    assert [spec(m) for m in layers] == [(conv, 32, 32, 3, 1, 1), silu, (convt, 32, 32, 4, 2, 1),
                                         silu, (conv, 32, 32, 3, 1, 1), silu,
                                         (conv, 32, 1, 3, 1, 1)]  # fmt: skip


@pytest.mark.parametrize("log_scale", ["global", "pixel", "predicted"])
def test_decoder_likelihood_is_a_probability_of_the_discrete_pixels(log_scale: str) -> None:
    """Summed over all 3^4 images of 2x2 pixels with 3 levels, p(x | codes) is 1."""
    model = _tiny(log_scale)
    grid = torch.tensor([-1.0, 0.0, 1.0])
    images = torch.tensor(list(itertools.product(grid.tolist(), repeat=4))).view(81, 1, 2, 2)
    for code in range(3):
        codes = torch.full((81, 1, 1), code)
        total = model.decoder_log_prob(images, codes).double().exp().sum()
        torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64))


def test_scale_term_trains_only_the_scale() -> None:
    """With reconstruction "mse" the loss is MSE + aux - w ln p(x | sg(mean)) / D: the
    encoder and decoder get the gradient of the MSE alone."""
    x = torch.tensor([[-1.0, 0.0], [1.0, 1.0]]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    grads = {}
    for weight in (0.0, 1.0):
        model = _tiny(scale_weight=weight)
        loss = model.loss(x)
        p = model.parts(x)
        mse = (p.mean - x).square().flatten(1).mean(1)
        nll = -model.pixel_log_prob(x, p.mean, model.log_scale(p.features)) / 4
        torch.testing.assert_close(loss, mse + weight * nll)
        loss.sum().backward()
        grads[weight] = [q.grad.clone() for q in [*model.encoder.parameters(),
                                                  *model.decoder.parameters()]]  # fmt: skip
        assert (model.log_scale.value.grad is not None) == (weight > 0)
    for a, b in zip(grads[0.0], grads[1.0], strict=True):
        torch.testing.assert_close(a, b)


def test_nll_reconstruction_is_the_per_pixel_negative_log_likelihood() -> None:
    model = _tiny(reconstruction="nll")
    x = torch.tensor([[-1.0, 0.0], [1.0, 1.0]]).view(1, 1, 2, 2)
    codes = model.encode(x)
    torch.testing.assert_close(model.loss(x), -model.decoder_log_prob(x, codes) / 4)


def test_training_counts_steps_and_code_usage_and_sample_draws_from_it() -> None:
    model = _tiny(usage_decay=0.5)
    x = torch.tensor([[-1.0, 0.0], [1.0, 1.0]]).view(1, 1, 2, 2)
    model.loss(x)  # eval mode: nothing is counted
    assert int(model.step) == 0 and float(model.code_usage.sum()) == 0
    torch.testing.assert_close(model.code_distribution(), torch.full((3,), 1 / 3).double())
    code = int(model.encode(x))
    model.train().loss(x)
    model.train().loss(x)
    expected = torch.zeros(3)
    expected[code] = 0.75  # 0 -> 0.5 -> 0.75
    assert int(model.step) == 2
    torch.testing.assert_close(model.code_usage, expected)
    model.eval()
    draws = model.sample(5, generator=torch.Generator().manual_seed(0))
    only = model.decode(torch.full((5, 1, 1), code)).clamp(-1, 1)
    torch.testing.assert_close(draws, only)
    assert {"step", "code_usage"} <= set(model.state_dict())
