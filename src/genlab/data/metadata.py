"""Captioned image folders: images with a `metadata.jsonl` of captions.

The folder holds the images and a file `metadata.jsonl` with one JSON object per line,

    {"file_name": "0001.png", "text": "a handwritten seven"}

the layout other image-generation tools read for text-to-image training. `file_name` is
relative to the folder (sub-folders allowed, nothing outside it); an image named on several
lines has several captions (a model is shown one of them at random). Blank lines are
skipped; keys other than `file_name` and `text` are ignored. Anything wrong (the file
missing, a line that is not a JSON object, a missing `file_name` or `text`, an image that
does not exist or cannot be read) raises `genlab.errors.DataError` with one line naming
the file and the line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal, NamedTuple

from torch import Tensor

from genlab.data.images import check_fits, read_images
from genlab.errors import DataError

__all__ = ["METADATA_FILE", "CaptionedImages", "load_captioned_folder", "read_metadata"]

METADATA_FILE = "metadata.jsonl"


class CaptionedImages(NamedTuple):
    """images: float32 (N, C, H, W) in [-1, 1]; captions[i]: the captions of image i."""

    images: Tensor
    captions: tuple[tuple[str, ...], ...]


def _entry(line: str, where: str, root: Path) -> tuple[Path, str]:
    """(image path, caption) of one line of metadata.jsonl; `where` is "file:line"."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: not valid JSON ({err.msg})") from None
    if not isinstance(obj, dict):
        raise DataError(f'{where}: expected a JSON object with "file_name" and "text"')
    name, text = obj.get("file_name"), obj.get("text")
    if not isinstance(name, str) or not name.strip():
        raise DataError(f'{where}: missing "file_name" (the image\'s path in the folder)')
    if not isinstance(text, str):
        raise DataError(f'{where}: missing "text" (the image\'s caption, a string)')
    path = (root / name).resolve()
    if os.path.commonpath([path, root]) != str(root):
        raise DataError(f"{where}: file_name {name!r} points outside the folder")
    if not path.is_file():
        raise DataError(f"{where}: image {name!r} not found in {root}")
    return path, text


def read_metadata(folder: str | os.PathLike[str]) -> dict[Path, list[str]]:
    """The captions of every image listed in `folder`/metadata.jsonl, in file order."""
    root = Path(folder).resolve()
    meta = root / METADATA_FILE
    if not root.is_dir():
        raise DataError(f"{root}: {'not a directory' if root.exists() else 'folder not found'}")
    if not meta.is_file():
        raise DataError(f"{meta}: not found (a captioned image folder lists its images as "
                        "JSON lines {\"file_name\": ..., \"text\": ...})")  # fmt: skip
    try:
        lines = meta.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DataError(f"{meta}: not UTF-8 text ({err.reason})") from None
    captions: dict[Path, list[str]] = {}
    for number, line in enumerate(lines, start=1):
        if line.strip():
            path, text = _entry(line, f"{meta}:{number}", root)
            captions.setdefault(path, []).append(text)
    if not captions:
        raise DataError(f"{meta}: lists no images")
    return captions


def load_captioned_folder(
    folder: str | os.PathLike[str], size: int | None = None, *, channels: Literal[1, 3] = 3
) -> CaptionedImages:
    """The images listed in `folder`/metadata.jsonl with their captions (`size` resizes the
    shorter side and centre-crops, `channels` 1 or 3, as `load_image_folder`)."""
    captions = read_metadata(folder)
    files = list(captions)
    check_fits(Path(folder), len(files), size)
    images = read_images(files, size, channels)
    return CaptionedImages(images, tuple(tuple(captions[f]) for f in files))
