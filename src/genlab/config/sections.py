"""The sections every run config has, whatever its family: `[data]`, `[model]` (the family
and its class conditioning), `[sample]` and `[likelihood]`; `[train]` is
`genlab.train.TrainConfig` itself; `[text]` (the text encoder and how captions condition
the model) in text-conditioned runs.

A family's own options (`[flow]`, `[vae]`, the diffusion keys of `[model]`, ...) are declared
by the family (`genlab.families`), a network's (`[net]`) by the network
(`genlab.nets.configs`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from genlab import registry
from genlab.data.digits import DIGITS_LEVELS
from genlab.ode import ODEOptions

__all__ = ["DataConfig", "LikelihoodSection", "ModelConfig", "SampleSection", "TextSection"]

IMAGE_LEVELS = 256  # 8-bit images


def one_of(value: str, names: Iterable[str]) -> str:
    """`value` if it is one of `names`, else a ValueError listing them."""
    allowed = sorted(names)
    if value not in allowed:
        raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
    return value


def key_error(key: str, message: str) -> PydanticCustomError:
    """An error reported at `<section>.<key>` from a section-level validator."""
    return PydanticCustomError("key_error", message, {"key": key})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


VECTOR_SIZES = (20_000, 2_000)  # default (n_train, n_test) of the vector data sets
DIGITS_SIZE = 8  # side of scikit-learn's digits


class DataConfig(_Section):
    """Where the training and held-out test data come from (deterministic from `seed`).

    Vector sets: a toy set, "gmm-ring" or "points" (with `path`). Image sets: "digits"
    (scikit-learn's 8x8 digits, the fixed split of `genlab.data.digits`, scaled to [-1, 1];
    `n_train`/`n_test` not allowed) and "images" (`path`: a folder, .npy/.npz or MNIST IDX,
    read by `genlab.data.images.load_images`; `size` and `channels` apply to folders; the test
    split is `n_test` images, 10% by default). `hflip` adds mirrored copies of the training
    images; `labels` uses the class labels (needed by a class-conditional model).
    `captions` makes the run text-conditioned (with a `[text]` section): "digits" captions
    each digit with phrasings of its label (`genlab.text.captions`; evaluation prompts with
    held-out phrasings), "metadata" reads the captions of an image folder's
    `metadata.jsonl` (`genlab.data.metadata`; evaluation prompts with the test images' own
    captions).

    Vector data pass through the data transform stage (`genlab.transform`), a bijection with
    its log-determinant applied on load, sample and score, so likelihoods and samples are in
    the raw units of the file: `transform` scales each column by statistics of the training
    rows ("standard": mean / std, "robust": median / IQR, "none"; default "standard" for
    point files, "none" for the built-in sets; "whiten": "standard", then decorrelated by
    the inverse Cholesky factor of the training covariance), `log_columns` log-transforms
    strictly positive columns (header names or indices from 0, or "positive" for all), and
    `grid` ("auto", the default for point files) detects columns recorded on a grid (counts,
    flags, a fixed number of decimals) and dequantises them uniformly over their step
    ("off": never).
    Point files hold out `n_test` rows for the test split (default 20%, at most 2000).

    Likelihoods of image data: pixels are discrete levels (17 for digits, 256 for 8-bit
    images). `dequantize = true` makes the model a continuous density of uniformly
    dequantised levels (`genlab.discrete.Dequantized`: it sees 2s - 1 in [-1, 1), or
    logit(a + (1 - 2a) s) with `logit = a`), so its `log_prob` bounds the probability of the
    discrete pixels. Digits with validation on (`train.val_every > 0` and no
    `train.val_fraction`) hold out the last 144 of the 1437 training images for it (the
    split of the flows_digits protocol); the test split is never used for selection.
    """

    name: str = "moons"
    path: str | None = None  # "points": a .npy or .csv file (N, D); "images": see above
    n_train: int | None = Field(None, ge=1)
    n_test: int | None = Field(None, ge=2)
    seed: int = Field(0, ge=0)
    size: int | None = Field(None, ge=1)
    channels: int | None = None
    hflip: bool = False
    labels: bool = False
    captions: str | None = None  # "digits" or "metadata": a text-conditioned run
    dequantize: bool = False  # image sets: a continuous model of the discrete levels
    logit: float | None = Field(None, ge=0, lt=0.5)  # dequantize: y = logit(a + (1-2a) s)
    transform: Literal["standard", "robust", "none", "whiten"] | None = None  # vector data
    log_columns: list[str | int] | Literal["positive"] = Field(default_factory=list)
    grid: Literal["auto", "off"] | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return one_of(v, registry.DATASETS)

    @field_validator("captions")
    @classmethod
    def _captions(cls, v: str | None) -> str | None:
        return None if v is None else one_of(v, registry.CAPTION_SOURCES)

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: int | None) -> int | None:
        if v is not None and v not in (1, 3):
            raise ValueError(f"must be 1 or 3 (got {v})")
        return v

    @property
    def is_image(self) -> bool:
        return self.name in registry.IMAGE_DATASETS

    @model_validator(mode="after")
    def _options_fit_the_set(self) -> DataConfig:
        needs_path = (registry.POINTS, registry.IMAGES)
        if self.name in needs_path and not self.path:
            raise key_error("path", f"required when data.name = {self.name!r}")
        if self.name not in needs_path and self.path is not None:
            raise key_error("path", f"only allowed with data.name = 'points' or 'images' "
                                     f"(got {self.name!r})")  # fmt: skip
        for key in ("size", "channels"):
            if getattr(self, key) is not None and self.name != registry.IMAGES:
                raise key_error(key, f"only allowed with data.name = 'images' (got {self.name!r})")
        for key in ("hflip", "labels", "dequantize"):
            if getattr(self, key) and not self.is_image:
                raise key_error(key, f"only for image data sets (got {self.name!r})")
        for key in ("transform", "grid"):
            if getattr(self, key) is not None and self.is_image:
                raise key_error(key, f"only for vector data (got {self.name!r})")
        if self.log_columns and self.is_image:
            raise key_error("log_columns", f"only for vector data (got {self.name!r})")
        if self.logit is not None and not self.dequantize:
            raise key_error("logit", "needs data.dequantize = true")
        if self.captions is not None:
            source = registry.CAPTION_SOURCES[self.captions]
            if self.name != source:
                raise key_error("captions", f"{self.captions!r} captions need data.name = "
                                            f"{source!r} (got {self.name!r})")  # fmt: skip
            if self.labels:
                raise key_error("labels", "a text-conditioned run (data.captions) takes "
                                          "captions, not class labels")  # fmt: skip
        if self.name == registry.DIGITS:
            for key in ("n_train", "n_test"):
                if getattr(self, key) is not None:
                    raise key_error(key, "digits has a fixed split (1437 train / 360 test); "
                                          "leave it unset")  # fmt: skip
        return self

    @property
    def scaling(self) -> str:
        """The column scaling of vector data, default filled in ("none" for images)."""
        if self.transform is not None:
            return self.transform
        return "standard" if self.name == registry.POINTS else "none"

    @property
    def grid_columns(self) -> bool:
        """Whether grid columns are detected and dequantised, default filled in."""
        return (self.grid or ("auto" if self.name == registry.POINTS else "off")) == "auto"

    @property
    def has_transform(self) -> bool:
        """Whether vector data pass through a data transform stage (`genlab.transform`)."""
        if self.is_image:
            return False
        return self.scaling != "none" or bool(self.log_columns) or self.grid_columns

    @property
    def levels(self) -> int | None:
        """Pixel levels of an image set (digits 0..16: 17; images: 8-bit, 256); None for
        vector data."""
        if self.name == registry.DIGITS:
            return DIGITS_LEVELS
        return IMAGE_LEVELS if self.name == registry.IMAGES else None

    @property
    def image_size(self) -> int | None:
        """The side of the images when the config fixes it (digits: 8; images: `size`)."""
        return DIGITS_SIZE if self.name == registry.DIGITS else self.size

    def vector_sizes(self) -> tuple[int, int]:
        """(n_train, n_test) of a vector data set, defaults filled in."""
        n_train, n_test = VECTOR_SIZES
        return self.n_train or n_train, self.n_test or n_test


class ModelConfig(_Section):
    """The model family (a name of `genlab.families`) and its class conditioning: `num_classes`
    > 0 makes a class-conditional model of labels 0..num_classes-1; `label_dropout` > 0
    replaces labels by the null label (= num_classes) with that probability while training,
    for classifier-free guidance. The family's own options live in its section."""

    family: str = "diffusion"
    num_classes: int = Field(0, ge=0)
    label_dropout: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _dropout_needs_classes(self) -> ModelConfig:
        if self.label_dropout > 0 and self.num_classes == 0:
            raise key_error("label_dropout", "needs a class-conditional model (num_classes > 0)")
        return self


