"""Quantizers on hand-computable cases: the straight-through identity, the rotation trick's
rotation, the VQ-VAE loss gradients (beta on the encoder term), the EMA codebook update,
k-means initialisation, dead-code restart, FSQ's index <-> grid bijection, fp32 under bf16
autocast and the Gumbel quantizer's annealing."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.tokens.quantizers import FSQ, GumbelQuantizer, rotation_trick, straight_through
from genlab.tokens.vq import VectorQuantizer, ema_codebook_update, kmeans


def _vq(codebook: torch.Tensor, **kwargs) -> VectorQuantizer:
    """A VectorQuantizer whose codebook is `codebook` (K, d), no k-means, no projections."""
    k, d = codebook.shape
    q = VectorQuantizer(d, k, kmeans_iters=0, **kwargs)
    q.codebook.data.copy_(codebook)
    q.ema_sum.copy_(codebook)
    return q


def _grid(vectors: torch.Tensor) -> torch.Tensor:
    """Vectors (N, d) as latents (1, d, 1, N)."""
    return vectors.T[None, :, None, :].clone()


def test_straight_through_has_the_value_of_q_and_the_identity_jacobian() -> None:
    z = torch.randn(3, 5, requires_grad=True)
    q = torch.randn(3, 5)
    out = straight_through(z, q)
    torch.testing.assert_close(out, q)
    w = torch.randn(3, 5)
    (grad,) = torch.autograd.grad((w * out).sum(), z)
    torch.testing.assert_close(grad, w)  # d out / d z = I


def test_rotation_trick_is_the_scaled_rotation_of_z_onto_q() -> None:
    torch.manual_seed(0)
    z, q = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    out = rotation_trick(z, q)
    torch.testing.assert_close(out, q)
    jac = torch.autograd.functional.jacobian(lambda v: rotation_trick(v, q), z)  # (4, 4)
    lam = q.norm() / z.norm()
    rot = jac / lam
    torch.testing.assert_close(rot.T @ rot, torch.eye(4, dtype=torch.float64))  # orthogonal
    torch.testing.assert_close(torch.linalg.det(rot), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(rot @ (z / z.norm()), q / q.norm())  # takes z^ to q^
    # it acts only in the plane of z and q: a vector orthogonal to both is unchanged
    basis = torch.linalg.qr(torch.stack([z, q, torch.randn(4, dtype=torch.float64)], 1))[0]
    w = basis[:, 2]
    torch.testing.assert_close(rot @ w, w)


def test_vq_loss_gradients_put_beta_on_the_encoder_term() -> None:
    """loss = beta ||z - sg(e)||^2 + ||sg(z) - e||^2, averaged over the n = positions x d
    numbers: d/dz = 2 beta (z - e) / n, d/de = 2 (e - z) / n (van den Oord et al., eq. 3)."""
    codebook = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    q = _vq(codebook, ema_decay=0.0, beta=0.3).eval()
    vectors = torch.tensor([[0.2, -0.1], [0.9, 1.4], [0.7, 0.8]])  # nearest: 0, 1, 1
    z = _grid(vectors).requires_grad_(True)
    out = q(z)
    assert out.codes.flatten().tolist() == [0, 1, 1]
    out.loss.sum().backward()
    e = codebook[[0, 1, 1]]
    n = vectors.numel()
    torch.testing.assert_close(z.grad, _grid(2 * 0.3 * (vectors - e) / n))
    expected = torch.zeros(2, 2).index_add_(0, torch.tensor([0, 1, 1]), 2 * (e - vectors) / n)
    torch.testing.assert_close(q.codebook.grad, expected)


def test_vq_output_is_the_code_with_the_straight_through_gradient() -> None:
    codebook = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    q = _vq(codebook, ema_decay=0.0).eval()
    z = _grid(torch.tensor([[0.2, -0.1], [0.9, 1.4]])).requires_grad_(True)
    out = q(z)
    torch.testing.assert_close(out.z_q, _grid(codebook))
    w = torch.randn_like(z)
    (grad,) = torch.autograd.grad((w * out.z_q).sum(), z)
    torch.testing.assert_close(grad, w)


def test_ema_codebook_update_matches_a_hand_computation() -> None:
    """decay 1/2, eps 0.1: n = (2, 1); N = 1/2 (1, 1) + 1/2 (2, 1) = (1.5, 1);
    m_0 = 1/2 (0, 0) + 1/2 (4, 0) = (2, 0), m_1 = 1/2 (1, 1) + 1/2 (1, 1) = (1, 1);
    N~ = (N + 0.1) / (2.5 + 0.2) * 2.5."""
    count = torch.tensor([1.0, 1.0])
    total = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    z = torch.tensor([[1.0, 0.0], [3.0, 0.0], [1.0, 1.0]])
    codes = torch.tensor([0, 0, 1])
    new = ema_codebook_update(count, total, z, codes, decay=0.5, eps=0.1)
    torch.testing.assert_close(count, torch.tensor([1.5, 1.0]))
    torch.testing.assert_close(total, torch.tensor([[2.0, 0.0], [1.0, 1.0]]))
    smoothed = torch.tensor([1.6, 1.1]) / 2.7 * 2.5
    torch.testing.assert_close(new, torch.tensor([[2.0, 0.0], [1.0, 1.0]]) / smoothed[:, None])


def test_training_forward_applies_the_ema_update_and_eval_changes_nothing() -> None:
    """Codes (0, 0, 1); N = (1.5, 1), m = ((2, 0), (4, 4)) as in the hand computation above."""
    codebook = torch.tensor([[0.0, 0.0], [4.0, 4.0]])
    z = _grid(torch.tensor([[1.0, 0.0], [3.0, 0.0], [4.0, 4.0]]))
    q = _vq(codebook, ema_decay=0.5, eps=1e-12)
    assert q.eval()(z).codes.flatten().tolist() == [0, 0, 1]
    torch.testing.assert_close(q.codebook, codebook)  # eval: no update
    q.train()(z)
    torch.testing.assert_close(q.codebook, torch.tensor([[2.0 / 1.5, 0.0], [4.0, 4.0]]))


def test_kmeans_initialisation_finds_separated_clusters() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    points = centres.repeat_interleave(50, 0) + 0.1 * torch.randn(150, 2, generator=g)
    found, counts = kmeans(points, 3, iters=10, generator=g)
    means = points.view(3, 50, 2).mean(1)
    order = torch.cdist(means, found).argmin(1)
    assert sorted(order.tolist()) == [0, 1, 2] and counts.tolist() == [50.0] * 3
    torch.testing.assert_close(found[order], means)
    torch.manual_seed(1)  # the same through the quantizer's first training batch
    q = VectorQuantizer(2, 3, kmeans_iters=10).train()
    q(_grid(points))
    assert bool(q.initialized)
    torch.testing.assert_close(q.codebook[torch.cdist(means, q.codebook).argmin(1)], means)


def test_dead_code_restart_revives_unused_codes() -> None:
    """Codes 2 and 3 sit far from the data and are never chosen; after `dead_after` training
    steps they are reset to encoder outputs, which then use them."""
    data = torch.tensor([[1.0, 0.0], [1.1, 0.0], [-1.0, 0.0], [-1.1, 0.0], [0.0, 3.0], [0.0, -3.0]])
    codebook = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [50.0, 50.0], [-50.0, 50.0]])
    q = _vq(codebook, ema_decay=0.0, dead_after=2).train()
    torch.manual_seed(0)
    q(_grid(data))
    assert q.idle.tolist() == [0, 0, 1, 1]
    q(_grid(data))  # idle reaches 2: restart
    assert q.idle.tolist() == [0, 0, 0, 0]
    for row in q.codebook[2:]:  # each revived code is one of the batch's vectors
        assert bool((row == data).all(1).any())
    counts = torch.bincount(q.eval().codes(_grid(data)).flatten(), minlength=4)
    assert bool((counts[2:] > 0).all()), counts


@pytest.mark.parametrize("levels", [(8, 5, 5, 5), (8, 4, 4), (2, 3)])
def test_fsq_indices_and_grid_points_are_a_bijection(levels: tuple[int, ...]) -> None:
    fsq = FSQ(levels)
    k = math.prod(levels)
    assert fsq.codebook_size == k
    codes = torch.arange(k)
    grid = fsq.codes_to_grid(codes)  # (K, d)
    assert torch.equal(fsq.grid_to_codes(grid), codes)
    assert torch.unique(grid, dim=0).shape[0] == k
    assert bool((grid.abs() <= 1).all())
    # the latents of the codes quantize back to the same codes
    z = torch.atanh(((grid * fsq._half_width + fsq._offset) / fsq._half_l).clamp(-0.999, 0.999))
    z = z - fsq._shift
    assert torch.equal(fsq.codes(z.T[None, :, None, :]).flatten(), codes)


@pytest.mark.parametrize("level", [2, 3, 4, 5, 8])
def test_fsq_bound_rounds_to_exactly_the_level_count(level: int) -> None:
    fsq = FSQ((level,))
    z = torch.linspace(-20, 20, 100_001)[:, None]
    values = torch.round(fsq.bound(z)).unique()
    assert values.tolist() == list(range(-(level // 2), (level - 1) // 2 + 1))


def test_fsq_has_no_loss_and_passes_gradients_straight_through() -> None:
    fsq = FSQ((5, 5)).train()
    z = torch.randn(2, 2, 3, 3, requires_grad=True)
    out = fsq(z)
    assert torch.equal(out.loss, torch.zeros(2))
    out.z_q.sum().backward()
    # rounding is skipped in the backward pass: d/dz [tanh(z) h / (L // 2)], s = o = 0 for L = 5
    h = 4 * (1 - 1e-3) / 2
    expected = (1 - torch.tanh(z.detach()).square()) * h / 2
    torch.testing.assert_close(z.grad, expected)


@pytest.mark.parametrize(
    "make",
    [
        lambda: VectorQuantizer(6, 16, codebook_dim=3, cosine=True, gradient="rotation"),
        lambda: VectorQuantizer(6, 16, ema_decay=0.0),
        lambda: FSQ((8, 5, 5), dim=6),
        lambda: GumbelQuantizer(6, 16),
    ],
)
def test_quantizers_run_in_float32_under_bf16_autocast(make) -> None:
    torch.manual_seed(0)
    q = make().train()
    z = torch.randn(2, 6, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = torch.nn.functional.linear(z.permute(0, 2, 3, 1), torch.eye(6))  # a bf16 tensor
        assert h.dtype == torch.bfloat16
        out = q(h.permute(0, 3, 1, 2))
    assert out.z_q.dtype == torch.float32 and out.loss.dtype == torch.float32
    q.eval()
    z_bf16 = h.permute(0, 3, 1, 2).float()
    assert torch.equal(q.codes(z_bf16), out.codes)  # the codes of the fp32 lookup


def test_gumbel_temperature_anneals_and_hard_samples_are_one_hot() -> None:
    q = GumbelQuantizer(4, 8, tau0=2.0, tau_min=0.5, rate=0.01, hard=True)
    assert q.temperature(0) == 2.0
    assert q.temperature(100) == pytest.approx(2.0 * math.exp(-1.0))
    assert q.temperature(10_000) == 0.5
    torch.manual_seed(0)
    z = torch.randn(3, 4, 2, 2)
    out = q.train()(z, step=50)
    z_q = out.z_q.permute(0, 2, 3, 1).reshape(-1, 4)  # every output is exactly one code
    assert bool(torch.cdist(z_q, q.codebook.detach()).min(1).values.lt(1e-6).all())
    assert torch.equal(q.eval()(z).codes, q.codes(z))
    logits = q.to_logits(z).permute(0, 2, 3, 1)
    torch.testing.assert_close(q.eval()(z).z_q, q.embed(logits.argmax(-1)))
