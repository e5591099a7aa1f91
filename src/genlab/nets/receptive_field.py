"""Receptive-field arithmetic for chains of convolutions and poolings.

For each spatial layer with kernel k, stride s, padding p and dilation d (effective kernel
k_e = d (k - 1) + 1), Dumoulin & Visin 2016 (sec. 2-4; the "receptive field arithmetic" of
Araujo et al. 2019, eq. 1-2) give, per axis, in input-pixel units:

    r_out     = r_in + (k_e - 1) * j_in                 receptive-field size
    j_out     = j_in * s                                 jump (effective stride)
    start_out = start_in + ((k_e - 1) / 2 - p) * j_in    centre of output unit 0

starting from r = 1, j = 1, start = 0 at the input. The field of output unit u along an axis
is centred at start + u * j and spans r pixels (before clipping at the image border).

Supported layers: ``nn.Conv2d``, ``nn.MaxPool2d``, ``nn.AvgPool2d`` (any kernel, stride,
padding, dilation, ceil_mode), ``nn.ConvTranspose2d`` with dilation 1 and nearest
``nn.Upsample`` by an integer factor (see :func:`layer_geometry`: after an upsampling layer
the sizes are the worst case over output phases, rounded up to whole pixels), and the
``nn.ZeroPad2d`` / ``ReflectionPad2d`` / ``ReplicationPad2d`` padding layers. Point-wise
layers (activations, normalisations, dropout, identity) leave the field unchanged. Anything
else that changes the spatial size (adaptive pooling, bilinear ``nn.Upsample``, ``nn.Linear``
on a flattened map, ...) is refused with a ``ValueError`` that
names it. The layers are found by a probe forward pass with hooks, so the net may be any
module tree as long as its spatial layers run as one chain (as in ``nn.Sequential`` stacks and
PatchGAN discriminators, Isola et al. 2017); skip connections are not modelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["FieldInfo", "layer_geometry", "receptive_fields"]

_POINTWISE = (
    nn.ReLU, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.Identity,
    nn.Dropout, nn.Dropout2d, nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm, nn.LayerNorm,
    nn.Softplus, nn.Hardtanh, nn.PReLU, nn.Mish,
)  # fmt: skip


@dataclass(frozen=True)
class FieldInfo:
    """Geometry after one layer, per axis (height, width), in input-pixel units.

    `size` is the receptive-field extent, `jump` the distance between neighbouring output
    units' field centres, `start` the centre of output unit (0, 0)'s field, `out_shape` the
    layer's output spatial shape in the probe pass."""

    name: str
    kind: str
    size: tuple[int, int]
    jump: tuple[float, float]
    start: tuple[float, float]
    out_shape: tuple[int, int]

    def field(self, row: int, col: int) -> tuple[tuple[float, float], tuple[float, float]]:
        """Inclusive input-pixel interval ((top, bottom), (left, right)) of output unit
        (row, col)'s receptive field, not clipped to the image."""
        spans = []
        for axis, u in enumerate((row, col)):
            centre = self.start[axis] + u * self.jump[axis]
            half = (self.size[axis] - 1) / 2
            spans.append((centre - half, centre + half))
        return spans[0], spans[1]


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def layer_geometry(layer: nn.Module, axis: int) -> tuple[int, float, float] | None:
    """(size increase factor k_e - 1, stride factor, start offset factor) of one layer along
    `axis` (0 = height, 1 = width), such that r += a * j, start += c * j, j *= b. None for
    point-wise layers.

    ``ConvTranspose2d`` (stride s, kernel k, padding p) is the adjoint of a convolution: output
    o sits at input position (o + p - (k - 1)/2) / s, so j *= 1/s and start += (p - (k-1)/2)/s *
    j. Its size increase is the worst case over output phases, ceil(k / s) - 1 input units,
    which is exact for every output unit when s divides k (or s = 1). With s > 1 the true field
    centre alternates with the output phase around the reported lattice start + u * j, by at
    most (s - 1) / (2 s) * j_in; the reported start is the phase average."""
    if isinstance(layer, _POINTWISE):
        return None
    if isinstance(layer, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
        k = _pair(layer.kernel_size)[axis]
        s = _pair(layer.stride if layer.stride is not None else layer.kernel_size)[axis]
        p = layer.padding
        if isinstance(p, str):
            if p != "same" and p != "valid":
                raise ValueError(f"unsupported padding {p!r} in {layer}")
            pad = 0 if p == "valid" else None
        else:
            pad = _pair(p)[axis]
        d = _pair(getattr(layer, "dilation", 1))[axis]
        k_e = d * (k - 1) + 1
        if pad is None:  # 'same' (stride 1): total padding k_e - 1, the extra pixel at the end
            pad = (k_e - 1) // 2
        return k_e - 1, float(s), (k_e - 1) / 2 - pad
    if isinstance(layer, nn.ConvTranspose2d):
        if _pair(layer.dilation) != (1, 1):
            raise ValueError(f"dilated transposed convolution is not supported: {layer}")
        k, s, p = (_pair(v)[axis] for v in (layer.kernel_size, layer.stride, layer.padding))
        return math.ceil(k / s) - 1, 1.0 / s, (p - (k - 1) / 2) / s
    if isinstance(layer, nn.ZeroPad2d | nn.ReflectionPad2d | nn.ReplicationPad2d):
        left, _right, top, _bottom = layer.padding
        return 0, 1.0, -float(top if axis == 0 else left)
    if isinstance(layer, nn.Upsample) and layer.mode == "nearest" and layer.size is None:
        s = layer.scale_factor
        s = s[axis] if isinstance(s, tuple) else s
        if s is not None and float(s).is_integer():  # = transposed conv, kernel s, stride s
            return 0, 1.0 / s, -(s - 1) / 2 / s
    raise ValueError(f"receptive field of {type(layer).__name__} layers is not supported")


def _whole(size: float) -> int:
    return math.ceil(size - 1e-9)


def _leaf_calls(net: nn.Module, x: Tensor) -> list[tuple[str, nn.Module, tuple[int, int]]]:
    """Run `net(x)` once and record (name, module, output spatial shape) of every leaf module
    in call order."""
    calls: list[tuple[str, nn.Module, tuple[int, int]]] = []
    handles = []
    for name, module in net.named_modules():
        if next(iter(module.children()), None) is None:

            def hook(mod: nn.Module, _inp: object, out: object, name: str = name) -> None:
                shape = tuple(out.shape[-2:]) if isinstance(out, Tensor) and out.ndim >= 3 else ()
                calls.append((name, mod, shape))  # type: ignore[arg-type]

            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return calls


def receptive_fields(net: nn.Module, input_shape: tuple[int, int, int]) -> list[FieldInfo]:
    """Receptive field, jump and start of every spatial layer of `net`, in call order, from a
    probe forward pass on zeros of shape (1, *input_shape) = (1, C, H, W). The last entry
    describes the network output. Raises ValueError on a layer it cannot model."""
    was_training = net.training
    net.eval()
    try:
        param = next(net.parameters(), None)
        like = param if param is not None else torch.zeros(())
        probe = torch.zeros(1, *input_shape, device=like.device, dtype=like.dtype)
        calls = _leaf_calls(net, probe)
    finally:
        net.train(was_training)
    size, jump, start = [1.0, 1.0], [1.0, 1.0], [0.0, 0.0]
    infos: list[FieldInfo] = []
    for name, module, out_shape in calls:
        geoms = [layer_geometry(module, axis) for axis in (0, 1)]
        if geoms[0] is None or geoms[1] is None:
            continue
        for axis, (grow, stride, offset) in enumerate(geoms):  # type: ignore[misc]
            size[axis] += grow * jump[axis]
            start[axis] += offset * jump[axis]
            jump[axis] *= stride
        infos.append(
            FieldInfo(
                name=name,
                kind=type(module).__name__,
                size=(_whole(size[0]), _whole(size[1])),
                jump=(jump[0], jump[1]),
                start=(start[0], start[1]),
                out_shape=out_shape,  # type: ignore[arg-type]
            )
        )
    if not infos:
        raise ValueError("no convolution or pooling layer ran in the probe forward pass")
    return infos
