"""The data of a run: training data and a held-out test split, built from `[data]`.

Vector sets (toy sets, the analytic `gmm-ring`, point files) and image sets (scikit-learn's
digits with their fixed split, image folders and arrays) come back as one `Data` value,
deterministic from `data.seed`; the test split never takes part in training or selection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from genlab import registry
from genlab.config import DataConfig, RunConfig
from genlab.data.digits import DIGITS_LEVELS, DIGITS_N_VAL, digits_split
from genlab.data.gmm import GaussianMixture
from genlab.data.images import load_images
from genlab.data.metadata import load_captioned_folder
from genlab.data.points import Table, load_table
from genlab.data.toy import make_toy
from genlab.discrete import levels_to_grid
from genlab.errors import DataError
from genlab.text.captions import CaptionSet, digit_caption_set, digit_prompts

__all__ = ["Data", "gmm_ring", "make_data", "split_holdout", "test_labels"]

POINTS_TEST_FRACTION = 0.2  # default test share of a point file (at most 2000 rows)
MIN_TRAIN_ROWS = 2


def gmm_ring() -> GaussianMixture:
    """The analytic `gmm-ring` set: 8 equal Gaussians (std 0.3) on a circle of radius 4."""
    return GaussianMixture.ring(k=8, radius=4.0, std=0.3)


@dataclass
class Data:
    """Training data and a held-out test split, float32: points (N, D) or images (N, C, H, W)
    in [-1, 1]; class labels int64 (N,) when the config asks for them; captions of a
    text-conditioned run (`data.captions`)."""

    train: Tensor
    test: Tensor
    gmm: GaussianMixture | None = None  # the exact density, for analytic sets
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None
    levels: int | None = None  # image sets: pixel levels of the [-1, 1] grid (17, 256)
    holdout: int = 0  # the last `holdout` training rows are the set's own validation part
    captions: CaptionSet | None = None  # text runs: caption groups (0: the empty caption)
    train_captions: Tensor | None = None  # (N,) int64: the caption group of each image
    test_prompts: tuple[str, ...] | None = None  # text runs: one prompt per test image
    table: Table | None = None  # point files: the table as read (float64, header names)
    train_rows: np.ndarray | None = None  # point files: the table rows of `train`, in order

    @property
    def train_cond(self) -> Tensor | None:
        """What conditions each training example: its caption group (text runs) or its
        class label (class-conditional runs); None otherwise."""
        return self.train_captions if self.captions is not None else self.train_labels

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


def _split_file(cfg: DataConfig, generator: torch.Generator) -> Data:
    """A point file split by a seeded permutation: the first `n_test` rows (default 20%, at
    most 2000) are the test split, up to `n_train` of the rest the training rows."""
    assert cfg.path is not None  # checked by DataConfig
    table = load_table(cfg.path)
    n = table.values.shape[0]
    n_train, n_test = cfg.vector_sizes()
    n_test = cfg.n_test or min(n_test, max(2, round(POINTS_TEST_FRACTION * n)))
    if n < n_test + MIN_TRAIN_ROWS:
        raise DataError(f"{cfg.path}: {n} rows, the split needs at least "
                        f"{n_test + MIN_TRAIN_ROWS}: data.n_test = {n_test} test rows and "
                        f"{MIN_TRAIN_ROWS} training rows")  # fmt: skip
    perm = torch.randperm(n, generator=generator).numpy()  # (n,)
    test_rows, train_rows = perm[:n_test], perm[n_test : n_test + n_train]
    points = torch.from_numpy(table.values.astype(np.float32))  # (n, D)
    return Data(points[train_rows], points[test_rows], table=table, train_rows=train_rows)


def _digits(cfg: DataConfig) -> Data:
    """The fixed split, 0..16 -> [-1, 1]. Captioned digits: group d + 1 holds the training
    phrasings of digit d; each test image is prompted with a held-out phrasing of its label
    (its label kept for the prompt-following accuracy)."""
    split = digits_split()
    train = levels_to_grid(split.train_x, DIGITS_LEVELS)  # 0..16 -> [-1, 1]
    test = levels_to_grid(split.test_x, DIGITS_LEVELS)
    data = Data(train, test, None, split.train_y, split.test_y)
    if cfg.captions is not None:
        data.captions = digit_caption_set()
        data.train_captions = split.train_y + 1  # (N,)
        data.test_prompts = tuple(digit_prompts(split.test_y.tolist(), "heldout"))
    return data


def _folder(cfg: DataConfig, generator: torch.Generator) -> Data:
    """Images from `cfg.path` (with their metadata.jsonl captions when asked), shuffled by
    `seed` into train and test; the test images' first captions are their prompts."""
    assert cfg.path is not None  # checked by DataConfig
    channels = cfg.channels or 3
    captions: tuple[tuple[str, ...], ...] | None = None
    if cfg.captions is not None:
        images, captions = load_captioned_folder(cfg.path, cfg.size, channels=channels)  # type: ignore[arg-type]
        labels = None
    else:
        images, labels, _ = load_images(cfg.path, cfg.size, channels=channels)  # type: ignore[arg-type]
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
    data = Data(images[train_i], images[test_i], None,
                None if labels is None else labels[train_i],
                None if labels is None else labels[test_i])  # fmt: skip
    if captions is not None:
        groups = list(dict.fromkeys(captions[i] for i in train_i.tolist()))
        index = {g: k + 1 for k, g in enumerate(groups)}
        data.captions = CaptionSet.of(groups)
        data.train_captions = torch.tensor([index[captions[i]] for i in train_i.tolist()])
        data.test_prompts = tuple(captions[i][0] for i in test_i.tolist())
    return data


