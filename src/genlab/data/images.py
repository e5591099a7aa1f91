"""Image data sets from disk: a folder of PNG/JPEG files, ``.npy`` / ``.npz`` arrays, and
MNIST-format IDX files (LeCun et al. 1998; also Fashion-MNIST, Xiao et al. 2017).

Every loader returns an :class:`ImageData`: ``images`` float32 of shape (N, C, H, W) scaled
to [-1, 1] (the range diffusion models are trained in, Ho et al. 2020, sec. 3.3), and
``labels`` int64 (N,) or None. :func:`to_unit` / :func:`from_unit` convert pixel values to
and from [-1, 1]. Anything a user could get wrong (missing path, unreadable or corrupt file,
bad IDX magic, truncated data, inconsistent sizes, empty folder) raises
:class:`genlab.errors.DataError` with one line that names the file.

:func:`load_images` picks a loader from the path: a directory holding
``{train,t10k}-images-idx3-ubyte[.gz]`` is read as MNIST, any other directory as an image
folder, ``.npy`` / ``.npz`` as arrays, anything else as an IDX file.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from genlab.data.arrays import check_array_file
from genlab.errors import DataError
from genlab.memory import format_bytes, memory_limit, too_big

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageData",
    "check_fits",
    "from_unit",
    "load_array_images",
    "load_idx_images",
    "load_image_folder",
    "load_images",
    "load_mnist",
    "random_hflip",
    "read_idx",
    "read_images",
    "to_unit",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
PathLike = str | os.PathLike[str]


class ImageData(NamedTuple):
    """images: float32 (N, C, H, W) in [-1, 1]; labels: int64 (N,) or None; classes: the class
    names of the labels (sub-folder names) where known."""

    images: Tensor
    labels: Tensor | None = None
    classes: tuple[str, ...] | None = None


def to_unit(pixels: Tensor, max_value: float = 255.0) -> Tensor:
    """Pixel values in [0, max_value] (uint8 or float) -> float32 in [-1, 1]: 2 x / max - 1."""
    return pixels.float() * (2.0 / max_value) - 1.0


def from_unit(x: Tensor) -> Tensor:
    """Inverse of :func:`to_unit` for 8-bit images: [-1, 1] -> uint8 in [0, 255], clamped and
    rounded to nearest."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def random_hflip(x: Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image of x (N, C, H, W) left-right with probability p (the only augmentation
    of Ho et al. 2020, sec. 4). Returns a new tensor; draws from `generator`."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < p  # (N,)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


# ---------------------------------------------------------------------------- image folders


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
    )


