"""Every model family through the command line: a TOML config trains, samples and reports
its test likelihood, and the run's likelihood agrees with the family's own evaluator."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli

from genlab.data.digits import digits_split
from genlab.discrete import grid_to_levels
from genlab.flows import Logit, NormalizingFlow, dequantized_bpd
from genlab.runs import load_run

TINY = """
[train]
steps = 12
batch_size = 32
checkpoint_every = 6
val_every = 6
select = "best"
progress = false

[likelihood]
draws = 2
n = 24
k = 16
elbo_draws = 2
rtol = 1e-3
atol = 1e-3
"""
FAMILIES = {
    "glow": '[data]\nname = "digits"\ndequantize = true\nlogit = 0.05\n'
            '[model]\nfamily = "glow"\n[flow]\nsteps = 2\nhidden = 8\ndropout = 0.1\n',
    "realnvp": '[data]\nname = "digits"\ndequantize = true\nlogit = 0.05\n'
               '[model]\nfamily = "realnvp"\n[flow]\nsteps = 2\nhidden = 8\n',
    "nice": '[data]\nname = "digits"\ndequantize = true\nlogit = 0.05\n'
            '[model]\nfamily = "nice"\n[flow]\nsteps = 2\nhidden = 16\n',
    "vae": '[data]\nname = "digits"\n[model]\nfamily = "vae"\n[vae]\nlatent_dim = 4\nhidden = 32\n',
    "edm": '[data]\nname = "digits"\ndequantize = true\n[model]\npreset = "edm"\n'
           '[net]\nname = "mlp"\nhidden = 32\ndepth = 2\n',
    "cnf": '[data]\nname = "digits"\ndequantize = true\nlogit = 0.05\n[model]\nfamily = "cnf"\n'
           '[net]\nname = "mlp"\nhidden = 16\ndepth = 2\n[cnf]\nrtol = 1e-2\natol = 1e-2\n',
}  # fmt: skip
GRID = {2 * v / 16 - 1 for v in range(17)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """Each family's config file and run directory (the tests train them)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("families")
    runs = {}
    for name, text in FAMILIES.items():
        cfg = root / f"{name}.toml"
        cfg.write_text(text + TINY)
        runs[name] = (cfg, root / "runs" / name)
    return runs


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_trains_samples_and_reports_bits_per_dim(family, trained, capsys) -> None:
    cfg, run_dir = trained[family]
    code, out, err = run_cli(["train", cfg, "--out", run_dir], capsys)
    assert code == 0, err
    code, out, err = run_cli(["sample", run_dir, "--out", run_dir / "s.npy", "-n", 8], capsys)
    assert code == 0, err
    x = np.load(run_dir / "s.npy")
    assert x.shape == (8, 1, 8, 8)
    assert {round(float(v), 6) for v in np.unique(x)} <= {round(v, 6) for v in GRID}
    code, out, err = run_cli(["eval", run_dir, "-n", 16, "--likelihood"], capsys)
    assert code == 0, err
    record = json.loads((run_dir / "eval.json").read_text())
    estimates = record["likelihood"]
    assert "bits/dim" in out and all(e["n"] == 24 for e in estimates)
    for e in estimates:  # bits/dim is the NLL in nats over D ln 2
        assert e["bpd"] == pytest.approx(e["nats"] / (64 * math.log(2.0)), rel=1e-12)
        assert 1.0 < e["bpd"] < 12.0
    if family == "vae":  # ELBO <= IWAE-k: the ELBO's bits/dim are the larger
        (elbo,) = [e for e in estimates if e["name"] == "ELBO"]
        (iwae,) = [e for e in estimates if e["name"].startswith("IWAE")]
        assert elbo["bpd"] >= iwae["bpd"] - 1e-9
    if family == "glow":  # the run's estimate is the anchor protocol's flow evaluator
        run = load_run(run_dir)
        flow = NormalizingFlow(run.model.model.flow, (1, 8, 8), levels=17, preprocess=Logit(0.05))
        v = grid_to_levels(digits_split().test_x[:24] / 8.0 - 1.0, 17)
        ref = dequantized_bpd(flow.eval(), v, [1000, 1001])
        assert estimates[0]["bpd"] == pytest.approx(float(ref.mean()), abs=1e-5)


def test_sampler_flags_are_refused_for_exact_samplers(trained, capsys) -> None:
    cfg, run_dir = trained["nice"]
    if not (run_dir / "config.json").exists():
        assert run_cli(["train", cfg, "--out", run_dir], capsys)[0] == 0
    code, _, err = run_cli(["sample", run_dir, "--out", run_dir / "s.npy", "--nfe", 5], capsys)
    assert_one_line_error(code, err, "diffusion runs")


def test_likelihood_of_raw_image_grid_is_refused(tmp_path, capsys) -> None:
    cfg = tmp_path / "edm.toml"
    cfg.write_text('[data]\nname = "digits"\n[model]\npreset = "edm"\n'
                   '[net]\nname = "mlp"\nhidden = 16\ndepth = 1\n' + TINY)  # fmt: skip
    assert run_cli(["train", cfg, "--out", tmp_path / "r"], capsys)[0] == 0
    code, _, err = run_cli(["eval", tmp_path / "r", "-n", 8, "--likelihood"], capsys)
    assert_one_line_error(code, err, "data.dequantize = true")
