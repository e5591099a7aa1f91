"""Convolutional encoders and decoders of the tokenizers.

Two architectures, both mapping images (B, C, H, W) to latents (B, z, H / 2^n, W / 2^n)
and back with n = `downsample` halvings:

- "conv": the plain stack of the vector-quantizer protocol of `benchmarks/protocols.md`
  (encoder Conv 3x3, n x [Conv 4x4 stride 2], Conv 3x3, SiLU after each, Conv 1x1 to z;
  decoder Conv 3x3, n x [ConvTranspose 4x4 stride 2], Conv 3x3, SiLU after each, then the
  output Conv 3x3). With `channels` = 32 and n = 1 it is exactly that protocol's network.
- "resnet": the VQGAN encoder / decoder (Esser et al. 2021, sec. 3 and appendix; the
  DDPM UNet's halves without time embedding, Ho et al. 2020, appendix B): residual blocks
  GroupNorm-SiLU-conv, strided-convolution downsampling, nearest upsampling followed by a
  convolution, and a middle block of residual / self-attention / residual at the latent
  resolution (the UNet's `AttentionBlock`).

A decoder returns the reconstruction and the features its output layer reads, so that a
likelihood head can read them too (`genlab.tokens.autoencoder.LogScale`); its output
convolution is `decoder.last_layer` (where VQGAN's adaptive weight is taken).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from genlab.nets.layers import norm_groups, zero_
from genlab.nets.unet import AttentionBlock

__all__ = ["ConvResBlock", "Decoder", "conv_pair", "resnet_pair"]


class ConvResBlock(nn.Module):
    """x + conv(SiLU(GN(conv(SiLU(GN(x)))))), the second convolution zero-initialised, a 1x1
    skip when widths differ (He et al. 2016; the block of Ho et al. 2020 without the time
    embedding). x: (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(self, c_in: int, c_out: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(norm_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(norm_groups(c_out), c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = zero_(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Middle(nn.Module):
    """Residual block, optional self-attention, residual block, at one resolution."""

    def __init__(self, c: int, attention: bool, head_dim: int, dropout: float) -> None:
        super().__init__()
        self.res1 = ConvResBlock(c, c, dropout)
        self.attn = AttentionBlock(c, head_dim, None) if attention else None
        self.res2 = ConvResBlock(c, c, dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.res1(x)
        h = self.attn(h) if self.attn is not None else h
        return self.res2(h)


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsampling followed by a 3x3 convolution (Ho et al. 2020)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Decoder(nn.Module):
    """`body` (latents -> features (B, F, H, W)) then `last_layer` (features -> image).
    forward returns (reconstruction (B, C, H, W), features)."""

    def __init__(self, body: nn.Module, last_layer: nn.Conv2d, feature_channels: int) -> None:
        super().__init__()
        self.body, self.last_layer, self.feature_channels = body, last_layer, feature_channels

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        features = self.body(z)  # (B, F, H, W)
        return self.last_layer(features), features


def conv_pair(
    in_channels: int,
    latent_dim: int,
    channels: int = 32,
    downsample: int = 1,
    *,
    encoder_dim: int | None = None,
) -> tuple[nn.Module, Decoder]:
    """The "conv" encoder and decoder (the vector-quantizer protocol's network). The encoder
    outputs `encoder_dim` channels (default `latent_dim`; a Gaussian posterior's mean and
    log-variance need 2 x latent_dim), the decoder reads `latent_dim`."""
    c = channels
    enc: list[nn.Module] = [nn.Conv2d(in_channels, c, 3, padding=1), nn.SiLU()]
    for _ in range(downsample):
        enc += [nn.Conv2d(c, c, 4, stride=2, padding=1), nn.SiLU()]
    enc += [nn.Conv2d(c, c, 3, padding=1), nn.SiLU(), nn.Conv2d(c, encoder_dim or latent_dim, 1)]
    dec: list[nn.Module] = [nn.Conv2d(latent_dim, c, 3, padding=1), nn.SiLU()]
    for _ in range(downsample):
        dec += [nn.ConvTranspose2d(c, c, 4, stride=2, padding=1), nn.SiLU()]
    dec += [nn.Conv2d(c, c, 3, padding=1), nn.SiLU()]
    last = nn.Conv2d(c, in_channels, 3, padding=1)
    return nn.Sequential(*enc), Decoder(nn.Sequential(*dec), last, c)


def resnet_pair(
    in_channels: int,
    latent_dim: int,
    channels: int = 64,
    channel_mult: Sequence[int] = (1, 2),
    num_res_blocks: int = 1,
    attention: bool = True,
    head_dim: int = 32,
    dropout: float = 0.0,
    *,
    encoder_dim: int | None = None,
) -> tuple[nn.Module, Decoder]:
    """The "resnet" encoder and decoder: len(channel_mult) - 1 halvings, level i of width
    channels * channel_mult[i] with `num_res_blocks` residual blocks (the decoder one more,
    as in Ho et al.), and the middle block (with attention if `attention`). The encoder
    outputs `encoder_dim` channels (default `latent_dim`), the decoder reads `latent_dim`."""
    widths = [channels * m for m in channel_mult]
    enc: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1)]
    c = widths[0]
    for level, width in enumerate(widths):
        for _ in range(num_res_blocks):
            enc.append(ConvResBlock(c, width, dropout))
            c = width
        if level < len(widths) - 1:
            enc.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
    enc += [Middle(c, attention, head_dim, dropout), nn.GroupNorm(norm_groups(c), c), nn.SiLU(),
            nn.Conv2d(c, encoder_dim or latent_dim, 3, padding=1)]  # fmt: skip
    dec: list[nn.Module] = [nn.Conv2d(latent_dim, c, 3, padding=1),
                            Middle(c, attention, head_dim, dropout)]  # fmt: skip
    for level in reversed(range(len(widths))):
        for _ in range(num_res_blocks + 1):
            dec.append(ConvResBlock(c, widths[level], dropout))
            c = widths[level]
        if level > 0:
            dec.append(Upsample(c))
    dec += [nn.GroupNorm(norm_groups(c), c), nn.SiLU()]
    last = nn.Conv2d(c, in_channels, 3, padding=1)
    return nn.Sequential(*enc), Decoder(nn.Sequential(*dec), last, c)
