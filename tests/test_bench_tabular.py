"""`genlab bench tabular`: its tables in raw units, the baselines scored as the families are
(checked against closed forms), selection on validation and the targets' verdict."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli
from scipy.stats import multivariate_normal

from genlab.bench import tabular as tab
from genlab.bench.baselines import fit_baselines
from genlab.bench.likelihood import PER_EXAMPLE, Row, paired_difference
from genlab.config import LikelihoodSection
from genlab.data.columns import fit_columns
from genlab.data.points import Table, load_table
from genlab.transform import ColumnTransform

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "tabular"


def test_tables_are_written_in_raw_units_with_their_header(tmp_path: Path) -> None:
    for name in tab.TABLES:
        values, header = tab.load_sklearn(name)
        table = load_table(tab.write_table(name, tmp_path))
        assert table.header == tuple(header)
        np.testing.assert_array_equal(table.values, values)  # every value exactly
    assert table.values.shape == (150, 4)
    raw, _ = tab.load_sklearn("diabetes")
    assert raw[:, 0].max() > 70 and set(np.unique(raw[:, 1])) == {1.0, 2.0}  # age, sex


def test_every_family_has_a_tabular_config_selected_on_validation() -> None:
    from genlab.bench.likelihood import configs_in, load

    paths = configs_in(CONFIGS, "")
    families = {p.stem.split(".")[0] for p in paths}
    assert families >= {"flow-matching", "edm", "vp-sde", "realnvp", "glow", "nice", "cnf", "vae"}
    for path in paths:
        cfg = load(path, [*tab.SPLIT, 'data.path="t.csv"'])
        assert cfg.data.name == "points" and cfg.data.has_transform
        assert cfg.train.select == "best" and cfg.train.val_every > 0
        assert cfg.train.max_seconds > 0 and cfg.train.time_clock == "cpu"


def test_gaussian_baseline_is_the_raw_unit_maximum_likelihood_gaussian() -> None:
    """Standardising is affine, so the Gaussian fitted in standardised units is the raw ML
    Gaussian: its test NLL equals scipy's with the training mean and (biased) covariance."""
    rng = np.random.default_rng(0)
    cov = np.array([[9e4, 3.0], [3.0, 4e-4]])  # stds 300 and 0.02, correlation 0.5
    x = rng.multivariate_normal([5000.0, 0.2], cov, 400)
    table = Table(Path("t.csv"), x, ("big", "small"))
    stats = fit_columns(table, np.arange(300), grid=False)
    t = ColumnTransform.from_stats(stats)
    train, val, test = (torch.from_numpy(x[s]) for s in (slice(0, 250), slice(250, 300),
                                                         slice(300, 400)))  # fmt: skip
    white = fit_columns(table, np.arange(300), grid=False, scaling="whiten")
    spaces = {"standardised": t, "whitened": ColumnTransform.from_stats(white)}
    settings = LikelihoodSection(draws=1)
    base = fit_baselines(spaces, train, val, settings, components=2, bandwidths=[0.3, 1.0])
    assert [b.name for b in base] == ["full-covariance Gaussian", "GaussianMixture", "Gaussian KDE"]
    tr = x[:250]
    exact = multivariate_normal(tr.mean(0), np.cov(tr.T, bias=True)).logpdf(x[300:])
    lp = base[0].model.log_prob(test).numpy()
    np.testing.assert_allclose(lp, exact, atol=1e-4)  # sklearn adds 1e-6 to the variances
    # the KDE's bandwidth is the one with the lowest validation NLL of the grid
    kde = base[2]
    assert kde.notes.startswith("bandwidth 1") or kde.notes.startswith("bandwidth 0.3")
    samples = base[0].model.sample(2000, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(samples.double().mean(0).numpy(), [5000.0, 0.2], rtol=0.05)


def _row(name: str, test: float, val: float | None = 1.0, family: str = "diffusion") -> Row:
    return Row(name, family, 1, 1, 1, 0.0, 0.0, val, test, 0.1, "nats", "",
               extra={"sw2_ratio": 1.5})  # fmt: skip


def test_variants_are_selected_on_validation_and_the_verdict_reads_the_targets() -> None:
    rows = [_row("glow.small", 5.0, val=2.0), _row("glow.big", 1.0, val=3.0),
            _row("vae (ELBO)", 4.0), _row("vae (IWAE k=1000)", 3.5),
            _row("nice", 9.0)]  # fmt: skip
    chosen = tab.select_variants(rows)
    names = [r.name for r in chosen]
    assert "glow.small" in names and "glow.big" not in names  # val 2.0 < 3.0, test ignored
    assert "selected on val NLL among glow.big 3.000, glow.small 2.000" in chosen[0].notes
    again = tab.select_variants(rows)  # the rows are not changed: the note appears once
    assert again[0].notes.count("selected on val NLL") == 1 and rows[0].notes == ""
    base = [_row("full-covariance Gaussian", 6.0, family="baseline"),
            _row("GaussianMixture", 3.8, family="baseline")]  # fmt: skip
    v = tab.verdict(base + chosen)
    assert v["best_family"] == "vae (IWAE k=1000)" and v["best_beats_baselines"]
    assert v["families_not_beating_gaussian"] == ["nice"]
    assert v["families_beating_gaussian"] == ["glow", "vae"]
    assert "does NOT beat" not in tab.summary("t", base + chosen)
    assert math.isclose(v["best_family_sw2_ratio"], 1.5)


def test_unknown_table_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["bench", "tabular", "--tables", "titanic"], capsys)
    assert_one_line_error(code, err, "--tables: 'titanic' is not one of wine, diabetes, iris")


def test_the_paired_difference_is_the_mean_and_standard_error_of_per_example_differences() -> None:
    g = torch.Generator().manual_seed(0)
    hard = 3 * torch.randn(40, generator=g, dtype=torch.float64)  # shared: some rows are hard
    a = hard + 0.1 * torch.randn(40, generator=g, dtype=torch.float64)
    b = hard + 0.2 + 0.1 * torch.randn(40, generator=g, dtype=torch.float64)
    family = _row("edm", float(a.mean()))
    family.extra[PER_EXAMPLE] = a.tolist()
    gmm = _row("GaussianMixture", float(b.mean()), family="baseline")
    gmm.extra[PER_EXAMPLE] = b.tolist()
    mean, se = paired_difference(family, gmm)
    d = a - b
    assert math.isclose(mean, float(d.mean()), rel_tol=1e-12)
    assert math.isclose(se, float(d.std(unbiased=True)) / math.sqrt(40), rel_tol=1e-12)
    assert se < 0.1 * float(a.std()) / math.sqrt(40)  # far tighter than either row's own se
    assert paired_difference(family, _row("KDE", 0.0, family="baseline")) is None
    v = tab.verdict([gmm, family])
    assert v["paired_difference"] == (mean, se)
    assert f"difference {mean:+.3f} ± {se:.3f} (paired)" in tab.summary("t", [gmm, family])
