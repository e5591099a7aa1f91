"""Column statistics of a table: grid detection on constructed columns, the scalings, log
columns, and the one-line errors naming the column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genlab.data.columns import IQR_TO_STD, decimals, fit_columns, grid_step
from genlab.data.points import Table, load_table
from genlab.errors import ConfigError, DataError

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    ("column", "step", "origin"),
    [
        (RNG.poisson(7.0, 200).astype(float) + 3.0, 1.0, None),  # integer counts
        (RNG.integers(0, 2, 200).astype(float), 1.0, 0.0),  # binary flags
        (np.array([1.0, 2.0, 1.0, 2.0]), 1.0, 1.0),  # a 1/2 coding (diabetes' sex)
        (np.round(RNG.normal(5.0, 1.0, 200), 2), 0.01, None),  # two decimals
        (np.array([0.25, 0.5, 1.25, 2.0]), 0.25, 0.25),  # quarters: gcd of the gaps
        (np.array([1.1, 1.3, 1.7, 2.1]), 0.2, 1.1),  # a grid with an offset
        (np.array([10.0, 30.0, 50.0, 20.0]), 10.0, 10.0),  # tens
        (np.array([-3.0, 1.5, 0.0]), 1.5, -3.0),  # negative values
    ],
)
def test_grid_columns_are_detected_with_their_step(
    column: np.ndarray, step: float, origin: float | None
) -> None:
    got_step, got_origin = grid_step(column)
    assert got_step == pytest.approx(step, rel=1e-12)
    # every value is origin + k * step for an integer k
    k = (column - got_origin) / got_step
    np.testing.assert_allclose(k, np.round(k), atol=1e-9)
    assert got_origin == pytest.approx(column.min() if origin is None else origin)


@pytest.mark.parametrize(
    "column",
    [RNG.normal(0.0, 1.0, 200), RNG.normal(1000.0, 300.0, 50), np.round(RNG.random(50), 9)],
    ids=["gaussian", "thousands", "nine-decimals"],
)
def test_continuous_columns_have_no_grid(column: np.ndarray) -> None:
    assert grid_step(column) == (0.0, 0.0)


def test_decimals_of_a_step() -> None:
    assert [decimals(s) for s in (1.0, 5.0, 0.5, 0.01, 0.002, 0.25, 1e-6)] == [0, 0, 1, 2, 3, 2, 6]


def test_float32_array_keeps_its_decimals(tmp_path: Path) -> None:
    """A float32 .npy of two-decimal values reads as those decimals (the shortest repr), so
    its grid is found: 14.23 in float32 is 14.229999542..., not on a 0.01 grid."""
    path = tmp_path / "t.npy"
    np.save(path, np.array([[14.23, 1.0], [13.2, 2.0], [12.37, 1.0]], dtype=np.float32))
    table = load_table(path)
    assert table.values[0, 0] == 14.23
    assert grid_step(table.values[:, 0]) == pytest.approx((0.01, 12.37))


def _table(values: np.ndarray, header: tuple[str, ...] | None = None) -> Table:
    return Table(Path("t.csv"), values, header)


def test_standard_and_robust_scalings_and_log_columns_by_hand() -> None:
    x = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 40.0], [6.0, 80.0]])  # b = 10 * 2^k
    t = _table(x, ("a", "b"))
    std = fit_columns(t, np.arange(4), log=["b"])
    np.testing.assert_allclose(std.shift, [3.0, np.log(10.0) + 1.5 * np.log(2.0)])
    np.testing.assert_allclose(std.scale, [x[:, 0].std(), np.log(2.0) * np.sqrt(1.25)])
    assert std.step.tolist() == [1.0, 10.0]  # grids: integers, and multiples of 10
    assert std.log.tolist() == [False, True]
    rob = fit_columns(t, np.arange(4), scaling="robust")
    q1, med, q3 = np.percentile(x[:, 0], [25, 50, 75])  # 1.75, 2.5, 3.75
    assert rob.shift[0] == pytest.approx(med) and rob.scale[0] == pytest.approx(2.0 / IQR_TO_STD)
    assert (q3 - q1) == pytest.approx(2.0)
    none = fit_columns(t, np.arange(4), scaling="none", log=[0])
    np.testing.assert_array_equal(none.shift, [0.0, 0.0])
    assert none.log.tolist() == [True, False]
    # statistics come from the training rows only
    part = fit_columns(t, np.array([0, 1]))
    np.testing.assert_allclose(part.shift, [1.5, 15.0])


def test_fit_records_what_was_done_to_which_column() -> None:
    x = np.column_stack([RNG.normal(size=30), RNG.integers(0, 5, 30).astype(float)])
    stats = fit_columns(_table(x, ("height", "count")), np.arange(30))
    assert stats.record()["grid"] == [["count", 1.0]]
    assert "dequantised grid columns: count (step 1)" in stats.describe()
    off = fit_columns(_table(x, ("height", "count")), np.arange(30), grid=False)
    assert off.record()["grid"] == []


@pytest.mark.parametrize(
    ("kwargs", "values", "message"),
    [
        (
            {},
            [[1.0, 5.0], [2.0, 5.0]],
            r"column 'b' \(index 1\) is constant over the 2 "
            r"training rows \(every value is 5\): zero scale",
        ),
        (
            {"log": ["a"]},
            [[1.0, 5.0], [-2.0, 6.0]],
            r"row index 1, column 'a' \(index 0\): "
            r"-2 is not > 0",
        ),
        (
            {"scaling": "robust"},
            [[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [1.0, 3.0], [2.0, 9.0]],
            r"column 'a' \(index 0\): interquartile range 0",
        ),
        (
            {"log": ["a"]},
            [[0.5, 1.0], [1.5, 2.0]],
            r"column 'a' \(index 0\): the log "
            r"transform needs values > 0.5",
        ),
    ],
)
def test_bad_columns_are_one_line_errors(kwargs: dict, values: list, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        fit_columns(_table(np.array(values), ("a", "b")), np.arange(len(values)), **kwargs)
    assert "\n" not in str(info.value)


def test_log_columns_must_name_columns() -> None:
    t = _table(np.array([[1.0, 2.0], [3.0, 5.0]]), ("a", "b"))
    with pytest.raises(ConfigError, match=r"data.log_columns: no column 'c' \(a, b\)"):
        fit_columns(t, np.arange(2), log=["c"])
    with pytest.raises(ConfigError, match="index 2 is out of range"):
        fit_columns(t, np.arange(2), log=[2])
    unnamed = _table(t.values)
    with pytest.raises(ConfigError, match="the file has no header: use indices"):
        fit_columns(unnamed, np.arange(2), log=["a"])
