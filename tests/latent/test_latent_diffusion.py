"""Latent diffusion through the family table: trained on a tiny autoencoder run, it is a
diffusion model of the scaled latents whose samples are decoded images; guidance, fitted
grids and every sampling option reach the latent model unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli
from latent.tiny import latent_config

from genlab.config import RunConfig
from genlab.diffusion.fitted import FIT_DEFAULTS
from genlab.diffusion.latent import LatentDiffusion
from genlab.errors import ConfigError, DataError
from genlab.families import latent_diffusion
from genlab.runs import SampleSpec, budget, build_model, draw, load_run, make_data, train_run
from genlab.runs.grids import GRIDS_DIR


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, ae_dir: Path) -> tuple[Path, Path]:
    ld = tmp_path_factory.mktemp("latent") / "ld"
    train_run(latent_config(ae_dir), ld, progress=False)
    return ae_dir, ld


def test_the_run_trains_and_samples_images_of_the_pixel_shape(runs) -> None:
    _, ld = runs
    run = load_run(ld)
    model = run.model
    assert isinstance(model, LatentDiffusion) and bool(model.ready)
    assert model.latent_shape == (2, 4, 4) and run.shape == (1, 8, 8)
    f = run.config.options.scale_factor  # in config.json, and a buffer saved with the weights
    assert float(model.scale_factor) == pytest.approx(f, rel=1e-6)
    assert not any(p.requires_grad for p in model.autoencoder.parameters())
    labels = torch.arange(6) % 10
    x = draw(run, 6, SampleSpec("dpmpp_2m", 4), seed=0, cond=labels)
    assert x.shape == (6, 1, 8, 8) and float(x.abs().max()) <= 1.0
    # the wrapper: the latent model's sample, divided by f and decoded
    g = torch.Generator().manual_seed(0)
    u = model.diffusion.sample(6, labels, generator=g, sampler="dpmpp_2m", nfe=4)
    assert u.shape == (6, 2, 4, 4)
    expected = model.autoencoder.decode(u / model.scale_factor).clamp(-1, 1)
    torch.testing.assert_close(x, expected)


def test_the_loss_is_the_diffusion_loss_of_the_scaled_posterior_mean(runs) -> None:
    _, ld = runs
    model = load_run(ld).model
    x = make_data(load_run(ld).config.data).test[:8]
    labels = torch.arange(8)
    torch.manual_seed(3)
    loss = model.loss(x, labels)
    torch.manual_seed(3)
    u = model.autoencoder.encode(x) * model.scale_factor
    torch.testing.assert_close(loss, model.diffusion.loss(u, labels))


def test_guidance_scales_zero_and_one_are_the_uncond_and_cond_models(runs) -> None:
    _, ld = runs
    run = load_run(ld)
    model = run.model
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # 3 steps leave the zero-initialised label path near zero
        for p in model.diffusion.net.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    u = torch.randn(5, *model.latent_shape, generator=g)
    sigma = torch.full((5,), 0.7, dtype=torch.float64)
    labels, null = torch.tensor([1, 2, 3, 4, 5]), torch.full((5,), 10)
    cond, uncond = model.denoiser(u, sigma, labels), model.denoiser(u, sigma, null)
    torch.testing.assert_close(model.diffusion.sampling_denoiser(1.0)(u, sigma, labels), cond)
    torch.testing.assert_close(model.diffusion.sampling_denoiser(0.0)(u, sigma, labels), uncond)
    assert not torch.allclose(cond, uncond)  # the two branches differ
    # and through the run's sampling options, to images
    spec = SampleSpec("ddim", 4)
    w1 = draw(run, 5, SampleSpec("ddim", 4, guidance=1.0), seed=2, cond=labels)
    torch.testing.assert_close(w1, draw(run, 5, spec, seed=2, cond=labels))
    w0 = draw(run, 5, SampleSpec("ddim", 4, guidance=0.0), seed=2, cond=labels)
    torch.testing.assert_close(w0, draw(run, 5, spec, seed=2, cond=null))


def test_fitted_grids_are_fitted_to_the_latent_denoiser_and_cached(runs, monkeypatch) -> None:
    _, ld = runs
    monkeypatch.setitem(FIT_DEFAULTS, "pilot_size", 32)  # a small search, to stay fast
    monkeypatch.setitem(FIT_DEFAULTS, "max_evals", 20)
    run = load_run(ld)
    labels = torch.arange(4)
    lines: list[str] = []
    spec = SampleSpec("euler", 3, schedule="fitted")
    x = draw(run, 4, spec, seed=0, cond=labels, log=lines.append)
    assert x.shape == (4, 1, 8, 8)
    files = list((ld / GRIDS_DIR).glob("euler-nfe3-*.json"))
    assert len(files) == 1 and "fitted a grid" in lines[0]
    y = draw(run, 4, spec, seed=0, cond=labels, log=lines.append)
    assert "using the fitted grid" in lines[1] and torch.equal(x, y)


def test_likelihood_is_refused_in_one_line(runs, capsys: pytest.CaptureFixture[str]) -> None:
    _, ld = runs
    code, _, err = run_cli(["eval", ld, "--likelihood", "-n", "10"], capsys)
    assert_one_line_error(code, err, "--likelihood", "latent-diffusion", "no likelihood")


def test_the_model_builds_on_meta_with_the_real_sizes(runs) -> None:
    cfg = load_run(runs[1]).config
    fp = budget.footprint(cfg, (1, 8, 8))
    model = build_model(cfg, (1, 8, 8))
    assert fp is not None and fp.n_params == sum(p.numel() for p in model.parameters())
    assert fp.buffers == sum(b.numel() * b.element_size() for b in model.buffers())


def test_bad_autoencoders_are_one_line_config_errors(runs, tmp_path: Path) -> None:
    ae, ld = runs
    with pytest.raises(ConfigError, match="not one of kl-autoencoder"):
        latent_diffusion.prepare(latent_config(ld))  # a latent run is no autoencoder
    with pytest.raises(ConfigError, match="neither a run directory"):
        latent_diffusion.prepare(latent_config(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="latent-diffusion.autoencoder: name"):
        RunConfig.from_dict({"data": {"name": "digits"}, "model": {"family": "latent-diffusion"},
                             "net": {"name": "unet"}})  # fmt: skip
    with pytest.raises(ConfigError, match="completed by its family's prepare"):
        build_model(latent_config(ae), (1, 8, 8))
    crafted = load_run(ld).config.to_dict()  # a record naming a run of another family
    crafted["latent-diffusion"]["autoencoder_record"]["config"]["model"] = {"preset": "ddpm"}
    crafted["latent-diffusion"]["autoencoder_record"]["config"].pop("kl-autoencoder")
    with pytest.raises(ConfigError, match="not one of kl-autoencoder"):
        build_model(RunConfig.from_dict(crafted), (1, 8, 8))


def test_a_model_without_the_autoencoder_weights_refuses_to_sample(runs, tmp_path) -> None:
    ae, ld = runs
    cfg = load_run(ld).config
    moved = tmp_path / "ae-gone"
    shutil.copytree(ae, moved)
    gone = cfg.updated([f"latent-diffusion.autoencoder_run={tmp_path / 'nothing'}"])
    model = build_model(gone, (1, 8, 8))
    assert not bool(model.ready)
    with pytest.raises(DataError, match="holds no trained weights"):
        model.sample(2, torch.arange(2))
