"""The options of genlab's networks, declared once.

Each network reads one frozen dataclass: `MLP` its `MLPConfig`, `UNet` its `UNetConfig`,
`DiT` its `DiTConfig`. A run config's `[net]` table is validated straight into these
classes (`genlab.nets.table`), so a default or a range lives here and nowhere else. The
module imports no torch: a config can be checked without loading it.

Fields marked "derived" are set from the data and the model (input channels, number of
classes, ...), never by a config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import ConfigDict, Field

__all__ = ["MAX_LAYERS", "MAX_LEVELS", "DiTConfig", "Layers", "MLPConfig", "UNetConfig"]

# Counts of layers, blocks and steps are bounded: a network is built one module at a time,
# so a config asking for 10**12 layers would hang before its memory could be estimated
# (genlab.runs.budget). The bounds are far above any model trained here.
MAX_LAYERS = 1000
MAX_LEVELS = 16  # resolutions of a multi-scale network (2**16 pixels a side)

Positive = Annotated[int, Field(ge=1)]
Layers = Annotated[int, Field(ge=1, le=MAX_LAYERS)]
Rate = Annotated[float, Field(ge=0, lt=1)]
_FORBID = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class MLPConfig:
    """`genlab.nets.mlp.MLP`: `depth` hidden layers of width `hidden`, a sinusoidal time
    embedding of `time_dim` features, dropout after every hidden activation."""

    __pydantic_config__ = _FORBID

    hidden: Positive = 256
    depth: Layers = 3
    time_dim: Annotated[int, Field(ge=2)] = 64
    dropout: Rate = 0.0


@dataclass(frozen=True)
class UNetConfig:
    """`genlab.nets.unet.UNet`. `attention_levels` are level indices (0 = full resolution,
    level i has spatial size H / 2**i); `head_dim` sets the number of heads as
    channels // head_dim. Derived: in_channels, out_channels, num_classes, context_dim,
    pooled_dim (the width of a text encoder's token states and of its pooled vector)."""

    __pydantic_config__ = _FORBID

    in_channels: Positive = 1
    out_channels: Positive | None = None
    channels: Positive = 32
    channel_mult: tuple[int, ...] = (1, 2)
    num_res_blocks: Layers = 1
    attention_levels: tuple[int, ...] = (1,)
    head_dim: Positive = 32
    dropout: Rate = 0.0
    num_classes: Positive | None = None
    context_dim: Positive | None = None
    pooled_dim: Positive | None = None
    use_checkpoint: bool = False

    def __post_init__(self) -> None:
        mult, levels = self.channel_mult, self.attention_levels
        if not mult or min(mult) < 1:
            raise ValueError(f"channel_mult: must be positive integers (got {list(mult)})")
        if len(mult) > MAX_LEVELS:
            raise ValueError(f"channel_mult: at most {MAX_LEVELS} levels (got {len(mult)})")
        bad = [lv for lv in levels if not 0 <= lv < len(mult)]
        if bad:
            raise ValueError(f"attention_levels: levels {bad} outside 0..{len(mult) - 1}")


@dataclass(frozen=True)
class DiTConfig:
    """`genlab.nets.dit.DiT` (DiT-S/2 is hidden 384, depth 12, 6 heads, patch 2). Inputs of
    any size work; `input_size` only sets which positional grid is precomputed. Derived:
    in_channels, out_channels, num_classes, context_dim, pooled_dim, input_size."""

    __pydantic_config__ = _FORBID

    in_channels: Positive = 1
    out_channels: Positive | None = None
    patch_size: Positive = 2
    hidden: Positive = 128
    depth: Layers = 4
    num_heads: Positive = 4
    mlp_ratio: Annotated[float, Field(gt=0)] = 4.0
    num_classes: Positive | None = None
    context_dim: Positive | None = None
    pooled_dim: Positive | None = None
    use_checkpoint: bool = False
    input_size: Positive = 8

    def __post_init__(self) -> None:
        if self.hidden % 4 or self.hidden % self.num_heads:
            raise ValueError(f"hidden: must be a multiple of 4 and of num_heads "
                             f"(got {self.hidden}, {self.num_heads} heads)")  # fmt: skip
