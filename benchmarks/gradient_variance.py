"""Gradient variance of reparameterised, Gumbel-softmax and score-function estimators.

Many independent single-draw estimates of the same gradient; for each estimator the table
reports the bias |E[g] - grad| against the exact gradient (with the Monte Carlo standard error
of that norm), the variance tr Cov[g] and the mean squared error |bias|^2 + tr Cov.

A. Categorical: E_q[f(z)], q = M = 2 categoricals with K = 4 classes, f(z) = |A z - c|^2 on the
   flattened one-hot z; exact gradient by enumerating the K^M = 16 states.
B. Gaussian: E_q[f(z)], q = N(mu, diag sigma^2) in 4-D, same kind of f; exact gradient in closed
   form, d/dmu = 2 A^T (A mu - c), d/dlog sigma = 2 sigma^2 diag(A^T A).
C. The negative ELBO of a small fixed CategoricalVAE (M = 2, K = 4, Bernoulli decoder) on 64
   binarised scikit-learn digits, gradient w.r.t. the encoder; exact by enumeration.

    PYTHONPATH=src .venv/bin/python benchmarks/gradient_variance.py [--n 20000] [--seed 0]
"""

from __future__ import annotations

import argparse
import itertools
import math
import re
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.autoencoders import (
    BernoulliLikelihood,
    CategoricalVAE,
    gumbel_softmax,
    leave_one_out_baseline,
    reinforce_surrogate,
)

M, K = 2, 4
TAUS = (0.1, 0.5, 1.0, 2.0)
Row = tuple[str, int, Tensor]  # name, f evaluations per estimate, estimates (N, P)


def moving_average_baseline(f: Tensor, momentum: float = 0.9) -> Tensor:
    """b_i = EMA of f over the previous draws 0..i-1 (b_0 = 0): independent of draw i. f (N,)."""
    b, out = 0.0, torch.empty_like(f)
    for i, fi in enumerate(f.tolist()):
        out[i] = b
        b = fi if i == 0 else momentum * b + (1 - momentum) * fi
    return out


def summarize(name: str, evals: int, est: Tensor, exact: Tensor) -> str:
    n = est.shape[0]
    mean = est.mean(0)
    var = est.var(0).sum().item()  # tr Cov
    bias = (mean - exact).norm().item()
    bias_se = math.sqrt(var / n)  # ~ size of |mean - E[g]| from Monte Carlo error alone
    mse = bias**2 + var
    cells = f"{bias:>9.4f} | {bias_se:>7.4f} | {var:>11.4f} | {mse:>11.4f}"
    return f"| {name:<32} | {evals:>2} | {cells} |"


def table(title: str, rows: list[Row], exact: Tensor) -> None:
    print(f"\n{title}  (|exact grad| = {exact.norm().item():.4f})")
    head = "| estimator" + " " * 24 + "| f  |      bias | bias SE |  tr Cov[g]  |     MSE     |"
    print(head)
    print(re.sub(r"[^|]", "-", head))
    for name, evals, est in rows:
        print(summarize(name, evals, est, exact))


def quadratic(a: Tensor, c: Tensor) -> Callable[[Tensor], Tensor]:
    return lambda z: (z @ a.T - c).square().sum(-1)


