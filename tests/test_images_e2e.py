"""Image runs end to end through the command line: a tiny class-conditional UNet and a tiny
DiT on the 8x8 digits are trained for a few dozen steps, sampled as grids (with and without
--class / --guidance) and evaluated (FD etc. next to the noise floor); bad image options are
one-line errors with exit status 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli
from PIL import Image

from genlab.cli import main
from genlab.config import RunConfig
from genlab.errors import ConfigError

TINY_UNET = """
[data]
name = "digits"
labels = true
[model]
preset = "ddpm"
num_classes = 10
label_dropout = 0.2
[net]
name = "unet"
channels = 8
channel_mult = [1, 2]
num_res_blocks = 1
attention_levels = []
head_dim = 8
[train]
steps = 30
batch_size = 32
warmup_steps = 5
ema_decay = 0.9
checkpoint_every = 30
log_every = 10
progress = false
[sample]
sampler = "ddim"
nfe = 4
n = 40
"""

TINY_DIT = """
[data]
name = "digits"
[model]
preset = "edm"
[net]
name = "dit"
patch_size = 2
hidden = 32
depth = 1
num_heads = 2
[train]
steps = 20
batch_size = 32
warmup_steps = 5
ema_decay = 0.9
checkpoint_every = 20
log_every = 10
progress = false
[sample]
sampler = "euler"
nfe = 3
n = 20
"""


def grid_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


@pytest.fixture(scope="module")
def unet_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unet")
    (root / "c.toml").write_text(TINY_UNET)
    with pytest.raises(SystemExit) as info:
        main(["train", str(root / "c.toml"), "--out", str(root / "run")])
    assert info.value.code in (0, None)
    return root / "run"


def test_unet_grids_with_and_without_class_and_guidance(
    unet_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["sample", unet_run, "--out", tmp_path / "g.png", "-n", 16], capsys)
    assert code == 0, err
    # 16 images -> 4 x 4 tiles of 8 * 4 pixels with 1-pixel padding
    assert grid_size(tmp_path / "g.png") == (4 * 32 + 5, 4 * 32 + 5)
    args = ["sample", unet_run, "--class", "all", "-n", 20, "--guidance", 3]
    code, _, err = run_cli([*args, "--out", tmp_path / "all.png"], capsys)
    assert code == 0, err
    assert grid_size(tmp_path / "all.png") == (2 * 32 + 3, 10 * 32 + 11)  # a row per class
    args = ["sample", unet_run, "--class", 7, "-n", 6, "--guidance", 0]
    code, _, err = run_cli([*args, "--out", tmp_path / "x.npy"], capsys)
    assert code == 0, err
    x = np.load(tmp_path / "x.npy")
    assert x.shape == (6, 1, 8, 8) and np.isfinite(x).all()
    assert (np.load(tmp_path / "x-labels.npy") == 7).all()


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--class", "10"], "0..9"), (["--class", "seven"], "integer or 'all'"),
     (["--sampler", "eulr"], "sampler")],
)  # fmt: skip
def test_bad_sample_flags_are_one_line(
    unet_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
    needle: str,
) -> None:  # fmt: skip
    code, _, err = run_cli(["sample", unet_run, "--out", tmp_path / "g.png", *args], capsys)
    assert_one_line_error(code, err, needle)


def test_unet_eval_reports_metrics_next_to_the_floor(
    unet_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(["eval", unet_run, "-n", 40, "--guidance", 2], capsys)
    assert code == 0, err
    record = json.loads((unet_run / "eval.json").read_text())
    metrics = record["metrics"]
    assert record["guidance"] == 2.0 and metrics["n_samples"] == 40
    for key in ("fd", "kid", "precision", "recall", "accuracy"):
        assert math.isfinite(metrics[key]) and math.isfinite(metrics[f"{key}_floor"]), key
    assert metrics["fd"] >= 0 and metrics["fd_floor"] >= 0
    assert 0 <= metrics["accuracy"] <= 1 and "fd" in out


def test_dit_trains_samples_and_evaluates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "c.toml").write_text(TINY_DIT)
    run = tmp_path / "run"
    code, _, err = run_cli(["train", tmp_path / "c.toml", "--out", run], capsys)
    assert code == 0, err
    code, _, err = run_cli(["sample", run, "--out", tmp_path / "g.png", "-n", 9], capsys)
    assert code == 0, err
    assert grid_size(tmp_path / "g.png") == (3 * 32 + 4, 3 * 32 + 4)
    code, _, err = run_cli(["sample", run, "--out", tmp_path / "g.png", "--class", "3"], capsys)
    assert_one_line_error(code, err, "--class", "not class-conditional")
    code, _, err = run_cli(["eval", run, "-n", 20], capsys)
    assert code == 0, err
    metrics = json.loads((run / "eval.json").read_text())["metrics"]
    assert math.isfinite(metrics["fd"]) and "accuracy" not in metrics


def test_guidance_needs_label_dropout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c.toml").write_text(
        TINY_UNET.replace("label_dropout = 0.2", "").replace("steps = 30", "steps = 2")
    )
    run = tmp_path / "run"
    code, _, err = run_cli(["train", tmp_path / "c.toml", "--out", run], capsys)
    assert code == 0, err
    args = ["sample", run, "--out", tmp_path / "g.png", "--class", "1", "--guidance", "2"]
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, "--guidance", "label dropout")


BAD_IMAGE_SETS = [
    ("net.patch_size=3", "net.patch_size", "must divide the image size 8"),
    ("net.channels=8", "net.channels", "not an option of net 'dit'"),
    ("net.name=mlp", "net.patch_size", "not an option of net 'mlp'"),
    ("data.size=8", "data.size", "only allowed with data.name = 'images'"),
    ("data.name=moons", "net.name", "vector data"),
    ("data.n_train=100", "data.n_train", "fixed split"),
    ("model.label_dropout=0.1", "model.label_dropout", "num_classes > 0"),
    ("model.num_classes=10", "model.num_classes", "data.labels = true"),
    ("data.labels=true", "data.labels", "model.num_classes"),
    ("data.hflip=maybe", "data.hflip", "true or false"),
]


@pytest.mark.parametrize(("item", "key", "needle"), BAD_IMAGE_SETS,
                         ids=[i for i, _, _ in BAD_IMAGE_SETS])  # fmt: skip
def test_bad_image_options_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], item: str, key: str, needle: str
) -> None:
    (tmp_path / "c.toml").write_text(TINY_DIT)
    args = ["train", tmp_path / "c.toml", "--out", tmp_path / "run", "--set", item]
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, key, needle)
    assert not (tmp_path / "run").exists()


def test_image_nets_are_checked_and_an_mlp_sees_flat_pixels() -> None:
    from genlab.families import net_for

    cfg = RunConfig.from_dict({"data": {"name": "digits"}, "net": {"name": "mlp", "depth": 1}})
    net = net_for(cfg, (1, 8, 8))
    x = torch.randn(3, 1, 8, 8)
    out = net(x, torch.zeros(3))
    assert out.shape == x.shape
    flat = net.net(x.flatten(1), torch.zeros(3))  # the same MLP on the flattened pixels
    assert torch.equal(out, flat.reshape(x.shape))
    with pytest.raises(ConfigError, match="net.attention_levels: levels .2. outside 0..1"):
        RunConfig.from_dict({"data": {"name": "digits"},
                             "net": {"name": "unet", "attention_levels": [2]}})  # fmt: skip
    with pytest.raises(ConfigError, match="net.hidden: must be a multiple of 4 and of num_heads"):
        RunConfig.from_dict({"data": {"name": "digits"},
                             "net": {"name": "dit", "hidden": 30, "num_heads": 4}})  # fmt: skip


def test_images_path_loads_npy_and_checks_channels(tmp_path: Path) -> None:
    from genlab.runs import make_data

    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.integers(0, 256, size=(30, 8, 8), dtype=np.uint8))
    cfg = RunConfig.from_dict({"data": {"name": "images", "path": str(tmp_path / "x.npy"),
                                        "n_test": 5, "hflip": True},
                               "net": {"name": "unet"}})  # fmt: skip
    data = make_data(cfg.data)
    assert data.shape == (1, 8, 8) and data.test.shape[0] == 5 and data.train.shape[0] == 50
    assert float(data.train.min()) >= -1 and float(data.train.max()) <= 1
    bad = cfg.data.model_copy(update={"channels": 3})
    with pytest.raises(Exception, match="channels"):
        make_data(bad)
    with pytest.raises(ConfigError, match="data.path: required"):
        RunConfig.from_dict({"data": {"name": "images"}, "net": {"name": "unet"}})
