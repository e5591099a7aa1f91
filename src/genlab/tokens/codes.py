"""A data set as tokens: the codes of a tokenizer run's train and test splits, in one file.

`genlab encode RUN --out codes.npz` writes them; a prior over the codes reads them back with
`load_codes`. The file is a NumPy .npz archive of plain integer arrays (read without
pickle):

    train, test                (N, h, w) int64 codes in 0..K-1, in the data's split order
    codebook_size              K, a 0-d integer array
    train_labels, test_labels  (N,) int64 class labels, when the data set has them

The train codes follow the run's training split in its order (for the digits: the 1437
training images, whose last 144 are the validation part when a run validates); the test
codes are the held-out test split, never to be used for any choice.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genlab.errors import DataError
from genlab.train.checkpoint import atomic_write

__all__ = ["TokenCodes", "load_codes", "save_codes"]

_REQUIRED = ("train", "test", "codebook_size")


@dataclass(frozen=True)
class TokenCodes:
    """Codes (N, h, w) int64 of the train and test splits, K, and optional labels (N,)."""

    train: Tensor
    test: Tensor
    codebook_size: int
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.train.shape[1]), int(self.train.shape[2])

    def check(self, where: str) -> TokenCodes:
        """Self, or DataError naming `where` if shapes, dtypes or ranges are wrong."""
        for name in ("train", "test"):
            codes = getattr(self, name)
            if codes.dim() != 3 or codes.dtype != torch.int64 or codes.shape[0] == 0:
                raise DataError(f"{where}: '{name}' must be non-empty (N, h, w) integer codes "
                                f"(got {tuple(codes.shape)} {codes.dtype})")  # fmt: skip
            if int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size:
                raise DataError(
                    f"{where}: '{name}' holds codes outside 0..{self.codebook_size - 1}"
                )
        grids = tuple(self.train.shape[1:]), tuple(self.test.shape[1:])
        if grids[0] != grids[1]:
            raise DataError(f"{where}: train and test code grids differ ({grids[0]} vs {grids[1]})")
        for name in ("train", "test"):
            labels = getattr(self, f"{name}_labels")
            if labels is not None and labels.shape != (getattr(self, name).shape[0],):
                raise DataError(
                    f"{where}: '{name}_labels' must have one label per {name} code grid"
                )
        return self


def save_codes(path: str | Path, codes: TokenCodes, *, overwrite: bool = False) -> Path:
    """Write `codes` to `path` (.npz) atomically (`genlab.train.checkpoint.atomic_write`:
    a synced temporary file renamed into place); an existing file is kept unless
    `overwrite`."""
    path = Path(path)
    if path.suffix != ".npz":
        raise DataError(f"{path}: codes are written as .npz")
    if path.exists() and not overwrite:
        raise DataError(f"{path}: exists (pass --force to overwrite)")
    codes.check(str(path))
    arrays = {"train": codes.train.numpy(), "test": codes.test.numpy(),
              "codebook_size": np.asarray(codes.codebook_size, dtype=np.int64)}  # fmt: skip
    for name in ("train_labels", "test_labels"):
        labels = getattr(codes, name)
        if labels is not None:
            arrays[name] = labels.long().numpy()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue())
    return path


def load_codes(path: str | Path) -> TokenCodes:
    """Read and check a codes file written by `save_codes`; DataError names what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: codes file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile):
        raise DataError(f"{path}: not a readable .npz codes file") from None
    missing = [k for k in _REQUIRED if k not in arrays]
    if missing:
        raise DataError(f"{path}: missing {', '.join(missing)} (not written by genlab encode?)")

    def tensor(name: str) -> Tensor | None:
        a = arrays.get(name)
        if a is None:
            return None
        if not np.issubdtype(a.dtype, np.integer):
            raise DataError(f"{path}: '{name}' must hold integers (got {a.dtype})")
        return torch.from_numpy(a.astype(np.int64))

    train, test = tensor("train"), tensor("test")
    assert train is not None and test is not None
    k = int(arrays["codebook_size"])
    return TokenCodes(train, test, k, tensor("train_labels"), tensor("test_labels")).check(
        str(path)
    )
