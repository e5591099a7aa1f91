"""Bugs the input fuzzer (`benchmarks/fuzz_inputs.py`) found, one regression test each: the
input that used to end in a traceback, a hang or an allocation of terabytes, and the one
line genlab answers now."""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run_cli
from PIL import Image
from run_helpers import train_tiny

from genlab import memory
from genlab.data.images import load_array_images, load_image_folder, read_idx
from genlab.data.points import load_points
from genlab.errors import DataError

TINY = """
[data]
name = "moons"
n_train = 40
n_test = 8
[net]
hidden = 8
depth = 1
time_dim = 4
[train]
steps = 1
batch_size = 8
warmup_steps = 1
progress = false
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("regressions"), TINY)


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    shutil.copytree(trained, tmp_path / "run")
    return tmp_path / "run"


def _npy_declaring(shape: tuple[int, ...], data: bytes = b"") -> bytes:
    """A .npy file whose header declares `shape` (float32), followed by `data` only."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue() + data


def test_a_link_loop_in_a_run_is_refused(run, tmp_path, capsys) -> None:
    (run / "config.json").unlink()
    (run / "config.json").symlink_to(run / "config.json")
    code, _, err = run_cli(["sample", run, "--out", tmp_path / "s.npy"], capsys)
    assert_one_line_error(code, err, f"{run / 'config.json'}: resolves to a loop of links")


@pytest.mark.parametrize(("shape", "dim"), [([10**9, 10**9], None), ([2], 5), ([0], None),
                                            ([1, 8, 8], None), ([], None)])  # fmt: skip
def test_a_crafted_example_shape_is_refused(run, tmp_path, capsys, shape, dim) -> None:
    record = json.loads((run / "config.json").read_text())
    record["data_shape"] = shape
    if dim is not None:
        record["data_dim"] = dim
    (run / "config.json").write_text(json.dumps(record))
    code, _, err = run_cli(["eval", run], capsys)
    assert_one_line_error(code, err, f"config.json: data_shape {shape}",
                          "cannot be the shape of data.name = 'moons' examples ((2,))")  # fmt: skip


def test_sizes_that_overflow_64_bits_are_refused(tmp_path, capsys) -> None:
    config = tmp_path / "c.toml"
    config.write_text(TINY.replace("hidden = 8", "hidden = 1000000000000"))
    code, _, err = run_cli(["train", config, "--out", tmp_path / "r"], capsys)
    assert_one_line_error(code, err, "net: the model (flow-matching, MLP 1000000000000x1) has "
                          "tensors too large to count in 64 bits")  # fmt: skip


def test_array_headers_declaring_terabytes_are_not_allocated(tmp_path) -> None:
    points = tmp_path / "p.npy"
    points.write_bytes(_npy_declaring((10**12, 2), b"\0" * 32))
    with pytest.raises(DataError, match=r"p\.npy: not a readable \.npy file \(its header "
                       r"declares an array of shape \(1000000000000, 2\), 8 TB, but it holds "
                       r"32 B: truncated or corrupt\)"):  # fmt: skip
        load_points(points)
    archive = tmp_path / "i.npz"
    archive.write_bytes(_zip_of(_npy_declaring((10**12, 8, 8))))
    with pytest.raises(DataError, match=r"i\.npz \(images\.npy\): not a readable \.npz file"):
        load_array_images(archive)


def _zip_of(member: bytes) -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("images.npy", member)
    return buffer.getvalue()


def test_arrays_that_fit_the_file_but_not_memory_are_refused(tmp_path, monkeypatch) -> None:
    path = tmp_path / "p.npy"
    np.save(path, np.zeros((1000, 2), np.float32))
    monkeypatch.setattr(memory, "memory_limit", lambda: 4000)
    with pytest.raises(DataError, match=r"p\.npy: the array of shape \(1000, 2\) needs about "
                       r"8 kB, more than the 4 kB of memory this process may use"):  # fmt: skip
        load_points(path)


