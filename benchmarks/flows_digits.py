"""genlab Real NVP and Glow on scikit-learn's 8x8 digits against normflows, in one run.

Protocol (normalizing flows on the digits in ``benchmarks/protocols.md``): fixed split
default_rng(0).permutation, 1437 train / 360 test; x = (v + u)/17 with fresh u per batch;
logit with a = 0.05 and its log-det; bpd = (E_u[-ln p_X(x)] + D ln 17)/(D ln 2); Adam lr
1e-3 with linear warm-up over 200 steps, batch 128, at most 4000 steps or 720 s of training,
gradient norm clipped at 100, loss = batch-mean bpd, seed 0. Test averages over 10 fixed
dequantisation draws (seeds 1000..1009).

Validation (the supplementary protocol): every model trains on the first 1293
train images and is scored every 100 steps on the last 144 (seeds 2000..2009); the test split
plays no part in any choice.

- genlab rows: the checkpoint with the best validation bpd is kept (candidates: the raw
  weights and an exponential moving average of them, ``--ema``), training stops after
  ``--patience`` steps without improvement, and the test split is evaluated once, on the
  selected weights.
- normflows rows (normflows 1.7.3, optional, never imported by genlab): the anchor's models
  built with normflows' public API, trained with the anchor's fixed recipe (no EMA, no
  dropout, no early stop) for the whole budget. Reported: the **final** test bpd (the anchor
  protocol's number, here with 1293 instead of 1437 training images, ``--normflows-train
  all`` trains on all 1437 and reports the final number only) and, for information, the test
  bpd of the checkpoint at the best validation step.

Budget: the 720 s are process CPU seconds (``--threads 1``), not wall seconds, because the
development machine is shared and its wall time per step varies several-fold with load; the
table reports both. ``--normflows`` requires normflows (exit 2 if missing), ``--no-normflows``
skips it; by default normflows runs when it is importable.

    PYTHONPATH=src .venv/bin/python benchmarks/flows_digits.py [--quick] [--models realnvp,glow]
        [--dropout 0.3] [--ema 0.997] [--threads 1] [--normflows | --no-normflows]
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from genlab.data.dequantize import dequantize, logit_forward
from genlab.data.digits import DIGITS_LEVELS, DIGITS_SHAPE, carve_validation, digits_split
from genlab.density import LN2, level_shift
from genlab.flows import Logit, NormalizingFlow, dequantized_bpd, glow_image, realnvp_image

D = math.prod(DIGITS_SHAPE)
TEST_SEEDS = range(1000, 1010)
VAL_SEEDS = range(2000, 2010)
ANCHOR = {  # normflows numbers measured separately in flows_digits.md (test bpd)
    "realnvp": {"final": "non-finite", "valstop": 2.1113},
    "glow": {"final": "3.6561", "valstop": 2.0720},
}
CATEGORICAL_BPD = 2.4314
# the anchor's models (flows_digits.md) and its fixed training recipe
NF_CONFIG = {"levels": 2, "K_per_level": 32, "hidden_channels": 64, "K_checkerboard_1x8x8": 4}
NF_RECIPE = {"lr": 1e-3, "warmup": 200, "batch": 128, "clip": 100.0, "ema": 0.0}


@dataclass
class Score:
    """Test bpd over the 360 images: mean, standard error, median, non-finite count."""

    mean: float
    se: float
    median: float
    nonfinite: int

    @classmethod
    def of(cls, bpd: Tensor) -> Score:
        finite = torch.isfinite(bpd)
        n = int(finite.sum())
        se = float(bpd[finite].std() / math.sqrt(n)) if n > 1 else math.nan
        return cls(float(bpd.mean()), se, float(bpd.median()), int((~finite).sum()))

    def __str__(self) -> str:
        if self.nonfinite:
            return f"non-finite ({self.nonfinite} img; median {self.median:.4f})"
        return f"{self.mean:.4f} ± {self.se:.4f}"


@dataclass
class RunResult:
    model: str
    params: int
    steps: int
    best_step: int
    weights: str
    val_bpd: float
    test: Score  # at the selected (best validation) weights
    final_test: Score | None  # at the last weights (normflows: the anchor protocol's number)
    train_cpu_seconds: float
    train_wall_seconds: float
    stop: str
    curve: list[tuple[int, float, float]] = field(default_factory=list)


# ----------------------------------------------------------------------------- models


def build_genlab(name: str, args: argparse.Namespace) -> NormalizingFlow:
    """L = 2 scales, K blocks per scale, hidden 64 (about 0.6M parameters)."""
    torch.manual_seed(args.seed)
    if name == "realnvp":
        flow = realnvp_image(
            DIGITS_SHAPE,
            levels=2,
            n_blocks=args.k,
            n_checkerboard=4,
            hidden=args.hidden,
            scale=args.realnvp_scale,
            dropout=args.dropout,
        )
    elif name == "glow":
        g = torch.Generator().manual_seed(args.seed)
        flow = glow_image(
            DIGITS_SHAPE,
            levels=2,
            n_steps=args.k,
            hidden=args.hidden,
            lu=True,
            scale=args.glow_scale,
            dropout=args.dropout,
            generator=g,
        )
    else:
        raise ValueError(f"unknown model {name!r}")
    return NormalizingFlow(flow, DIGITS_SHAPE, levels=DIGITS_LEVELS, preprocess=Logit(0.05))


class NormflowsDigits(nn.Module):
    """Adapter: a normflows ``MultiscaleFlow`` on logit space as a density on x in [0,1)^D
    with what ``dequantized_bpd`` and the training loop use (``log_prob``, ``loss``,
    ``levels``, ``dim``). The harness applies the logit and adds its log-det (anchor)."""

    def __init__(self, flow: nn.Module) -> None:
        super().__init__()
        self.flow = flow
        self.levels, self.dim = DIGITS_LEVELS, D

    def log_prob(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        y, logdet = logit_forward(x, 0.05)  # (B, 1, 8, 8), (B,)
        return self.flow.log_prob(y, None) + logdet  # (B,)

    def loss(self, v: Tensor) -> Tensor:
        """Per-example NLL of the discrete data in nats, one fresh dequantisation draw."""
        x = dequantize(v, self.levels)
        return -self.log_prob(x) + level_shift(self.dim, self.levels)


def build_normflows(name: str, seed: int) -> NormflowsDigits:
    """normflows' multi-scale RealNVP / Glow as the anchor describes them (normflows' Glow
    example layout): level i has K blocks on C 2^(L+1-i) channels then a Squeeze; RealNVP
    alternates channel/channel_inv exp-scale couplings and ends with 4 checkerboard couplings
    on 1x8x8; Glow uses GlowBlock (sigmoid scale, LU 1x1 conv, actnorm); DiagGaussian bases."""
    import normflows as nf

    torch.manual_seed(seed)
    c, h, w = DIGITS_SHAPE
    levels, k, hidden = NF_CONFIG["levels"], NF_CONFIG["K_per_level"], NF_CONFIG["hidden_channels"]

    def coupling(cin: int, cout: int, mode: str) -> nn.Module:
        net = nf.nets.ConvNet2d((cin, hidden, hidden, cout), (3, 1, 3), 0.0, True)
        return nf.flows.AffineCouplingBlock(net, True, "exp", mode)

    q0, merges, flows = [], [], []
    for i in range(levels):
        ch = c * 2 ** (levels + 1 - i)
        if name == "glow":
            level = [nf.flows.GlowBlock(ch, hidden, split_mode="channel", scale=True)
                     for _ in range(k)]  # fmt: skip
        else:
            level = [coupling(ch // 2, 2 * (ch // 2), ("channel", "channel_inv")[j % 2])
                     for j in range(k)]  # fmt: skip
        level.append(nf.flows.Squeeze())
        if name == "realnvp" and i == levels - 1:
            level += [coupling(c, 2 * c, ("checkerboard", "checkerboard_inv")[j % 2])
                      for j in range(NF_CONFIG["K_checkerboard_1x8x8"])]  # fmt: skip
        flows.append(level)
        if i > 0:
            merges.append(nf.flows.Merge())
            s = 2 ** (levels - i)
            latent = (c * s, h // s, w // s)
        else:
            latent = (c * 2 ** (levels + 1), h // 2**levels, w // 2**levels)
        q0.append(nf.distributions.DiagGaussian(latent))
    return NormflowsDigits(nf.MultiscaleFlow(q0, flows, merges, class_cond=False))


# ----------------------------------------------------------------------------- training


def evaluate(model: nn.Module, v: Tensor, seeds: range) -> Tensor:
    model.eval()
    bpd = dequantized_bpd(model, v, seeds)  # type: ignore[arg-type]
    model.train()
    return bpd  # (N,)


def learning_rate(step: int, hp: dict[str, Any]) -> float:
    """Linear warm-up, then constant or cosine decay to ``min_lr`` over ``decay_steps``."""
    lr = hp["lr"] * min(1.0, (step + 1) / hp["warmup"])
    if hp.get("decay_steps", 0) > 0 and step >= hp["warmup"]:
        t = min(1.0, (step - hp["warmup"]) / hp["decay_steps"])
        lo = hp.get("min_lr", 0.0)
        lr = lo + (hp["lr"] - lo) * 0.5 * (1.0 + math.cos(math.pi * t))
    return lr


def train(
    label: str,
    model: nn.Module,
    hp: dict[str, Any],
    budget: dict[str, Any],
    train_v: Tensor,
    val_v: Tensor,
    test_v: Tensor,
    *,
    final_test: bool,
) -> RunResult:
    """Train on ``train_v`` with the batch-mean bpd loss; keep the best validated checkpoint
    (raw weights and, if ``hp['ema']``, their EMA); stop after ``budget['patience']`` steps
    without improvement or on the step/CPU budget. Test: the selected weights, and the last
    ones if ``final_test``."""
    params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(budget["seed"])
    model.train()
    wd = hp.get("weight_decay", 0.0)
    opt = (torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=wd) if wd > 0
           else torch.optim.Adam(model.parameters(), lr=hp["lr"]))  # fmt: skip
    ema = copy.deepcopy(model).eval() if hp["ema"] > 0 else None
    best: tuple[float, int, dict[str, Tensor] | None, str] = (math.inf, 0, None, "none")
    curve: list[tuple[int, float, float]] = []
    n = train_v.shape[0]
    perm, pos, step, cpu, wall, stop = torch.randperm(n, generator=g), 0, 0, 0.0, 0.0, ""
    while True:
        if step >= budget["max_steps"]:
            stop = f"step budget {budget['max_steps']}"
            break
        if cpu >= budget["max_seconds"]:
            stop = f"CPU budget {budget['max_seconds']:g}s"
            break
        t0, w0 = time.process_time(), time.perf_counter()
        if pos + hp["batch"] > n:
            perm, pos = torch.randperm(n, generator=g), 0
        v = train_v[perm[pos : pos + hp["batch"]]]  # (B, 1, 8, 8)
        pos += hp["batch"]
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, hp)
        loss = model.loss(v).mean() / (D * LN2)  # batch-mean bpd
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), hp["clip"])
        if torch.isfinite(loss) and torch.isfinite(gnorm):  # non-finite steps are skipped
            opt.step()
        if ema is not None:
            with torch.no_grad():  # EMA, decay warmed up as min(decay, (1+n)/(gamma+n))
                decay = min(hp["ema"], (1 + step) / (hp.get("ema_warmup", 10.0) + step))
                for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                    pe.lerp_(pm, 1.0 - decay)
                for be, bm in zip(ema.buffers(), model.buffers(), strict=True):
                    be.copy_(bm)
        step += 1
        cpu += time.process_time() - t0
        wall += time.perf_counter() - w0
        if step % budget["eval_every"] and step < budget["max_steps"]:
            continue
        candidates = [("raw", model)] + ([("ema", ema)] if ema is not None else [])
        vals = {k: float(evaluate(m, val_v, VAL_SEEDS).mean()) for k, m in candidates}
        curve.append((step, vals["raw"], vals.get("ema", math.nan)))
        print(f"[{label}] step {step:5d} train {loss.item():.4f} val "
              + " ".join(f"{k} {x:.4f}" for k, x in vals.items())
              + f" (cpu {cpu:.0f}s, wall {wall:.0f}s)", flush=True)  # fmt: skip
        for k, m in candidates:
            if math.isfinite(vals[k]) and vals[k] < best[0]:
                best = (vals[k], step, copy.deepcopy(m.state_dict()), k)
        if step - best[1] >= budget["patience"]:
            stop = f"early stop (patience {budget['patience']} steps)"
            break
    final = Score.of(evaluate(model, test_v, TEST_SEEDS)) if final_test else None
    if best[2] is not None:
        model.load_state_dict(best[2])
    test = Score.of(evaluate(model, test_v, TEST_SEEDS))  # (360,) -> score
    return RunResult(
        label, params, step, best[1], best[3], best[0], test, final, cpu, wall, stop, curve
    )


# ----------------------------------------------------------------------------- main


def run_genlab(name: str, args: argparse.Namespace, budget: dict[str, Any]) -> RunResult:
    split = digits_split()
    tr_x, _, va_x, _ = carve_validation(split.train_x, split.train_y)
    model = build_genlab(name, args)
    g = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():  # data-dependent actnorm initialisation (Glow sec. 3.1)
        idx = torch.randperm(tr_x.shape[0], generator=g)[:512]
        model.train().transform(dequantize(tr_x[idx], DIGITS_LEVELS, generator=g))
    hp = dict(lr=args.lr, warmup=args.warmup, batch=args.batch, clip=args.clip, ema=args.ema,
              ema_warmup=args.ema_warmup,
              weight_decay=args.weight_decay, decay_steps=args.decay_steps,
              min_lr=args.min_lr)  # fmt: skip
    return train(
        f"genlab {name}",
        model,
        hp,
        dict(budget, patience=args.patience),
        tr_x,
        va_x,
        split.test_x,
        final_test=False,
    )


def run_normflows(name: str, args: argparse.Namespace, budget: dict[str, Any]) -> RunResult:
    """The anchor's recipe; actnorm initialises itself on the first training batch."""
    split = digits_split()
    tr_x, _, va_x, _ = carve_validation(split.train_x, split.train_y)
    if args.normflows_train == "all":
        tr_x = split.train_x  # the anchor protocol exactly: validation is then in training
    model = build_normflows(name, args.seed)
    return train(
        f"normflows {name}",
        model,
        dict(NF_RECIPE),
        dict(budget, patience=math.inf),
        tr_x,
        va_x,
        split.test_x,
        final_test=True,
    )