def categorical_rows(n: int, g: torch.Generator) -> tuple[list[Row], Tensor]:
    """Part A: per-row estimates of grad_phi E_q[f(z)] w.r.t. logits phi (M, K)."""
    a = torch.randn(3, M * K, generator=g, dtype=torch.float64)
    f = quadratic(a, torch.randn(3, generator=g, dtype=torch.float64))
    phi = torch.randn(M, K, generator=g, dtype=torch.float64)
    states = torch.tensor(list(itertools.product(range(K), repeat=M)))  # (K^M, M)
    z_all = F.one_hot(states, K).double()  # (K^M, M, K)
    leaf = phi.clone().requires_grad_(True)
    log_q_all = (z_all * torch.log_softmax(leaf, -1)).sum((-2, -1))  # (K^M,)
    (exact,) = torch.autograd.grad((log_q_all.exp() * f(z_all.flatten(-2))).sum(), leaf)

    def per_row(objective: Callable[[Tensor], Tensor]) -> Tensor:
        rows = phi.expand(n, M, K).clone().requires_grad_(True)  # one estimate per row
        (grad,) = torch.autograd.grad(objective(rows).sum(), rows)
        return grad.flatten(1)  # (N, M * K)

    def score(s: int, baseline: str) -> Callable[[Tensor], Tensor]:
        def objective(rows: Tensor) -> Tensor:
            log_q = torch.log_softmax(rows, -1)  # (N, M, K)
            idx = torch.multinomial(log_q.detach().exp().reshape(-1, K), s, True, generator=g)
            z = F.one_hot(idx.reshape(n, M, s).permute(2, 0, 1), K).double()  # (S, N, M, K)
            fz, lq = f(z.flatten(-2)), (z * log_q).sum((-2, -1))  # (S, N)
            b: Tensor | float = 0.0
            if baseline == "moving_average":
                b = moving_average_baseline(fz[0])[None]
            elif baseline == "leave_one_out":
                b = leave_one_out_baseline(fz)
            return reinforce_surrogate(fz, lq, b).mean(0)

        return objective

    def relaxed(tau: float, hard: bool) -> Callable[[Tensor], Tensor]:
        return lambda rows: f(gumbel_softmax(rows, tau, hard=hard, generator=g).flatten(-2))

    rows: list[Row] = [
        ("reinforce, no baseline", 1, per_row(score(1, "none"))),
        ("reinforce, moving average", 1, per_row(score(1, "moving_average"))),
        ("reinforce, leave-one-out (S=2)", 2, per_row(score(2, "leave_one_out"))),
    ]
    for hard, tau in itertools.product((False, True), TAUS):
        name = f"{'straight-through' if hard else 'gumbel-softmax'} tau={tau}"
        rows.append((name, 1, per_row(relaxed(tau, hard))))
    return rows, exact.flatten()


