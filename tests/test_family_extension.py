"""A new family is one module plus one table entry: `family_gaussian` (a module of the tests,
outside genlab) registers a full-covariance Gaussian through the public table, and the
command line trains, samples and scores it from a TOML config with no other change."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli
from family_gaussian import FAMILY

from genlab import families
from genlab.config import load_config
from genlab.runs import load_run, make_data

MEAN = np.array([3.0, -1.0])
COV = np.array([[4.0, 1.5], [1.5, 1.0]])
CONFIG = """
[data]
name = "points"
path = "{path}"
n_test = 500
transform = "none"
[model]
family = "gaussian"
[gaussian]
diagonal = false
[train]
steps = 400
batch_size = 500
lr = 0.05
warmup_steps = 10
ema_decay = 0.0
checkpoint_every = 400
progress = false
"""


@pytest.fixture
def gaussian_family():
    families.register(FAMILY)
    yield FAMILY
    families.unregister(FAMILY.name)


def _exact_nll(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> float:
    dist = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
    return float(-dist.log_prob(x).mean())


def test_registered_family_trains_samples_and_scores_from_the_cli(
    gaussian_family, tmp_path, capsys
) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "pts.npy", rng.multivariate_normal(MEAN, COV, size=3000))
    config = tmp_path / "gaussian.toml"
    config.write_text(CONFIG.format(path=tmp_path / "pts.npy"))
    run_dir = tmp_path / "run"

    code, out, err = run_cli(["families"], capsys)
    assert code == 0 and "gaussian" in out
    code, _, err = run_cli(["train", config, "--out", run_dir], capsys)
    assert code == 0, err
    code, _, err = run_cli(["sample", run_dir, "-n", 64, "--out", tmp_path / "s.npy"], capsys)
    assert code == 0, err
    assert np.load(tmp_path / "s.npy").shape == (64, 2)
    code, out, err = run_cli(["eval", run_dir, "--likelihood"], capsys)
    assert code == 0, err

    # the trainer reached the maximum-likelihood fit: the training split's mean and covariance
    data = make_data(load_config(config).data)
    train = data.train.double()
    mle_mean, mle_cov = train.mean(0), torch.cov(train.T, correction=0)
    model = load_run(run_dir).model
    scale = model.scale_tril().detach().double()
    assert torch.allclose(model.mu.detach().double(), mle_mean, atol=0.02)
    assert torch.allclose(scale @ scale.T, mle_cov, atol=0.05)
    # and `genlab eval --likelihood` reports its exact log-likelihood of the test split
    record = json.loads((run_dir / "eval.json").read_text())
    (estimate,) = record["likelihood"]
    assert estimate["name"] == "exact" and estimate["n"] == 500
    test = data.test.double()
    assert estimate["nats"] == pytest.approx(_exact_nll(test, mle_mean, mle_cov), abs=0.02)
    assert estimate["nats"] < _exact_nll(test, torch.zeros(2, dtype=torch.float64),
                                         torch.eye(2, dtype=torch.float64)) - 1.0  # fmt: skip


def test_registered_family_options_are_checked(gaussian_family, tmp_path, capsys) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[data]\nname = "moons"\n[model]\nfamily = "gaussian"\n'
                      '[gaussian]\ndiag = true\n')  # fmt: skip
    code, _, err = run_cli(["train", config, "--out", tmp_path / "r"], capsys)
    assert_one_line_error(code, err, "gaussian.diag: unknown key (allowed: diagonal)")
    config.write_text('[data]\nname = "digits"\n[model]\nfamily = "gaussian"\n')
    code, _, err = run_cli(["train", config, "--out", tmp_path / "r"], capsys)
    assert_one_line_error(code, err, "model.family: 'gaussian' needs vector data")


def test_unregistered_family_is_unknown(tmp_path, capsys) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[model]\nfamily = "gaussian"\n')
    code, _, err = run_cli(["train", config, "--out", tmp_path / "r"], capsys)
    assert_one_line_error(code, err, "model.family: 'gaussian' is not one of")
