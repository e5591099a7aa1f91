"""A small shipped CNN for 8x8 digits whose penultimate layer is the feature space of the
image metrics (Frechet distance, KID, precision/recall; see :mod:`genlab.eval.image_metrics`).

This plays the role Inception-v3 plays for FID (Heusel et al., "GANs trained by a two
time-scale update rule converge to a local Nash equilibrium", NeurIPS 2017, sec. 4): a
classifier trained on real data, whose pre-logit activations summarise an image. It is
trained by ``scripts/train_digits_features.py`` on the TRAIN split of
:func:`genlab.data.digits.digits_split` only, and ships as
``genlab/assets/digits_features.safetensors`` (with ``digits_features.json`` describing the
architecture, data split, test accuracy and a hash of the training settings).

Input convention: images of shape (B, 1, 8, 8), float, in [-1, 1] -- the range every genlab
model sees. The digits' integer intensities 0..16 map to it by ``x / 16 * 2 - 1``
(:func:`digits_to_unit`). Generated samples outside [-1, 1] are fed as they are; clamp them
first if the model's output is meant to be an image.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files
from typing import Any

import torch
from torch import Tensor, nn

from genlab.errors import DataError

__all__ = [
    "FEATURE_DIM",
    "NUM_CLASSES",
    "DigitsFeatureNet",
    "digits_to_unit",
    "load_digits_features",
    "load_digits_features_info",
]

FEATURE_DIM = 128
NUM_CLASSES = 10
ASSET_WEIGHTS = "digits_features.safetensors"
ASSET_INFO = "digits_features.json"


def digits_to_unit(pixels: Tensor) -> Tensor:
    """Digits intensities 0..16 (any dtype) -> float32 in [-1, 1]: ``x / 16 * 2 - 1``."""
    return pixels.float() * (2.0 / 16.0) - 1.0


class DigitsFeatureNet(nn.Module):
    """conv3x3(1->32) -> ReLU -> conv3x3(32->64) -> ReLU -> maxpool 2 -> avgpool 2 ->
    flatten (256) -> linear 128 -> ReLU [features] -> dropout -> linear 10 [logits].

    About 52k parameters (~210 KB as float32). Input (B, 1, 8, 8) in [-1, 1].
    """

    def __init__(self, dropout: float = 0.3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 2 * 2, FEATURE_DIM)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def activations(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, 1, 8, 8) in [-1, 1] -> the three ReLU activations (B, 32, 8, 8),
        (B, 64, 8, 8) and the features (B, 128) (what a perceptual loss compares)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 8, 8):
            raise ValueError(f"expected images of shape (B, 1, 8, 8), got {tuple(x.shape)}")
        h1 = torch.relu(self.conv1(x))  # (B, 32, 8, 8)
        h2 = torch.relu(self.conv2(h1))  # (B, 64, 8, 8)
        h = nn.functional.max_pool2d(h2, 2)  # (B, 64, 4, 4)
        h = nn.functional.avg_pool2d(h, 2)  # (B, 64, 2, 2)
        return h1, h2, torch.relu(self.fc(h.flatten(1)))  # ..., (B, 128)

    def features(self, x: Tensor) -> Tensor:
        """(B, 1, 8, 8) in [-1, 1] -> (B, 128): the non-negative penultimate activations."""
        return self.activations(x)[-1]

    def logits(self, x: Tensor) -> Tensor:
        """(B, 1, 8, 8) in [-1, 1] -> (B, 10) class logits."""
        return self.head(self.dropout(self.features(x)))  # (B, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(x)


def _asset(name: str) -> Any:
    return files("genlab") / "assets" / name


@lru_cache(maxsize=4)
def _load_cached(device: str) -> DigitsFeatureNet:
    from safetensors.torch import load_file

    path = _asset(ASSET_WEIGHTS)
    if not path.is_file():
        raise DataError(
            f"{path}: shipped digits feature network not found (reinstall genlab, or run "
            "scripts/train_digits_features.py to rebuild it)"
        )
    net = DigitsFeatureNet()
    state = load_file(str(path), device="cpu")
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise DataError(f"{path}: weights do not fit DigitsFeatureNet ({exc})") from None
    net.eval().requires_grad_(False)
    return net.to(device)


def load_digits_features(device: str | torch.device = "cpu") -> DigitsFeatureNet:
    """The shipped, trained :class:`DigitsFeatureNet` in eval mode with frozen parameters,
    loaded once per device and cached (do not modify the returned module in place).

    Raises :class:`genlab.errors.DataError` if the asset is missing or does not fit."""
    return _load_cached(str(torch.device(device)))


def load_digits_features_info() -> dict[str, Any]:
    """The asset's metadata (architecture, training split, test accuracy, settings hash)."""
    path = _asset(ASSET_INFO)
    if not path.is_file():
        raise DataError(f"{path}: digits feature network metadata not found")
    return json.loads(path.read_text())