class LikelihoodSection(ODEOptions):
    """Test log-likelihood settings (`genlab.eval.likelihood`). Dequantised image data average
    `draws` fixed dequantisation draws (seeds `seed`, `seed` + 1, ...); `n` limits the test
    examples (None: all). ODE families (diffusion, cnf) integrate with the solver settings
    of `genlab.ode.ODEOptions` (by default trace "auto": the exact trace up to `exact_dims`
    dimensions, Hutchinson's estimator with `probes` Rademacher probes above; dopri5 at
    `rtol`/`atol`); a random estimate (Hutchinson, dequantisation, importance sampling)
    reports the standard error of its `draws` next to the one over examples; the VAEs
    report the ELBO (`elbo_draws` posterior draws) and the IWAE bound with `k` importance
    samples. `select`: "loss" validates on the training loss, "nll" on this likelihood of
    the validation data (one draw, `val_n` examples; the diffusion loss is no likelihood).
    A deterministic estimate (an exact flow, the exact trace of continuous data) is
    computed once, whatever `draws` says."""

    trace: Literal["exact", "hutchinson", "auto"] = "auto"
    draws: int = Field(10, ge=1)
    seed: int = Field(1000, ge=0)
    n: int | None = Field(None, ge=1)
    k: int = Field(1000, ge=1)
    elbo_draws: int = Field(10, ge=1)
    select: Literal["loss", "nll"] = "loss"
    val_n: int | None = Field(None, ge=1)

    def ode(self) -> ODEOptions:
        """The solver settings alone."""
        return ODEOptions(**{k: getattr(self, k) for k in ODEOptions.model_fields})


