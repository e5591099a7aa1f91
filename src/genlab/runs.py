"""Runs: data and model built from a `RunConfig`, trained into a run directory, loaded back.

A run directory holds what `genlab.train.fit` writes (`config.json`, `metrics.jsonl`,
`checkpoints/`); `config.json` is the record of `run_record`: the validated config, the data
dimension and the genlab version, enough to rebuild the model without the data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from genlab import registry
from genlab.autoencoders import (
    VAE,
    BernoulliLikelihood,
    DiscretizedLogisticLikelihood,
    GaussianLikelihood,
    Likelihood,
)
from genlab.config import DataConfig, RunConfig
from genlab.data.digits import DIGITS_LEVELS, DIGITS_N_VAL, digits_split
from genlab.data.gmm import GaussianMixture
from genlab.data.images import load_images
from genlab.data.points import load_points
from genlab.data.toy import make_toy
from genlab.diffusion.guidance import ClassifierFreeGuidance
from genlab.diffusion.model import Diffusion
from genlab.diffusion.sample import sample as sample_with_budget
from genlab.discrete import Dequantized
from genlab.errors import ConfigError, DataError
from genlab.eval.metrics import log_density_gap, sample_metrics, sliced_wasserstein
from genlab.flows import (
    Compose,
    Flatten,
    FlowLayer,
    NormalizingFlow,
    glow_image,
    glow_vector,
    nice,
    realnvp_image,
    realnvp_vector,
)
from genlab.flows.cnf import ContinuousFlow
from genlab.nets.dit import DiT, DiTConfig
from genlab.nets.mlp import MLP
from genlab.nets.unet import UNet, UNetConfig
from genlab.ode.options import ODEOptions
from genlab.protocol import GenerativeModel
from genlab.train import TrainResult, best_checkpoint, fit, latest_checkpoint, load_weights

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"


def genlab_version() -> str:
    try:
        return metadata.version("genlab")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0.1.0+src"


def gmm_ring() -> GaussianMixture:
    """The analytic `gmm-ring` set: 8 equal Gaussians (std 0.3) on a circle of radius 4."""
    return GaussianMixture.ring(k=8, radius=4.0, std=0.3)


# ----------------------------------------------------------------------------- data


@dataclass
class Data:
    """Training data and a held-out test split, float32: points (N, D) or images (N, C, H, W)
    in [-1, 1]; class labels int64 (N,) when the config asks for them."""

    train: Tensor
    test: Tensor
    gmm: GaussianMixture | None = None  # the exact density, for analytic sets
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None
    levels: int | None = None  # image sets: pixel levels of the [-1, 1] grid (17, 256)
    holdout: int = 0  # the last `holdout` training rows are the set's own validation part

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one example: (D,) or (C, H, W)."""
        return tuple(int(s) for s in self.train.shape[1:])

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    def floor_references(self, n: int, k: int = 8) -> list[Tensor]:
        """Up to k disjoint sets of n training points: draws independent of the test split."""
        count = max(1, min(k, self.train.shape[0] // n))
        return [self.train[i * n : (i + 1) * n] for i in range(count)]


def _split_file(cfg: DataConfig, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    assert cfg.path is not None  # checked by DataConfig
    points = load_points(cfg.path)  # (N, D)
    n_train, n_test = cfg.vector_sizes()
    if points.shape[0] < n_test + 1:
        raise DataError(
            f"{cfg.path}: {points.shape[0]} points, need more than data.n_test = {n_test}"
        )
    points = points[torch.randperm(points.shape[0], generator=generator)]
    return points[n_test : n_test + n_train], points[:n_test]


def _image_data(cfg: DataConfig, generator: torch.Generator) -> Data:
    """Digits (fixed split, 0..16 -> [-1, 1]) or images from `cfg.path`, shuffled by `seed`."""
    if cfg.name == registry.DIGITS:
        split = digits_split()
        train, test = split.train_x / 8.0 - 1.0, split.test_x / 8.0 - 1.0  # 0..16 -> [-1, 1]
        train_y, test_y = split.train_y, split.test_y
    else:
        assert cfg.path is not None  # checked by DataConfig
        loaded = load_images(cfg.path, cfg.size, channels=cfg.channels or 3)  # type: ignore[arg-type]
        images, labels = loaded.images, loaded.labels  # (N, C, H, W), (N,) | None
        if cfg.channels is not None and images.shape[1] != cfg.channels:
            raise DataError(f"{cfg.path}: images have {images.shape[1]} channels, "
                            f"data.channels = {cfg.channels}")  # fmt: skip
        if cfg.labels and labels is None:
            raise DataError(f"{cfg.path}: no class labels (data.labels = true needs them)")
        n = images.shape[0]
        n_test = cfg.n_test or max(2, n // 10)
        if n < n_test + 1:
            raise DataError(f"{cfg.path}: {n} images, need more than data.n_test = {n_test}")
        perm = torch.randperm(n, generator=generator)
        test_i, train_i = perm[:n_test], perm[n_test:][: cfg.n_train]
        train, test = images[train_i], images[test_i]
        train_y = labels[train_i] if labels is not None else None
        test_y = labels[test_i] if labels is not None else None
    if cfg.hflip:  # mirrored copies: random flips with p = 1/2, in expectation
        train = torch.cat([train, train.flip(-1)])
        train_y = None if train_y is None else torch.cat([train_y, train_y])
    if not cfg.labels:
        train_y = test_y = None
    digits = cfg.name == registry.DIGITS
    holdout = DIGITS_N_VAL if digits and not cfg.hflip else 0
    return Data(train.float().contiguous(), test.float().contiguous(), None, train_y, test_y,
                levels=data_levels(cfg), holdout=holdout)  # fmt: skip


def data_levels(cfg: DataConfig) -> int | None:
    """Pixel levels of an image set (digits 0..16: 17; images: 8-bit, 256); None for vectors."""
    if cfg.name == registry.DIGITS:
        return DIGITS_LEVELS
    return 256 if cfg.name == registry.IMAGES else None


def split_holdout(
    data: Data, cfg: RunConfig
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """(train, train labels, val, val labels) for `fit`: with validation on and no
    `train.val_fraction`, a set's own validation part (digits: the last 144 training
    images) is held out; otherwise everything trains (fit carves `val_fraction` itself)."""
    h = data.holdout
    if cfg.train.val_every == 0 or cfg.train.val_fraction > 0 or h == 0:
        return data.train, data.train_labels, None, None
    y = data.train_labels
    return (data.train[:-h], None if y is None else y[:-h], data.train[-h:],
            None if y is None else y[-h:])  # fmt: skip


def make_data(cfg: DataConfig) -> Data:
    """Train and test data, deterministic from `cfg.seed`; the test split is held out."""
    generator = torch.Generator().manual_seed(cfg.seed)
    if cfg.is_image:
        return _image_data(cfg, generator)
    if cfg.name == registry.POINTS:
        train, test = _split_file(cfg, generator)
        return Data(train, test)
    n_train, n_test = cfg.vector_sizes()
    gmm = gmm_ring() if cfg.name == registry.GMM_RING else None
    if gmm is not None:
        points = gmm.sample(n_train + n_test, generator=generator).float()  # type: ignore[union-attr]
    else:
        points = make_toy(cfg.name, n_train + n_test, generator=generator)  # (n, 2)
    return Data(points[:n_train], points[n_train:], gmm)


# ----------------------------------------------------------------------------- model


def build_net(cfg: RunConfig, shape: tuple[int, ...]) -> nn.Module:
    """The network of `[net]` for examples of `shape` ((D,) or (C, H, W)); "mlp" over
    images works on the flattened pixels."""
    opts, classes = cfg.net.options(), cfg.model.num_classes or None
    if cfg.net.name == "mlp":
        mlp = MLP(math.prod(shape), hidden=opts["hidden"], depth=opts["depth"],
                  time_dim=opts["time_dim"], num_classes=classes,
                  dropout=opts["dropout"])  # fmt: skip
        return mlp if len(shape) == 1 else FlatNet(mlp, shape)
    if len(shape) != 3:
        raise ConfigError(f"net.name: {cfg.net.name!r} needs images (got shape {list(shape)})")
    channels, height, width = shape
    if cfg.net.name == "unet":
        return UNet(UNetConfig(in_channels=channels, num_classes=classes, **opts))
    if height % opts["patch_size"] or width % opts["patch_size"]:
        raise ConfigError(f"net.patch_size: must divide the image size {height}x{width} "
                          f"(got {opts['patch_size']})")  # fmt: skip
    net = DiT(DiTConfig(in_channels=channels, num_classes=classes, input_size=max(height, width),
                        **opts))  # fmt: skip
    # `genlab.train.EMA` copies every buffer through the state dict, which leaves out
    # non-persistent ones: keep DiT's (fixed) positional grid in the state dict.
    net.register_buffer("pos", net.pos, persistent=True)
    return net


class FlatNet(nn.Module):
    """A vector network (B, D) applied to images (B, C, H, W) through their flattened pixels."""

    def __init__(self, net: nn.Module, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.net, self.shape = net, tuple(shape)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.net(x.flatten(1), t, cond).reshape(x.shape)


def build_model(cfg: RunConfig, shape: int | tuple[int, ...]) -> GenerativeModel:
    """The model of `[model]` for examples of `shape`: a diffusion preset (with its overrides;
    with `model.label_dropout` > 0 the null label of classifier-free guidance is
    `num_classes`), a normalizing flow, a CNF or a VAE; wrapped in `Dequantized` when
    `data.dequantize` is set."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    m, family = cfg.model, cfg.model.family
    model: GenerativeModel
    if family == "diffusion":
        null = m.num_classes if m.label_dropout > 0 else None
        model = Diffusion.from_preset(m.preset, build_net(cfg, shape), shape,
                                      label_dropout=m.label_dropout, null_label=null,
                                      **m.components())  # fmt: skip
    elif family == "cnf":
        c = cfg.cnf
        assert c is not None  # filled in by RunConfig
        ode = ODEOptions(trace=c.trace, probe=c.probe, probes=c.probes, rtol=c.rtol,
                         atol=c.atol, method=c.method, step_size=c.step_size)  # fmt: skip
        model = ContinuousFlow(build_net(cfg, shape), shape, ode=ode)
    elif family == "vae":
        model = _build_vae(cfg, shape)
    else:
        model = NormalizingFlow(_build_flow(cfg, shape), shape)
    levels = data_levels(cfg.data)
    if cfg.data.dequantize:
        assert levels is not None  # checked by DataConfig: image sets only
        return Dequantized(model, levels, logit=cfg.data.logit)
    return model


def _build_flow(cfg: RunConfig, shape: tuple[int, ...]) -> FlowLayer:
    f, family = cfg.flow, cfg.model.family
    assert f is not None  # filled in by RunConfig
    dim = math.prod(shape)
    if f.dropout > 0 and len(shape) != 3 and family != "nice":
        raise ConfigError("flow.dropout: only NICE and the image realnvp and glow have dropout")
    if family == "nice":
        flow = nice(dim, n_couplings=f.steps, hidden=f.hidden, n_layers=f.layers,
                    dropout=f.dropout)  # fmt: skip
        return flow if len(shape) == 1 else Compose([Flatten(shape), flow])
    scale = f.scale or ("tanh" if family == "realnvp" else "sigmoid")
    if len(shape) == 3:
        try:
            if family == "realnvp":
                return realnvp_image(shape, levels=f.levels, n_blocks=f.steps,
                                     n_checkerboard=f.checkerboard, hidden=f.hidden,
                                     scale=scale, dropout=f.dropout)  # fmt: skip
            return glow_image(shape, levels=f.levels, n_steps=f.steps, hidden=f.hidden,
                              lu=f.lu, scale=scale, dropout=f.dropout)  # fmt: skip
        except ValueError as err:
            raise ConfigError(f"flow.levels: {err}") from None
    if family == "realnvp":
        return realnvp_vector(dim, n_couplings=f.steps, hidden=f.hidden, n_layers=f.layers,
                              scale=scale)  # fmt: skip
    return glow_vector(dim, n_steps=f.steps, hidden=f.hidden, n_layers=f.layers, lu=f.lu,
                       scale=scale)  # fmt: skip


def _build_vae(cfg: RunConfig, shape: tuple[int, ...]) -> GenerativeModel:
    v = cfg.vae
    assert v is not None  # filled in by RunConfig
    levels = data_levels(cfg.data)
    decoder = v.decoder
    if decoder == "auto":
        image = levels is not None and not cfg.data.dequantize
        decoder = "discretized_logistic" if image else "gaussian"
    likelihood: Likelihood
    if decoder == "discretized_logistic":
        if levels is None or cfg.data.dequantize:
            raise ConfigError("vae.decoder: 'discretized_logistic' is for image data on its "
                              "grid (data.dequantize = false)")  # fmt: skip
        likelihood = DiscretizedLogisticLikelihood(levels, low=-1.0, high=1.0)
    elif decoder == "gaussian":
        likelihood = GaussianLikelihood("predicted")
    else:
        likelihood = BernoulliLikelihood()
    return VAE.with_mlp(shape, v.latent, likelihood, hidden=v.hidden, depth=v.depth)


def run_record(cfg: RunConfig, shape: int | tuple[int, ...]) -> dict[str, Any]:
    """What `config.json` of a run holds."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return {"genlab_version": genlab_version(), "data_dim": math.prod(shape),
            "data_shape": list(shape), "config": cfg.to_dict()}  # fmt: skip


def save_run_config(run_dir: Path | str, cfg: RunConfig, shape: int | tuple[int, ...]) -> Path:
    path = Path(run_dir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run_record(cfg, shape), indent=2) + "\n")
    return path


def train_run(
    cfg: RunConfig, run_dir: Path | str, *, resume: bool = False, progress: bool | None = None
) -> tuple[TrainResult, Data]:
    """Build data and model from `cfg` and train into `run_dir` (see `genlab.train.fit`)."""
    data = make_data(cfg.data)
    torch.manual_seed(cfg.train.seed)  # the initial weights
    model = build_model(cfg, data.shape)
    top = -1 if data.train_labels is None else int(data.train_labels.max())
    if top >= cfg.model.num_classes > 0:
        raise ConfigError(f"model.num_classes: the data has labels up to {top} "
                          f"(got {cfg.model.num_classes})")  # fmt: skip
    train_cfg = cfg.train.to_train_config()
    if progress is not None:
        train_cfg = train_cfg.model_copy(update={"progress": progress})
    train, train_y, val, val_y = split_holdout(data, cfg)
    val_fn = None
    if cfg.likelihood.select == "nll" and train_cfg.val_every > 0:
        val_fn = _nll_score(cfg)
    result = fit(model, train, train_cfg, run_dir, cond=train_y, val_data=val, val_cond=val_y,
                 val_fn=val_fn, run_config=run_record(cfg, data.shape),
                 resume=resume)  # fmt: skip
    return result, data


def _nll_score(cfg: RunConfig) -> Callable[[nn.Module, Tensor, Tensor | None], float]:
    """Validation by the test-time likelihood estimate (one draw): mean NLL in nats."""
    from genlab.eval.likelihood import nll

    settings = cfg.likelihood.model_copy(update={"draws": 1})
    n = cfg.likelihood.val_n

    def score(model: nn.Module, x: Tensor, c: Tensor | None) -> float:
        x, c = x[:n], None if c is None else c[:n]
        return float(nll(model, x, settings, cond=c).mean())

    return score


# ----------------------------------------------------------------------------- loading


@dataclass
class Run:
    """A trained run: its config and the model with EMA weights, in eval mode."""

    run_dir: Path
    config: RunConfig
    model: GenerativeModel
    shape: tuple[int, ...]
    checkpoint: Path

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3


def read_run_config(run_dir: Path | str) -> tuple[RunConfig, tuple[int, ...]]:
    """The config and the shape of one example from `run_dir/config.json`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: run directory not found")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise DataError(f"{path}: missing (is {run_dir} a genlab run directory?)")
    try:
        record = json.loads(path.read_text())
        values = record["config"]
        shape = tuple(int(s) for s in record.get("data_shape", [record["data_dim"]]))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        raise DataError(f"{path}: corrupt run config (not genlab's JSON record)") from None
    try:
        return RunConfig.from_dict(values), shape
    except ConfigError as err:
        raise DataError(f"{path}: {err}") from None


def load_run(run_dir: Path | str) -> Run:
    """Rebuild the model of a trained run and load its EMA weights: those of the
    best-validation checkpoint when the run selects on validation, else the latest."""
    run_dir = Path(run_dir)
    cfg, shape = read_run_config(run_dir)
    best = best_checkpoint(run_dir) if cfg.train.select == "best" else None
    ckpt = best or latest_checkpoint(run_dir)
    if ckpt is None:
        raise DataError(f"{run_dir}: no checkpoint yet (train the run first)")
    model = build_model(cfg, shape)
    load_weights(ckpt, model, ema=True)
    model.eval()
    return Run(run_dir, cfg, model, shape, ckpt)


# ----------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class SampleSpec:
    """How to sample: None means the model's (preset's) default."""

    sampler: str | None = None
    nfe: int | None = None
    schedule: str | None = None


def diffusion_of(model: nn.Module) -> Diffusion | None:
    """The `Diffusion` of a run's model (inside `Dequantized`, if wrapped), else None."""
    inner = model.model if isinstance(model, Dequantized) else model
    return inner if isinstance(inner, Diffusion) else None


def sampling_record(model: nn.Module, spec: SampleSpec) -> dict[str, Any]:
    """What sampled: a diffusion run's resolved sampler, nfe and schedule; for the other
    families their own exact sampler (ancestral, or the flow's inverse / ODE)."""
    diffusion = diffusion_of(model)
    if diffusion is None:
        return {"sampler": "exact", "nfe": None, "schedule": None}
    return dict(zip(("sampler", "nfe", "schedule"), resolve(diffusion, spec), strict=True))


def resolve(model: Diffusion, spec: SampleSpec) -> tuple[str, int, str]:
    """(sampler, nfe, schedule) of `spec` with the model's defaults filled in, names checked."""
    sampler = spec.sampler or model.sampler
    nfe = spec.nfe or model.nfe
    schedule = spec.schedule or model.schedule
    for key, value, table in (("sampler", sampler, registry.SAMPLERS),
                              ("schedule", schedule, registry.GRIDS)):  # fmt: skip
        if value not in table:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(sorted(table))}")
    if nfe < 1:
        raise ConfigError(f"nfe: must be >= 1 (got {nfe})")
    return sampler, nfe, schedule


@torch.no_grad()
def draw(
    model: GenerativeModel,
    n: int,
    spec: SampleSpec,
    *,
    seed: int = 0,
    trajectory: bool = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
    cond: Tensor | None = None,
    guidance: float | None = None,
) -> tuple[Tensor, list[Tensor]]:
    """n samples (n, *data_shape) and, if asked, the states along the way; deterministic
    from `seed`.

    `cond` are class labels (n,) of a class-conditional model; `guidance` is the
    classifier-free guidance scale w (1 = conditional, 0 = unconditional; needs `cond` and a
    model trained with label dropout). `callback` receives the sampler's per-step dict
    (`x`, `sigma`, `denoised`, ...). Families other than diffusion draw with their own
    exact sampler (sampler options, guidance and trajectories are diffusion-only).
    """
    wrapped, diffusion = model, diffusion_of(model)
    if diffusion is None:
        if spec != SampleSpec() or guidance is not None or trajectory or callback is not None:
            raise ConfigError("sampler, nfe, schedule, guidance and trajectories are options "
                              "of diffusion runs; this run samples exactly")  # fmt: skip
        return model.sample(n, cond, generator=torch.Generator().manual_seed(seed)), []
    model = diffusion
    sampler, nfe, schedule = resolve(model, spec)
    denoiser: Callable[..., Tensor] = model.denoiser
    if guidance is not None:
        if model.null_label is None:
            raise ConfigError("--guidance needs a model trained with label dropout "
                              "(model.label_dropout > 0)")  # fmt: skip
        if cond is None:
            raise ConfigError("--guidance needs class labels (--class)")
        denoiser = ClassifierFreeGuidance(model.denoiser, guidance, model.null_label)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((n, *model.data_shape), generator=generator)  # (n, *data_shape)
    try:
        out = sample_with_budget(
            denoiser, noise, sampler=sampler, nfe=nfe, schedule=schedule,
            path=model.objective.path, generator=generator, return_trajectory=trajectory,
            callback=callback, cond=cond,
        )  # fmt: skip
    except ValueError as err:
        raise ConfigError(f"sampling with {sampler} at nfe={nfe}: {err}") from None
    states: list[Tensor] = []
    if isinstance(out, tuple):
        out, states = out
    if isinstance(wrapped, Dequantized):  # the states stay in the model's representation
        out = wrapped.unrepresent(out)
    return out, states


# ----------------------------------------------------------------------------- evaluation


def evaluate(samples: Tensor, data: Data, *, seed: int = 0) -> dict[str, float]:
    """Distances of `samples` to the held-out test split, next to their floor.

    `sw2_floor` is the sliced W2 between two independent draws of the data of the test
    split's size (disjoint sets of training points vs the test points, averaged over up to 8
    sets); `sw2_ratio` = sliced W2 / floor, so 2 means "twice as far from the test set as
    fresh data is". On analytic data,
    `log_density_gap` = mean log p(samples) - mean log p(test) under the exact density.
    """

    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    metrics = sample_metrics(samples, data.test, generator=gen())
    floors = [sliced_wasserstein(ref, data.test, generator=gen())
              for ref in data.floor_references(data.test.shape[0])]  # fmt: skip
    metrics["sw2_floor"] = sum(floors) / len(floors)
    metrics["sw2_ratio"] = metrics["sliced_wasserstein"] / metrics["sw2_floor"]
    if data.gmm is not None:
        metrics["log_density_gap"] = log_density_gap(samples, data.test, data.gmm.log_prob)
    return metrics


def test_labels(data: Data, n: int) -> Tensor:
    """n class labels in the proportions of the test split (its labels, cycled)."""
    if data.test_labels is None:
        raise DataError("the data set has no class labels")
    reps = -(-n // data.test_labels.shape[0])
    return data.test_labels.repeat(reps)[:n]


def _real_like(data: Data, n: int, labels: Tensor | None, generator: torch.Generator) -> Tensor:
    """n real training images (capped at the train size) -- with `labels`, drawn class by
    class in the same proportions, so that the floor of a class-conditional evaluation is not
    penalised for the class mix of a random draw."""
    perm = torch.randperm(data.train.shape[0], generator=generator)  # (N_train,)
    if labels is None or data.train_labels is None:
        return data.train[perm[: min(n, data.train.shape[0])]]
    picks = []
    for k in labels.unique().tolist():
        pool = perm[data.train_labels[perm] == k]  # shuffled train indices of class k
        count = min(int((labels == k).sum()), pool.shape[0])
        picks.append(pool[:count])
    return data.train[torch.cat(picks)]


def evaluate_images(
    samples: Tensor, data: Data, *, labels: Tensor | None = None, seed: int = 0
) -> dict[str, float]:
    """FD, KID, precision/recall (and class accuracy, given the requested `labels`) of image
    `samples` (N, 1, 8, 8) against the test split, in the digits network's feature space
    (`genlab.eval.image_metrics`), each next to its `<metric>_floor`: the same metric for
    N real training images (capped at the train size; with `labels`, in the same class
    proportions) against the test split, i.e. a perfect generator at this sample size.
    The accuracy floor is the network's accuracy on the test split (the ceiling a conditional
    model can reach). `fd_ratio` = fd / fd_floor. Samples are clamped to [-1, 1] first."""
    from genlab.eval.image_metrics import classifier_accuracy, image_metrics

    if data.shape != (1, 8, 8):
        raise DataError(f"image metrics use the shipped digits network and need 8x8 grey "
                        f"images (got {'x'.join(map(str, data.shape))})")  # fmt: skip

    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    x = samples.float().clamp(-1, 1)
    metrics = image_metrics(x, data.test, labels=labels, generator=gen())
    floor = image_metrics(_real_like(data, x.shape[0], labels, gen()), data.test, generator=gen())
    for key in ("fd", "kid", "precision", "recall"):
        metrics[f"{key}_floor"] = floor[key]
    if labels is not None and data.test_labels is not None:
        metrics["accuracy_floor"] = classifier_accuracy(data.test, data.test_labels)
    metrics["fd_ratio"] = metrics["fd"] / metrics["fd_floor"]
    return {k: float(v) for k, v in metrics.items()}
