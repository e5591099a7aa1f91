"""The token prior through the command line: a config naming a tokenizer TOML trains it
into a cache and the prior on its codes; the run directory alone rebuilds the model (the
tokenizer's directory may move); `genlab sample --decode` decodes plainly, with Medusa or
speculatively (greedy Medusa = greedy plain, through the CLI); `genlab eval --likelihood`
reports the two-stage bound in bits/dim next to the prior's own metrics; a Medusa-1 run
trains heads on a frozen base prior; bad input is one line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli
from tokens.standin import FAMILY, tokenizer_config

from genlab import families
from genlab.config import dumps_toml, load_config
from genlab.runs import build_model, load_run, train_run

TRAIN = {"steps": 6, "batch_size": 64, "warmup_steps": 1, "checkpoint_every": 6,
         "progress": False, "lr": 3e-3}  # fmt: skip
PRIOR = {"dim": 16, "depth": 1, "heads": 2, "medusa_heads": 2, "tree_nodes": 6}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The stand-in tokenizer's TOML, a class-conditional prior (with label dropout) over
    it trained into `prior/` (here, so that every test of the module finds it whichever
    worker runs it), and the directory holding them."""
    families.register(FAMILY, replace=True)
    root = tmp_path_factory.mktemp("token-prior")
    (root / "tok.toml").write_text(dumps_toml(tokenizer_config(levels=6)))
    prior = {"data": {"name": "digits", "labels": True},
             "model": {"family": "token-prior", "num_classes": 10, "label_dropout": 0.2},
             "token-prior": {**PRIOR, "tokenizer": str(root / "tok.toml"),
                             "cache": str(root / "cache")},
             "train": TRAIN, "likelihood": {"n": 16}}  # fmt: skip
    (root / "prior.toml").write_text(dumps_toml(prior))
    train_run(load_config(root / "prior.toml"), root / "prior")
    yield root
    families.unregister(FAMILY.name)


def _sample(run_dir, out, capsys, *flags) -> np.ndarray:
    code, _, err = run_cli(["sample", run_dir, "--out", out, "-n", 6, "--seed", 3, *flags],
                           capsys)  # fmt: skip
    assert code == 0, err
    return np.load(out)


def test_prior_trains_on_a_tokenizer_config_and_samples_every_way(runs, capsys) -> None:
    code, _, err = run_cli(["train", runs / "prior.toml", "--out", runs / "cli"], capsys)
    assert code == 0, err
    record = json.loads((runs / "cli" / "config.json").read_text())["config"]["token-prior"]
    (cached,) = (runs / "cache").iterdir()  # the tokenizer, trained once into the cache
    assert record["tokenizer_run"] == str(cached)
    assert record["tokenizer_record"]["config"]["model"]["family"] == FAMILY.name
    plain = _sample(runs / "cli", runs / "plain.npy", capsys, "--temperature", 0)
    medusa = _sample(runs / "cli", runs / "medusa.npy", capsys, "--decode", "medusa",
                     "--temperature", 0)  # fmt: skip
    assert plain.shape == (6, 1, 8, 8) and np.array_equal(plain, medusa)
    for flags in (["--decode", "speculative", "--top-k", 3], ["--decode", "medusa"],
                  ["--top-p", 0.9, "--guidance", 2.0]):  # fmt: skip
        x = _sample(runs / "cli", runs / "x.npy", capsys, *flags)
        assert x.shape == (6, 1, 8, 8) and np.abs(x).max() <= 1.0


def test_eval_reports_the_two_stage_bound_and_bits_per_token(runs, capsys) -> None:
    code, out, err = run_cli(["eval", runs / "prior", "-n", 20, "--likelihood"], capsys)
    assert code == 0, err
    record = json.loads((runs / "prior" / "eval.json").read_text())
    (bound,) = record["likelihood"]
    assert bound["name"] == "two-stage" and bound["n"] == 16
    assert bound["bpd"] == pytest.approx(bound["nats"] / (64 * np.log(2)), rel=1e-12)
    own = record["family_metrics"]
    assert 0 < own["bits_per_token"] < np.log2(6) + 2  # 6 codes: a few bits at most
    assert {"head1_top1", "head1_top5", "head2_top1_prior"} <= set(own)
    assert record["sampler"] == "plain (T=1)"


def test_the_run_directory_alone_rebuilds_the_model(runs) -> None:
    before = load_run(runs / "prior")
    x = before.model.sample(4, torch.arange(4), generator=torch.Generator().manual_seed(0))
    moved = runs / "moved-cache"
    shutil.move(runs / "cache", moved)
    try:
        after = load_run(runs / "prior")
        y = after.model.sample(4, torch.arange(4), generator=torch.Generator().manual_seed(0))
        assert bool(after.model.ready) and torch.equal(x, y)
    finally:
        shutil.move(moved, runs / "cache")


