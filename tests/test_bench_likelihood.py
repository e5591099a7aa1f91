"""`genlab bench likelihood`: the table over the shipped family configs (quick ring run),
its baselines and its cache."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli

from genlab.bench import likelihood as lk
from genlab.data.digits import digits_split
from genlab.data.gmm import GaussianMixture
from genlab.errors import ConfigError
from genlab.runs import make_data

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "likelihood"


def test_categorical_baseline_matches_the_anchor() -> None:
    split = digits_split()
    assert lk.categorical_bpd(split.train_x, split.test_x, 17) == pytest.approx(2.431434, abs=1e-6)
    # a categorical fit on the test images themselves can only do better (it is their MLE + 1)
    assert lk.categorical_bpd(split.test_x, split.test_x, 17) < 2.431434


def test_every_family_has_a_digits_and_a_ring_config() -> None:
    for data in ("digits", "ring"):
        names = {p.stem.removeprefix(f"{data}-") for p in lk.find_configs(CONFIGS, data)}
        assert {"nice", "realnvp", "glow", "cnf", "vae", "edm", "vp-sde", "flow-matching"} <= names
        for path in lk.find_configs(CONFIGS, data):
            cfg = lk.load(path, ())
            assert cfg.train.select == "best" and cfg.train.val_every > 0  # selected on val
            assert cfg.train.max_seconds > 0 and cfg.train.time_clock == "cpu"


def test_quick_ring_table_and_its_cache(tmp_path) -> None:
    torch.set_num_threads(1)
    logs: list[str] = []
    rows = lk.run("ring", configs=CONFIGS, quick=True, cache=tmp_path, log=logs.append)
    names = [r.name for r in rows]
    assert names[0] == "exact mixture"
    assert {"nice", "realnvp", "glow", "cnf", "edm", "vp-sde", "flow-matching"} <= set(names)
    assert "vae (ELBO)" in names and "vae (IWAE k=16)" in names
    for r in rows:
        assert math.isfinite(r.test) and r.unit == "nats", r
        if r.name != "exact mixture":
            assert r.params > 0 and r.steps == 40 and math.isfinite(r.train_cpu_s)
    # the exact row is the mixture's own NLL of the rows' test points
    cfg = lk.load(CONFIGS / "ring-nice.toml", lk.QUICK)
    test = make_data(cfg.data).test[: cfg.likelihood.n].double()
    exact = float(-GaussianMixture.ring().log_prob(test).mean())
    assert rows[0].test == pytest.approx(exact, abs=1e-12)
    (elbo,) = [r for r in rows if r.name == "vae (ELBO)"]
    (iwae,) = [r for r in rows if r.name == "vae (IWAE k=16)"]
    assert iwae.test <= elbo.test + 1e-9  # -IWAE_k <= -ELBO
    # a second run reuses the finished rows without training
    again = lk.run("ring", configs=CONFIGS, families=["nice"], quick=True, cache=tmp_path,
                   log=logs.append)  # fmt: skip
    assert again[1].test == next(r.test for r in rows if r.name == "nice")
    assert any("cached" in line for line in logs)
    # each row keeps its per-example NLLs (their mean is the row's); rows cached without them
    # are rescored from the trained run, not retrained
    nice = again[1]
    per = nice.extra[lk.PER_EXAMPLE]
    assert len(per) == cfg.likelihood.n and sum(per) / len(per) == pytest.approx(nice.test)
    (rows_file,) = tmp_path.glob("**/ring-nice-*/rows.json")
    old = json.loads(rows_file.read_text())
    for r in old:
        del r["extra"][lk.PER_EXAMPLE]
    rows_file.write_text(json.dumps(old))
    steps = rows_file.with_name("metrics.jsonl").read_text()
    third = lk.run("ring", configs=CONFIGS, families=["nice"], quick=True, cache=tmp_path,
                   log=logs.append)  # fmt: skip
    assert third[1].extra[lk.PER_EXAMPLE] == pytest.approx(per, abs=1e-9)
    assert rows_file.with_name("metrics.jsonl").read_text() == steps  # no training
    assert lk.PER_EXAMPLE in json.loads(rows_file.read_text())[0]["extra"]


def test_unknown_family_and_missing_configs_are_one_line_errors(tmp_path, capsys) -> None:
    with pytest.raises(ConfigError, match="no config glowz"):
        lk.find_configs(CONFIGS, "ring", ["glowz"])
    code, _, err = run_cli(["bench", "likelihood", "--data", "ring", "--configs", tmp_path], capsys)
    assert_one_line_error(code, err, "no ring-*.toml configs")
    code, _, err = run_cli(["bench", "likelihood", "--data", "cifar"], capsys)
    assert_one_line_error(code, err, "--data")
