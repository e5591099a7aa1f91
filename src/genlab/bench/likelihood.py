"""Cross-family likelihood table: every family's test likelihood on the same data.

``genlab bench likelihood [--data digits|ring] [--quick] [--max-seconds S] [--families ...]``

Data sets
---------
``digits`` (scikit-learn 8x8 digits, D = 64, L = 17 levels; the anchor protocol of
``/work/shared/anchors/flows_digits.md``): split ``default_rng(0).permutation``, 1437 train /
360 test; the last 144 train images are validation (``carve_validation``), used for
checkpoint selection and early stopping only; the test split is evaluated once, on the
selected weights. The reported number is bits/dim on the DISCRETE data v in {0..16}^64.

Change of variables (one formula for every family). Uniform dequantisation draws
x = (v + u)/L in [0,1)^D, u ~ U[0,1)^D. A family models an affine image y = a + s x of it
(``scale`` s): flows model x itself (s = 1, the logit sits inside the model with its
log-det); diffusion, flow matching and the CNF model y = 2x - 1 in [-1, 1) (s = 2). Since
p_X(x) = p_Y(y) s^D,

    bpd = (E_u[-ln p_Y(y)] - D ln s + D ln L) / (D ln 2)        (:func:`discrete_bpd`),

an upper bound on -log2 P(v)/D (Jensen). A density uniform on [0,1)^D (s = 1, -ln p = 0) and
one uniform on [-1,1]^D (s = 2, -ln p = D ln 2) both give exactly log2 17 = 4.0875.
The expectation over u uses the anchor's 10 fixed draws (seeds 1000..1009) for the flows and
VAE; the ODE families use ``ode_test_draws`` of them on ``ode_test_n`` test images (stated in
the row's notes) because each draw is an adaptive ODE solve with a Hutchinson trace.

The VAE needs no dequantisation: its decoder is a discretised logistic on the 17 grid
points 2v/16 - 1 of [-1, 1] (``DiscretizedLogisticLikelihood(17)``), so p(v | z) is already a
probability of the discrete v and -ELBO / D ln 2 and -IWAE_k / D ln 2 bound -log2 P(v)/D
directly (two rows: ELBO and IWAE-k, k in the notes).

Baselines: per-pixel categorical (Laplace +1, fit on all 1437 training images; 2.4314) and
uniform (log2 17 = 4.0875).

``ring`` (8 Gaussians on a circle of radius 4, std 0.3, D = 2; ``GaussianMixture.ring``):
train / validation / test points are exact mixture draws (seeds 0 / 1 / 2). Every model sees
y = x / 2 (s = 1/2, so ``-ln p_X(x) = -ln p_Y(y) - D ln s``) and the table reports the test
NLL of x in nats next to the exact mixture's NLL of the same points.

Training and selection
----------------------
Every family trains with the genlab trainer (``genlab.train``: ``TrainState``,
``iter_train``, EMA, warm-up, clipping, per-step seeding) in a loop that adds a budget of
process CPU seconds (the machine is shared: wall time varies with load; both are reported)
and validation every ``val_every`` steps with ``validation_score`` (EMA and, for flows, raw
weights are candidates); the best validation score's weights are kept, training stops after
``patience`` evaluations without improvement, on the step budget or on the CPU budget. (``fit``
has the same validation but no time budget; this loop reuses its pieces.) A diverging run
(non-finite loss) stops and keeps its best validated weights (noted in the row).

Per-family settings are the python table ``SETTINGS`` below (full and ``quick`` budgets);
``--max-seconds`` overrides every family's CPU budget. Weights and rows are cached under
``--cache`` (default ``runs/bench-likelihood``) keyed by data, family and settings.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from genlab.errors import TrainingDiverged
from genlab.train import TrainConfig, TrainState, iter_train, validation_score

__all__ = [
    "FAMILIES",
    "SETTINGS",
    "Row",
    "discrete_bpd",
    "categorical_bpd",
    "run",
    "format_table",
    "main",
]

LN2 = math.log(2.0)
TEST_SEEDS = tuple(range(1000, 1010))  # the anchor's dequantisation draws for test
VAL_SEEDS = tuple(range(2000, 2010))  # and for validation
FAMILIES = ("nice", "realnvp", "glow", "vae", "edm", "vp-sde", "flow-matching", "cnf")
DIFFUSION = ("edm", "vp-sde", "ddpm", "flow-matching", "rectified-flow", "ve-sde")
ALL_FAMILIES = FAMILIES + ("ddpm",)
RING_SCALE = 0.5  # models see y = RING_SCALE * x


def discrete_bpd(nll_y: Tensor | float, dim: int, levels: int, scale: float = 1.0) -> Any:
    """bits/dim of the discrete data from -ln p_Y(y), y = a + scale * (v + u)/levels.

    (nll_y - D ln scale + D ln levels) / (D ln 2); scale 1 is the anchor's [0,1) formula,
    scale 2 the [-1,1] representation. Uniform densities give log2(levels) in both."""
    return (nll_y - dim * math.log(scale) + dim * math.log(levels)) / (dim * LN2)


def categorical_bpd(train_v: Tensor, test_v: Tensor, levels: int) -> float:
    """Per-pixel categorical (counts + 1) fit on train_v, mean bpd on test_v (exact, discrete)."""
    tr = train_v.flatten(1).long()
    te = test_v.flatten(1).long()
    d = tr.shape[1]
    counts = torch.ones(d, levels, dtype=torch.float64)
    counts.scatter_add_(1, tr.T, torch.ones(tr.T.shape, dtype=torch.float64))
    logp = torch.log(counts / counts.sum(1, keepdim=True))  # (D, L)
    ll = logp.gather(1, te.T).sum(0)  # (N_test,)
    return float((-ll / (d * LN2)).mean())


# ----------------------------------------------------------------------------- settings

Q = "quick"
# Per-family settings. Budget keys: steps, seconds (process CPU), val_every, patience
# (evaluations). "quick" overrides for --quick. Model keys are family specific.
# the anchor clips the gradient of the batch-mean bpd at 100; genlab flows' loss is in nats of
# the discrete data, D ln 2 = 44.36 times larger, so the same clip is 100 * 64 ln 2 = 4436.
_FLOW_TRAIN = dict(
    batch=128, lr=1e-3, warmup=200, clip=100.0 * 64 * LN2, ema=0.995, raw_candidate=True
)
# fmt: off
SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "digits": {
        # edm / vp-sde / ddpm / flow-matching: one MLP over the 64 flattened pixels
        "_diff": dict(hidden=512, depth=3, batch=128, lr=1e-3, warmup=200, clip=1.0, ema=0.999,
                      steps=100_000, seconds=110, val_every=500, patience=6, val_n=144,
                      rtol=1e-5, atol=1e-5, probes=1, ode_test_n=360, ode_test_draws=10,
                      quick=dict(hidden=64, depth=2, steps=60, seconds=8, val_every=30,
                                 val_n=16, rtol=1e-3, atol=1e-3, ode_test_n=16,
                                 ode_test_draws=1)),
        "nice": dict(_FLOW_TRAIN, couplings=4, hidden=512, layers=4, dropout=0.0,
                     steps=6000, seconds=60, val_every=100, patience=5,
                     quick=dict(couplings=2, hidden=32, layers=2, steps=30, seconds=5,
                                val_every=15)),
        "realnvp": dict(_FLOW_TRAIN, k=32, hidden=64, dropout=0.1, steps=4000, seconds=150,
                        val_every=100, patience=4,
                        quick=dict(k=2, hidden=16, steps=20, seconds=8, val_every=10)),
        "glow": dict(_FLOW_TRAIN, k=32, hidden=64, dropout=0.1, steps=4000, seconds=150,
                     val_every=100, patience=4,
                     quick=dict(k=2, hidden=16, steps=20, seconds=8, val_every=10)),
        "cnf": dict(hidden=256, depth=3, batch=128, lr=1e-3, warmup=50, clip=10.0, ema=0.99,
                    raw_candidate=True, steps=100_000, seconds=300, val_every=100, patience=4,
                    val_n=144,
                    train_rtol=1e-3, train_atol=1e-3, rtol=1e-5, atol=1e-5, probes=1,
                    ode_test_n=360, ode_test_draws=10,
                    quick=dict(hidden=32, depth=2, steps=6, seconds=8, val_every=3, val_n=16,
                               rtol=1e-3, atol=1e-3, ode_test_n=16, ode_test_draws=1)),
        "vae": dict(latent=16, hidden=512, depth=2, batch=128, lr=1e-3, warmup=100, clip=100.0,
                    ema=0.995, steps=20_000, seconds=60, val_every=250, patience=6, k=1000,
                    elbo_draws=10,
                    quick=dict(latent=4, hidden=32, steps=40, seconds=5, val_every=20, k=16,
                               elbo_draws=2)),
    },
    "ring": {
        "_diff": dict(hidden=128, depth=3, batch=256, lr=1e-3, warmup=100, clip=1.0, ema=0.999,
                      steps=20_000, seconds=60, val_every=2000, patience=3, val_n=250,
                      rtol=1e-5, atol=1e-5, probes=0, ode_test_n=2000, ode_test_draws=1,
                      quick=dict(hidden=32, depth=2, steps=100, seconds=3, val_every=50,
                                 val_n=200, rtol=1e-3, atol=1e-3, ode_test_n=200)),
        "nice": dict(couplings=4, hidden=64, layers=3, dropout=0.0, batch=256, lr=1e-3,
                     warmup=100, clip=100.0, ema=0.995, raw_candidate=True, steps=20_000,
                     seconds=40, val_every=500, patience=4,
                     quick=dict(couplings=2, hidden=16, layers=2, steps=60, seconds=3,
                                val_every=30)),
        "realnvp": dict(couplings=8, hidden=64, layers=2, batch=256, lr=1e-3, warmup=100,
                        clip=100.0, ema=0.995, raw_candidate=True, steps=20_000, seconds=40,
                        val_every=500, patience=4,
                        quick=dict(couplings=2, hidden=16, steps=60, seconds=3, val_every=30)),
        "glow": dict(k=8, hidden=64, layers=2, batch=256, lr=1e-3, warmup=100, clip=100.0,
                     ema=0.995, raw_candidate=True, steps=20_000, seconds=40, val_every=500,
                     patience=4,
                     quick=dict(k=2, hidden=16, steps=60, seconds=3, val_every=30)),
        "cnf": dict(hidden=64, depth=3, batch=256, lr=1e-3, warmup=50, clip=10.0, ema=0.99,
                    steps=20_000, seconds=90, val_every=100, patience=5, val_n=250,
                    train_rtol=1e-4, train_atol=1e-4, rtol=1e-5, atol=1e-5, probes=0,
                    ode_test_n=2000, ode_test_draws=1,
                    quick=dict(hidden=16, depth=2, steps=8, seconds=4, val_every=4, val_n=200,
                               train_rtol=1e-2, train_atol=1e-2, rtol=1e-3, atol=1e-3,
                               ode_test_n=200)),
        "vae": dict(latent=2, hidden=128, depth=2, batch=256, lr=1e-3, warmup=100, clip=100.0,
                    ema=0.995, steps=20_000, seconds=40, val_every=500, patience=4, k=1000,
                    elbo_draws=10,
                    quick=dict(latent=2, hidden=16, steps=60, seconds=3, val_every=30, k=16,
                               elbo_draws=2)),
    },
}
# fmt: on


def settings_for(data: str, family: str, quick: bool, max_seconds: float | None) -> dict:
    table = SETTINGS[data]
    base = dict(table["_diff"] if family in DIFFUSION else table[family])
    over = base.pop(Q, {})
    if quick:
        base.update(over)
    if max_seconds is not None:
        base["seconds"] = float(max_seconds)
    return base


# ----------------------------------------------------------------------------- data


@dataclass
class Dataset:
    name: str
    train: Tensor  # digits: integer-valued (N, 1, 8, 8); ring: float64 (N, 2) in x space
    val: Tensor
    test: Tensor
    dim: int
    levels: int | None = None
    mixture: Any = None


def load_data(name: str, quick: bool = False) -> Dataset:
    if name == "digits":
        from genlab.data.digits import DIGITS_LEVELS, carve_validation, digits_split

        split = digits_split()
        tr, _, va, _ = carve_validation(split.train_x, split.train_y)
        return Dataset("digits", tr, va, split.test_x, 64, DIGITS_LEVELS)
    if name == "ring":
        from genlab.data.gmm import GaussianMixture

        gmm = GaussianMixture.ring()
        n_tr, n_va, n_te = (2000, 200, 200) if quick else (10_000, 1000, 2000)
        draw = [gmm.sample(n, generator=torch.Generator().manual_seed(s)).float()
                for n, s in ((n_tr, 0), (n_va, 1), (n_te, 2))]  # fmt: skip
        return Dataset("ring", draw[0], draw[1], draw[2], 2, None, gmm)
    raise ValueError(f"unknown data {name!r}; allowed: digits, ring")


# ----------------------------------------------------------------------------- adapters


class Represented(nn.Module):
    """A model of y = 2 (v + u)/L - 1 (digits) or y = RING_SCALE x (ring), flattened to (B, D).

    ``loss(v)`` dequantises (digits, fresh u per call from the global generator, which the
    trainer seeds per step) and calls the inner model's loss on y. ``nll_y(v, generator)``
    is -ln p_Y(y) of one dequantisation draw, by the inner model's log_prob."""

    def __init__(
        self,
        inner: nn.Module,
        dim: int,
        levels: int | None,
        log_prob: Callable[[nn.Module, Tensor, torch.Generator], Tensor],
    ) -> None:
        super().__init__()
        self.inner, self.dim, self.levels = inner, dim, levels
        self._log_prob = log_prob
        self.scale = 2.0 if levels is not None else RING_SCALE

    def represent(self, v: Tensor, generator: torch.Generator | None = None) -> Tensor:
        v = v.reshape(v.shape[0], -1)
        if self.levels is None:
            return self.scale * v
        u = torch.rand(v.shape, generator=generator, dtype=v.dtype)
        return 2.0 * (v + u) / self.levels - 1.0

    def loss(self, v: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.inner.loss(self.represent(v))

    @torch.no_grad()
    def nll_y(self, v: Tensor, generator: torch.Generator, batch: int = 512) -> Tensor:
        y = self.represent(v, generator)
        out = [-self._log_prob(self.inner, y[i : i + batch], generator).double()
               for i in range(0, y.shape[0], batch)]  # fmt: skip
        return torch.cat(out)


class RingFlow(nn.Module):
    """A vector flow of the ring data in the y = RING_SCALE x representation."""

    def __init__(self, flow: nn.Module) -> None:
        super().__init__()
        self.flow = flow

    def loss(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.flow.loss(RING_SCALE * x)


# ----------------------------------------------------------------------------- rows


@dataclass
class Row:
    family: str
    params: int
    steps: int
    train_cpu_s: float
    train_wall_s: float
    val: float  # selection score (bpd or nats; see notes)
    test: float  # test bpd (digits) or NLL in nats (ring)
    test_se: float
    unit: str
    notes: str = ""
    best_step: int = 0
    beats_categorical: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _se(x: Tensor) -> float:
    x = x[torch.isfinite(x)]
    return float(x.std() / math.sqrt(x.numel())) if x.numel() > 1 else math.nan


def _mean(x: Tensor) -> float:
    return float(x.mean()) if torch.isfinite(x).all() else math.inf


# ----------------------------------------------------------------------------- builders


def _build(data: Dataset, family: str, s: dict) -> tuple[nn.Module, Callable, str]:
    """(model, per-example evaluator(model, v, seeds|n_draws, final) -> metric (N,), notes)."""
    torch.manual_seed(0)
    if family in DIFFUSION:
        return _build_diffusion(data, family, s)
    if family == "cnf":
        return _build_cnf(data, s)
    if family in ("nice", "realnvp", "glow"):
        return _build_flow(data, family, s)
    if family == "vae":
        return _build_vae(data, s)
    raise ValueError(f"unknown family {family!r}; allowed: {', '.join(ALL_FAMILIES)}")


def _ode_metric(data: Dataset, s: dict) -> Callable:
    """Per-example metric of a Represented ODE model: bpd (digits) or nats of x (ring)."""

    def metric(model: Represented, v: Tensor, seeds: Sequence[int]) -> Tensor:
        nll = torch.zeros(v.shape[0], dtype=torch.float64)
        for seed in seeds:
            nll += model.nll_y(v, torch.Generator().manual_seed(seed))
        nll /= len(seeds)
        if data.levels is None:
            return nll - data.dim * math.log(RING_SCALE)
        return discrete_bpd(nll, data.dim, data.levels, scale=2.0)

    return metric


def _build_diffusion(data: Dataset, preset: str, s: dict) -> tuple[nn.Module, Callable, str]:
    from genlab.diffusion.model import Diffusion
    from genlab.nets.mlp import MLP

    net = MLP(data.dim, hidden=s["hidden"], depth=s["depth"])
    inner = Diffusion.from_preset(preset, net, (data.dim,))
    trace = "hutchinson" if s["probes"] > 0 else "exact"

    def log_prob(m: nn.Module, y: Tensor, g: torch.Generator) -> Tensor:
        return m.log_prob(
            y.float(),
            trace=trace,
            n_probes=max(1, s["probes"]),
            probe="rademacher",
            rtol=s["rtol"],
            atol=s["atol"],
            generator=g,
        )

    model = Represented(inner, data.dim, data.levels, log_prob)
    notes = (
        f"MLP {s['hidden']}x{s['depth']}; PF-ODE dopri5 rtol=atol={s['rtol']:g}, "
        f"sigma in [{inner.sigma_min:.3g}, {inner.sigma_max:.3g}], "
        + (f"Hutchinson {s['probes']} Rademacher probe(s)" if s["probes"] else "exact trace")
    )
    return model, _ode_metric(data, s), notes


def _build_cnf(data: Dataset, s: dict) -> tuple[nn.Module, Callable, str]:
    from genlab.flows.cnf import ContinuousFlow
    from genlab.nets.mlp import MLP

    net = MLP(data.dim, hidden=s["hidden"], depth=s["depth"])
    trace = "hutchinson" if s["probes"] > 0 else "exact"
    inner = ContinuousFlow(
        net,
        (data.dim,),
        trace=trace,
        probe="rademacher",
        n_probes=max(1, s["probes"]),
        rtol=s["train_rtol"],
        atol=s["train_atol"],
        method="dopri5",
    )

    def log_prob(m: nn.Module, y: Tensor, g: torch.Generator) -> Tensor:
        return m.log_prob(y.float(), rtol=s["rtol"], atol=s["atol"], generator=g)

    model = Represented(inner, data.dim, data.levels, log_prob)
    notes = (
        f"FFJORD, MLP {s['hidden']}x{s['depth']}, train dopri5 rtol={s['train_rtol']:g}, "
        f"eval rtol=atol={s['rtol']:g}, "
        + (f"Hutchinson {s['probes']} Rademacher probe(s)" if s["probes"] else "exact trace")
    )
    return model, _ode_metric(data, s), notes


def _build_flow(data: Dataset, family: str, s: dict) -> tuple[nn.Module, Callable, str]:
    from genlab.flows import (
        Compose,
        Flatten,
        Logit,
        NormalizingFlow,
        dequantized_bpd,
        glow_image,
        glow_vector,
        nice,
        realnvp_image,
        realnvp_vector,
    )

    g = torch.Generator().manual_seed(0)
    if data.name == "digits":
        shape = tuple(data.train.shape[1:])
        if family == "nice":
            flow = Compose(
                [
                    Flatten(shape),
                    nice(
                        data.dim,
                        n_couplings=s["couplings"],
                        hidden=s["hidden"],
                        n_layers=s["layers"],
                    ),
                ]
            )
            notes = f"NICE {s['couplings']} additive couplings, MLP {s['hidden']}x{s['layers']}"
        elif family == "realnvp":
            flow = realnvp_image(
                shape,
                levels=2,
                n_blocks=s["k"],
                n_checkerboard=4,
                hidden=s["hidden"],
                scale="tanh",
                dropout=s["dropout"],
            )
            notes = f"L=2, K={s['k']}, hidden {s['hidden']}, dropout {s['dropout']}"
        else:
            flow = glow_image(
                shape,
                levels=2,
                n_steps=s["k"],
                hidden=s["hidden"],
                lu=True,
                scale="sigmoid",
                dropout=s["dropout"],
                generator=g,
            )
            notes = f"L=2, K={s['k']}, hidden {s['hidden']}, dropout {s['dropout']}"
        model = NormalizingFlow(flow, shape, levels=data.levels, preprocess=Logit(0.05))
        with torch.no_grad():  # data-dependent actnorm initialisation (Glow sec. 3.1)
            idx = torch.randperm(data.train.shape[0], generator=g)[:512]
            from genlab.data.dequantize import dequantize

            model.transform(dequantize(data.train[idx], data.levels, generator=g))

        def metric(m: nn.Module, v: Tensor, seeds: Sequence[int]) -> Tensor:
            return dequantized_bpd(m, v, seeds)

        return model, metric, notes + "; logit a=0.05 in the model; EMA/raw selected on val"
    if family == "nice":
        flow = nice(2, n_couplings=s["couplings"], hidden=s["hidden"], n_layers=s["layers"])
        notes = f"{s['couplings']} additive couplings, MLP {s['hidden']}x{s['layers']}"
    elif family == "realnvp":
        flow = realnvp_vector(
            2, n_couplings=s["couplings"], hidden=s["hidden"], n_layers=s["layers"]
        )
        notes = f"{s['couplings']} affine couplings, MLP {s['hidden']}x{s['layers']}"
    else:
        flow = glow_vector(2, n_steps=s["k"], hidden=s["hidden"], n_layers=s["layers"], generator=g)
        notes = f"{s['k']} steps, MLP {s['hidden']}x{s['layers']}"
    model = RingFlow(NormalizingFlow(flow, (2,)))
    with torch.no_grad():
        model.flow.transform(RING_SCALE * data.train[:512])

    def ring_metric(m: nn.Module, x: Tensor, seeds: Sequence[int]) -> Tensor:
        with torch.no_grad():
            return (-m.flow.log_prob(RING_SCALE * x).double()
                    - data.dim * math.log(RING_SCALE))  # fmt: skip

    return model, ring_metric, notes


class _VAEData(nn.Module):
    """VAE on the discrete digits at the 17 grid points of [-1,1] (no dequantisation), or on
    y = RING_SCALE x for the ring."""

    def __init__(self, vae: nn.Module, levels: int | None) -> None:
        super().__init__()
        self.vae, self.levels = vae, levels

    def represent(self, v: Tensor) -> Tensor:
        v = v.reshape(v.shape[0], -1)
        if self.levels is None:
            return RING_SCALE * v
        return 2.0 * v / (self.levels - 1) - 1.0

    def loss(self, v: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.vae.loss(self.represent(v))


def _build_vae(data: Dataset, s: dict) -> tuple[nn.Module, Callable, str]:
    from genlab.autoencoders import VAE, DiscretizedLogisticLikelihood, GaussianLikelihood

    if data.levels is not None:
        lik = DiscretizedLogisticLikelihood(data.levels, low=-1.0, high=1.0)
        dec = f"discretised logistic over the {data.levels} levels"
    else:
        lik = GaussianLikelihood("predicted")
        dec = "Gaussian decoder (predicted variance)"
    vae = VAE.with_mlp((data.dim,), s["latent"], lik, hidden=s["hidden"], depth=s["depth"])
    model = _VAEData(vae, data.levels)

    def to_metric(nll: Tensor) -> Tensor:
        if data.levels is not None:
            return nll / (data.dim * LN2)  # -log P(v) bound in bits per dim, no dequantisation
        return nll - data.dim * math.log(RING_SCALE)

    def metric(m: nn.Module, v: Tensor, seeds: Sequence[int], k: int = 1) -> Tensor:
        """-ELBO (k = 1, averaged over the seeds' posterior draws) or -IWAE_k."""
        y = m.represent(v)
        out = torch.zeros(v.shape[0], dtype=torch.float64)
        with torch.no_grad():
            for seed in seeds:
                g = torch.Generator().manual_seed(seed)
                lp = m.vae.elbo(y, generator=g) if k == 1 else m.vae.log_prob(y, k=k, generator=g)
                out -= lp.double()
        return to_metric(out / len(seeds))

    return model, metric, f"latent {s['latent']}, MLP {s['hidden']}x{s['depth']}, {dec}"


# ----------------------------------------------------------------------------- training


def _train(
    model: nn.Module,
    data: Dataset,
    s: dict,
    val_metric: Callable[[nn.Module], float],
    log: Callable[[str], None],
    name: str,
) -> dict[str, Any]:
    """Train with the genlab trainer under a CPU-second budget; keep the best validated weights
    (EMA, and raw if ``raw_candidate``) in ``model``."""
    cfg = TrainConfig(steps=int(s["steps"]), batch_size=int(s["batch"]), lr=s["lr"],
                      warmup_steps=int(s["warmup"]), grad_clip=s["clip"], ema_decay=s["ema"],
                      seed=0, progress=False, val_every=int(s["val_every"]),
                      patience=int(s["patience"]), select="best")  # fmt: skip
    state = TrainState.create(model, cfg)
    best: tuple[float, int, dict[str, Tensor] | None, str] = (math.inf, 0, None, "none")
    train_cpu, wall0, note = 0.0, time.perf_counter(), ""
    last_loss = math.nan

    def score(which: str) -> float:
        return validation_score(model, data.val, batch_size=cfg.batch_size, seed=cfg.val_seed,
                                ema=state.ema if which == "ema" else None,
                                val_fn=lambda m, v, c: val_metric(m))  # fmt: skip

    def evaluate() -> bool:
        nonlocal best
        cands = ["ema"] + (["raw"] if s.get("raw_candidate") else [])
        scores = {c: score(c) for c in cands}
        top = min(cands, key=lambda c: scores[c] if math.isfinite(scores[c]) else math.inf)
        improved = state.record_validation(scores[top])
        if improved:
            if top == "ema":
                backup = copy.deepcopy(model.state_dict())
                state.ema.copy_to(model)
                best = (scores[top], state.step, copy.deepcopy(model.state_dict()), top)
                model.load_state_dict(backup)
            else:
                best = (scores[top], state.step, copy.deepcopy(model.state_dict()), top)
        log(
            f"[{name}] step {state.step} loss {last_loss:.4f} val "
            + " ".join(f"{c} {v:.4f}" for c, v in scores.items())
            + f" best {best[0]:.4f}@{best[1]} (cpu {train_cpu:.0f}s, "
            f"wall {time.perf_counter() - wall0:.0f}s)"
        )
        return state.patience_exhausted(cfg)

    it = iter_train(state, data.train, cfg)
    try:
        while True:
            t0 = time.process_time()
            info = next(it, None)
            train_cpu += time.process_time() - t0
            if info is None:
                break
            last_loss = float(info.loss)
            out_of_time = train_cpu >= s["seconds"]
            if info.step % cfg.val_every == 0 or out_of_time or info.step == cfg.steps:
                if evaluate():
                    note = f"early stop (patience {cfg.patience} evals)"
                    break
            if out_of_time:
                note = f"CPU budget {s['seconds']:g}s"
                break
    except TrainingDiverged as err:
        note = f"diverged ({err}); best validated weights kept"
        log(f"[{name}] {note}")
    if state.step == cfg.steps and not note:
        note = f"step budget {cfg.steps}"
    if best[2] is None:  # no finite validation score: evaluate the last weights
        evaluate()
    if best[2] is not None:
        model.load_state_dict(best[2])
    model.eval()
    return dict(
        steps=state.step,
        best_step=best[1],
        val=best[0],
        weights=best[3],
        train_cpu=train_cpu,
        wall=time.perf_counter() - wall0,
        stop=note,
    )


def _key(data: str, family: str, s: dict) -> str:
    blob = json.dumps({"data": data, "family": family, "s": s, "v": 1}, sort_keys=True)
    return f"{family}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}"


def run_family(
    data: Dataset, family: str, s: dict, *, cache: Path | None, log: Callable[[str], None] = print
) -> list[Row]:
    """Train (or load) one family and evaluate it on test; one row (two for the VAE)."""
    key = _key(data.name, family, s)
    if cache is not None and (cache / data.name / f"{key}.json").exists():
        rows = json.loads((cache / data.name / f"{key}.json").read_text())
        log(f"[{family}] cached: {cache / data.name / key}.json")
        return [Row(**r) for r in rows]
    model, metric, notes = _build(data, family, s)
    unit = "bpd" if data.levels is not None else "nats"
    ode = family in DIFFUSION or family == "cnf"
    if ode:
        val_v = data.val[: s["val_n"]]
        val_metric = lambda m: _mean(metric(m, val_v, VAL_SEEDS[:1]))  # noqa: E731
        vnote = f"val: {val_v.shape[0]} images x 1 draw"
    elif family == "vae":
        val_metric = lambda m: _mean(metric(m, data.val, VAL_SEEDS[:1]))  # noqa: E731
        vnote = "val: -ELBO, 1 posterior draw"
    else:
        val_metric = lambda m: _mean(metric(m, data.val, VAL_SEEDS))  # noqa: E731
        vnote = "val: 10 draws" if data.levels is not None else "val: exact NLL"
    if data.levels is None:
        vnote = vnote.replace(" images", " points").replace(" x 1 draw", "")
    tr = _train(model, data, s, val_metric, log, family)
    t0 = time.perf_counter()
    if ode:
        test_v = data.test[: s["ode_test_n"]]
        draws = TEST_SEEDS[: s["ode_test_draws"]]
        per = metric(model, test_v, draws)
        tnote = f"test: {test_v.shape[0]}/{data.test.shape[0]} " + (
            f"images x {len(draws)} draw(s)" if data.levels else "points"
        )
    elif family == "vae":
        per = metric(model, data.test, TEST_SEEDS[: s["elbo_draws"]])
        tnote = f"test ELBO: {s['elbo_draws']} posterior draws"
    else:
        per = metric(model, data.test, TEST_SEEDS)
        tnote = "test: 10 draws (seeds 1000..1009)" if data.levels else "test: exact"
    eval_s = time.perf_counter() - t0
    stop = f"stop: {tr['stop']}, best step {tr['best_step']} ({tr['weights']})"
    common = dict(
        params=_params(model),
        steps=tr["steps"],
        train_cpu_s=tr["train_cpu"],
        train_wall_s=tr["wall"],
        val=tr["val"],
        unit=unit,
        best_step=tr["best_step"],
    )
    fam = family if family != "vae" else "vae (ELBO)"
    rows = [Row(fam, test=_mean(per), test_se=_se(per),
                notes="; ".join([notes, vnote, tnote, stop, f"eval {eval_s:.0f}s wall"]),
                **common)]  # fmt: skip
    if family == "vae":
        k = s["k"]
        t0 = time.perf_counter()
        with torch.no_grad():
            iw = metric(model, data.test, TEST_SEEDS[:1], k=k)
        rows.append(
            Row(
                f"vae (IWAE k={k})",
                test=_mean(iw),
                test_se=_se(iw),
                notes=f"same weights; IWAE-{k} bound, 1 draw of {k} samples per image; "
                f"eval {time.perf_counter() - t0:.0f}s wall",
                **common,
            )
        )
    if cache is not None:
        (cache / data.name).mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), cache / data.name / f"{key}.pt")
        (cache / data.name / f"{key}.json").write_text(
            json.dumps([asdict(r) for r in rows], indent=1)
        )
    return rows


def baseline_rows(data: Dataset) -> list[Row]:
    if data.levels is not None:
        full_train = torch.cat([data.train, data.val])  # all 1437 training images
        cat = categorical_bpd(full_train, data.test, data.levels)
        return [
            Row(
                "categorical (per pixel, +1)",
                data.dim * data.levels,
                0,
                0.0,
                0.0,
                math.nan,
                cat,
                math.nan,
                "bpd",
                "exact discrete NLL; fit on all 1437 train images",
            ),
            Row(
                "uniform",
                0,
                0,
                0.0,
                0.0,
                math.nan,
                math.log2(data.levels),
                math.nan,
                "bpd",
                "log2 17",
            ),
        ]
    nll = -data.mixture.log_prob(data.test.double())  # (N,)
    return [
        Row(
            "exact mixture",
            0,
            0,
            0.0,
            0.0,
            math.nan,
            float(nll.mean()),
            _se(nll),
            "nats",
            "GaussianMixture.ring().log_prob on the same test points",
        )
    ]


def run(
    data: str = "digits",
    *,
    quick: bool = False,
    families: Sequence[str] | None = None,
    max_seconds: float | None = None,
    cache: str | Path | None = "runs/bench-likelihood",
    log: Callable[[str], None] = print,
    on_row: Callable[[list[Row]], None] | None = None,
) -> list[Row]:
    """Every family's test likelihood on ``data``; baselines first. ``on_row(rows so far)``
    is called after each family (for incremental output)."""
    torch.manual_seed(0)
    ds = load_data(data, quick)
    fams = list(families or FAMILIES)
    unknown = [f for f in fams if f not in ALL_FAMILIES]
    if unknown:
        raise ValueError(f"unknown families {unknown}; allowed: {', '.join(ALL_FAMILIES)}")
    cache_dir = None if cache is None else Path(cache) / ("quick" if quick else "full")
    rows = baseline_rows(ds)
    for fam in fams:
        s = settings_for(data, fam, quick, max_seconds)
        rows += run_family(ds, fam, s, cache=cache_dir, log=log)
        if on_row is not None:
            on_row(_mark(rows))
    return _mark(rows)


def _mark(rows: list[Row]) -> list[Row]:
    cat = next((r.test for r in rows if r.family.startswith("categorical")), None)
    for r in rows:
        if cat is not None and r.steps > 0:
            r.beats_categorical = bool(math.isfinite(r.test) and r.test < cat)
    return rows


def format_table(rows: Sequence[Row], title: str = "") -> Any:
    from rich.table import Table

    unit = rows[0].unit if rows else "bpd"
    t = Table(title=title or f"test {unit} (lower is better)")
    for c in (
        "family",
        "params",
        "steps",
        "train cpu s",
        "train wall s",
        f"val {unit}",
        f"test {unit}",
        "± se",
        "< categorical" if unit == "bpd" else "- exact",
        "notes",
    ):
        t.add_column(c, justify="left" if c in ("family", "notes") else "right", overflow="fold")
    for r in rows:
        t.add_row(
            r.family,
            f"{r.params:,}",
            str(r.steps),
            f"{r.train_cpu_s:.0f}",
            f"{r.train_wall_s:.0f}",
            _f(r.val),
            _f(r.test),
            _f(r.test_se),
            _versus(r, rows),
            r.notes,
        )
    return t


def _versus(r: Row, rows: Sequence[Row]) -> str:
    """digits: does the row beat the categorical baseline; ring: its gap to the exact NLL."""
    if r.unit == "bpd":
        return "" if r.beats_categorical is None else ("yes" if r.beats_categorical else "NO")
    exact = next((x.test for x in rows if x.family == "exact mixture"), None)
    return "" if exact is None or r.steps == 0 else f"{r.test - exact:+.4f}"


def _f(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def to_markdown(rows: Sequence[Row]) -> str:
    unit = rows[0].unit if rows else "bpd"
    out = [
        f"| family | params | steps | train cpu s | train wall s | val {unit} | "
        f"**test {unit}** (± se) | {'< categorical' if unit == 'bpd' else '- exact'} | notes |",
        "|" + "---|" * 9,
    ]
    for r in rows:
        beat = _versus(r, rows)
        out.append(
            f"| {r.family} | {r.params:,} | {r.steps} | {r.train_cpu_s:.0f} | "
            f"{r.train_wall_s:.0f} | {_f(r.val)} | **{_f(r.test)}** (± {_f(r.test_se)}) "
            f"| {beat} | {r.notes} |"
        )
    return "\n".join(out)


def main(
    data: str = "digits",
    *,
    quick: bool = False,
    families: Sequence[str] | None = None,
    max_seconds: float | None = None,
    cache: str | None = "runs/bench-likelihood",
    out: str | None = None,
    threads: int = 1,
    console: Any = None,
) -> list[Row]:
    from rich.console import Console

    console = console or Console()
    torch.set_num_threads(threads)

    def write(rows: list[Row]) -> None:
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(
                json.dumps(
                    {"data": data, "quick": quick, "rows": [asdict(r) for r in rows]}, indent=1
                )
            )

    def log(msg: str) -> None:
        console.print(msg, markup=False, highlight=False)

    rows = run(
        data,
        quick=quick,
        families=families,
        max_seconds=max_seconds,
        cache=cache,
        log=log,
        on_row=write,
    )
    write(rows)
    console.print(
        format_table(rows, f"genlab likelihood table: {data}" + (" (quick)" if quick else ""))
    )
    return rows
