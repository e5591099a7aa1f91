"""Memory estimates before allocating: every family builds on the meta device with exactly
the parameters and buffers of the real model, and configs (or crafted run directories) that
cannot fit are refused with one line naming the key, before anything is allocated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli
from run_helpers import snapshot, train_tiny

from genlab import memory, registry
from genlab.config import RunConfig
from genlab.errors import ConfigError
from genlab.runs import budget, build_model

VECTOR = {"name": "moons", "n_train": 100, "n_test": 10}
DIGITS = {"name": "digits"}
NETS = {"mlp": {"name": "mlp", "hidden": 8, "depth": 1, "time_dim": 4},
        "unet": {"name": "unet", "channels": 8},
        "dit": {"name": "dit", "hidden": 16, "depth": 1, "num_heads": 2}}  # fmt: skip


def _configs() -> list[tuple[str, dict[str, Any], tuple[int, ...]]]:
    cases = []
    for preset in registry.PRESETS:
        cases.append((f"{preset}-mlp", {"data": VECTOR, "model": {"preset": preset},
                                        "net": NETS["mlp"]}, (2,)))  # fmt: skip
        for net in ("unet", "dit"):
            model = {"preset": preset, "num_classes": 10, "label_dropout": 0.1}
            values = {"data": {**DIGITS, "labels": True}, "model": model, "net": NETS[net]}
            cases.append((f"{preset}-{net}", values, (1, 8, 8)))
    for family in ("nice", "realnvp", "glow", "vae", "categorical-vae", "cnf"):
        images = {**DIGITS, "dequantize": family not in ("vae", "categorical-vae")}
        cases.append((f"{family}-vector", {"data": VECTOR, "model": {"family": family}}, (2,)))
        cases.append((f"{family}-image", {"data": images, "model": {"family": family}}, (1, 8, 8)))
    cases.append(("kl-autoencoder", {"data": DIGITS, "model": {"family": "kl-autoencoder"}},
                  (1, 8, 8)))  # fmt: skip
    return cases


CASES = _configs()


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


@pytest.mark.parametrize(("values", "shape"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_model_builds_on_meta_with_the_real_sizes(values, shape) -> None:
    cfg = RunConfig.from_dict(values)
    fp = budget.footprint(cfg, shape)
    model = build_model(cfg, shape)
    assert fp.params == _bytes(model.parameters())
    assert fp.buffers == _bytes(model.buffers())
    assert fp.n_params == sum(p.numel() for p in model.parameters())
    example = 4 * torch.Size(shape).numel()
    assert fp.per_example >= budget.FLOOR_COPIES * example and fp.largest >= example


def test_the_memory_limit_is_the_smallest_of_the_machine_and_the_process_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    physical = memory._physical()
    assert physical is not None and memory.memory_limit() <= physical
    monkeypatch.setattr(memory, "_rlimits", lambda: [123_456_789])
    assert memory.memory_limit() == 123_456_789
    assert [memory.format_bytes(n) for n in (512, 123_456_789, 4e12, 2.5e18)] == \
        ["512 B", "123 MB", "4 TB", "2.5e+03 PB"]  # fmt: skip


def test_the_estimate_counts_parameters_five_times_to_train(monkeypatch) -> None:
    cfg = RunConfig.from_dict({"data": VECTOR, "model": {"family": "nice"},
                               "train": {"batch_size": 3}})  # fmt: skip
    fp = budget.footprint(cfg, (2,))
    need = budget.TRAIN_COPIES * fp.params + 2 * fp.buffers + 3 * fp.per_example + 100
    monkeypatch.setattr(budget, "memory_limit", lambda: need)  # just fits
    budget.check_training(cfg, (2,), 100)
    with pytest.raises(ConfigError, match=r"^flow: the model \(.* parameters: nice, 8 steps"):
        budget.check_training(cfg, (2,), 101)  # one byte more


TINY = """
[data]
name = "moons"
n_train = 100
n_test = 20
[net]
hidden = 8
depth = 1
time_dim = 4
[train]
steps = 2
batch_size = 16
warmup_steps = 1
progress = false
"""

ABSURD = [
    ("net.hidden=10000000", "net: the model (1e+14 parameters: flow-matching, MLP 10000000x1)"),
    ("net.depth=1000", None),  # many layers of a small width fit: it trains
    ("data.n_train=1000000000000", "data.n_train: making 1e+12 points needs about 24 TB"),
    ("train.batch_size=10000000000", "train.batch_size: a batch of 10000000000 examples"),
]


@pytest.mark.parametrize(("override", "message"), ABSURD, ids=[a[0] for a in ABSURD])
def test_absurd_sizes_are_refused_before_allocating(tmp_path, capsys, override, message):
    (tmp_path / "c.toml").write_text(TINY)
    args = ["train", tmp_path / "c.toml", "--out", tmp_path / "run", "--set", override]
    if message is None:
        args += ["--set", "train.steps=1"]
        assert run_cli(args, capsys)[0] == 0
        return
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, message, "more than the", "of memory this process may use")
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("budget"), TINY)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("net", {"name": "mlp", "hidden": 10_000_000, "depth": 1, "time_dim": 4}, "net: the model"),
    ("model", {"family": "vae"}, "net: model.family = 'vae' has no [net]"),
    ("model", {"family": "gpt"}, "model.family: 'gpt' is not one of"),
])  # fmt: skip
def test_a_crafted_config_json_is_refused_with_one_line(tiny_run, tmp_path, capsys, key, value,
                                                        message) -> None:  # fmt: skip
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    record = json.loads((run / "config.json").read_text())
    record["config"][key] = value
    (run / "config.json").write_text(json.dumps(record))
    before = snapshot(run)
    for args in (["sample", run, "--out", tmp_path / "s.npy"], ["eval", run]):
        code, _, err = run_cli(args, capsys)
        assert_one_line_error(code, err, message)
    assert snapshot(run) == before


def test_drawing_too_many_samples_is_refused(tiny_run, tmp_path, capsys) -> None:
    code, _, err = run_cli(["sample", tiny_run, "--out", tmp_path / "s.npy",
                            "-n", 10**13], capsys)  # fmt: skip
    assert_one_line_error(code, err, "n: drawing 1e+13 samples at once needs about")
    assert not (tmp_path / "s.npy").exists()
