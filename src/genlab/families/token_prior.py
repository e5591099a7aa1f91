"""The token prior as a family: a Transformer over a frozen tokenizer's codes ("compress,
then generate"), with optional Medusa heads.

    [token-prior]
    tokenizer = "runs/digits-vqvae"     # a tokenizer run directory, or a TOML run config
    dim = 128                           # trained once into `cache` and reused
    medusa_heads = 4                    # Medusa-2: heads trained jointly with the prior

or, Medusa-1 (heads trained on a frozen prior): `base = "runs/digits-prior"` names a trained
token-prior run, whose tokenizer, network options and weights the new run takes.

`prepare` (run by `genlab.runs.train_run`) resolves the source run and embeds its record
(config and example shape) as `tokenizer_record`, and the resolved directory as
`tokenizer_run`; `build` copies the source's trained weights into the new model while that
directory still holds that run. The weights are then part of the prior's own checkpoints,
so `load_run` rebuilds the model from the prior's run directory alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from genlab.errors import ConfigError
from genlab.families import sources
from genlab.families.base import IMAGE, Family, LikelihoodBound, Shape

if TYPE_CHECKING:
    from genlab.config import LikelihoodSection, RunConfig
    from genlab.protocol import GenerativeModel
    from genlab.tokens.prior import TokenPrior

__all__ = ["FAMILY", "TokenPriorOptions"]

NAME = "token-prior"
NETWORK = ("dim", "depth", "heads", "mlp_ratio", "dropout", "positions")
INHERITED = (*NETWORK, "tokenizer_run", "tokenizer_record")  # what a Medusa-1 run takes


class TokenPriorOptions(BaseModel):
    """`[token-prior]`. `tokenizer`: a tokenizer run directory or a TOML run config (trained
    into `cache`); `base`: instead, a trained token-prior run whose prior is frozen while
    Medusa heads train (Medusa-1). Network: width `dim`, `depth` blocks of `heads` heads, MLP
    `mlp_ratio` x dim, `dropout`, `positions` ("learned", "sinusoidal" over the raster index,
    "sinusoidal-2d" over row and column). Medusa: `medusa_heads` heads of `head_layers`
    residual blocks each (reading the embedding of the token chosen before them too when
    `head_root`, and the tokens of the candidate path before them when `head_path`, as in
    Hydra), head k's loss weighted
    `head_weight * head_decay**k`, targets the data's codes, the prior's distribution
    ("prior") or, on a base prior, its own greedy or sampled continuations of data prefixes
    ("greedy", "sampled": self-distillation); decoding trees of `tree_nodes` candidates.
    `tokenizer_run` and `tokenizer_record` are filled in by `prepare`."""

    model_config = ConfigDict(extra="forbid")

    tokenizer: str | None = None
    base: str | None = None
    cache: str = "runs/tokenizers"
    dim: int = Field(128, ge=4)
    depth: int = Field(4, ge=1)
    heads: int = Field(4, ge=1)
    mlp_ratio: float = Field(4.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    positions: Literal["learned", "sinusoidal", "sinusoidal-2d"] = "learned"
    medusa_heads: int = Field(0, ge=0)
    head_layers: int = Field(1, ge=1)
    head_root: bool = False
    head_path: bool = False
    head_weight: float = Field(1.0, ge=0)
    head_decay: float = Field(0.8, gt=0, le=1)
    head_targets: Literal["data", "prior", "greedy", "sampled"] = "data"
    tree_nodes: int = Field(32, ge=1)
    tokenizer_run: str | None = None
    tokenizer_record: dict[str, Any] | None = None


def _options(cfg: RunConfig) -> TokenPriorOptions:
    return cfg.options  # type: ignore[return-value]


def check(cfg: RunConfig) -> None:
    o = _options(cfg)
    if o.tokenizer is not None and o.base is not None:
        raise ConfigError(
            f"{NAME}.tokenizer: a run on a base prior takes the base's "
            f"tokenizer; leave it unset (or {NAME}.base)"
        )
    if o.tokenizer is None and o.base is None:
        raise ConfigError(
            f"{NAME}.tokenizer: name the tokenizer run (a run directory or a "
            f"TOML config), or a trained prior as {NAME}.base"
        )
    if o.head_targets in ("greedy", "sampled") and o.base is None:
        raise ConfigError(
            f"{NAME}.head_targets: {o.head_targets!r} distils a frozen prior's "
            f"own continuations: train the heads on a {NAME}.base run"
        )
    if o.base is not None and o.medusa_heads == 0:
        raise ConfigError(
            f"{NAME}.medusa_heads: a run on a base prior trains Medusa heads "
            "(set medusa_heads >= 1)"
        )
    if o.dim % o.heads:
        raise ConfigError(f"{NAME}.heads: must divide {NAME}.dim = {o.dim} (got {o.heads})")
    if o.positions == "sinusoidal-2d" and o.dim % 4:
        raise ConfigError(f"{NAME}.dim: 'sinusoidal-2d' positions need a multiple of 4")
    if cfg.data.dequantize:
        raise ConfigError(
            f"data.dequantize: {NAME} models the discrete pixels through its "
            "tokenizer's decoder; set data.dequantize = false"
        )


def prepare(cfg: RunConfig) -> RunConfig:
    """The config with the tokenizer's record embedded (module docstring)."""
    o = _options(cfg)
    if o.base is not None:
        return _with(cfg, _from_base(cfg, o.base))
    assert o.tokenizer is not None  # checked by `check`
    run_dir = sources.resolve(o.tokenizer, o.cache, f"{NAME}.tokenizer")
    rec = sources.record(run_dir, f"{NAME}.tokenizer")
    if o.tokenizer_record is not None and o.tokenizer_record != rec:
        raise ConfigError(
            f"{NAME}.tokenizer: {run_dir} no longer holds the tokenizer this "
            "config was prepared with"
        )
    return _with(cfg, {"tokenizer_run": str(run_dir), "tokenizer_record": rec})


