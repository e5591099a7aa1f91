"""The shipped digits feature network: asset present, small, accurate on the test split,
consistent with its metadata and with the training script's settings."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from importlib.resources import files
from pathlib import Path

import pytest
import torch

from genlab.data.digits import DIGITS_N_TRAIN, digits_split
from genlab.errors import DataError
from genlab.eval import features as feat
from genlab.eval.features import (
    FEATURE_DIM,
    DigitsFeatureNet,
    digits_to_unit,
    load_digits_features,
    load_digits_features_info,
)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_digits_features.py"


def test_asset_is_small_and_metadata_consistent() -> None:
    path = files("genlab") / "assets" / "digits_features.safetensors"
    size = path.stat().st_size  # type: ignore[attr-defined]
    assert size < 1_000_000
    info = load_digits_features_info()
    net = load_digits_features()
    assert info["num_parameters"] == sum(p.numel() for p in net.parameters())
    assert info["file_bytes"] == size
    assert info["feature_dim"] == FEATURE_DIM
    settings = json.dumps(info["settings"], sort_keys=True).encode()
    assert info["settings_sha256"] == hashlib.sha256(settings).hexdigest()


def test_asset_was_built_with_the_scripts_current_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = importlib.util.spec_from_file_location("train_digits_features", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    info = load_digits_features_info()
    assert module.settings_hash(module.Settings()) == info["settings_sha256"]


def test_shipped_net_is_accurate_on_test_split() -> None:
    split = digits_split()
    assert split.train_x.shape[0] == DIGITS_N_TRAIN
    net = load_digits_features()
    with torch.no_grad():
        pred = net.logits(digits_to_unit(split.test_x)).argmax(1)
    accuracy = (pred == split.test_y).double().mean().item()
    assert accuracy >= 0.95
    assert accuracy == pytest.approx(load_digits_features_info()["test_accuracy"], abs=1e-6)


def test_loader_is_cached_frozen_and_in_eval_mode() -> None:
    net = load_digits_features()
    assert net is load_digits_features("cpu")
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    f = net.features(x)
    assert f.shape == (5, FEATURE_DIM) and (f >= 0).all()
    assert torch.equal(net.features(x), f)  # no dropout in eval mode
    assert net.logits(x).shape == (5, 10)


def test_wrong_input_shape_is_an_error() -> None:
    with pytest.raises(ValueError, match="8, 8"):
        DigitsFeatureNet().features(torch.zeros(2, 8, 8))


def test_digits_to_unit_maps_0_16_to_unit_interval() -> None:
    out = digits_to_unit(torch.tensor([0, 8, 16]))
    assert torch.equal(out, torch.tensor([-1.0, 0.0, 1.0]))


def test_missing_asset_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(feat, "_asset", lambda name: tmp_path / name)
    feat._load_cached.cache_clear()
    try:
        with pytest.raises(DataError, match="not found"):
            load_digits_features()
        with pytest.raises(DataError, match="not found"):
            load_digits_features_info()
    finally:
        feat._load_cached.cache_clear()
