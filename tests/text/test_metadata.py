"""Captioned image folders (metadata.jsonl): read with their captions; a missing file name
or a missing image is one DataError naming the line, and the CLI exits 2 with one line
before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli
from PIL import Image

from genlab.data.metadata import load_captioned_folder, read_metadata
from genlab.errors import DataError


def _folder(root: Path, lines: list[object], n_images: int = 3) -> Path:
    """A folder of n_images 4x4 grey PNGs (image i filled with 40 i) and a metadata.jsonl of
    `lines` (dicts are written as JSON, strings as they are)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "sub").mkdir(exist_ok=True)
    for i in range(n_images):
        name = f"sub/{i}.png" if i == 2 else f"{i}.png"
        Image.fromarray(np.full((4, 4), 40 * i, dtype=np.uint8)).save(root / name)
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    (root / "metadata.jsonl").write_text(text + "\n")
    return root


GOOD = [{"file_name": "0.png", "text": "a dark square"},
        "",
        {"file_name": "sub/2.png", "text": "a light square", "extra": 1},
        {"file_name": "0.png", "text": "black"},
        {"file_name": "1.png", "text": ""}]  # fmt: skip


def test_reads_images_with_their_captions(tmp_path: Path) -> None:
    data = load_captioned_folder(_folder(tmp_path, GOOD), channels=1)
    assert data.images.shape == (3, 1, 4, 4)
    assert data.captions == (("a dark square", "black"), ("a light square",), ("",))
    expected = torch.tensor([0, 80, 40]) * (2 / 255) - 1  # file order of first mention
    torch.testing.assert_close(data.images[:, 0, 0, 0], expected)


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ({"text": "no file"}, 'missing "file_name"'),
        ({"file_name": "", "text": "empty name"}, 'missing "file_name"'),
        ({"file_name": "9.png", "text": "gone"}, "image '9.png' not found"),
        ({"file_name": "1.png"}, 'missing "text"'),
        ({"file_name": "../0.png", "text": "escape"}, "file_name '../0.png' points outside"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_bad_lines_name_the_line(tmp_path: Path, bad: object, needle: str) -> None:
    folder = _folder(tmp_path / "f", [GOOD[0], GOOD[1], bad])
    with pytest.raises(DataError) as info:
        read_metadata(folder)
    message = str(info.value)
    assert f"metadata.jsonl:3: {needle}" in message and "\n" not in message


def test_missing_metadata_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="metadata.jsonl: not found"):
        read_metadata(tmp_path)


CONFIG = """
[data]
name = "images"
path = "{path}"
captions = "metadata"
channels = 1
n_test = 2

[model]
preset = "ddpm"

[net]
name = "unet"
channels = 8
channel_mult = [1, 2]
attention_levels = [1]
head_dim = 8

[train]
steps = 2
batch_size = 2
"""


BAD = [({"text": "x"}, 'missing "file_name"'), ({"file_name": "7.png", "text": "x"}, "not found")]


@pytest.mark.parametrize(("bad", "needle"), BAD)
def test_cli_rejects_bad_metadata_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: object, needle: str
) -> None:
    folder = _folder(tmp_path / "imgs", [*GOOD, bad])
    config = tmp_path / "c.toml"
    config.write_text(CONFIG.format(path=folder))
    out = tmp_path / "run"
    code, _, err = run_cli(["train", config, "--out", out], capsys)
    assert_one_line_error(code, err, "metadata.jsonl:6:", needle)
    assert not out.exists()  # nothing written