def _with(cfg: RunConfig, update: dict[str, Any]) -> RunConfig:
    return dataclasses.replace(cfg, options=_options(cfg).model_copy(update=update))


def _from_base(cfg: RunConfig, base: str) -> dict[str, Any]:
    """The options a Medusa-1 run takes from its base prior run."""
    key = f"{NAME}.base"
    base_cfg, _ = sources.source_config(sources.record(base, key), key)
    if base_cfg.model.family != NAME:
        raise ConfigError(f"{key}: {base} is a {base_cfg.model.family!r} run, not a {NAME} run")
    if base_cfg.model.num_classes != cfg.model.num_classes:
        raise ConfigError(
            f"model.num_classes: the base prior has {base_cfg.model.num_classes} "
            f"classes (got {cfg.model.num_classes})"
        )
    inherited = {k: getattr(_options(base_cfg), k) for k in INHERITED}
    mine = _options(cfg)
    for k in NETWORK:
        if k in mine.model_fields_set and getattr(mine, k) != inherited[k]:
            raise ConfigError(f"{NAME}.{k}: set by the base run ({inherited[k]!r}); leave it unset")
    return inherited


def build(cfg: RunConfig, shape: Shape) -> GenerativeModel:
    """The prior over the embedded tokenizer, with the source's trained weights when its run
    directory still holds them (else they come from the prior's own checkpoint)."""
    from genlab.runs import build_model
    from genlab.tokens.prior import TokenPrior
    from genlab.tokens.transformer import TransformerConfig

    o = _options(cfg)
    if o.tokenizer_record is None:
        raise ConfigError(
            f"{NAME}.tokenizer_record: missing; a prior's config is completed by "
            "its family's prepare (genlab train does it)"
        )
    tok_cfg, tok_shape = sources.source_config(o.tokenizer_record, f"{NAME}.tokenizer_record")
    if tok_shape != tuple(shape):
        raise ConfigError(
            f"{NAME}.tokenizer: the tokenizer was trained on {tok_shape} "
            f"examples; the data have {tuple(shape)}"
        )
    tokenizer = build_model(tok_cfg, tok_shape)
    net = TransformerConfig(
        vocab=tokenizer.codebook_size,
        grid=tuple(tokenizer.grid),  # type: ignore[arg-type]
        num_classes=cfg.model.num_classes,
        dim=o.dim,
        depth=o.depth,
        heads=o.heads,
        mlp_ratio=o.mlp_ratio,
        dropout=o.dropout,
        positions=o.positions,
    )
    model = TokenPrior(
        tokenizer,
        net,
        medusa_heads=o.medusa_heads,
        head_layers=o.head_layers,
        head_root=o.head_root,
        head_path=o.head_path,
        head_weight=o.head_weight,
        head_decay=o.head_decay,
        head_targets=o.head_targets,
        freeze_prior=o.base is not None,
        label_dropout=cfg.model.label_dropout,
        tree_nodes=o.tree_nodes,
        ready=False,
    )
    _load_sources(model, o)
    return model


