"""Receptive-field arithmetic (Dumoulin & Visin 2016) against a brute-force gradient probe."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from genlab.nets.receptive_field import receptive_fields

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def _positive(net: nn.Module) -> nn.Module:
    """Positive weights and no cancellation: every input pixel inside the field gets a non-zero
    gradient, so the gradient's support is exactly the receptive field (clipped to the image)."""
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.rand_like(p) + 0.5)
    return net.double()


def _support(net: nn.Module, x: Tensor, row: int, col: int) -> tuple[list[int], list[int]]:
    """Inclusive [first, last] input rows and columns with a non-zero gradient of output unit
    (row, col) (summed over channels)."""
    x = x.clone().requires_grad_(True)
    out = net(x)  # (1, C, H', W')
    out[0, :, row, col].sum().backward()
    mask = x.grad[0].abs().sum(0) > 0  # (H, W)
    rows = torch.nonzero(mask.any(1)).flatten()
    cols = torch.nonzero(mask.any(0)).flatten()
    return [int(rows[0]), int(rows[-1])], [int(cols[0]), int(cols[-1])]


def _check(net: nn.Module, size: int, units: list[tuple[int, int]] | None = None) -> None:
    net = _positive(net).eval()
    info = receptive_fields(net, (2, size, size))[-1]
    x = torch.rand(1, 2, size, size, dtype=torch.float64)
    h, w = info.out_shape
    for row, col in units or [(h // 2, w // 2), (h - 1, 0), (0, w - 1)]:
        got_r, got_c = _support(net, x, row, col)
        (top, bottom), (left, right) = info.field(row, col)
        # Clip the analytic field to the image; the probe only sees pixels that exist.
        assert got_r == [max(0, round(top)), min(size - 1, round(bottom))], (row, col, info)
        assert got_c == [max(0, round(left)), min(size - 1, round(right))], (row, col, info)


STACKS = {
    "plain 3x3": lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.Conv2d(3, 3, 3)),
    "strided": lambda: nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.Conv2d(3, 3, 5, stride=2, padding=2),
        nn.Conv2d(3, 1, 3, padding=1),
    ),
    "dilated": lambda: nn.Sequential(
        nn.Conv2d(2, 3, 3, dilation=2, padding=2), nn.Conv2d(3, 3, 3, dilation=3),
        nn.Conv2d(3, 1, 3, stride=2),
    ),
    "pooling": lambda: nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.AvgPool2d(2), nn.Conv2d(3, 3, 3),
        nn.AvgPool2d(3, stride=2, padding=1), nn.Conv2d(3, 1, 1),
    ),
    "non-square": lambda: nn.Sequential(
        nn.Conv2d(2, 3, (5, 3), stride=(1, 2), padding=(2, 0)), nn.Conv2d(3, 1, (1, 3)),
    ),
    "same and pad layers": lambda: nn.Sequential(
        nn.Conv2d(2, 3, 4, padding="same"), nn.ZeroPad2d(2), nn.Conv2d(3, 1, 3, stride=2)
    ),
    "nested tree": lambda: nn.Sequential(
        nn.Sequential(nn.Conv2d(2, 3, 3, stride=2), nn.LeakyReLU(0.2)),
        nn.ModuleDict({"x": nn.Conv2d(3, 3, 3)})["x"],
    ),
    "transposed stride 1": lambda: nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ConvTranspose2d(3, 3, 5, padding=1),
        nn.ConvTranspose2d(3, 1, 3, padding=1),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(STACKS))
def test_matches_gradient_probe(name: str) -> None:
    _check(STACKS[name](), size=37)


@pytest.mark.parametrize(("k", "s", "p"), [(4, 2, 1), (2, 2, 0), (6, 3, 2)])
def test_strided_transposed_size_exact_centre_within_phase_bound(k: int, s: int, p: int) -> None:
    """After a strided transposed convolution the field depends on the output phase: the
    reported size is the worst case over phases (attained), and each centre sits within
    (s - 1) / (2 s) * j_in of the phase-averaged lattice."""
    net = _positive(
        nn.Sequential(
            nn.Conv2d(2, 3, 3, stride=2, padding=1),
            nn.ConvTranspose2d(3, 3, k, stride=s, padding=p),
            nn.Conv2d(3, 1, 3, padding=1),
        )
    )
    info = receptive_fields(net, (2, 40, 40))[-1]
    x = torch.rand(1, 2, 40, 40, dtype=torch.float64)
    h, widths = info.out_shape[0], []
    for row in range(h // 2 - s, h // 2 + s):
        rows, _ = _support(net, x, row, row)
        widths.append(rows[1] - rows[0] + 1)
        centre = (rows[0] + rows[1]) / 2
        expected = info.start[0] + row * info.jump[0]
        assert abs(centre - expected) <= (s - 1) / (2 * s) * 2 + 1e-9  # j_in = 2 here
    assert max(widths) == info.size[0]


def _patchgan(n_layers: int) -> nn.Sequential:
    """PatchGAN discriminator of Isola et al. 2017 (appendix 6.1.2): C64-C128-C256-C512 with
    4x4 kernels, stride 2 except the last two, LeakyReLU 0.2, normalisation in between."""
    layers: list[nn.Module] = [nn.Conv2d(2, 4, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
    for i in range(1, n_layers + 1):
        stride = 2 if i < n_layers else 1
        layers += [
            nn.Conv2d(4, 4, 4, stride=stride, padding=1),
            nn.BatchNorm2d(4),
            nn.LeakyReLU(0.2),
        ]
    return nn.Sequential(*layers, nn.Conv2d(4, 1, 4, padding=1))


@pytest.mark.parametrize(("n_layers", "field"), [(1, 16), (2, 34), (3, 70)])
def test_patchgan_sizes(n_layers: int, field: int) -> None:
    """Isola et al. 2017 (sec. 4.4) name the 16x16, 34x34 and 70x70 PatchGANs by their field."""
    net = _patchgan(n_layers)
    assert receptive_fields(net, (2, 96, 96))[-1].size == (field, field)
    _check(net, size=96 if n_layers == 3 else 64)


def test_maxpool_equals_avgpool_and_reports_each_layer() -> None:
    a = receptive_fields(nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(2)), (1, 16, 16))
    b = receptive_fields(nn.Sequential(nn.Conv2d(1, 1, 3), nn.AvgPool2d(2)), (1, 16, 16))
    assert [(i.size, i.jump, i.start) for i in a] == [(i.size, i.jump, i.start) for i in b]
    assert a[0].size == (3, 3) and a[1].size == (4, 4) and a[1].jump == (2.0, 2.0)
    assert a[1].out_shape == (7, 7)


def test_unsupported_layer_is_named() -> None:
    net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.AdaptiveAvgPool2d(1))
    with pytest.raises(ValueError, match="AdaptiveAvgPool2d"):
        receptive_fields(net, (1, 8, 8))
