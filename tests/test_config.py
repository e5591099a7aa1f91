"""Run configs: TOML <-> model <-> dict round trips, overrides, one-line validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from genlab.config import RunConfig, apply_override, load_config, parse_value
from genlab.errors import ConfigError

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_round_trip(path: Path) -> None:
    cfg = load_config(path)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert RunConfig.from_toml(cfg.to_toml()) == cfg


def test_round_trip_with_options_and_overrides(tmp_path: Path) -> None:
    text = """
[data]
name = "gmm-ring"
[model]
preset = "ddpm"
path = "ddpm"
path_options = { schedule = "cosine" }
weighting = "min_snr"
weighting_options = { gamma = 5.0 }
[train]
betas = [0.9, 0.99]
grad_clip = 0
"""
    (tmp_path / "c.toml").write_text(text)
    cfg = load_config(tmp_path / "c.toml", ["train.steps=7", "sample.sampler=euler"])
    assert cfg.train.steps == 7 and cfg.sample.sampler == "euler"
    assert cfg.options.path_options == {"schedule": "cosine"}
    assert cfg.train.grad_clip == 0
    assert RunConfig.from_toml(cfg.to_toml()) == cfg
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_options_without_name_adjust_the_preset_piece() -> None:
    cfg = RunConfig.from_dict({"model": {"preset": "ddpm", "path_options": {"schedule": "cosine"}}})
    comp = cfg.options.component("path")
    assert comp is not None and comp.name == "ddpm" and comp.options["schedule"] == "cosine"


@pytest.mark.parametrize(
    ("text", "value"),
    [("100", 100), ("1e-3", 1e-3), ("true", True), ("[0.9, 0.99]", [0.9, 0.99]),
     ("moons", "moons"), ('"8"', "8")],
)  # fmt: skip
def test_parse_value_is_toml_with_string_fallback(text: str, value: object) -> None:
    assert parse_value(text) == value


def test_override_reaches_into_tables() -> None:
    values: dict = {}
    apply_override(values, "model.path_options.schedule=cosine")
    assert values == {"model": {"path_options": {"schedule": "cosine"}}}
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        apply_override(values, "train.steps")


BAD = [
    ({"train": {"stepz": 1}}, "train.stepz: unknown key (allowed: batch_size"),
    ({"trian": {}}, "trian: unknown key (allowed: categorical-vae, cnf, data, flow, kl-"),
    ({"model": {"preset": "flow-matchin"}}, "model.preset: 'flow-matchin' is not one of ddim"),
    ({"train": {"lr": -1}}, "train.lr: must be > 0 (got -1)"),
    ({"train": {"steps": 0}}, "train.steps: must be >= 1"),
    ({"train": {"steps": "many"}}, "train.steps: must be an integer"),
    ({"train": {"batch_size": 0}}, "train.batch_size: must be >= 1"),
    ({"train": {"ema_decay": 1.0}}, "train.ema_decay: must be < 1"),
    ({"train": {"betas": [0.9]}}, "train.betas: too few items"),
    ({"data": {"n_test": 1}}, "data.n_test: must be >= 2"),
    ({"data": {"name": "moon"}}, "data.name: 'moon' is not one of"),
    ({"data": {"name": "points"}}, "data.path: required"),
    ({"sample": {"nfe": 0}}, "sample.nfe: must be >= 1"),
    ({"sample": {"sampler": "eulr"}}, "sample.sampler: 'eulr' is not one of"),
    ({"sample": {"schedule": "karas"}}, "sample.schedule: 'karas' is not one of"),
    ({"net": {"name": "unet9"}}, "net.name: 'unet9' is not one of dit, mlp, unet"),
    ({"model": {"path": "linearr"}}, "model.path: 'linearr' is not one of"),
    ({"model": {"parameterization": "epsilon"}}, "model.parameterization: 'epsilon'"),
    ({"model": {"noise": "gauss"}}, "model.noise: 'gauss' is not one of"),
    ({"model": {"weighting": "snr2"}}, "model.weighting: 'snr2' is not one of"),
    ({"model": {"path_options": {"bogus": 1}}}, "model.path_options: 'linear'"),
    ({"net": {"channels": 8}}, "net.channels: not an option of net 'mlp' (options: depth"),
    ({"net": {"name": "dit"}}, "net.name: 'dit' is for image data"),
    ({"model": {"family": "glow"}, "net": {"name": "mlp"}},
     "net: model.family = 'glow' has no [net]"),
    ({"model": {"family": "glow", "preset": "edm"}},
     "model.preset: only for model.family = 'diffusion' (got 'glow')"),
    ({"model": {"family": "glow"}, "vae": {}}, "vae: not a section of model.family = 'glow'"),
    ({"model": {"family": "flowz"}}, "model.family: 'flowz' is not one of categorical-vae, cnf"),
    ({"data": {"name": "digits"}, "model": {"family": "realnvp"}},
     "data.dequantize: model.family = 'realnvp' is a density of continuous data"),
    ({"data": {"name": "moons", "dequantize": True}}, "data.dequantize: only for image data"),
    ({"data": {"name": "digits", "logit": 0.05}}, "data.logit: needs data.dequantize = true"),
    ({"data": {"name": "digits", "dequantize": True, "logit": 0.5}}, "data.logit: must be < 0.5"),
    ({"model": {"family": "glow"}, "flow": {"stepz": 3}},
     "flow.stepz: unknown key (allowed: base, checkerboard, components, dropout, hidden"),
    ({"model": {"family": "cnf"}, "cnf": {"trace": "exactly"}}, "cnf.trace: "),
    ({"model": {"family": "cnf"}, "cnf": {"method": "rk4"}},
     "cnf: method 'rk4' is fixed-grid: set step_size"),
    ({"model": {"family": "cnf"}, "cnf": {"step_size": 0.1}},
     "cnf: step_size is only for fixed-grid methods, not 'dopri5'"),
    ({"model": {"family": "cnf"}, "cnf": {"method": "rk5"}},
     "cnf.method: 'rk5' is not one of adaptive_heun, bosh3, dopri5"),
    ({"likelihood": {"draws": 0}}, "likelihood.draws: must be >= 1 (got 0)"),
    ({"train": {"time_clock": "sundial"}}, "train.time_clock: "),
    ({"data": {"name": "digits", "n_test": 9}, "net": {"name": "unet"}}, "data.n_test: digits"),
    ({"data": {"name": "images"}, "net": {"name": "unet"}}, "data.path: required"),
    ({"data": {"name": "digits", "channels": 2}, "net": {"name": "unet"}}, "data.channels: must"),
    ({"data": {"hflip": True}}, "data.hflip: only for image data sets"),
    ({"data": {"name": "digits"}, "net": {"name": "dit", "patch_size": 3}}, "net.patch_size: must"),
    ({"model": {"label_dropout": 0.1}}, "model.label_dropout: needs a class-conditional"),
    ({"model": {"num_classes": -1}}, "model.num_classes: must be >= 0"),
]


@pytest.mark.parametrize(("values", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_values_name_the_key(values: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict(values)
    text = str(info.value)
    assert text.startswith(message)
    assert "\n" not in text


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.toml: config file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nsteps = 1\n")
    with pytest.raises(ConfigError, match="bad.toml: invalid TOML"):
        load_config(bad)


def test_net_options_fill_defaults_and_round_trip() -> None:
    values = {"data": {"name": "digits", "labels": True},
              "model": {"preset": "edm", "num_classes": 10, "label_dropout": 0.2},
              "net": {"name": "unet", "channels": 16, "channel_mult": [1, 2]}}  # fmt: skip
    cfg = RunConfig.from_dict(values)
    opts = cfg.net.options
    assert opts.channels == 16 and opts.channel_mult == (1, 2)
    assert opts.num_res_blocks == 1 and not hasattr(opts, "patch_size")
    assert RunConfig.from_toml(cfg.to_toml()) == cfg
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