def test_broken_or_exploding_gzip_idx_files_are_one_line(tmp_path, monkeypatch) -> None:
    blob = bytes([0, 0, 8, 3]) + struct.pack(">3I", 3, 4, 4) + bytes(48)
    packed = gzip.compress(blob, mtime=0)
    flipped = tmp_path / "flip.gz"  # a damaged deflate stream: zlib.error, not OSError
    flipped.write_bytes(packed[:12] + bytes([packed[12] ^ 0xFF]) + packed[13:])
    with pytest.raises(DataError, match=r"flip\.gz: corrupt gzip data"):
        read_idx(flipped)
    bomb = tmp_path / "bomb.gz"
    bomb.write_bytes(gzip.compress(blob + bytes(10_000), mtime=0))
    monkeypatch.setattr("genlab.data.images.memory_limit", lambda: 2_000)
    with pytest.raises(DataError, match=r"bomb\.gz: decompresses to more than 1 kB"):
        read_idx(bomb)


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buffer, format="PNG")
    data = buffer.getvalue()
    ihdr = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    return data[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]


def test_image_folders_that_cannot_fit_are_refused_before_decoding(tmp_path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(_png(2**30, 2**30))  # a decompression bomb
    with pytest.raises(DataError, match=r"a\.png: not a readable image \(Image size"):
        load_image_folder(folder, channels=1)
    (folder / "a.png").write_bytes(_png(8, 8))
    with pytest.raises(DataError, match=r"imgs: 1 images of 1000000x1000000 needs about 9 TB"):
        load_image_folder(folder, size=10**6, channels=1)


def test_negative_labels_are_a_data_error(tmp_path) -> None:
    path = tmp_path / "i.npz"
    np.savez(path, images=np.zeros((3, 8, 8), np.uint8), labels=np.array([0, -1, 2]))
    with pytest.raises(DataError, match=r"i\.npz: labels must be class indices 0, 1, \.\.\. "
                       r"\(got -1\)"):  # fmt: skip
        load_array_images(path)


def test_a_network_name_that_is_no_string_is_one_line(tmp_path, capsys) -> None:
    config = tmp_path / "c.toml"
    config.write_text(TINY)
    code, _, err = run_cli(["train", config, "--set", "net.name=[1, 2]"], capsys)
    assert_one_line_error(code, err, "net.name: must be a string (got [1, 2])")


_FIRST_IMPORT = """
import sys
from genlab.config import RunConfig
from genlab.runs.budget import footprint
assert "torchdiffeq" not in sys.modules
cfg = RunConfig.from_dict({"data": {"name": "moons"}, "model": {"family": "cnf"}})
footprint(cfg, (2,))  # imports torchdiffeq for the first time, inside the meta build
from torchdiffeq._impl.dopri5 import _DORMAND_PRINCE_SHAMPINE_TABLEAU as tableau
print(tableau.alpha.device)
"""


def test_modules_first_imported_by_a_meta_build_keep_their_tensors_on_the_cpu() -> None:
    import os
    import subprocess
    import sys

    src = str(Path(__file__).parent.parent / "src")
    proc = subprocess.run([sys.executable, "-c", _FIRST_IMPORT], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": src}, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "cpu"


@pytest.mark.parametrize(
    ("values", "message"),
    [({"net": {"depth": 10**12}}, "net.depth: must be <= 1000 (got 1000000000000)"),
     ({"model": {"family": "nice"}, "flow": {"layers": 10**15}}, "flow.layers: must be <= 1000"),
     ({"model": {"family": "vae"}, "vae": {"depth": 10**12}}, "vae.depth: must be <= 1000"),
     ({"data": {"name": "digits"}, "net": {"name": "unet", "channel_mult": [1] * 17}},
      "net.channel_mult: at most 16 levels (got 17)"),
     ({"model": {"preset": "ddpm", "path_options": {"num_steps": 10**12}}},
      "model.path_options: 'ddpm': num_steps must be an integer in 2..1000000")],
)  # fmt: skip
def test_counts_of_layers_that_would_hang_the_build_are_refused(values, message) -> None:
    """A model is built one module at a time: 10**12 layers hung before any estimate (and a
    DDPM path of 10**12 steps allocated its tables while the config was being checked)."""
    from genlab.config import RunConfig
    from genlab.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        RunConfig.from_dict(values)


def test_an_npy_header_numpy_cannot_tokenize_is_one_line(tmp_path) -> None:
    """Bytes inserted into the header dict made numpy raise tokenize.TokenError."""
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((4, 2), np.float32))
    data = buffer.getvalue()
    at = data.index(b"(4, 2)")
    path = tmp_path / "p.npy"
    path.write_bytes(data[:at] + b"((" + data[at:])
    with pytest.raises(DataError, match=r"p\.npy: not a readable \.npy file \(bad header: "):
        load_points(path)