def _read_image(path: Path, size: int | None, channels: int) -> np.ndarray:
    """Decode one file, convert to L or RGB, resize the shorter side to `size` and centre-crop
    to size x size. -> uint8 (H, W, C)."""
    try:
        with Image.open(path) as img:
            img.load()
            img = img.convert("L" if channels == 1 else "RGB")
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError,
            Image.DecompressionBombError) as exc:  # fmt: skip
        raise DataError(f"{path}: not a readable image ({_first_line(exc)})") from None
    if size is not None:
        w, h = img.size
        scale = size / min(w, h)
        new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
        if (new_w, new_h) != (w, h):
            img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        img = img.crop((left, top, left + size, top + size))
    array = np.asarray(img, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def check_fits(root: Path, n: int, size: int | None) -> None:
    """Refuse `n` images resized to `size` that cannot fit: uint8 pixels, then float32 twice
    (scaled to [-1, 1], and the training copy)."""
    reason = None if size is None else too_big(f"{n} images of {size}x{size}", n * size**2 * 9)
    if reason is not None:
        raise DataError(f"{root}: {reason} (a smaller size?)")


def load_image_folder(
    path: PathLike,
    size: int | None = None,
    *,
    channels: Literal[1, 3] = 3,
    labels: bool | None = None,
) -> ImageData:
    """Load every PNG/JPEG in a folder. With sub-folders (one per class, sorted by name ->
    label 0, 1, ...) the images are read from them and labelled; `labels=False` reads them
    without labels, `labels=True` demands sub-folders. `size` resizes the shorter side to
    `size` (bicubic) and centre-crops to size x size; without it all images must share one
    size. `channels` 1 converts to grayscale, 3 to RGB."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: {'not a directory' if root.exists() else 'folder not found'}")
    if channels not in (1, 3):
        raise DataError(f"{root}: channels must be 1 or 3, got {channels}")
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and _image_files(d))
    if labels is True and not subdirs:
        raise DataError(f"{root}: labels asked for but no class sub-folders hold images")
    if subdirs and labels is not False:
        files = [(f, i) for i, d in enumerate(subdirs) for f in _image_files(d)]
        classes: tuple[str, ...] | None = tuple(d.name for d in subdirs)
        if _image_files(root):
            raise DataError(
                f"{_image_files(root)[0]}: image beside class sub-folders (move it into one, "
                "or pass labels=False)"
            )
    else:
        files = [(f, -1) for d in [root, *subdirs] for f in _image_files(d)]
        classes = None
    if not files:
        raise DataError(f"{root}: no {'/'.join(IMAGE_EXTENSIONS)} images found")
    check_fits(root, len(files), size)
    images = read_images([f for f, _ in files], size, channels)
    y = torch.tensor([label for _, label in files]) if classes is not None else None
    return ImageData(images, y, classes)


def read_images(files: list[Path], size: int | None, channels: int) -> Tensor:
    """Decode image files (see `load_image_folder` for `size` and `channels`); without a
    `size` they must share one size. -> float32 (N, C, H, W) in [-1, 1]."""
    arrays: list[np.ndarray] = []
    for f in files:
        array = _read_image(f, size, channels)
        if arrays and array.shape != arrays[0].shape:
            raise DataError(
                f"{f}: size {array.shape[1]}x{array.shape[0]} differs from "
                f"{arrays[0].shape[1]}x{arrays[0].shape[0]} of {files[0]} (pass a size)"
            )
        arrays.append(array)
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # (N, C, H, W) uint8
    return to_unit(images).contiguous()


# ---------------------------------------------------------------------------- arrays and IDX


def load_array_images(
    path: PathLike,
    *,
    key: str | None = None,
    label_key: str | None = None,
    layout: Literal["auto", "nhw", "nhwc", "nchw"] = "auto",
    value_range: tuple[float, float] | None = None,
) -> ImageData:
    """Images from ``.npy`` (one array) or ``.npz`` (images under `key`, else ``images``,
    ``x``, or the only array; labels under `label_key`, else ``labels`` or ``y`` if present).

    Layout rule ("auto"): 3-D is (N, H, W) grayscale; 4-D has its channels on axis 1
    (N, C, H, W) or on the last axis (N, H, W, C), whichever of the two has size 1, 3 or 4;
    if both do, the smaller one (axis 1 on a tie). Pass `layout` to override.
    Values: uint8 is taken as [0, 255], floats as [0, 1] unless `value_range` says otherwise
    (e.g. (-1, 1) or (0, 255)); values outside the range are an error."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: {'not a regular file' if p.exists() else 'file not found'}")
    check_array_file(p)  # a header declaring more than the file holds is not allocated
    try:
        loaded = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{p}: not a readable .npy/.npz file ({_first_line(exc)})") from None
    if isinstance(loaded, np.ndarray):
        return ImageData(*array_images(p, loaded, None, layout, value_range))
    with loaded:
        names = list(loaded.files)
        image_key = key or next((k for k in ("images", "x") if k in names), None)
        if image_key is None and len(names) == 1:
            image_key = names[0]
        if image_key is None or image_key not in names:
            raise DataError(f"{p}: no image array (keys: {', '.join(names) or 'none'}; pass key)")
        lab_key = label_key or next((k for k in ("labels", "y") if k in names), None)
        if lab_key is not None and lab_key not in names:
            raise DataError(f"{p}: no label array {lab_key!r} (keys: {', '.join(names)})")
        try:
            images = loaded[image_key]
            labels = loaded[lab_key] if lab_key is not None else None
        except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            raise DataError(f"{p}: corrupt array in .npz ({_first_line(exc)})") from None
    return ImageData(*array_images(p, images, labels, layout, value_range))


def load_idx_images(images_path: PathLike, labels_path: PathLike | None = None) -> ImageData:
    """MNIST-format IDX files (plain or gzip): an idx3 ubyte image file (N, H, W) and an
    optional idx1 label file (N,). -> (N, 1, H, W) in [-1, 1]."""
    images = read_idx(images_path)
    if images.ndim not in (3, 4):
        raise DataError(f"{images_path}: IDX images must have 3 or 4 dimensions, got {images.ndim}")
    labels = read_idx(labels_path) if labels_path is not None else None
    layout: Literal["nhw", "nhwc"] = "nhw" if images.ndim == 3 else "nhwc"
    value_range = (0.0, 255.0) if images.dtype == np.uint8 else None
    return ImageData(*array_images(Path(images_path), images, labels, layout, value_range))


def load_mnist(root: PathLike, split: Literal["train", "test"] = "train") -> ImageData:
    """MNIST or Fashion-MNIST as distributed: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte``
    with or without ``.gz`` in `root`."""
    folder = Path(root)
    prefix = "train" if split == "train" else "t10k"
    found = []
    for kind in ("images-idx3", "labels-idx1"):
        name = f"{prefix}-{kind}-ubyte"
        options = [folder / name, folder / f"{name}.gz"]
        path = next((o for o in options if o.is_file()), None)
        if path is None:
            raise DataError(f"{options[0]}: file not found (nor {options[1].name})")
        found.append(path)
    return load_idx_images(found[0], found[1])


