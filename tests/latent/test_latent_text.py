"""A text-conditioned latent diffusion run: trained on captioned digits over a tiny
autoencoder (captions encoded once by the real frozen encoder), drawn by prompt with
`genlab generate`, with guidance and a negative prompt, from cached embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from latent.tiny import NET, latent_config
from PIL import Image

from genlab.diffusion.fitted import FIT_DEFAULTS
from genlab.runs import SampleSpec, generate, load_run, train_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, ae_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("latent-text")
    cfg = latent_config(ae_dir, data={"labels": False, "captions": "digits"},
                        model={"num_classes": 0, "label_dropout": 0.0}, text={"dropout": 0.2},
                        net={**NET, "attention_levels": [0, 1]})  # fmt: skip
    train_run(cfg, root / "run", progress=False)
    return root / "run"


def test_generate_draws_prompted_images_through_the_latent_model(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    out = tmp_path / "sevens.npy"
    args = ["generate", run_dir, "a handwritten seven", "the number 2", "-n", "3",
            "--guidance", "2", "--negative", "a blurry digit", "--nfe", "4", "--out", out]
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    assert "new text" in stdout  # the negative prompt and a new phrasing, encoded once
    code, stdout, err = run_cli(args, capsys)
    assert code == 0 and "all texts cached" in stdout, err
    x = torch.from_numpy(np.load(out))
    assert x.shape == (6, 1, 8, 8) and float(x.abs().max()) <= 1.0
    run = load_run(run_dir)
    again = generate(run, ["a handwritten seven", "the number 2"], 3,
                     SampleSpec(nfe=4, guidance=2.0), negative="a blurry digit",
                     seed=run.config.sample.seed)  # fmt: skip
    torch.testing.assert_close(x, again)  # the CLI is the library call
    png = tmp_path / "grid.png"  # a guided fitted grid (a small search, to stay fast)
    monkeypatch.setitem(FIT_DEFAULTS, "pilot_size", 32)
    monkeypatch.setitem(FIT_DEFAULTS, "max_evals", 20)
    code, _, err = run_cli(["generate", run_dir, "a handwritten seven", "-n", "4", "--nfe",
                            "4", "--schedule", "fitted", "--sampler", "euler", "--guidance",
                            "2", "--out", png], capsys)  # fmt: skip
    assert code == 0, err
    assert Image.open(png).size == (2 * 32 + 3, 2 * 32 + 3)  # a square grid of 4
    assert len(list((run_dir / "grids").glob("euler-nfe4-*.json"))) == 1  # fitted, guided


def test_a_pilot_batch_cycles_through_the_rows_of_a_text_context() -> None:
    from text_helpers import random_context

    from genlab.diffusion.sample import pilot_cond

    ctx = random_context([2, 4, 3])
    pilot = pilot_cond(ctx, 7)
    order = [0, 1, 2, 0, 1, 2, 0]
    assert torch.equal(pilot.tokens, ctx.tokens[order]) and torch.equal(pilot.mask, ctx.mask[order])
    labels = pilot_cond({"y": torch.tensor([4, 5])}, 3)
    assert torch.equal(labels["y"], torch.tensor([4, 5, 4]))
