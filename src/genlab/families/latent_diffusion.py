"""Latent diffusion as a family: genlab's `Diffusion` over the scaled latents of a frozen
KL autoencoder run, or of a VQ tokenizer run (vqvae, vqgan) through its pre-quantisation
latents, whose samples are decoded through the codebook (Rombach et al. 2022, sec. 3.1).

    [model]
    family = "latent-diffusion"

    [latent-diffusion]
    autoencoder = "configs/digits-kl-ae.toml"   # a kl-autoencoder / vqvae / vqgan run, or a TOML
    preset = "ddpm"                             # config trained once into `cache`
    # path / parameterization / noise / weighting and their *_options: as in [model] of a
    # diffusion run

    [net]                                       # any diffusion network, on the latent shape
    name = "unet"

Class labels (`model.num_classes`, `model.label_dropout`) and text (`data.captions`,
`[text]`) condition the diffusion model as in a pixel-space run. `prepare` (run by
`genlab.runs.train_run`) resolves the autoencoder run, embeds its record (config and
example shape) as `autoencoder_record` and its directory as `autoencoder_run`, and measures
the scale factor f = 1 / std of the latents of the training split (posterior means, all
elements; `genlab.diffusion.latent.latent_scale`) as `scale_factor`, unless the config
sets it. The record and f are in the run's `config.json`; `build` copies the autoencoder's
trained weights in while its directory still holds that run, after which they and f are
part of the run's own checkpoints (frozen).

Sampling takes every option of a diffusion run (sampler, nfe, schedule including "fitted",
guidance, negative prompts) on the latent diffusion model, then decodes. There is no
likelihood (`genlab eval --likelihood` refuses it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from genlab.errors import ConfigError
from genlab.families import diffusion, sources
from genlab.families.base import IMAGE, Family, Shape

if TYPE_CHECKING:
    from genlab.config import RunConfig
    from genlab.protocol import GenerativeModel

__all__ = ["FAMILY", "LatentDiffusionOptions"]

NAME = "latent-diffusion"
AUTOENCODERS = ("kl-autoencoder",)  # families whose runs give a continuous latent space
# tokenizers, used through their pre-quantisation latents (`tokens.autoencoder.PreQuantized`)
VQ_AUTOENCODERS = ("vqvae", "vqgan")
SOURCES = (*AUTOENCODERS, *VQ_AUTOENCODERS)


class LatentDiffusionOptions(diffusion.DiffusionOptions):
    """`[latent-diffusion]`: the diffusion options of `[model]` in a diffusion run (preset
    and pieces), plus `autoencoder` (a kl-autoencoder, vqvae or vqgan run directory or a
    TOML run config,
    trained into `cache`) and `scale_factor` (None: measured on the training split by
    `prepare`). `autoencoder_run` and `autoencoder_record` are filled in by `prepare`."""

    preset: str = "ddpm"
    autoencoder: str | None = None
    cache: str = "runs/autoencoders"
    scale_factor: float | None = Field(None, gt=0)
    autoencoder_run: str | None = None
    autoencoder_record: dict[str, Any] | None = None


def _options(cfg: RunConfig) -> LatentDiffusionOptions:
    return cfg.options  # type: ignore[return-value]


def continuous(autoencoder: Any) -> Any:
    """The model of an autoencoder run as `LatentDiffusion` takes it: a KL autoencoder as it
    is, a VQ tokenizer through its pre-quantisation latents (`PreQuantized`)."""
    from genlab.tokens.autoencoder import PreQuantized, VQAutoencoder

    return PreQuantized(autoencoder) if isinstance(autoencoder, VQAutoencoder) else autoencoder


def check(cfg: RunConfig) -> None:
    if _options(cfg).autoencoder is None:
        raise ConfigError(f"{NAME}.autoencoder: name the autoencoder run (a kl-autoencoder, "
                          "vqvae or vqgan run directory or a TOML config)")  # fmt: skip
    if cfg.data.dequantize:
        raise ConfigError(f"data.dequantize: {NAME} models the autoencoder's latents of the "
                          "pixels; set data.dequantize = false")  # fmt: skip


def prepare(cfg: RunConfig) -> RunConfig:
    """The config with the autoencoder's record and the scale factor (module docstring)."""
    o, key = _options(cfg), f"{NAME}.autoencoder"
    assert o.autoencoder is not None  # checked by `check`
    run_dir = sources.resolve(o.autoencoder, o.cache, key)
    rec = sources.record(run_dir, key)
    ae_cfg, _ = sources.source_config(rec, key)
    if ae_cfg.model.family not in SOURCES:
        raise ConfigError(f"{key}: {run_dir} is a {ae_cfg.model.family!r} run, not one of "
                          f"{', '.join(SOURCES)}")  # fmt: skip
    if o.autoencoder_record is not None and o.autoencoder_record != rec:
        raise ConfigError(f"{key}: {run_dir} no longer holds the autoencoder this config was "
                          "prepared with")  # fmt: skip
    scale = o.scale_factor
    if scale is None:
        scale = _training_scale(cfg, run_dir, rec)
    update = {"autoencoder_run": str(run_dir), "autoencoder_record": rec, "scale_factor": scale}
    return dataclasses.replace(cfg, options=o.model_copy(update=update))


