"""Tokenizers through the command line: a tiny config trains, `genlab eval` reports the
tokenizer's metrics, `genlab encode` writes the codes of both splits; bad input is one
line with exit status 2 and leaves what was saved intact. The shipped configs validate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli

from genlab.config import RunConfig, load_config
from genlab.errors import ConfigError
from genlab.runs import load_run, make_data
from genlab.tokens.codes import load_codes

CONFIGS = Path(__file__).parents[2] / "configs"
TINY = """
[data]
name = "digits"
[model]
family = "vqvae"
[tokenizer]
architecture = "conv"
channels = 8
[tokenizer.vq]
codebook_size = 16
codebook_dim = 4
cosine = true
gradient = "rotation"
[train]
steps = 4
batch_size = 32
checkpoint_every = 4
progress = false
"""
METRICS = {"recon_mse", "codebook_usage", "perplexity", "dead_codes", "decoder_bpd",
           "unigram_bound_bpd", "recon_fd", "recon_fd_floor"}  # fmt: skip


def test_train_eval_encode(tmp_path: Path, capsys) -> None:
    cfg, run_dir, out = tmp_path / "tiny.toml", tmp_path / "run", tmp_path / "codes.npz"
    cfg.write_text(TINY)
    assert run_cli(["train", cfg, "--out", run_dir], capsys)[0] == 0
    code, text, err = run_cli(["eval", run_dir, "-n", 16], capsys)
    assert code == 0, err
    assert "codebook_usage" in text and "recon_fd" in text
    own = json.loads((run_dir / "eval.json").read_text())["family_metrics"]
    assert METRICS <= set(own) and 0 < own["codebook_usage"] <= 1
    code, text, err = run_cli(["encode", run_dir, "--out", out, "--threads", 1], capsys)
    assert code == 0, err
    codes, run = load_codes(out), load_run(run_dir)
    data = make_data(run.config.data)
    assert codes.codebook_size == 16 and codes.grid == (4, 4)
    assert torch.equal(codes.test, run.model.encode(data.test))
    assert codes.train.shape[0] == data.train.shape[0] and codes.train_labels is not None
    before = out.read_bytes()
    code, _, err = run_cli(["encode", run_dir, "--out", out], capsys)
    assert_one_line_error(code, err, "exists", "--force")
    assert out.read_bytes() == before
    code, _, err = run_cli(["eval", run_dir, "--likelihood"], capsys)
    assert_one_line_error(code, err, "has no likelihood")


def test_encode_refuses_a_run_that_is_not_a_tokenizer(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "vae.toml"
    cfg.write_text('[data]\nname = "digits"\n[model]\nfamily = "vae"\n[vae]\nhidden = 8\n'
                   'latent_dim = 2\n[train]\nsteps = 1\nprogress = false\n')  # fmt: skip
    assert run_cli(["train", cfg, "--out", tmp_path / "run"], capsys)[0] == 0
    code, _, err = run_cli(["encode", tmp_path / "run", "--out", tmp_path / "c.npz"], capsys)
    assert_one_line_error(code, err, "not a tokenizer")
    assert not (tmp_path / "c.npz").exists()


@pytest.mark.parametrize("name", ["digits-vqvae", "digits-vqgan", "digits-fsq"])
def test_shipped_configs_validate(name: str) -> None:
    cfg = load_config(CONFIGS / f"{name}.toml")
    assert cfg.model.family == name.split("-")[1]
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("family", "extra", "needle"),
    [
        ("vqvae", {"gan": {"disc_start": 1}}, "tokenizer.gan: only for model.family = 'vqgan'"),
        ("vqvae", {"fsq": {"levels": [4, 4]}}, "tokenizer.fsq: this run's quantizer is 'vq'"),
        ("fsq", {"quantizer": "vq"}, "tokenizer.quantizer"),
        ("vqvae", {"architecture": "conv", "attention": True}, "tokenizer.attention"),
        ("vqvae", {"downsample": 4}, "tokenizer.downsample"),
        ("vqvae", {"channel_mult": [1, 2, 2]}, "tokenizer.channel_mult"),
        ("vqvae", {"vq": {"ema_decay": 1.0}}, "tokenizer.vq.ema_decay"),
    ],
)
def test_bad_tokenizer_configs_name_the_key(family: str, extra: dict, needle: str) -> None:
    values = {"data": {"name": "digits"}, "model": {"family": family}, "tokenizer": extra}
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")) as info:
        RunConfig.from_dict(values)
    assert "\n" not in str(info.value)
