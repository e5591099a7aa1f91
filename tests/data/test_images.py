"""Image loaders on small generated files of every format, and their errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.data.images import (
    from_unit,
    load_array_images,
    load_idx_images,
    load_image_folder,
    load_images,
    load_mnist,
    random_hflip,
    read_idx,
    to_unit,
)
from genlab.errors import DataError

RNG = np.random.default_rng(0)


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_unit_round_trip_and_flip() -> None:
    pixels = torch.arange(256, dtype=torch.uint8)
    x = to_unit(pixels)
    assert x.min() == -1 and x.max() == 1
    assert torch.equal(from_unit(x), pixels)
    imgs = torch.randn(64, 1, 4, 5)
    a = random_hflip(imgs, generator=torch.Generator().manual_seed(1))
    b = random_hflip(imgs, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    flipped = (a != imgs).flatten(1).any(1)
    assert 0 < flipped.sum() < 64
    assert torch.equal(a[flipped], imgs[flipped].flip(-1))
    assert torch.equal(random_hflip(imgs, p=0.0), imgs)


def test_image_folder_with_classes(tmp_path: Path) -> None:
    rows, cols = np.mgrid[0:6, 0:10]
    pixels = np.stack([rows * 40, cols * 25, rows * cols * 4], -1).astype(np.uint8)  # smooth
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
    Image.fromarray(pixels).save(tmp_path / "cat" / "a.png")
    Image.fromarray(pixels).save(tmp_path / "cat" / "b.jpg", quality=95)
    Image.fromarray(pixels[:, ::-1]).save(tmp_path / "dog" / "c.png")
    data = load_image_folder(tmp_path, channels=3)
    assert data.images.shape == (3, 3, 6, 10) and data.classes == ("cat", "dog")
    assert data.labels is not None and data.labels.tolist() == [0, 0, 1]
    assert torch.equal(from_unit(data.images[0]), torch.from_numpy(pixels).permute(2, 0, 1))
    assert (data.images[1] - data.images[0]).abs().mean() < 0.1  # JPEG is lossy
    small = load_image_folder(tmp_path, size=4, channels=1, labels=False)
    assert small.images.shape == (3, 1, 4, 4) and small.labels is None
    assert small.images.min() >= -1 and small.images.max() <= 1


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder not found"):
        load_image_folder(tmp_path / "nope")
    with pytest.raises(DataError, match="no .png"):
        load_image_folder(tmp_path)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((5, 4), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(DataError, match=r"b\.png: size 4x5 differs"):
        load_image_folder(tmp_path, channels=1)
    assert load_image_folder(tmp_path, size=4, channels=1).images.shape == (2, 1, 4, 4)
    good = (tmp_path / "a.png").read_bytes()
    (tmp_path / "b.png").write_bytes(good[: len(good) // 2])  # truncated PNG
    with pytest.raises(DataError, match=r"b\.png: not a readable image"):
        load_image_folder(tmp_path, channels=1)
    (tmp_path / "b.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"b\.png: not a readable image"):
        load_image_folder(tmp_path, channels=1)


@pytest.mark.parametrize(
    ("shape", "layout"), [((5, 4, 6), "nhw"), ((5, 4, 6, 3), "nhwc"), ((5, 3, 4, 6), "nchw")]
)
def test_npy_layouts(tmp_path: Path, shape: tuple[int, ...], layout: str) -> None:
    array = RNG.integers(0, 256, shape, dtype=np.uint8)
    np.save(tmp_path / "x.npy", array)
    data = load_array_images(tmp_path / "x.npy")
    if layout == "nhw":
        expected = array[:, None]
    else:
        expected = array.transpose(0, 3, 1, 2) if layout == "nhwc" else array
    assert torch.equal(from_unit(data.images), torch.from_numpy(expected))
    assert data.labels is None


def test_npz_floats_and_labels(tmp_path: Path) -> None:
    images = RNG.random((4, 1, 3, 3)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=images, y=np.arange(4))
    data = load_images(tmp_path / "d.npz")
    assert torch.allclose(data.images, torch.from_numpy(images) * 2 - 1)
    assert data.labels is not None and data.labels.tolist() == [0, 1, 2, 3]
    signed = load_array_images(tmp_path / "d.npz", value_range=(-1.0, 1.0))
    assert torch.allclose(signed.images, torch.from_numpy(images))
    np.savez(tmp_path / "bad.npz", images=images * 3)
    with pytest.raises(DataError, match="outside the assumed range"):
        load_array_images(tmp_path / "bad.npz")
    np.savez(tmp_path / "lab.npz", images=images, labels=np.arange(3))
    with pytest.raises(DataError, match="3 labels for 4 images"):
        load_array_images(tmp_path / "lab.npz")


@pytest.mark.parametrize("name", ["x.npy", "x.npz"])
def test_corrupt_arrays(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, np.zeros((4, 8, 8), np.uint8))
    else:
        np.savez(path, images=np.zeros((4, 8, 8), np.uint8))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 40])
    with pytest.raises(DataError, match=name.replace(".", r"\.")):
        load_array_images(path)
    with pytest.raises(DataError, match="file not found"):
        load_array_images(tmp_path / "missing.npy")
    np.save(tmp_path / "odd.npy", np.zeros((4, 8, 8, 7), np.uint8))
    with pytest.raises(DataError, match="cannot read images of shape"):
        load_array_images(tmp_path / "odd.npy")


@pytest.mark.parametrize("gz", [False, True])
def test_idx_mnist(tmp_path: Path, gz: bool) -> None:
    images = RNG.integers(0, 256, (7, 5, 4), dtype=np.uint8)
    labels = RNG.integers(0, 10, 7, dtype=np.uint8)
    suffix = ".gz" if gz else ""
    for name, array in (("images-idx3", images), ("labels-idx1", labels)):
        blob = _idx_bytes(array)
        (tmp_path / f"train-{name}-ubyte{suffix}").write_bytes(gzip.compress(blob) if gz else blob)
    data = load_mnist(tmp_path)
    assert torch.equal(from_unit(data.images), torch.from_numpy(images)[:, None])
    assert data.labels is not None and data.labels.tolist() == labels.tolist()
    assert torch.equal(load_images(tmp_path).images, data.images)
    one = load_idx_images(tmp_path / f"train-images-idx3-ubyte{suffix}")
    assert one.images.shape == (7, 1, 5, 4)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte: file not found"):
        load_mnist(tmp_path, split="test")


def test_idx_errors(tmp_path: Path) -> None:
    blob = _idx_bytes(np.zeros((3, 4, 4), np.uint8))
    bad = tmp_path / "bad-magic"
    bad.write_bytes(b"\x08\x03" + blob[2:])
    with pytest.raises(DataError, match="bad-magic: not an IDX file"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(blob[:-5])
    with pytest.raises(DataError, match="short: IDX data is 43 bytes.*truncated"):
        read_idx(short)
    header = tmp_path / "header"
    header.write_bytes(blob[:9])
    with pytest.raises(DataError, match="header: truncated IDX header"):
        read_idx(header)
    gz = tmp_path / "cut.gz"
    gz.write_bytes(gzip.compress(blob)[:-6])
    with pytest.raises(DataError, match=r"cut\.gz: corrupt gzip"):
        read_idx(gz)
    with pytest.raises(DataError, match="path not found"):
        load_images(tmp_path / "nothing")
