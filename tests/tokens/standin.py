"""A stand-in tokenizer for the tests (stage 1's VQ-VAE/FSQ tokenizers live elsewhere): each
`pool` x `pool` block of a grey image is averaged and quantised to one of `levels` codes
(a deterministic encoder), and the decoder is a discretised logistic over the data's pixel
levels centred on the block's code value, with one learned scale, so p(x | z) is a
probability of the discrete pixels as `genlab.tokens.protocol.Tokenizer` requires.

Registered from outside genlab (`families.register(FAMILY)`), the way a user adds a family;
the token-prior tests and the contract test build their tokenizer runs with it.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from genlab.autoencoders import DiscretizedLogisticLikelihood
from genlab.families import IMAGE, Family
from genlab.protocol import GenerativeModel


class PoolOptions(BaseModel):
    """`[pool-tokenizer]`: codes per block and the block side."""

    model_config = ConfigDict(extra="forbid")

    levels: int = Field(8, ge=2)
    pool: int = Field(2, ge=1)


class PoolTokenizer(GenerativeModel):
    """(B, 1, H, W) in [-1, 1] <-> (B, H / pool, W / pool) codes 0..levels-1."""

    def __init__(self, shape: tuple[int, ...], levels: int, pool: int, pixel_levels: int) -> None:
        super().__init__()
        _, h, w = shape
        self.codebook_size, self.pool = levels, pool
        self.grid = (h // pool, w // pool)
        self.pixels = DiscretizedLogisticLikelihood(pixel_levels)
        self.log_scale = nn.Parameter(torch.tensor(-1.0))

    def encode(self, x: Tensor) -> Tensor:
        mean = F.avg_pool2d(x, self.pool)[:, 0]  # (B, h, w)
        k = self.codebook_size - 1
        return torch.round((mean.clamp(-1, 1) + 1) / 2 * k).long()

    def decode(self, codes: Tensor) -> Tensor:
        value = codes.float() / (self.codebook_size - 1) * 2 - 1  # (B, h, w)
        return value.repeat_interleave(self.pool, 1).repeat_interleave(self.pool, 2)[:, None]

    def decoder_log_prob(self, x: Tensor, codes: Tensor) -> Tensor:
        mu = self.decode(codes).flatten(1)  # (B, D)
        params = torch.cat([mu, self.log_scale.expand_as(mu)], -1)  # (B, 2D)
        return self.pixels.log_prob(params, x.flatten(1))

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return -self.decoder_log_prob(x, self.encode(x))

    @torch.no_grad()
    def sample(
        self, n: int, cond: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        codes = torch.randint(self.codebook_size, (n, *self.grid), generator=generator)
        return self.decode(codes)


def build(cfg, shape: tuple[int, ...]) -> GenerativeModel:
    o: PoolOptions = cfg.options
    return PoolTokenizer(shape, o.levels, o.pool, cfg.data_levels())


FAMILY = Family(
    name="pool-tokenizer",
    description="average pooling quantised to levels (a stand-in tokenizer for the tests)",
    options=PoolOptions,
    build=build,
    describe=lambda cfg: (
        f"{cfg.options.pool}x{cfg.options.pool} pooling, {cfg.options.levels} codes"
    ),
    data=(IMAGE,),
    likelihood=None,
)


def tokenizer_config(**options: object) -> dict:
    """A small stand-in tokenizer config on the digits (a few steps train its scale)."""
    return {"data": {"name": "digits"}, "model": {"family": FAMILY.name},
            FAMILY.name: dict(options),
            "train": {"steps": 4, "batch_size": 64, "warmup_steps": 1, "checkpoint_every": 4,
                      "progress": False}}  # fmt: skip


def train_tokenizer(run_dir: Path, **options: object) -> Path:
    """Train the stand-in tokenizer into `run_dir` (once: an existing run is reused); the
    family must be registered."""
    from genlab.config import RunConfig
    from genlab.runs import train_run

    if not (run_dir / "config.json").is_file():
        train_run(RunConfig.from_dict(tokenizer_config(**options)), run_dir, progress=False)
    return run_dir
