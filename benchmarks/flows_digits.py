"""genlab Real NVP and Glow on scikit-learn's 8x8 digits: test bits/dim, anchor protocol.

Protocol (``/work/shared/anchors/flows_digits.md``): fixed split default_rng(0).permutation,
1437 train / 360 test; x = (v + u)/17 with fresh u per batch; logit with a = 0.05 inside the
model (its log-det counted); bpd = (E_u[-ln p_X(x)] + D ln 17)/(D ln 2); Adam lr 1e-3 with
linear warm-up over 200 steps, batch 128, at most 4000 steps or 720 s of training, gradient
norm clipped at 100, loss = batch-mean bpd, seed 0. Test averages over 10 fixed
dequantisation draws (seeds 1000..1009).

Model selection uses a validation split carved from the TRAIN data only (the anchor's
supplementary protocol): train on the first 1293, validate on the last 144 (seeds
2000..2009) every 100 steps, keep the best checkpoint, stop after ``--patience`` steps
without improvement (default 300). The test split is evaluated once, on the selected model.
Candidates for selection are the raw weights and an exponential moving average of them
(``--ema`` decay, Polyak averaging), both scored on validation only.

Budget: the 720 s are measured as process CPU time (one thread), not wall time, because the
development machine is shared and its wall time per step varies several-fold with load; the
table reports both.

    PYTHONPATH=src .venv/bin/python benchmarks/flows_digits.py [--quick] [--max-seconds 720]
        [--models realnvp,glow] [--dropout 0.0] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from dataclasses import asdict, dataclass

import torch

from genlab.data.dequantize import dequantize
from genlab.data.digits import DIGITS_LEVELS, DIGITS_SHAPE, carve_validation, digits_split
from genlab.flows import Logit, NormalizingFlow, dequantized_bpd, glow_image, realnvp_image

D = math.prod(DIGITS_SHAPE)
TEST_SEEDS = range(1000, 1010)
VAL_SEEDS = range(2000, 2010)
ANCHOR = {  # normflows numbers from flows_digits.md (test bpd)
    "realnvp": {"params": 626_440, "final": "non-finite", "valstop": 2.1113, "val": 2.0863},
    "glow": {"params": 608_896, "final": "3.6561", "valstop": 2.0720, "val": 2.0632},
}
CATEGORICAL_BPD = 2.4314


@dataclass
class RunResult:
    model: str
    params: int
    steps: int
    best_step: int
    weights: str
    val_bpd: float
    test_bpd: float
    test_se: float
    test_nonfinite: int
    train_cpu_seconds: float
    wall_seconds: float
    curve: list[tuple[int, float, float]]


def build(name: str, args: argparse.Namespace) -> NormalizingFlow:
    """The two benchmark models: L = 2 scales, K blocks per scale, hidden 64 (about 0.6M)."""
    torch.manual_seed(args.seed)
    if name == "realnvp":
        flow = realnvp_image(DIGITS_SHAPE, levels=2, n_blocks=args.k, n_checkerboard=4,
                             hidden=args.hidden, scale="tanh", dropout=args.dropout)
    elif name == "glow":
        g = torch.Generator().manual_seed(args.seed)
        flow = glow_image(DIGITS_SHAPE, levels=2, n_steps=args.k, hidden=args.hidden, lu=True,
                          scale=args.glow_scale, dropout=args.dropout, generator=g)
    else:
        raise ValueError(f"unknown model {name!r}")
    return NormalizingFlow(flow, DIGITS_SHAPE, levels=DIGITS_LEVELS, preprocess=Logit(0.05))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """Polyak/exponential moving average of the weights (buffers are copied)."""
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm, 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers(), strict=True):
        be.copy_(bm)


def evaluate(model: NormalizingFlow, v: torch.Tensor, seeds: range) -> torch.Tensor:
    model.eval()
    bpd = dequantized_bpd(model, v, seeds)
    model.train()
    return bpd  # (N,)


def train_one(name: str, args: argparse.Namespace) -> RunResult:
    split = digits_split()
    tr_x, _, va_x, _ = carve_validation(split.train_x, split.train_y)
    model = build(name, args)
    params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(args.seed)
    model.train()
    with torch.no_grad():  # data-dependent actnorm initialisation (Glow sec. 3.1)
        idx = torch.randperm(tr_x.shape[0], generator=g)[:512]
        model.transform(dequantize(tr_x[idx], DIGITS_LEVELS, generator=g))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    best = (math.inf, 0, copy.deepcopy(model.state_dict()), "raw")
    ema = copy.deepcopy(model).eval() if args.ema > 0 else None
    curve: list[tuple[int, float, float]] = []
    perm, pos, step, train_s = torch.randperm(tr_x.shape[0], generator=g), 0, 0, 0.0
    wall0 = time.perf_counter()
    while step < args.max_steps and train_s < args.max_seconds:
        t0 = time.process_time()
        if pos + args.batch > perm.shape[0]:
            perm, pos = torch.randperm(tr_x.shape[0], generator=g), 0
        v = tr_x[perm[pos : pos + args.batch]]
        pos += args.batch
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
        loss = model.loss(v).mean() / (D * math.log(2.0))  # batch-mean bpd
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        if torch.isfinite(loss) and torch.isfinite(gnorm):
            opt.step()
        if ema is not None:
            ema_update(ema, model, min(args.ema, (1 + step) / (10 + step)))
        step += 1
        train_s += time.process_time() - t0
        if step % args.eval_every == 0 or step >= args.max_steps:
            candidates = [("raw", model)] + ([("ema", ema)] if ema is not None else [])
            vals = {k: float(evaluate(m, va_x, VAL_SEEDS).mean()) for k, m in candidates}
            curve.append((step, vals["raw"], vals.get("ema", math.nan)))
            print(f"[{name}] step {step:5d} train {loss.item():.4f} val " +
                  " ".join(f"{k} {v:.4f}" for k, v in vals.items()) +
                  f" (cpu {train_s:.0f}s, wall {time.perf_counter() - wall0:.0f}s)", flush=True)
            for k, m in candidates:
                if math.isfinite(vals[k]) and vals[k] < best[0]:
                    best = (vals[k], step, copy.deepcopy(m.state_dict()), k)
            if step - best[1] >= args.patience:
                break
    model.load_state_dict(best[2])
    wall = time.perf_counter() - wall0
    test = evaluate(model, split.test_x, TEST_SEEDS)  # (360,)
    finite = torch.isfinite(test)
    se = float(test[finite].std() / math.sqrt(int(finite.sum()))) if finite.any() else math.nan
    return RunResult(name, params, step, best[1], best[3], best[0], float(test.mean()), se,
                     int((~finite).sum()), train_s, wall, curve)


def table(results: list[RunResult]) -> str:
    head = ("| model | params | steps | best val step | val bpd | **test bpd** (± se) | "
            "train cpu s (wall) | normflows val-stop test | normflows final test | categorical |")
    rows = [head, "|" + "---|" * 10]
    for r in results:
        a = ANCHOR[r.model]
        rows.append(
            f"| genlab {r.model} | {r.params:,} | {r.steps} | {r.best_step} ({r.weights}) | "
            f"{r.val_bpd:.4f} | **{r.test_bpd:.4f}** (± {r.test_se:.4f}) | "
            f"{r.train_cpu_seconds:.0f} ({r.wall_seconds:.0f}) | "
            f"{a['valstop']:.4f} ({a['params']:,} params) | {a['final']} | {CATEGORICAL_BPD} |"
        )
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="realnvp,glow")
    p.add_argument("--quick", action="store_true", help="30 steps, for a smoke test")
    p.add_argument("--max-seconds", type=float, default=720.0)
    p.add_argument("--max-steps", type=int, default=4000)
    p.add_argument("--patience", type=int, default=300)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--k", type=int, default=32, help="blocks per scale")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--ema", type=float, default=0.995, help="EMA decay (0: off)")
    p.add_argument("--glow-scale", default="sigmoid", choices=["sigmoid", "tanh"])
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--clip", type=float, default=100.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default="", help="write results to this file")
    args = p.parse_args()
    if args.quick:
        args.max_steps, args.eval_every = 30, 10
    torch.set_num_threads(args.threads)
    results = [train_one(name, args) for name in args.models.split(",")]
    print(f"\nconfig: {vars(args)}")
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in results], f, indent=1)


if __name__ == "__main__":
    main()
