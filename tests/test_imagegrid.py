"""save_image_grid writes a valid PNG of the documented pixel size and pixel values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.imagegrid import CAPTION_HEIGHT, save_image_grid


def test_grid_size_and_pixels(tmp_path: Path) -> None:
    images = -torch.ones(10, 1, 8, 8)
    images[0, 0, 0, 0] = 1.0  # one white pixel in the first image
    out = save_image_grid(images, tmp_path / "sub" / "grid.png", nrow=4, scale=4)
    with Image.open(out) as img:
        assert img.format == "PNG" and img.mode == "L"
        # 4 columns, 3 rows of 32x32 tiles with 1-pixel padding
        assert img.size == (4 * 32 + 5, 3 * 32 + 4)
        a = np.asarray(img)
    assert (a[1:5, 1:5] == 255).all()  # the white pixel, upscaled 4x4 (nearest neighbour)
    assert (a[5:33, 1:33] == 0).all() and a[0, 0] == 128  # background, padding


def test_default_nrow_rgb_and_labels(tmp_path: Path) -> None:
    images = torch.rand(9, 3, 8, 8) * 2 - 1
    out = save_image_grid(images, tmp_path / "rgb.png", scale=2, labels=list(range(9)))
    with Image.open(out) as img:
        assert img.mode == "RGB"
        assert img.size == (3 * 16 + 4, 3 * (16 + CAPTION_HEIGHT) + 4)


def test_labels_as_tensor_and_clamping(tmp_path: Path) -> None:
    images = torch.full((2, 1, 8, 8), 5.0)
    out = save_image_grid(images, tmp_path / "c.png", scale=1, labels=torch.tensor([3, 7]))
    with Image.open(out) as img:
        assert img.size == (2 * 8 + 3, 8 + CAPTION_HEIGHT + 2)
        assert np.asarray(img)[-2, 1] == 255  # values above 1 are clamped to white


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        save_image_grid(torch.zeros(4, 8, 8), tmp_path / "x.png")
    with pytest.raises(ValueError):
        save_image_grid(torch.zeros(4, 1, 8, 8), tmp_path / "x.png", labels=[1, 2])
