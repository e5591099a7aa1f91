"""Tiny random-weight diffusers UNets, built as diffusers' own fast tests build theirs (small
configs, fixed seed, no download), and the noise both libraries start from."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel, UNet2DModel
from torch import Tensor

SHAPE = (4, 1, 8, 8)  # batch of 8x8 grey images


def tiny_unet(
    seed: int = 0, *, out_channels: int = 1, num_class_embeds: int | None = None
) -> UNet2DModel:
    """An 8x8 one-channel UNet2DModel (two levels, attention on the lower one)."""
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=8, in_channels=1, out_channels=out_channels, block_out_channels=(8, 16),
        layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, attention_head_dim=8,
        num_class_embeds=num_class_embeds,
    ).eval()  # fmt: skip


def tiny_cond_unet(seed: int = 0) -> UNet2DConditionModel:
    """An 8x8 UNet2DConditionModel with cross-attention (E = 12) and 11 class embeddings."""
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
        layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), norm_num_groups=4,
        cross_attention_dim=12, attention_head_dim=4, num_class_embeds=11,
    ).eval()  # fmt: skip


def noise(seed: int = 1, shape: tuple[int, ...] = SHAPE) -> Tensor:
    """Standard normal noise from a fixed seed."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))
