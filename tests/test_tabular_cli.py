"""A user's table through the command line: raw units in (a CSV with a header, columns of
very different scales, an integer column), raw units out (CSV samples with the header,
likelihood of the raw values), and one-line errors naming row and column for bad tables."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run_cli

CONFIG = """
[data]
name = "points"
path = "{path}"
n_test = {n_test}
{extra}

[model]
preset = "flow-matching"

[net]
name = "mlp"
hidden = 64
depth = 3

[train]
steps = {steps}
batch_size = 128
lr = 3e-3
warmup_steps = 20
ema_decay = 0.98
progress = false
checkpoint_every = 10000
val_fraction = {val}

[likelihood]
rtol = 1e-4
atol = 1e-4
draws = 2
"""


def _config(tmp: Path, data: Path, *, steps: int = 2, n_test: int = 2, val: float = 0.0,
            extra: str = "") -> Path:  # fmt: skip
    path = tmp / "table.toml"
    path.write_text(CONFIG.format(path=data.as_posix(), n_test=n_test, steps=steps, val=val,
                                  extra=extra))  # fmt: skip
    return path


# a 2 x 2 Gaussian of raw columns: thousands (recorded as integers) next to ~0.1
MEAN = np.array([1000.0, 0.1])
COV = np.array([[300.0**2, 0.6 * 300 * 0.02], [0.6 * 300 * 0.02, 0.02**2]])


def _gaussian_table(path: Path, n: int) -> np.ndarray:
    x = np.random.default_rng(0).multivariate_normal(MEAN, COV, n)
    x[:, 0] = np.round(x[:, 0])  # an integer column: a grid of step 1
    lines = ["revenue,ratio"] + [f"{int(a)},{b:.9f}" for a, b in x]
    path.write_text("\n".join(lines) + "\n")
    return x


def test_raw_units_in_and_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Columns 15,000x apart train in standardised coordinates; samples come back in raw
    units with the header and the integer column on its grid; SW2 is within 2x its floor
    and the test NLL of the raw values is close to the exact Gaussian's NLL of them."""
    data = tmp_path / "table.csv"
    _gaussian_table(data, 1500)
    cfg = _config(tmp_path, data, steps=600, n_test=300, val=0.1)
    run = tmp_path / "run"
    code, out, err = run_cli(["train", cfg, "--out", run], capsys)
    assert code == 0, err
    assert "dequantised grid columns: revenue (step 1)" in out
    code, out, err = run_cli(["sample", run, "--out", tmp_path / "s.csv", "-n", 4000], capsys)
    assert code == 0, err
    with open(tmp_path / "s.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["revenue", "ratio"]
    assert all("." not in r[0] for r in rows[1:])  # integers stay integers
    s = np.array(rows[1:], dtype=float)
    np.testing.assert_allclose(s.mean(0), MEAN, rtol=0.05)
    np.testing.assert_allclose(s.std(0), np.sqrt(np.diag(COV)), rtol=0.15)
    code, out, err = run_cli(["eval", run, "--likelihood"], capsys)
    assert code == 0, err
    record = json.loads((run / "eval.json").read_text())
    assert record["metrics"]["sw2_ratio"] <= 2.0
    # the exact NLL of the same test rows (the integer column's dequantisation adds at most
    # ~1/12 / 300^2 relative variance: negligible) in raw units
    from scipy.stats import multivariate_normal

    from genlab.config import load_config
    from genlab.runs import make_data

    test = make_data(load_config(cfg).data).test.double().numpy()
    exact = -multivariate_normal(MEAN, COV).logpdf(test).mean()
    nats = record["likelihood"][0]["nats"]
    assert abs(nats - exact) < 0.25, (nats, exact)
    assert math.isfinite(record["likelihood"][0]["mc_se"])


BAD_TABLES = [
    ("a,b\n1,2\n3,\n5,6\n", r"line 3 (row index 1), column 'b' (index 1): empty cell"),
    ("a,b\n1,2\n3,nan\n5,6\n", "line 3 (row index 1), column 'b' (index 1): NaN"),
    ("a,b\n1,2\n3,4\nx7,6\n", "line 4 (row index 2), column 'a' (index 0): 'x7' is not a number"),
    ("a,b\n1,2\n3,4,5\n", "line 3 (row index 1) has 3 columns, expected 2 as in the header"),
    (
        "a,b\n1,2\n3\n",
        "line 3 (row index 1) has 1 columns, expected 2 as in the header: "
        "column 'b' (index 1) is missing",
    ),  # fmt: skip
    ("a,b\n" + "".join(f"{i},5\n" for i in range(9)), "column 'b' (index 1) is constant"),
    ("a,b\n1,2\n3,4\n5,7\n", "3 rows, the split needs at least 4: data.n_test = 2 test rows"),
    ("a,b\n1,2\n3,4\n5,6\n7,1\ninf,1\n", "line 6 (row index 4), column 'a' (index 0): infinite"),
]


@pytest.mark.parametrize(("text", "needle"), BAD_TABLES)
def test_bad_tables_exit_2_with_one_line_naming_row_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, needle: str
) -> None:
    data = tmp_path / "bad.csv"
    data.write_text(text)
    run = tmp_path / "run"
    code, _, err = run_cli(["train", _config(tmp_path, data), "--out", run], capsys)
    assert_one_line_error(code, err, str(data), needle)
    assert not run.exists()  # nothing was written


def test_log_column_and_validation_rows_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "t.csv"
    data.write_text("a,b\n" + "".join(f"{i},{i - 3}\n" for i in range(10)))
    cfg = _config(tmp_path, data, extra='log_columns = ["b"]')
    code, _, err = run_cli(["train", cfg, "--out", tmp_path / "r"], capsys)
    assert_one_line_error(code, err, "line 2 (row index 0), column 'b' (index 1): -3 is not > 0")
    few = tmp_path / "few.csv"
    few.write_text("a,b\n1,2\n3,4\n5,7\n6,1\n")
    cfg = _config(tmp_path, few, val=0.3)  # 2 test rows, 1 validation row, 1 training row
    code, _, err = run_cli(["train", cfg, "--out", tmp_path / "r"], capsys)
    assert_one_line_error(code, err, "4 rows, the split needs at least 5: 2 test rows "
                                     "(data.n_test), 1 validation row(s)")  # fmt: skip


def test_a_transform_that_changes_nothing_is_left_out(tmp_path: Path) -> None:
    """Continuous columns with data.transform = "none" need no stage (no wrapper, no record);
    the default standardises; a grid column alone is enough for one."""
    from genlab.config import load_config
    from genlab.runs import make_data
    from genlab.runs.stage import fit_stage

    data = tmp_path / "t.csv"
    rng = np.random.default_rng(1)
    data.write_text("a,b\n" + "".join(f"{u:.9f},{v:.9f}\n" for u, v in rng.normal(size=(20, 2))))
    for extra, wrapped in (('transform = "none"', False), ("", True)):
        cfg = load_config(_config(tmp_path, data, extra=extra))
        stats = fit_stage(cfg, make_data(cfg.data))
        assert (stats is not None) == wrapped
    data.write_text("a,b\n" + "".join(f"{u:.9f},{i % 3}\n" for i, (u, _) in enumerate(
        rng.normal(size=(20, 2)))))  # fmt: skip
    cfg = load_config(_config(tmp_path, data, extra='transform = "none"'))
    stats = fit_stage(cfg, make_data(cfg.data))
    assert stats is not None and stats.record()["grid"] == [["b", 1.0]]
