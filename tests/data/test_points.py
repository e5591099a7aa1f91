"""Point-cloud files: round trips and one-line errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from genlab.data.points import load_points
from genlab.errors import DataError


def _expect_error(path: Path, pattern: str) -> DataError:
    with pytest.raises(DataError, match=pattern) as info:
        load_points(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    return info.value


def test_npy_round_trip(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).normal(size=(50, 3))
    np.save(tmp_path / "pts.npy", arr)
    x = load_points(tmp_path / "pts.npy")
    assert x.dtype == torch.float32 and x.shape == (50, 3)
    assert torch.allclose(x, torch.from_numpy(arr).float())


def test_npy_integer_dtype_accepted(tmp_path: Path) -> None:
    np.save(tmp_path / "ints.npy", np.arange(6, dtype=np.int64).reshape(3, 2))
    x = load_points(str(tmp_path / "ints.npy"))
    assert x.dtype == torch.float32
    assert x.tolist() == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]


@pytest.mark.parametrize("header", [True, False])
def test_csv_round_trip(tmp_path: Path, header: bool) -> None:
    lines = (["x,y"] if header else []) + ["1.5,-2", " 3e-1 , 4", "", "5,6"]
    (tmp_path / "pts.csv").write_text("\n".join(lines) + "\n")
    x = load_points(tmp_path / "pts.csv")
    assert x.dtype == torch.float32
    assert torch.equal(x, torch.tensor([[1.5, -2.0], [0.3, 4.0], [5.0, 6.0]]))


def test_missing_file(tmp_path: Path) -> None:
    _expect_error(tmp_path / "nope.npy", "not found")


def test_unsupported_extension(tmp_path: Path) -> None:
    (tmp_path / "pts.txt").write_text("1,2\n")
    _expect_error(tmp_path / "pts.txt", r"unsupported file extension '\.txt'")


def test_truncated_npy(tmp_path: Path) -> None:
    path = tmp_path / "pts.npy"
    np.save(path, np.zeros((100, 2)))
    path.write_bytes(path.read_bytes()[:-40])
    _expect_error(path, "not a readable .npy file")


def test_garbage_npy(tmp_path: Path) -> None:
    path = tmp_path / "pts.npy"
    path.write_bytes(bytes(range(256)) * 4)
    _expect_error(path, "not a readable .npy file")


def test_pickled_object_npy_refused(tmp_path: Path) -> None:
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    _expect_error(path, "not a readable .npy file")


def test_string_npy_refused(tmp_path: Path) -> None:
    path = tmp_path / "str.npy"
    np.save(path, np.array([["a", "b"]]))
    _expect_error(path, "not real numeric")


def test_csv_binary_garbage(tmp_path: Path) -> None:
    path = tmp_path / "pts.csv"
    path.write_bytes(b"\xff\xfe\x00\x81" * 20)
    _expect_error(path, "not a text file")


def test_csv_non_numeric_row(tmp_path: Path) -> None:
    path = tmp_path / "pts.csv"
    path.write_text("x,y\n1,2\n3,abc\n")
    _expect_error(path, r"line 3 \(row index 1\), column 'y' \(index 1\): 'abc' is not a number")


def test_csv_ragged_row(tmp_path: Path) -> None:
    path = tmp_path / "pts.csv"
    path.write_text("1,2\n3,4,5\n")
    _expect_error(path, r"line 2 \(row index 1\) has 3 columns, expected 2 as in line 1: "
                  r"extra values from column index 2 on")


@pytest.mark.parametrize("content", ["", "x,y\n", "\n\n"])
def test_csv_without_rows(tmp_path: Path, content: str) -> None:
    path = tmp_path / "pts.csv"
    path.write_text(content)
    _expect_error(path, "no data rows")


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4), ()])
def test_npy_wrong_ndim(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = tmp_path / "pts.npy"
    np.save(path, np.zeros(shape))
    _expect_error(path, r"expected a 2-D array \(N, D\)")


@pytest.mark.parametrize("shape", [(0, 2), (3, 0)])
def test_npy_empty(tmp_path: Path, shape: tuple[int, int]) -> None:
    path = tmp_path / "pts.npy"
    np.save(path, np.zeros(shape))
    _expect_error(path, "empty table")


def test_npy_non_finite_counted_with_first_row(tmp_path: Path) -> None:
    arr = np.zeros((10, 2))
    arr[4, 1] = np.nan
    arr[7, 0] = np.inf
    arr[7, 1] = -np.inf
    path = tmp_path / "pts.npy"
    np.save(path, arr)
    _expect_error(path, r"row index 4, column index 1: NaN \(3 bad value\(s\) in all\)")


def test_csv_non_finite_and_float32_overflow(tmp_path: Path) -> None:
    path = tmp_path / "pts.csv"
    path.write_text("a,b\n0,0\n1e300,2\ninf,1\n")
    _expect_error(path, r"line 3 \(row index 1\), column 'a' \(index 0\): 1e\+300 is beyond "
                  r"float32's range \(2 bad value\(s\) in all\)")
