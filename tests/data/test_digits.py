"""The 8x8 digits: anchor split sizes, determinism, value range, validation carved from train."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genlab.data.digits import (
    DIGITS_LEVELS,
    carve_validation,
    digits_split,
    load_digits_images,
)
from genlab.errors import DataError


def test_images_are_integers_in_17_levels() -> None:
    x, y = load_digits_images()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.int64
    assert torch.equal(x, x.round())
    assert x.min() == 0 and x.max() == DIGITS_LEVELS - 1


def test_split_sizes_and_determinism() -> None:
    a, b = digits_split(), digits_split()
    assert a.train_x.shape == (1437, 1, 8, 8) and a.test_x.shape == (360, 1, 8, 8)
    assert a.train_y.shape == (1437,) and a.test_y.shape == (360,)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_x, b.test_x)


def test_split_follows_the_anchor_permutation() -> None:
    x, y = load_digits_images()
    perm = np.random.default_rng(0).permutation(1797)
    s = digits_split()
    assert torch.equal(s.train_x, x[torch.from_numpy(perm[:1437])])
    assert torch.equal(s.test_y, y[torch.from_numpy(perm[1437:])])


def test_validation_is_carved_from_train_only() -> None:
    s = digits_split()
    tx, ty, vx, vy = carve_validation(s.train_x, s.train_y)
    assert tx.shape[0] == 1293 and vx.shape[0] == 144 and vy.shape == (144,)
    assert torch.equal(torch.cat([tx, vx]), s.train_x)
    assert torch.equal(torch.cat([ty, vy]), s.train_y)


def test_bad_validation_size_is_a_data_error() -> None:
    s = digits_split()
    with pytest.raises(DataError):
        carve_validation(s.train_x, s.train_y, n_val=0)
