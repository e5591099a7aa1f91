"""Latent diffusion over a VQ tokenizer's pre-quantisation latents: the adapter's encode is
the tokenizer's encoder, its decode goes through the nearest codes (so decode(encode(x)) is
the tokenizer's own reconstruction), the scale factor is measured on those latents, and a
latent run over a vqvae run trains and samples pixels through the codebook."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from latent.tiny import latent_config

from genlab.config import RunConfig
from genlab.diffusion.latent import LatentDiffusion
from genlab.runs import SampleSpec, draw, load_run, make_data, train_run
from genlab.tokens.autoencoder import PreQuantized, VQAutoencoder

TOKENIZER = {
    "data": {"name": "digits"},
    "model": {"family": "vqvae"},
    "tokenizer": {"channels": 8, "latent_dim": 4, "vq": {"codebook_size": 16}},
    "train": {"steps": 30, "batch_size": 32, "lr": 3e-3, "warmup_steps": 1,
              "ema_decay": 0.0, "checkpoint_every": 30, "progress": False},
}  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("vq-latents")
    train_run(RunConfig.from_dict(TOKENIZER), root / "tok", progress=False)
    train_run(latent_config(root / "tok"), root / "ld", progress=False)
    return root / "tok", root / "ld"


def test_pre_quantised_latents_decode_through_the_codebook(runs) -> None:
    tokenizer = load_run(runs[0]).model
    assert isinstance(tokenizer, VQAutoencoder)
    adapter = PreQuantized(tokenizer)
    x = make_data(RunConfig.from_dict(TOKENIZER).data).test[:12]
    with torch.no_grad():
        z = adapter.encode(x)
        torch.testing.assert_close(z, tokenizer.encoder(x))
        assert tuple(z.shape[1:]) == adapter.latent_shape == (4, *tokenizer.grid)
        torch.testing.assert_close(adapter.decode(z), tokenizer.decode(tokenizer.encode(x)))


def test_a_latent_run_over_a_tokenizer_scales_its_latents_and_samples_pixels(runs) -> None:
    tok_dir, ld = runs
    run = load_run(ld)
    model = run.model
    assert isinstance(model, LatentDiffusion) and isinstance(model.autoencoder, PreQuantized)
    train = make_data(run.config.data).train
    with torch.no_grad():
        z = load_run(tok_dir).model.encoder(train).double()  # type: ignore[operator]
    assert run.config.options.scale_factor == pytest.approx(1 / float(z.std()), rel=1e-5)
    labels = torch.arange(5)
    x = draw(run, 5, SampleSpec("dpmpp_2m", 4), seed=0, cond=labels)
    g = torch.Generator().manual_seed(0)
    u = model.diffusion.sample(5, labels, generator=g, sampler="dpmpp_2m", nfe=4)
    expected = model.autoencoder.decode(u / model.scale_factor).clamp(-1, 1)
    torch.testing.assert_close(x, expected)
    # every sample pixel is a decoded codebook entry: re-encoding its codes changes nothing
    tokenizer = model.autoencoder.tokenizer
    with torch.no_grad():
        codes = tokenizer.quantizer.codes(u / model.scale_factor)
        torch.testing.assert_close(x, tokenizer.decode(codes).clamp(-1, 1))
