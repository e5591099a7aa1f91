"""Points and image files for the input fuzzer: valid ones, then poisoned (NaN, inf, huge
values, odd shapes and dtypes) or damaged byte by byte (cut short, garbage, flipped or
inserted bytes, headers declaring enormous sizes), in every format genlab reads (.npy,
.csv, .npz, IDX, IDX.gz, PNG folders with and without class sub-folders)."""

from __future__ import annotations

import copy
import gzip
import io
import struct
import zlib

import numpy as np
from fuzz_configs import BASES, TRAIN, Case, Chooser, caps_for

from genlab.config import dumps_toml


def points_array(rng: Chooser) -> np.ndarray:
    n, d = rng.choice([(40, 2), (30, 3), (24, 1)])
    seed = rng.randint(0, 99)
    return np.random.default_rng(seed).normal(size=(n, d)).astype(rng.choice(["f4", "f8"]))


def images_arrays(rng: Chooser) -> tuple[np.ndarray, np.ndarray]:
    n = rng.choice([12, 20])
    pixels = np.random.default_rng(rng.randint(0, 99)).integers(0, 256, (n, 8, 8))
    return pixels.astype(np.uint8), (np.arange(n) % 3).astype(np.int64)


def _poison(rng: Chooser, array: np.ndarray) -> tuple[np.ndarray, str]:
    """A semantic mutation of an array: non-finite or extreme values, odd shapes/dtypes."""
    op = rng.choice(["nan", "inf", "huge", "ndim", "empty", "dtype", "none", "none"])
    out = array.astype(np.float64)
    if op in ("nan", "inf", "huge"):
        out.flat[rng.randint(0, out.size - 1)] = {"nan": np.nan, "inf": -np.inf, "huge": 1e39}[op]
    elif op == "ndim":
        out = rng.choice([out.reshape(-1), out[..., None], out.reshape(1, *out.shape)])
    elif op == "empty":
        out = out[:0]
    elif op == "dtype":
        return array.astype(rng.choice(["c8", "U3", "bool", "f2", "i8", "u1"])), "dtype"
    else:
        out = array
    return out, op


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _png(rng: Chooser, array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def damage_bytes(rng: Chooser, data: bytes) -> tuple[bytes, str]:
    """A byte-level mutation: cut short, garbage, flipped or inserted bytes, a huge header."""
    op = rng.choice(["none", "none", "cut", "garbage", "flip", "insert", "empty", "header"])
    if op == "cut":
        return data[: rng.randint(0, max(0, len(data) - 1))], op
    if op == "garbage":
        return rng.randbytes(rng.randint(1, 300)), op
    if op == "flip" and data:
        at = rng.randint(0, len(data) - 1)
        return data[:at] + bytes([data[at] ^ (1 << rng.randint(0, 7))]) + data[at + 1 :], op
    if op == "insert":
        at = rng.randint(0, len(data))
        return data[:at] + rng.randbytes(rng.randint(1, 16)) + data[at:], op
    if op == "empty":
        return b"", op
    if op == "header":  # declare an enormous shape in whatever header there is
        for old in (b"(40, 2)", b"(30, 3)", b"(24, 1)", b"(12, 8, 8)", b"(20, 8, 8)"):
            data = data.replace(old, b"(1000000000000, 8, 8)"[: len(old) + 14])
        if data[:2] == b"\x00\x00" and len(data) > 8:  # IDX: the first size becomes 2**32 - 1
            data = data[:4] + b"\xff\xff\xff\xff" + data[8:]
        if data[:8] == b"\x89PNG\r\n\x1a\n":  # PNG: width and height 2**30, CRC redone
            ihdr = b"IHDR" + struct.pack(">II", 2**30, 2**30) + data[24:29]
            data = data[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]
    return data, op


POINT_FORMATS = ("npy", "csv")
IMAGE_FORMATS = ("npy", "npz", "idx", "idx.gz", "png-folder", "png-classes")


def _points_files(rng: Chooser) -> tuple[dict[str, bytes], str, str]:
    array, poison = _poison(rng, points_array(rng))
    fmt = rng.choice(POINT_FORMATS)
    if fmt == "npy":
        data = npy_bytes(array)
    else:
        rows = [",".join(str(v) for v in np.ravel(row).tolist()) for row in np.atleast_2d(array)]
        data = ("x,y\n" * rng.randint(0, 1) + "\n".join(rows)).encode()
    data, damage = damage_bytes(rng, data)
    return {f"p.{fmt}": data}, f"p.{fmt}", f"points {fmt} {poison} {damage}"


def _image_files(rng: Chooser) -> tuple[dict[str, bytes], str, str]:
    images, labels = images_arrays(rng)
    fmt = rng.choice(IMAGE_FORMATS)
    poisoned, poison = _poison(rng, images) if fmt in ("npy", "npz") else (images, "none")
    if fmt == "npy":
        files = {"i.npy": npy_bytes(poisoned)}
    elif fmt == "npz":
        bad_labels = rng.choice([labels, labels[:-1], -labels - 1, labels.astype("f4"), labels])
        files = {"i.npz": _npz(images=poisoned, labels=bad_labels)}
    elif fmt.startswith("idx"):
        blob = _idx(images)
        files = {"i.idx": gzip.compress(blob, mtime=0) if fmt == "idx.gz" else blob}
    else:
        classes = fmt == "png-classes"
        files = {(f"i/c{k % 3}/{k}.png" if classes else f"i/{k}.png"): _png(rng, img)
                 for k, img in enumerate(images)}  # fmt: skip
    name = rng.choice(sorted(files))
    files[name], damage = damage_bytes(rng, files[name])
    target = "i" if fmt.startswith("png") else name
    return files, target, f"images {fmt} {poison} {damage} in {name}"


def data_case(rng: Chooser) -> Case:
    """A points or image file, valid or mutated, that a tiny config trains on."""
    points = rng.choice([True, False])
    files, target, label = _points_files(rng) if points else _image_files(rng)
    base = "edm-points" if points else "dit-images"
    values = {**copy.deepcopy(BASES[base]), "train": dict(TRAIN)}
    values["data"]["path"] = f"{{dir}}/{target}"
    if not points and rng.choice([True, False]):
        values["data"]["size"] = rng.choice([8, 4, 10**6]) if "png" in label else 8
        values["data"]["channels"] = rng.choice([1, 3])
    if not points and "classes" in label or "npz" in label and rng.choice([True, False]):
        values["data"]["labels"] = True
        values["model"].update(num_classes=3)
    text = dumps_toml(values).encode()
    argv = ["train", "{dir}/c.toml", "--out", "{dir}/run", *caps_for(values, set())]
    return Case("data", label, argv, files={**files, "c.toml": text})