def gaussian_rows(n: int, g: torch.Generator) -> tuple[list[Row], Tensor]:
    """Part B: estimates of grad E_{N(mu, sigma^2)}[f(z)] w.r.t. (mu, log sigma)."""
    d = 4
    a = torch.randn(3, d, generator=g, dtype=torch.float64)
    c = torch.randn(3, generator=g, dtype=torch.float64)
    f = quadratic(a, c)
    mu = torch.randn(d, generator=g, dtype=torch.float64)
    log_sigma = 0.3 * torch.randn(d, generator=g, dtype=torch.float64)
    sigma2 = torch.exp(2 * log_sigma)
    exact = torch.cat([2 * a.T @ (a @ mu - c), 2 * sigma2 * (a.T @ a).diagonal()])

    def per_row(objective: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        m = mu.expand(n, d).clone().requires_grad_(True)
        ls = log_sigma.expand(n, d).clone().requires_grad_(True)
        gm, gs = torch.autograd.grad(objective(m, ls).sum(), (m, ls))
        return torch.cat([gm, gs], dim=-1)  # (N, 2d)

    def reparam(m: Tensor, ls: Tensor) -> Tensor:
        return f(m + ls.exp() * torch.randn(m.shape, generator=g, dtype=m.dtype))

    def score(s: int, baseline: str) -> Callable[[Tensor, Tensor], Tensor]:
        def objective(m: Tensor, ls: Tensor) -> Tensor:
            eps = torch.randn((s, *m.shape), generator=g, dtype=m.dtype)
            z = (m + ls.exp() * eps).detach()  # (S, N, d), no pathwise gradient
            log_q = (-0.5 * ((z - m) / ls.exp()).square() - ls).sum(-1)  # up to a constant
            fz = f(z)  # (S, N)
            b: Tensor | float = 0.0
            if baseline == "moving_average":
                b = moving_average_baseline(fz[0])[None]
            elif baseline == "leave_one_out":
                b = leave_one_out_baseline(fz)
            return reinforce_surrogate(fz, log_q, b).mean(0)

        return objective

    rows: list[Row] = [
        ("reparameterization", 1, per_row(reparam)),
        ("reinforce, no baseline", 1, per_row(score(1, "none"))),
        ("reinforce, moving average", 1, per_row(score(1, "moving_average"))),
        ("reinforce, leave-one-out (S=2)", 2, per_row(score(2, "leave_one_out"))),
    ]
    return rows, exact


def vae_rows(n: int, seed: int) -> tuple[list[Row], Tensor]:
    """Part C: encoder gradient of the mean negative ELBO of a fixed CategoricalVAE."""
    from sklearn.datasets import load_digits

    x = torch.tensor(load_digits().data[:64] / 16.0 > 0.5, dtype=torch.float64)  # (64, 64)
    torch.manual_seed(seed)
    model = CategoricalVAE.with_mlp((64,), M, K, BernoulliLikelihood(), hidden=32, depth=1)
    model.double()
    params = list(model.encoder.parameters())
    states = torch.tensor(list(itertools.product(range(K), repeat=M)))
    z = F.one_hot(states, K).double().flatten(-2)[:, None].expand(-1, 64, -1)  # (K^M, B, M*K)
    stats = model.encode(x)
    q = model.posterior_log_prob(stats, z).exp()
    neg_elbo = model.kl(stats) - (q * model.log_likelihood(z, x)).sum(0)
    exact = torch.cat([gr.flatten() for gr in torch.autograd.grad(neg_elbo.mean(), params)])

    def estimates(estimator: str, baseline: str, s: int, tau: float) -> Tensor:
        model.estimator, model.baseline, model.n_samples, model.tau = estimator, baseline, s, tau  # type: ignore[assignment]
        model.baseline_count.zero_()
        model.train()
        out = []
        for i in range(n + 20):  # 20 warm-up calls for the moving average
            grads = torch.autograd.grad(model.loss(x).mean(), params)
            if i >= 20:
                out.append(torch.cat([gr.flatten() for gr in grads]))
        return torch.stack(out)

    rows: list[Row] = [
        ("reinforce, no baseline", 1, estimates("reinforce", "none", 1, 1.0)),
        ("reinforce, moving average", 1, estimates("reinforce", "moving_average", 1, 1.0)),
        ("reinforce, leave-one-out (S=2)", 2, estimates("reinforce", "leave_one_out", 2, 1.0)),
    ]
    for est, tau in itertools.product(("gumbel", "straight_through"), TAUS):
        name = f"{'straight-through' if est == 'straight_through' else 'gumbel-softmax'} tau={tau}"
        rows.append((name, 1, estimates(est, "none", 1, tau)))
    return rows, exact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="estimates per estimator (A, B)")
    parser.add_argument("--n-vae", type=int, default=500, help="estimates per estimator (C)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(args.seed)
    print(
        f"{args.n} independent estimates per estimator (A, B); {args.n_vae} for C; seed {args.seed}"
    )
    print("f = f-evaluations (decoder passes) per estimate; bias SE = sqrt(tr Cov / N)")
    rows, exact = categorical_rows(args.n, g)
    table(f"A. categorical E_q[f(z)], M={M}, K={K}, grad w.r.t. logits", rows, exact)
    rows, exact = gaussian_rows(args.n, g)
    table("B. Gaussian E_q[f(z)], d=4, grad w.r.t. (mu, log sigma)", rows, exact)
    rows, exact = vae_rows(args.n_vae, args.seed)
    table(f"C. CategoricalVAE neg. ELBO, 64 digits, M={M}, K={K}, encoder grad", rows, exact)


if __name__ == "__main__":
    main()
