"""scikit-learn's bundled 8x8 handwritten digits as integer-valued image tensors.

The images ship with scikit-learn (``sklearn.datasets.load_digits``, no download):
1797 grey-scale images of 8x8 pixels with integer intensities 0..16, i.e. 17 levels.
The fixed split is the one of genlab's digits benchmarks (``benchmarks/protocols.md``):
``numpy.random.default_rng(0).permutation(1797)``,
the first 1437 indices are train and the last 360 are test. A validation split is
carved from the train part only (first 1293 train, last 144 validation), so the test
split never takes part in model selection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from genlab.errors import DataError

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "DIGITS_LEVELS",
    "DIGITS_SHAPE",
    "DIGITS_N",
    "DIGITS_N_TRAIN",
    "DIGITS_N_VAL",
    "DigitsSplit",
    "load_digits_images",
    "digits_split",
    "carve_validation",
]

DIGITS_LEVELS = 17  # pixel values are the integers 0..16
DIGITS_SHAPE = (1, 8, 8)
DIGITS_N = 1797
DIGITS_N_TRAIN = 1437  # the remaining 360 are test
DIGITS_N_VAL = 144  # carved from the end of the (permuted) train part


@dataclass(frozen=True)
class DigitsSplit:
    """Images as float32 tensors of shape (N, 1, 8, 8) holding integers 0..16, labels int64 (N,)."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor


def load_digits_images() -> tuple[Tensor, Tensor]:
    """All 1797 images, ``(1797, 1, 8, 8)`` float32 holding integers 0..16, and labels (1797,)."""
    import numpy as np
    import torch

    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
        raise DataError("the digits data set needs scikit-learn") from exc
    bunch = load_digits()
    images = np.asarray(bunch.images)  # (N, 8, 8) float64
    labels = np.asarray(bunch.target)  # (N,)
    if images.shape != (DIGITS_N, 8, 8) or labels.shape != (DIGITS_N,):
        raise DataError(f"scikit-learn digits: unexpected shapes {images.shape}, {labels.shape}")
    if not np.all(np.isfinite(images)) or not np.array_equal(images, np.round(images)):
        raise DataError("scikit-learn digits: pixel values are not finite integers")
    if images.min() < 0 or images.max() > DIGITS_LEVELS - 1:
        raise DataError(f"scikit-learn digits: pixel values outside 0..{DIGITS_LEVELS - 1}")
    x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1)  # (N, 1, 8, 8)
    y = torch.from_numpy(labels.astype(np.int64))  # (N,)
    return x, y


def digits_split(seed: int = 0, n_train: int = DIGITS_N_TRAIN) -> DigitsSplit:
    """The anchor's fixed train/test split: ``default_rng(seed).permutation(1797)``,
    first ``n_train`` indices train, the rest test."""
    import numpy as np
    import torch

    if not 0 < n_train < DIGITS_N:
        raise DataError(f"n_train must lie in 1..{DIGITS_N - 1}, got {n_train}")
    x, y = load_digits_images()
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(DIGITS_N))
    tr, te = perm[:n_train], perm[n_train:]
    return DigitsSplit(train_x=x[tr], train_y=y[tr], test_x=x[te], test_y=y[te])


def carve_validation(
    x: Tensor, y: Tensor, n_val: int = DIGITS_N_VAL
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Split a TRAIN set into (train_x, train_y, val_x, val_y): the last ``n_val`` rows are
    validation. Pass only training data here; the test split must stay untouched."""
    n = x.shape[0]
    if y.shape[0] != n:
        raise DataError(f"images and labels disagree in length: {n} vs {y.shape[0]}")
    if not 0 < n_val < n:
        raise DataError(f"n_val must lie in 1..{n - 1}, got {n_val}")
    return x[: n - n_val], y[: n - n_val], x[n - n_val :], y[n - n_val :]