def test_medusa1_heads_train_on_a_frozen_base_prior(runs, capsys) -> None:
    cfg = {"data": {"name": "digits", "labels": True},
           "model": {"family": "token-prior", "num_classes": 10},
           "token-prior": {"base": str(runs / "prior"), "medusa_heads": 3, "head_path": True},
           "train": TRAIN}  # fmt: skip
    (runs / "medusa1.toml").write_text(dumps_toml(cfg))
    code, _, err = run_cli(["train", runs / "medusa1.toml", "--out", runs / "m1"], capsys)
    assert code == 0, err
    base, heads = load_run(runs / "prior").model, load_run(runs / "m1").model
    assert heads.freeze_prior and heads.heads.n_heads == 3
    assert heads.heads.path_embed is not None and heads.heads.path_embed.any()  # trained
    greedy = ["--temperature", 0, "-n", 3, "--class", 2]
    code, _, err = run_cli(["sample", runs / "m1", "--out", runs / "m.npy", "--decode", "medusa",
                            *greedy], capsys)  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli(["sample", runs / "m1", "--out", runs / "p.npy", *greedy], capsys)
    assert code == 0, err
    assert np.array_equal(np.load(runs / "m.npy"), np.load(runs / "p.npy"))
    for name, value in base.state_dict().items():
        if name.startswith(("net.", "tokenizer.")):
            assert torch.equal(value, heads.state_dict()[name]), name
    # before training, each head is the identity block and the trained prior's projection
    fresh = build_model(families.get("token-prior").prepare(load_config(runs / "medusa1.toml")),
                        (1, 8, 8))  # fmt: skip
    assert torch.equal(fresh.heads.proj, base.net.head.weight.expand(3, -1, -1))
    assert not fresh.heads.res_weight.any()
    # a network option that contradicts the base is refused
    cfg["token-prior"]["dim"] = 32
    (runs / "bad.toml").write_text(dumps_toml(cfg))
    code, _, err = run_cli(["train", runs / "bad.toml", "--out", runs / "bad"], capsys)
    assert_one_line_error(code, err, "token-prior.dim", "base")
    assert not (runs / "bad").exists()


@pytest.mark.parametrize(("flags", "needles"), [
    (["--decode", "beam"], ["decode", "plain, medusa, speculative"]),
    (["--temperature", -1], ["temperature: must be >= 0"]),
    (["--nfe", 5], ["nfe", "not a sampling option of token priors"]),
    (["--decode", "medusa", "--guidance", 2], ["--guidance", "plain decoding"]),
])  # fmt: skip
def test_bad_sampling_options_are_one_line(runs, capsys, flags, needles) -> None:
    code, _, err = run_cli(["sample", runs / "prior", "--out", runs / "bad.npy", *flags], capsys)
    assert_one_line_error(code, err, *needles)


def test_bad_tokenizer_sources_are_one_line(runs, tmp_path, capsys) -> None:
    text = (runs / "prior.toml").read_text()
    for source, needle in ((tmp_path / "nowhere", "neither a run directory"),
                           (tmp_path / "none.toml", "config file not found"),
                           (runs, "config.json: missing")):  # fmt: skip
        bad = tmp_path / "bad.toml"
        bad.write_text(text.replace(str(runs / "tok.toml"), str(source)))
        code, _, err = run_cli(["train", bad, "--out", tmp_path / "run"], capsys)
        assert_one_line_error(code, err, "token-prior.tokenizer", needle)
        assert not (tmp_path / "run").exists()


def test_other_families_refuse_decode_options(tmp_path, capsys) -> None:
    cfg = tmp_path / "nice.toml"
    cfg.write_text(
        '[data]\nname = "moons"\nn_train = 64\nn_test = 16\n[model]\nfamily = "nice"\n'
        "[flow]\nsteps = 2\nhidden = 8\n[train]\nsteps = 2\nprogress = false\n"
    )
    assert run_cli(["train", cfg, "--out", tmp_path / "r"], capsys)[0] == 0
    code, _, err = run_cli(["sample", tmp_path / "r", "--out", tmp_path / "s.npy",
                            "--decode", "medusa"], capsys)  # fmt: skip
    assert_one_line_error(code, err, "decode", "not a sampling option")


def test_bench_medusa_reports_identity_speed_and_exactness(runs, capsys) -> None:
    out = runs / "medusa.json"
    code, text, err = run_cli(["bench", "medusa", runs / "prior", "--sequences", 12,
                               "--timing", 3, "--seeds", 2, "--samples", 40, "--tree-nodes", "2,6",
                               "--out", out],
                              capsys)  # fmt: skip
    assert code == 0, err
    report = json.loads(out.read_text())
    assert [r["tree_nodes"] for r in report["greedy"]] == [2, 6]
    for row in report["greedy"]:
        assert row["identical"] == row["sequences"] == 12
        assert row["generated_tokens"] == 16 - 4  # prompts: the first row of 4 codes
    for section in (*report["greedy"], report["speculative"], report["typical"]):
        assert section["tokens_per_forward"] >= 1.0 and section["speedup_cpu"] > 0
    assert len(report["heads"]) == 2 and "top-5" in text


def test_chi_square_of_token_histograms() -> None:
    from genlab.bench.medusa import chi_square

    a = torch.randint(4, (400, 3), generator=torch.Generator().manual_seed(0))
    assert chi_square(a, a.clone(), 4) == (1.0, 1.0)  # identical histograms
    b = a.clone()
    b[:, 1] = 0  # one position differs
    low, corrected = chi_square(a, b, 4)
    assert low < 1e-20 and corrected == pytest.approx(3 * low)


def test_self_distilled_head_targets_need_a_base_prior(runs) -> None:
    from genlab.config import RunConfig
    from genlab.errors import ConfigError

    values = {"data": {"name": "digits"}, "model": {"family": "token-prior"},
              "token-prior": {"tokenizer": str(runs / "tok.toml"), "medusa_heads": 2,
                              "head_targets": "greedy"}}  # fmt: skip
    with pytest.raises(ConfigError, match="token-prior.head_targets: 'greedy'.*base"):
        RunConfig.from_dict(values)