def _load_sources(model: TokenPrior, o: TokenPriorOptions) -> None:
    """Copy the trained weights of the base prior (prior and tokenizer) or of the tokenizer."""
    if o.base is not None:
        base = _base_model(o)
        if base is not None:
            state = {
                k: v
                for k, v in base.state_dict().items()
                if k.startswith(("net.", "tokenizer.")) or k == "ready"
            }
            model.load_state_dict(state, strict=False)
            assert model.heads is not None  # a run on a base prior trains heads
            model.heads.copy_projection(model.net.head.weight)  # from the trained prior
        return
    assert o.tokenizer_record is not None
    tokenizer = sources.trained(o.tokenizer_run, o.tokenizer_record)
    if tokenizer is not None:
        model.tokenizer.load_state_dict(tokenizer.state_dict())
        model.ready.fill_(True)


def _base_model(o: TokenPriorOptions) -> GenerativeModel | None:
    """The trained base prior, if its directory still holds the prior these options inherit."""
    assert o.base is not None
    key = f"{NAME}.base"
    try:
        rec = sources.record(o.base, key)
        base_cfg, _ = sources.source_config(rec, key)
    except ConfigError:
        return None
    same = all(getattr(_options(base_cfg), k) == getattr(o, k) for k in INHERITED)
    return sources.trained(o.base, rec) if same else None


def likelihood(settings: LikelihoodSection) -> list[LikelihoodBound]:
    """The two-stage bound ln p(x | z(x)) + ln p(z(x)) (deterministic: one draw)."""
    return [LikelihoodBound("two-stage", draws=1)]


SAMPLING_OPTIONS = ("decode", "temperature", "top_k", "top_p", "guidance")


def sampling(model: GenerativeModel, options: Mapping[str, Any]) -> dict[str, Any]:
    """`Decoding` of the user's options: decode (plain, medusa, speculative), temperature
    (0: greedy), top_k, top_p and the guidance scale of plain decoding."""
    from genlab.tokens.prior import DECODERS, Decoding
    from genlab.tokens.sampling import TokenSampling

    unknown = sorted(k for k, v in options.items() if v is not None and k not in SAMPLING_OPTIONS)
    if unknown:
        raise ConfigError(
            f"{', '.join(unknown)}: not a sampling option of token priors (they "
            f"take {', '.join(SAMPLING_OPTIONS)})"
        )
    decode = options.get("decode") or "plain"
    if decode not in DECODERS:
        raise ConfigError(f"decode: {decode!r} is not one of {', '.join(DECODERS)}")
    try:
        given = {k: options.get(k) for k in ("temperature", "top_k", "top_p")}
        how = TokenSampling(**{k: v for k, v in given.items() if v is not None})
    except ValueError as err:
        raise ConfigError(str(err).replace(" must", ": must", 1)) from None
    prior: Any = model
    if decode != "plain" and prior.heads is None:
        raise ConfigError(f"decode: {decode!r} needs Medusa heads ({NAME}.medusa_heads)")
    guidance = options.get("guidance")
    if guidance is not None and (decode != "plain" or prior.label_dropout == 0):
        raise ConfigError(
            "--guidance: needs plain decoding and a prior trained with label "
            "dropout (model.label_dropout > 0)"
        )
    return {"decoding": Decoding(decode, how, guidance)}


def metrics(run: Any, data: Any) -> dict[str, float]:
    """Bits per token of the test codes, and each Medusa head's top-1 / top-5 accuracy."""
    from genlab.tokens.evaluate import prior_metrics

    labels = data.test_labels if run.config.model.num_classes > 0 else None
    return prior_metrics(run.model, data.test, labels)


def describe(cfg: RunConfig) -> str:
    o = _options(cfg)
    source = o.base or o.tokenizer or "?"
    heads = f", {o.medusa_heads} Medusa heads" if o.medusa_heads else ""
    frozen = " (Medusa-1, prior frozen)" if o.base else ""
    return f"Transformer {o.dim}x{o.depth} over {Path(source).stem}{heads}{frozen}"


FAMILY = Family(
    name=NAME,
    description="Transformer prior over a tokenizer's codes (KV cache, top-k/top-p, Medusa and "
    "speculative decoding); two-stage likelihood bound",
    options=TokenPriorOptions,
    build=build,
    describe=describe,
    data=(IMAGE,),
    conditional=True,
    likelihood=likelihood,
    sampling=sampling,
    check=check,
    prepare=prepare,
    metrics=metrics,
)
