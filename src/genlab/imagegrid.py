"""Save a batch of images as one PNG grid (Pillow, no matplotlib), e.g. generated 8x8 digits.

Images are (N, C, H, W) with C = 1 (grey) or 3 (RGB), values in [-1, 1] (clamped, then
mapped to 0..255 by :func:`genlab.data.images.from_unit`). Each image is enlarged by an
integer `scale` with nearest-neighbour resampling, so single pixels stay sharp, and images
are separated by `padding` pixels of mid-grey. Optional integer or string `labels` are
written in a caption strip above each image.

Pixel size of the PNG, with ``ncol = nrow or ceil(sqrt(N))`` images per row,
``rows = ceil(N / ncol)`` and ``cap`` = 0 without labels (``CAPTION_HEIGHT`` with them)::

    width  = ncol * W * scale + (ncol + 1) * padding
    height = rows * (H * scale + cap) + (rows + 1) * padding
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from genlab.data.images import from_unit

__all__ = ["CAPTION_HEIGHT", "save_image_grid"]

CAPTION_HEIGHT = 12  # pixels of the caption strip per row when labels are given
_PAD_VALUE = 128  # mid-grey between images


def save_image_grid(
    images: Tensor,
    path: str | os.PathLike[str],
    *,
    nrow: int | None = None,
    scale: int = 4,
    labels: Sequence[int | str] | Tensor | None = None,
    padding: int = 1,
) -> Path:
    """Write images (N, C, H, W) in [-1, 1] to `path` as a PNG grid with `nrow` images per
    row (default ``ceil(sqrt(N))``), each upscaled `scale` times (nearest neighbour).
    Creates parent folders. Returns the path."""
    if images.dim() != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise ValueError(f"expected images (N>0, 1 or 3, H, W), got {tuple(images.shape)}")
    if scale < 1 or padding < 0:
        raise ValueError(f"scale must be >= 1 and padding >= 0, got {scale}, {padding}")
    n, c, h, w = images.shape
    ncol = math.ceil(math.sqrt(n)) if nrow is None else nrow
    if ncol < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    if labels is not None and len(labels) != n:
        raise ValueError(f"got {len(labels)} labels for {n} images")
    rows = math.ceil(n / ncol)
    cap = CAPTION_HEIGHT if labels is not None else 0
    th, tw = h * scale, w * scale  # tile size
    pixels = from_unit(torch.nan_to_num(images.detach().cpu(), nan=-1.0))  # (N, C, H, W) uint8
    pixels = pixels.repeat_interleave(scale, 2).repeat_interleave(scale, 3)  # (N, C, th, tw)
    canvas = np.full(
        (rows * (th + cap) + (rows + 1) * padding, ncol * tw + (ncol + 1) * padding, c),
        _PAD_VALUE,
        dtype=np.uint8,
    )  # (height, width, C)
    for i in range(n):
        r, col = divmod(i, ncol)
        top = padding + r * (th + cap + padding) + cap
        left = padding + col * (tw + padding)
        canvas[top : top + th, left : left + tw] = pixels[i].permute(1, 2, 0).numpy()
    image = Image.fromarray(canvas[:, :, 0] if c == 1 else canvas, mode="L" if c == 1 else "RGB")
    if labels is not None:
        _draw_captions(image, labels, ncol, th, tw, padding)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, format="PNG")
    return out


def _draw_captions(
    image: Image.Image,
    labels: Sequence[int | str] | Tensor,
    ncol: int,
    th: int,
    tw: int,
    padding: int,
) -> None:
    """Black caption strips above each tile with the label in white."""
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    white = 255 if image.mode == "L" else (255, 255, 255)
    black = 0 if image.mode == "L" else (0, 0, 0)
    for i, label in enumerate(labels):
        text = str(label.item() if isinstance(label, Tensor) else label)
        r, col = divmod(i, ncol)
        top = padding + r * (th + CAPTION_HEIGHT + padding)
        left = padding + col * (tw + padding)
        draw.rectangle((left, top, left + tw - 1, top + CAPTION_HEIGHT - 1), fill=black)
        draw.text((left + 1, top), text, fill=white, font=font)