def _image_data(cfg: DataConfig, generator: torch.Generator) -> Data:
    """Digits or images from `cfg.path`; mirrored copies with `hflip`; class labels kept only
    when asked, or by captioned digits (the digits their prompts ask for, and the classes
    of a class-matched floor; the model is conditioned on captions alone)."""
    data = _digits(cfg) if cfg.name == registry.DIGITS else _folder(cfg, generator)
    if cfg.hflip:  # mirrored copies: random flips with p = 1/2, in expectation
        data.train = torch.cat([data.train, data.train.flip(-1)])
        for key in ("train_labels", "train_captions"):
            value = getattr(data, key)
            setattr(data, key, None if value is None else torch.cat([value, value]))
    if not cfg.labels and cfg.captions != registry.DIGIT_CAPTIONS:
        data.train_labels = data.test_labels = None
    digits = cfg.name == registry.DIGITS
    data.holdout = DIGITS_N_VAL if digits and not cfg.hflip else 0
    data.levels = cfg.levels
    data.train, data.test = data.train.float().contiguous(), data.test.float().contiguous()
    return data


def split_holdout(
    data: Data, cfg: RunConfig
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """(train, train cond, val, val cond) for `fit` (cond: labels or caption groups, see
    `Data.train_cond`): with validation on and no `train.val_fraction`, a set's own
    validation part (digits: the last 144 training images) is held out; otherwise
    everything trains (fit carves `val_fraction` itself)."""
    h = data.holdout
    y = data.train_cond
    if cfg.train.val_every == 0 or cfg.train.val_fraction > 0 or h == 0:
        return data.train, y, None, None
    return (data.train[:-h], None if y is None else y[:-h], data.train[-h:],
            None if y is None else y[-h:])  # fmt: skip


def test_labels(data: Data, n: int) -> Tensor:
    """n class labels in the proportions of the test split (its labels, cycled)."""
    if data.test_labels is None:
        raise DataError("the data set has no class labels")
    reps = -(-n // data.test_labels.shape[0])
    return data.test_labels.repeat(reps)[:n]


def make_data(cfg: DataConfig) -> Data:
    """Train and test data, deterministic from `cfg.seed`; the test split is held out."""
    generator = torch.Generator().manual_seed(cfg.seed)
    if cfg.is_image:
        return _image_data(cfg, generator)
    if cfg.name == registry.POINTS:
        return _split_file(cfg, generator)
    n_train, n_test = cfg.vector_sizes()
    gmm = gmm_ring() if cfg.name == registry.GMM_RING else None
    if gmm is not None:
        points = gmm.sample(n_train + n_test, generator=generator).float()  # type: ignore[union-attr]
    else:
        points = make_toy(cfg.name, n_train + n_test, generator=generator)  # (n, 2)
    return Data(points[:n_train], points[n_train:], gmm)