def _training_scale(cfg: RunConfig, run_dir: Path, rec: dict[str, Any]) -> float:
    """1 / std of the trained autoencoder's latents of the run's training split."""
    from genlab.diffusion.latent import latent_scale
    from genlab.runs import make_data

    autoencoder = sources.trained(str(run_dir), rec)
    if autoencoder is None:
        raise ConfigError(f"{NAME}.autoencoder: {run_dir} holds no trained checkpoint")
    data = make_data(cfg.data)
    if tuple(data.shape) != tuple(rec["shape"]):
        raise ConfigError(f"{NAME}.autoencoder: the autoencoder was trained on {rec['shape']} "
                          f"examples; the data have {list(data.shape)}")  # fmt: skip
    return round(latent_scale(continuous(autoencoder), data.train), 6)


def build(cfg: RunConfig, shape: Shape) -> GenerativeModel:
    """The latent diffusion model over the embedded autoencoder, with the autoencoder's
    trained weights when its run directory still holds them (else they come from the run's
    own checkpoint)."""
    from genlab.diffusion.latent import LatentDiffusion
    from genlab.runs import build_model

    o, key = _options(cfg), f"{NAME}.autoencoder_record"
    if o.autoencoder_record is None or o.scale_factor is None:
        raise ConfigError(f"{key}: missing; a latent diffusion config is completed by its "
                          "family's prepare (genlab train does it)")  # fmt: skip
    ae_cfg, ae_shape = sources.source_config(o.autoencoder_record, key)
    if ae_cfg.model.family not in SOURCES:
        raise ConfigError(f"{key}: a {ae_cfg.model.family!r} run, not one of "
                          f"{', '.join(SOURCES)}")  # fmt: skip
    if ae_shape != tuple(shape):
        raise ConfigError(f"{NAME}.autoencoder: the autoencoder was trained on "
                          f"{list(ae_shape)} examples; the data have {list(shape)}")  # fmt: skip
    autoencoder: Any = continuous(build_model(ae_cfg, ae_shape))
    inner: Any = diffusion.build(cfg, autoencoder.latent_shape)
    model = LatentDiffusion(autoencoder, inner, shape, o.scale_factor, ready=False)
    trained = sources.trained(o.autoencoder_run, o.autoencoder_record)
    if trained is not None:
        model.autoencoder.load_state_dict(continuous(trained).state_dict())
        model.ready.fill_(True)
    return model


def sampling(model: GenerativeModel, options: Mapping[str, Any]) -> dict[str, Any]:
    """The diffusion family's sampling options, resolved on the latent diffusion model (a
    fitted grid is fitted to its latent denoiser)."""
    from genlab.represent import unwrap

    return diffusion.sampling(unwrap(model).diffusion, options)  # type: ignore[union-attr]


def describe(cfg: RunConfig) -> str:
    o = _options(cfg)
    return f"{o.preset}, {cfg.net_label()}, over {Path(o.autoencoder or '?').stem} latents"


FAMILY = Family(
    name=NAME,
    description="latent diffusion: any diffusion model and sampler over a frozen KL "
    "autoencoder's (or VQ tokenizer's pre-quantisation) scaled latents; text and labels; "
    "no likelihood",
    options=LatentDiffusionOptions,
    build=build,
    describe=describe,
    data=(IMAGE,),
    uses_net=True,
    conditional=True,
    text_conditional=True,
    likelihood=None,
    sampling=sampling,
    check=check,
    prepare=prepare,
)
