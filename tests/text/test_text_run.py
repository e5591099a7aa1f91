"""A text-conditioned digits run end to end: trained from a config with the real encoder
(captions encoded once into the run's cache), sampled by prompt with `genlab generate`
(no encoder load for cached prompts), evaluated on held-out phrasings; mistakes are one
line and exit status 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run_cli
from PIL import Image

from genlab.config import RunConfig
from genlab.runs import load_run, make_data, train_run
from genlab.runs.record import run_record
from genlab.runs.text import STORE_FILE, run_store
from genlab.text.captions import digit_caption_set

CONFIG = {
    "data": {"name": "digits", "captions": "digits"},
    "model": {"preset": "ddpm"},
    "text": {"dropout": 0.2},
    "net": {"name": "unet", "channels": 8, "attention_levels": [1], "head_dim": 8},
    "train": {"steps": 3, "batch_size": 16, "checkpoint_every": 3, "log_every": 1},
    "sample": {"sampler": "dpmpp_2m", "nfe": 4},
}


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("text") / "run"
    train_run(RunConfig.from_dict(CONFIG), out, progress=False)
    return out


def _grid_size(n: int, per_row: int) -> tuple[int, int]:
    """(width, height) of genlab's grid of n 8x8 images (scale 4, padding 1)."""
    rows = math.ceil(n / per_row)
    return per_row * 32 + per_row + 1, rows * 32 + rows + 1


def test_training_caches_every_caption_once(run_dir: Path) -> None:
    cfg = load_run(run_dir).config
    store = run_store(cfg, run_dir)
    data = make_data(cfg.data)
    expected = {*digit_caption_set().texts(), *(data.test_prompts or ())}
    assert (run_dir / STORE_FILE).is_file() and set(store.entries) == expected


def test_generate_writes_a_grid_from_cached_prompts(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    out = tmp_path / "seven.png"
    args = ["generate", run_dir, "a handwritten seven", "-n", "4", "--guidance", "3",
            "--negative", "a smudge of ink", "--nfe", "4", "--out", out]  # fmt: skip
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    assert Image.open(out).size == _grid_size(4, 2)  # a square grid
    assert "encoded 1 new text" in stdout  # the negative prompt; the prompt is a caption

    def refuse(*args: object) -> None:
        raise AssertionError("the text encoder was loaded for cached prompts")

    monkeypatch.setattr("genlab.text.store.load_encoder", refuse)
    code, stdout, err = run_cli(args, capsys)
    assert code == 0 and "all texts cached" in stdout, err
    rows = tmp_path / "rows.png"
    code, _, err = run_cli(["generate", run_dir, "a handwritten seven", "3", "-n", "3",
                            "--nfe", "2", "--sampler", "euler", "--out", rows], capsys)  # fmt: skip
    assert code == 0, err
    assert Image.open(rows).size == _grid_size(6, 3)  # a row per prompt


def test_eval_prompts_with_heldout_phrasings(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["eval", run_dir, "-n", "20", "--guidance", "2"], capsys)
    assert code == 0, err
    metrics = json.loads((run_dir / "eval.json").read_text())["metrics"]
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["fd"] > 0


def test_mistakes_exit_2_with_one_line(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "x.png"
    code, _, err = run_cli(["generate", run_dir, "a 3", "--negative", "a 4", "--out", png],
                           capsys)  # fmt: skip
    assert_one_line_error(code, err, "--negative", "--guidance")
    code, _, err = run_cli(["generate", run_dir, "a 3", "--out", tmp_path / "x.gif"], capsys)
    assert_one_line_error(code, err, "--out", "unsupported suffix")
    code, _, err = run_cli(["sample", run_dir, "--out", png], capsys)
    assert_one_line_error(code, err, "text-conditioned", "genlab generate")
    plain = tmp_path / "plain"
    plain.mkdir()
    record = run_record(RunConfig.from_dict({"data": {"name": "moons"}}), (2,))
    (plain / "config.json").write_text(json.dumps(record))
    code, _, err = run_cli(["generate", plain, "a 3", "--out", png], capsys)
    assert_one_line_error(code, err, "not a text-conditioned run")
    assert not png.exists()
