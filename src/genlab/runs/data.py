"""The data of a run: training data and a held-out test split, built from `[data]`.

Vector sets (toy sets, the analytic `gmm-ring`, point files) and image sets (scikit-learn's
digits with their fixed split, image folders and arrays) come back as one `Data` value,
deterministic from `data.seed`; the test split never takes part in training or selection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from genlab import registry
from genlab.config import DataConfig, RunConfig
from genlab.data.digits import DIGITS_LEVELS, DIGITS_N_VAL, digits_split
from genlab.data.gmm import GaussianMixture
from genlab.data.images import load_images
from genlab.data.points import load_points
from genlab.data.toy import make_toy
from genlab.discrete import levels_to_grid
from genlab.errors import DataError

__all__ = ["Data", "gmm_ring", "make_data", "split_holdout"]


def gmm_ring() -> GaussianMixture:
    """The analytic `gmm-ring` set: 8 equal Gaussians (std 0.3) on a circle of radius 4."""
    return GaussianMixture.ring(k=8, radius=4.0, std=0.3)


@dataclass
class Data:
    """Training data and a held-out test split, float32: points (N, D) or images (N, C, H, W)
    in [-1, 1]; class labels int64 (N,) when the config asks for them."""

    train: Tensor
    test: Tensor
    gmm: GaussianMixture | None = None  # the exact density, for analytic sets
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None
    levels: int | None = None  # image sets: pixel levels of the [-1, 1] grid (17, 256)
    holdout: int = 0  # the last `holdout` training rows are the set's own validation part

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one example: (D,) or (C, H, W)."""
        return tuple(int(s) for s in self.train.shape[1:])

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    def floor_references(self, n: int, k: int = 8) -> list[Tensor]:
        """Up to k disjoint sets of n training points: draws independent of the test split."""
        count = max(1, min(k, self.train.shape[0] // n))
        return [self.train[i * n : (i + 1) * n] for i in range(count)]


def _split_file(cfg: DataConfig, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    assert cfg.path is not None  # checked by DataConfig
    points = load_points(cfg.path)  # (N, D)
    n_train, n_test = cfg.vector_sizes()
    if points.shape[0] < n_test + 1:
        raise DataError(
            f"{cfg.path}: {points.shape[0]} points, need more than data.n_test = {n_test}"
        )
    points = points[torch.randperm(points.shape[0], generator=generator)]
    return points[n_test : n_test + n_train], points[:n_test]


def _image_data(cfg: DataConfig, generator: torch.Generator) -> Data:
    """Digits (fixed split, 0..16 -> [-1, 1]) or images from `cfg.path`, shuffled by `seed`."""
    if cfg.name == registry.DIGITS:
        split = digits_split()
        train = levels_to_grid(split.train_x, DIGITS_LEVELS)  # 0..16 -> [-1, 1]
        test = levels_to_grid(split.test_x, DIGITS_LEVELS)
        train_y, test_y = split.train_y, split.test_y
    else:
        assert cfg.path is not None  # checked by DataConfig
        loaded = load_images(cfg.path, cfg.size, channels=cfg.channels or 3)  # type: ignore[arg-type]
        images, labels = loaded.images, loaded.labels  # (N, C, H, W), (N,) | None
        if cfg.channels is not None and images.shape[1] != cfg.channels:
            raise DataError(f"{cfg.path}: images have {images.shape[1]} channels, "
                            f"data.channels = {cfg.channels}")  # fmt: skip
        if cfg.labels and labels is None:
            raise DataError(f"{cfg.path}: no class labels (data.labels = true needs them)")
        n = images.shape[0]
        n_test = cfg.n_test or max(2, n // 10)
        if n < n_test + 1:
            raise DataError(f"{cfg.path}: {n} images, need more than data.n_test = {n_test}")
        perm = torch.randperm(n, generator=generator)
        test_i, train_i = perm[:n_test], perm[n_test:][: cfg.n_train]
        train, test = images[train_i], images[test_i]
        train_y = labels[train_i] if labels is not None else None
        test_y = labels[test_i] if labels is not None else None
    if cfg.hflip:  # mirrored copies: random flips with p = 1/2, in expectation
        train = torch.cat([train, train.flip(-1)])
        train_y = None if train_y is None else torch.cat([train_y, train_y])
    if not cfg.labels:
        train_y = test_y = None
    digits = cfg.name == registry.DIGITS
    holdout = DIGITS_N_VAL if digits and not cfg.hflip else 0
    return Data(train.float().contiguous(), test.float().contiguous(), None, train_y, test_y,
                levels=cfg.levels, holdout=holdout)  # fmt: skip


def split_holdout(
    data: Data, cfg: RunConfig
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """(train, train labels, val, val labels) for `fit`: with validation on and no
    `train.val_fraction`, a set's own validation part (digits: the last 144 training
    images) is held out; otherwise everything trains (fit carves `val_fraction` itself)."""
    h = data.holdout
    if cfg.train.val_every == 0 or cfg.train.val_fraction > 0 or h == 0:
        return data.train, data.train_labels, None, None
    y = data.train_labels
    return (data.train[:-h], None if y is None else y[:-h], data.train[-h:],
            None if y is None else y[-h:])  # fmt: skip


def make_data(cfg: DataConfig) -> Data:
    """Train and test data, deterministic from `cfg.seed`; the test split is held out."""
    generator = torch.Generator().manual_seed(cfg.seed)
    if cfg.is_image:
        return _image_data(cfg, generator)
    if cfg.name == registry.POINTS:
        train, test = _split_file(cfg, generator)
        return Data(train, test)
    n_train, n_test = cfg.vector_sizes()
    gmm = gmm_ring() if cfg.name == registry.GMM_RING else None
    if gmm is not None:
        points = gmm.sample(n_train + n_test, generator=generator).float()  # type: ignore[union-attr]
    else:
        points = make_toy(cfg.name, n_train + n_test, generator=generator)  # (n, 2)
    return Data(points[:n_train], points[n_train:], gmm)
