"""The network table: one record per network a config can name in `[net] name = ...`.

A record knows the network's options class (`genlab.nets.configs`), which of its fields are
derived from the data and the model rather than set by a config, whether it needs images,
and how to build it for examples of a given shape. Configs, the model builders and the
benchmarks read this table; nothing else dispatches on a network name. The module imports
no torch (the builders import their network when called).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from genlab.nets.configs import DiTConfig, MLPConfig, UNetConfig

__all__ = ["NETS", "NetSpec", "build_net", "net_spec"]

Shape = tuple[int, ...]


@dataclass(frozen=True)
class NetSpec:
    """A network a config can name: its options class, the fields set from the data
    (`derived`), whether it works on images only, and its builder
    `build(options, shape, num_classes, **text)` for examples of `shape` ((D,) or (C, H, W));
    `text` are `context_dim` / `pooled_dim`, taken by the networks that derive them."""

    name: str
    options: type
    derived: tuple[str, ...]
    image_only: bool
    build: Callable[..., Any]
    label: Callable[[Any], str]

    def user_options(self, options: Any) -> dict[str, Any]:
        """The options a config sets (every field but the derived ones)."""
        return {k: v for k, v in asdict(options).items() if k not in self.derived}

    def size_error(self, options: Any, size: int | None) -> tuple[str, str] | None:
        """(key, message) if the options cannot work on square images of side `size`."""
        patch = getattr(options, "patch_size", None)
        if patch is not None and size is not None and size % patch:
            return "patch_size", f"must divide the image size {size} (got {patch})"
        return None


def _build_mlp(options: MLPConfig, shape: Shape, num_classes: int | None, **text: Any) -> Any:
    from genlab.nets.mlp import MLP, FlatNet

    if any(v is not None for v in text.values()):
        raise ValueError("'mlp' takes no text condition (use unet or dit)")
    mlp = MLP(math.prod(shape), hidden=options.hidden, depth=options.depth,
              time_dim=options.time_dim, num_classes=num_classes,
              dropout=options.dropout)  # fmt: skip
    return mlp if len(shape) == 1 else FlatNet(mlp, shape)


def _image_shape(name: str, shape: Shape) -> Shape:
    if len(shape) != 3:
        raise ValueError(f"net {name!r} needs images (C, H, W), got shape {list(shape)}")
    return shape


def _build_unet(options: UNetConfig, shape: Shape, num_classes: int | None, **text: Any) -> Any:
    from genlab.nets.unet import UNet

    channels, _, _ = _image_shape("unet", shape)
    return UNet(replace(options, in_channels=channels, num_classes=num_classes, **text))


def _build_dit(options: DiTConfig, shape: Shape, num_classes: int | None, **text: Any) -> Any:
    from genlab.nets.dit import DiT

    channels, height, width = _image_shape("dit", shape)
    cfg = replace(options, in_channels=channels, num_classes=num_classes,
                  input_size=max(height, width), **text)  # fmt: skip
    net = DiT(cfg)
    # Runs saved before EMA skipped non-persistent buffers hold DiT's (fixed) positional grid
    # in their state dict: keep it there so they load.
    net.register_buffer("pos", net.pos, persistent=True)
    return net


_IMAGE_DERIVED = ("in_channels", "out_channels", "num_classes", "context_dim", "pooled_dim")

NETS: dict[str, NetSpec] = {
    "mlp": NetSpec("mlp", MLPConfig, (), False, _build_mlp,
                   lambda o: f"MLP {o.hidden}x{o.depth}"),
    "unet": NetSpec("unet", UNetConfig, _IMAGE_DERIVED, True, _build_unet,
                    lambda o: f"UNet {o.channels}x{list(o.channel_mult)}"),
    "dit": NetSpec("dit", DiTConfig, (*_IMAGE_DERIVED, "input_size"), True, _build_dit,
                   lambda o: f"DiT {o.hidden}x{o.depth}/{o.patch_size}"),
}  # fmt: skip


def net_spec(name: str) -> NetSpec:
    """The record of a network name; KeyError names the allowed ones."""
    if name not in NETS:
        raise KeyError(f"{name!r} is not one of {', '.join(sorted(NETS))}")
    return NETS[name]


def build_net(
    name: str,
    options: Any,
    shape: Shape,
    num_classes: int | None = None,
    *,
    context_dim: int | None = None,
    pooled_dim: int | None = None,
) -> Any:
    """The network `name` with `options` for examples of `shape`; "mlp" over images works on
    the flattened pixels. `context_dim` / `pooled_dim`: the widths of a text encoder's token
    states (cross-attention) and pooled vector, for networks that take them."""
    text = {"context_dim": context_dim, "pooled_dim": pooled_dim}
    return net_spec(name).build(options, tuple(shape), num_classes, **text)
