"""VQGAN: hinge losses by hand, the adaptive weight against the analytic gradients of a
linear layer, one backward giving each player exactly its own gradient, the start step,
the PatchGAN's receptive field and the perceptual loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from genlab.nets.receptive_field import receptive_fields
from genlab.tokens.nets import conv_pair
from genlab.tokens.quantizers import FSQ
from genlab.tokens.vqgan import (
    VQGAN,
    adaptive_weight,
    hinge_d_loss,
    hinge_g_loss,
    patch_discriminator,
    perceptual_distance,
)


def test_hinge_losses_match_hand_values() -> None:
    real = torch.tensor([[0.5, 2.0], [-1.0, 0.0]]).view(2, 1, 1, 2)
    fake = torch.tensor([[-2.0, 0.5], [0.0, -0.5]]).view(2, 1, 1, 2)
    # relu(1 - real): (0.5, 0) and (2, 1); relu(1 + fake): (0, 1.5) and (1, 0.5)
    torch.testing.assert_close(hinge_d_loss(real, fake), torch.tensor([0.25 + 0.75, 1.5 + 0.75]))
    torch.testing.assert_close(hinge_g_loss(fake), torch.tensor([0.75, 0.25]))


def test_adaptive_weight_is_the_ratio_of_analytic_gradient_norms() -> None:
    """For out = W u: rec = mean((out - y)^2) has gradient 2/n (out - y) u^T; gan =
    -mean(v . out) has gradient -v u^T / n (n = batch x outputs for rec, batch for gan)."""
    torch.manual_seed(0)
    w = torch.randn(3, 4, requires_grad=True)
    u, y, v = torch.randn(5, 4), torch.randn(5, 3), torch.randn(5, 3)
    out = u @ w.T  # (5, 3)
    rec = (out - y).square().mean()
    gan = -(v * out).sum(1).mean()
    g_rec = 2 / 15 * (out - y).detach().T @ u
    g_gan = -v.T @ u / 5
    expected = g_rec.norm() / (g_gan.norm() + 1e-6)
    torch.testing.assert_close(adaptive_weight(rec, gan, w), expected)
    assert adaptive_weight(rec, gan, w, max_weight=1e-3) == pytest.approx(1e-3)
    rec.backward()  # the graphs were kept for the training backward
    torch.testing.assert_close(w.grad, g_rec)


def _vqgan(**kwargs) -> VQGAN:
    torch.manual_seed(0)
    disc = patch_discriminator((1, 8, 8), channels=4)
    return VQGAN(*conv_pair(1, 3, channels=8), FSQ((4, 4, 4)), (1, 8, 8), 17,
                 discriminator=disc, **kwargs)  # fmt: skip


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_one_backward_gives_each_player_exactly_its_own_gradient() -> None:
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    model = _vqgan(disc_start=0, disc_weight=0.7, perceptual_weight=0.5).train()
    model.loss(x).mean().backward()  # what the trainer does
    both = _grads(model)
    disc = {n for n in both if n.startswith("discriminator.")}
    assert disc and len(both) > len(disc)
    # the discriminator alone: its hinge loss on the detached reconstructions
    model.zero_grad()
    x_hat = model.parts(x).mean.detach()
    hinge_d_loss(model.discriminator(x), model.discriminator(x_hat)).mean().backward()
    alone = _grads(model)
    assert set(alone) == disc
    for n in disc:
        torch.testing.assert_close(both[n], alone[n])
    # the generator alone: reconstruction + perceptual + lambda w_d L_G with D frozen
    model.zero_grad()
    model.discriminator.requires_grad_(False)
    p = model.parts(x)
    rec = model.reconstruction_loss(x, p) + 0.5 * perceptual_distance(x, p.mean)
    g = hinge_g_loss(model.discriminator(p.mean))
    lam = adaptive_weight(rec.mean(), g.mean(), model.decoder.last_layer.weight)
    (rec + p.quantized.loss + 0.7 * lam * g).mean().backward()
    gen = _grads(model)
    assert set(gen) == set(both) - disc
    for n in gen:
        torch.testing.assert_close(both[n], gen[n])


def test_adversarial_terms_start_at_disc_start_and_only_in_training() -> None:
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    model = _vqgan(disc_start=2).train()
    for step in range(3):
        model.zero_grad()
        model.loss(x).mean().backward()
        trained = model.discriminator.net[0].weight.grad is not None
        assert trained == (step >= 2), step
    assert int(model.step) == 3 and "step" in model.state_dict()
    model.eval()
    p = model.parts(x)
    torch.testing.assert_close(model.loss(x), model.reconstruction_loss(x, p) + p.quantized.loss)


@pytest.mark.parametrize(("side", "layers", "field"), [(8, 1, 5), (32, 3, 17)])
def test_patch_depth_is_the_deepest_with_a_patch_within_the_fraction(
    side: int, layers: int, field: int
) -> None:
    """3x3 convolutions, stride 2 while the map exceeds 4x4: field 3, 5, 9, 17, 33 ...;
    at most 3/4 of the side: 5 on 8x8 (4x4 patches), 17 on 32x32 (4x4 patches)."""
    disc = patch_discriminator((1, side, side))
    assert disc.layers == layers
    info = receptive_fields(disc, (1, side, side))[-1]
    assert info.size == (field, field) and info.out_shape == (4, 4)
    deeper = receptive_fields(patch_discriminator((1, side, side), layers=layers + 1),
                              (1, side, side))[-1]  # fmt: skip
    assert deeper.size[0] > 0.75 * side


def test_perceptual_distance_is_zero_only_for_equal_images_and_frozen() -> None:
    torch.manual_seed(0)
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).requires_grad_(True)
    torch.testing.assert_close(perceptual_distance(x, x), torch.zeros(3))
    d = perceptual_distance(x, y)
    assert bool((d > 0).all())
    d.sum().backward()
    assert y.grad is not None and bool(y.grad.abs().sum() > 0)
    model = _vqgan(perceptual_weight=1.0)
    assert not any("conv1" in k or "fc." in k for k in model.state_dict())
    with pytest.raises(ValueError, match="1x8x8"):
        VQGAN(*conv_pair(1, 3), FSQ((4, 4, 4)), (1, 16, 16), 17,
              discriminator=patch_discriminator((1, 16, 16)), perceptual_weight=1.0)  # fmt: skip


def test_resume_is_exact_across_the_discriminator_start(tmp_path) -> None:
    """Training 6 steps at once equals 3 steps, a checkpoint, and 3 more: the step counter,
    the codebook statistics and the restarts are part of the saved state."""
    from safetensors.torch import load_file

    from genlab.tokens.vq import VectorQuantizer
    from genlab.train import TrainConfig, fit
    from genlab.train.checkpoint import MODEL_FILE

    def model() -> VQGAN:
        torch.manual_seed(0)
        quantizer = VectorQuantizer(4, 8, codebook_dim=2, cosine=True, dead_after=1,
                                    gradient="rotation")  # fmt: skip
        return VQGAN(*conv_pair(1, 4, channels=4), quantizer, (1, 8, 8), 17,
                     discriminator=patch_discriminator((1, 8, 8), channels=4),
                     disc_start=4, perceptual_weight=1.0)  # fmt: skip

    data = torch.randint(0, 17, (40, 1, 8, 8)).float() / 8 - 1
    cfg = TrainConfig(steps=6, batch_size=8, checkpoint_every=3, progress=False, warmup_steps=1)
    straight = fit(model(), data, cfg, tmp_path / "a").checkpoint
    fit(model(), data, cfg.model_copy(update={"steps": 3}), tmp_path / "b")
    resumed = fit(model(), data, cfg, tmp_path / "b", resume=True).checkpoint
    a, b = load_file(str(straight / MODEL_FILE)), load_file(str(resumed / MODEL_FILE))
    assert int(a["step"]) == 6 and a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