def table(results: list[RunResult]) -> str:
    head = (
        "| model | params | steps | best val step | val bpd | **test bpd at best val** "
        "(± se) | final test bpd (± se) | train CPU s (wall s) | ms/step CPU (wall) | stop |"
    )
    rows = [head, "|" + "---|" * 10]
    for r in results:
        final = str(r.final_test) if r.final_test is not None else "– (not evaluated)"
        ms, ms_wall = 1e3 * r.train_cpu_seconds / r.steps, 1e3 * r.train_wall_seconds / r.steps
        rows.append(
            f"| {r.model} | {r.params:,} | {r.steps} | {r.best_step} ({r.weights}) | "
            f"{r.val_bpd:.4f} | **{r.test}** | {final} | {r.train_cpu_seconds:.0f} "
            f"({r.train_wall_seconds:.0f}) | {ms:.0f} ({ms_wall:.0f}) | {r.stop} |"
        )
    rows.append(f"| per-pixel categorical (Laplace +1, all 1437 train) | 1,024 | – | – | – | "
                f"{CATEGORICAL_BPD} | – | – | – | – |")  # fmt: skip
    rows.append("")
    rows.append("Anchor (flows_digits.md, separate runs, 2 threads; final: 1437 train images, "
                "val-stop: 1293 train images, patience 1000): normflows "
                f"realnvp final {ANCHOR['realnvp']['final']}, val-stop "
                f"{ANCHOR['realnvp']['valstop']}; glow final {ANCHOR['glow']['final']}, "
                f"val-stop {ANCHOR['glow']['valstop']}.")  # fmt: skip
    return "\n".join(rows)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="realnvp,glow")
    p.add_argument("--quick", action="store_true", help="30 steps, for a smoke test")
    p.add_argument("--max-seconds", type=float, default=720.0, help="CPU seconds of training")
    p.add_argument("--max-steps", type=int, default=4000)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default="", help="write results to this file")
    nf = p.add_mutually_exclusive_group()
    nf.add_argument(
        "--normflows",
        dest="normflows",
        action="store_true",
        default=None,
        help="also train normflows' models (required; exit 2 if not installed)",
    )
    nf.add_argument("--no-normflows", dest="normflows", action="store_false")
    p.add_argument(
        "--normflows-train",
        choices=["carved", "all"],
        default="carved",
        help="normflows trains on the 1293 (carved) or all 1437 train images",
    )
    p.add_argument("--genlab", action=argparse.BooleanOptionalAction, default=True)
    g = p.add_argument_group("genlab model and training")
    g.add_argument("--patience", type=int, default=300, help="steps without val improvement")
    g.add_argument("--k", type=int, default=32, help="blocks per scale")
    g.add_argument("--hidden", type=int, default=64)
    g.add_argument("--dropout", type=float, default=0.0)
    g.add_argument("--ema", type=float, default=0.995, help="EMA decay (0: off)")
    g.add_argument(
        "--ema-warmup",
        type=float,
        default=10.0,
        help="gamma: EMA decay min(ema, (1+n)/(gamma+n)) at update n, so iterate t "
        "gets weight ~ t^(gamma-2) (gamma 2: uniform average) until the cap",
    )
    g.add_argument("--glow-scale", default="sigmoid", choices=["sigmoid", "tanh"])
    g.add_argument("--realnvp-scale", default="tanh", choices=["sigmoid", "tanh"])
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--warmup", type=int, default=200)
    g.add_argument("--decay-steps", type=int, default=0, help="cosine decay after warm-up")
    g.add_argument("--min-lr", type=float, default=0.0)
    g.add_argument("--weight-decay", type=float, default=0.0, help="> 0: AdamW")
    g.add_argument("--batch", type=int, default=128)
    g.add_argument("--clip", type=float, default=100.0)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    have_nf = importlib.util.find_spec("normflows") is not None
    if args.normflows and not have_nf:
        print("--normflows: normflows is not installed "
              "(pip install --no-deps normflows==1.7.3)", file=sys.stderr)  # fmt: skip
        sys.exit(2)
    run_nf = have_nf if args.normflows is None else args.normflows
    torch.set_num_threads(args.threads)
    budget = dict(max_steps=args.max_steps, max_seconds=args.max_seconds,
                  eval_every=args.eval_every, seed=args.seed)  # fmt: skip
    if args.quick:
        budget.update(max_steps=30, eval_every=10)
    names = args.models.split(",")
    results = [run_genlab(n, args, budget) for n in names] if args.genlab else []
    if run_nf:
        results += [run_normflows(n, args, budget) for n in names]
    print(f"\nconfig: {vars(args)}; torch threads {torch.get_num_threads()}")
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in results], f, indent=1)


if __name__ == "__main__":
    main()