def load_images(
    path: PathLike, size: int | None = None, *, channels: Literal[1, 3] = 3
) -> ImageData:
    """One entry point for configs: MNIST folder, image folder, .npy/.npz or IDX file (see the
    module docstring). `size` and `channels` apply to image folders only."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: path not found")
    if p.is_dir():
        if any((p / f"train-images-idx3-ubyte{gz}").is_file() for gz in ("", ".gz")):
            return load_mnist(p)
        return load_image_folder(p, size, channels=channels)
    if p.suffix.lower() in (".npy", ".npz"):
        return load_array_images(p)
    return load_idx_images(p)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_CH = (1, 3, 4)


def _layout_nchw(path: Path, array: np.ndarray, layout: str) -> np.ndarray:
    """Apply the layout rule of :func:`load_array_images`. -> (N, C, H, W)."""
    if layout == "auto":
        if array.ndim == 3:
            layout = "nhw"
        elif array.ndim == 4 and (array.shape[1] in _CH or array.shape[-1] in _CH):
            first = array.shape[1] if array.shape[1] in _CH else np.inf
            last = array.shape[-1] if array.shape[-1] in _CH else np.inf
            layout = "nchw" if first <= last else "nhwc"
        else:
            raise DataError(
                f"{path}: cannot read images of shape {array.shape}; expected (N, H, W), "
                "(N, H, W, C) or (N, C, H, W) with C in 1, 3, 4"
            )
    want = 3 if layout == "nhw" else 4
    if array.ndim != want:
        raise DataError(f"{path}: layout {layout} needs {want} dimensions, got {array.shape}")
    if layout == "nhw":
        return array[:, None]
    return array.transpose(0, 3, 1, 2) if layout == "nhwc" else array


def array_images(
    path: Path,
    images: np.ndarray,
    labels: np.ndarray | None,
    layout: str,
    value_range: tuple[float, float] | None,
) -> tuple[Tensor, Tensor | None]:
    """Validate raw arrays and convert to (images (N, C, H, W) in [-1, 1], labels (N,))."""
    if images.dtype.kind not in "biuf":
        raise DataError(f"{path}: image dtype {images.dtype} is not numeric")
    nchw = _layout_nchw(path, images, layout)
    if nchw.shape[0] == 0:
        raise DataError(f"{path}: holds no images")
    lo, hi = (
        value_range
        if value_range is not None
        else ((0.0, 255.0) if images.dtype == np.uint8 else (0.0, 1.0))
    )
    x = torch.from_numpy(np.ascontiguousarray(nchw)).float()  # (N, C, H, W)
    if not torch.isfinite(x).all():
        raise DataError(f"{path}: images hold NaN or infinite values")
    if x.min() < lo - 1e-6 or x.max() > hi + 1e-6:
        raise DataError(
            f"{path}: values span [{x.min().item():g}, {x.max().item():g}], outside the "
            f"assumed range [{lo:g}, {hi:g}] (pass value_range)"
        )
    x = (x - lo) * (2.0 / (hi - lo)) - 1.0
    y = None
    if labels is not None:
        if labels.dtype.kind not in "iu" or labels.ndim != 1:
            raise DataError(
                f"{path}: labels must be a 1-D integer array, got {labels.dtype} {labels.shape}"
            )
        if labels.shape[0] != x.shape[0]:
            raise DataError(f"{path}: {labels.shape[0]} labels for {x.shape[0]} images")
        if labels.size and labels.min() < 0:
            raise DataError(f"{path}: labels must be class indices 0, 1, ... "
                            f"(got {labels.min()})")  # fmt: skip
        y = torch.from_numpy(labels.astype(np.int64))
    return x, y


_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _idx_bytes(p: Path) -> bytes:
    """The bytes of an IDX file, gunzipped if need be (at most half the memory this process
    may use: a small .gz can expand to any size)."""
    limit = memory_limit() // 2
    try:
        with open(p, "rb") as f:
            raw = f.read()
        if raw[:2] != b"\x1f\x8b":
            return raw
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as unzipped:
            raw = unzipped.read(limit + 1)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{p}: corrupt gzip data ({_first_line(exc)})") from None
    if len(raw) > limit:
        raise DataError(f"{p}: decompresses to more than {format_bytes(limit)}, half the "
                        "memory this process may use")  # fmt: skip
    return raw


def read_idx(path: PathLike) -> np.ndarray:
    """Parse an IDX file (LeCun et al., "THE MNIST DATABASE" file format; gzip detected by its
    magic bytes): magic 0x00 0x00 <dtype code> <ndim>, ndim big-endian uint32 sizes, data."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: {'not a regular file' if p.exists() else 'file not found'}")
    raw = _idx_bytes(p)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{p}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{p}: truncated IDX header ({len(raw)} bytes for {ndim} dimensions)")
    shape = tuple(int(v) for v in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if len(raw) - header != expected:
        raise DataError(
            f"{p}: IDX data is {len(raw) - header} bytes, shape {shape} needs {expected}"
            + (" (truncated)" if len(raw) - header < expected else "")
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