class SampleSection(_Section):
    """Default sampling settings of a run; None means the preset's default. `schedule` is a
    grid name or "fitted" (a grid fitted to the trained model for its sampler and NFE, once,
    then cached in the run directory: `genlab.runs.grids`)."""

    sampler: str | None = None
    nfe: int | None = Field(None, ge=1)
    schedule: str | None = None
    n: int = Field(2_000, ge=1)
    seed: int = Field(0, ge=0)

    @field_validator("sampler")
    @classmethod
    def _sampler(cls, v: str | None) -> str | None:
        return None if v is None else one_of(v, registry.SAMPLERS)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str | None) -> str | None:
        return None if v is None else one_of(v, registry.SCHEDULES)


class TextSection(_Section):
    """`[text]`: how a text-conditioned run (`data.captions`) encodes and uses its captions.

    `encoder` names a frozen pretrained encoder (`genlab.text.encoder.ENCODERS`; its files
    ship in a package, nothing is downloaded) and `max_length` the tokens kept per caption.
    `condition` is what the network sees: "tokens", the encoder's last hidden states, which
    the UNet / DiT cross-attend to with the padding masked out (Rombach et al. 2022, eq. 2);
    "pooled", the pooled sentence vector added to the time embedding (adaLN in the DiT,
    Peebles & Xie 2023, sec. 3.2); or "both". `dropout` is the probability that a training
    caption is replaced by the empty one, so the model also learns the unconditional
    distribution that classifier-free guidance needs (Ho & Salimans 2022, Alg. 1)."""

    encoder: str = "all-MiniLM-L6-v2"
    max_length: int = Field(32, ge=2, le=512)
    condition: Literal["tokens", "pooled", "both"] = "tokens"
    dropout: float = Field(0.1, ge=0, lt=1)

    @field_validator("encoder")
    @classmethod
    def _encoder(cls, v: str) -> str:
        return one_of(v, registry.TEXT_ENCODERS)

    @property
    def dim(self) -> int:
        """The width of the encoder's token states and pooled vector."""
        from genlab.text.encoder import ENCODERS

        return ENCODERS[self.encoder].dim

    def net_dims(self) -> tuple[int | None, int | None]:
        """(context_dim, pooled_dim) of the network: what `condition` feeds it."""
        tokens = self.dim if self.condition in ("tokens", "both") else None
        pooled = self.dim if self.condition in ("pooled", "both") else None
        return tokens, pooled
