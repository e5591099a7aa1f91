"""Medusa and speculative decoding of a token prior against plain KV-cached decoding.

``genlab bench medusa RUN [--sequences 1000] [--timing 64] [--seeds 5] [--samples 1000]
[--prompt-rows 1] [--temperature 1] [--tree-nodes 4,8,16] [--draft K] [--threads 1]
[--out FILE]``

RUN is a token-prior run with Medusa heads. Every decoder runs at batch 1 (the latency
setting speculative decoding is made for) and generates the same tokens per sequence:

- heads: each head's top-1 / top-5 accuracy against the held-out codes and its top-1
  agreement with the prior's own argmax (what greedy verification accepts);
- greedy: `--sequences` prompts (the first `--prompt-rows` rows of codes of the digits,
  train and test images, so that greedy completions differ) completed by plain greedy
  decoding and by greedy Medusa with sparse trees of each `--tree-nodes` size: how many
  outputs are identical token for token, accepted tokens per prior forward pass, and time
  per sequence (a larger tree accepts more per pass and costs more per pass);
- speculative (exact, a chain of `--draft` heads) and typical acceptance (the tree size
  fastest in the greedy runs), sampling whole sequences at `--temperature`: tokens per
  forward, time, a chi-square test per position that the token histograms of `--samples`
  sequences match those of plain sampling, and the FD of the decoded images next to plain
  sampling's and the noise floor.

Times are interleaved per seed (plain, then the other decoder, on the same prompts or
seeds), on the wall clock and on this process's CPU clock, and reported as medians over
`--seeds`; a speedup is the median of the per-seed ratios, steadier than absolute times on
a loaded machine (where the CPU clock is the steadier of the two).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from genlab.errors import ConfigError

__all__ = ["Timing", "chi_square", "main", "run"]


@dataclass
class Timing:
    """Per-seed seconds per sequence, (wall, process CPU), of plain decoding and of the
    decoder under test, and the latter's tokens per forward pass."""

    plain: list[tuple[float, float]] = field(default_factory=list)
    other: list[tuple[float, float]] = field(default_factory=list)
    tokens_per_forward: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Medians over seeds; speedups are medians of the per-seed ratios."""
        out = {"tokens_per_forward": statistics.median(self.tokens_per_forward)}
        for i, clock in enumerate(("wall", "cpu")):
            plain = [t[i] for t in self.plain]
            other = [t[i] for t in self.other]
            out[f"plain_ms_{clock}"] = 1e3 * statistics.median(plain)
            out[f"ms_{clock}"] = 1e3 * statistics.median(other)
            out[f"speedup_{clock}"] = statistics.median(
                p / o for p, o in zip(plain, other, strict=True)
            )
        return out


def chi_square(a: Tensor, b: Tensor, vocab: int) -> tuple[float, float]:
    """Two-sample chi-square tests that the token histograms of code sequences a and b
    (N, L) agree at each position -> (smallest p-value, Bonferroni-corrected p = min(1, L min
    p)). Tokens unseen in both samples are left out of a position's table."""
    from scipy.stats import chi2_contingency

    p_values = []
    for i in range(a.shape[1]):
        table = torch.stack([torch.bincount(a[:, i], minlength=vocab),
                             torch.bincount(b[:, i], minlength=vocab)])  # (2, K) # fmt: skip
        table = table[:, table.sum(0) > 0]
        if table.shape[1] < 2:
            p_values.append(1.0)
            continue
        p_values.append(float(chi2_contingency(table.numpy()).pvalue))
    low = min(p_values)
    return low, min(1.0, low * len(p_values))


def _prompts(model: Any, data: Any, n: int, rows: int) -> tuple[Tensor, Tensor | None]:
    """The first `rows` rows of codes (n, rows w) of n digits (train, then test images) and
    their labels when the prior is class-conditional."""
    images = torch.cat([data.train, data.test])[:n]
    codes = model.encode(images)  # (n, L)
    width = model.tokenizer.grid[1]
    labels = None
    if model.cfg.num_classes > 0:
        labels = torch.cat([data.train_labels, data.test_labels])[:n]
    return codes[:, : rows * width], labels


def _decode_all(
    model: Any,
    decoding: Any,
    prompts: Tensor | None,
    labels: Tensor | None,
    index: Tensor,
    seed: int,
) -> tuple[Tensor, Any, tuple[float, float]]:
    """Codes of the sequences at `index`, one at a time, their stats and (wall, process CPU)
    seconds per sequence."""
    from genlab.tokens.sampling import DecodeStats

    generator = torch.Generator().manual_seed(seed)
    rows, stats = [], DecodeStats()
    wall, cpu = time.perf_counter(), time.process_time()
    for i in index.tolist():
        label = None if labels is None else labels[i : i + 1]
        prefix = None if prompts is None else prompts[i : i + 1]
        codes, s = model.sample_codes(
            1, label, generator=generator, decoding=decoding, prefix=prefix
        )
        rows.append(codes)
        stats.add(s)
    n = max(len(rows), 1)
    seconds = ((time.perf_counter() - wall) / n, (time.process_time() - cpu) / n)
    return torch.cat(rows), stats, seconds


def _time(
    model: Any,
    plain: Any,
    other: Any,
    prompts: Tensor | None,
    labels: Tensor | None,
    count: int,
    seeds: int,
    pool: int,
) -> Timing:
    """Interleaved timings over `seeds`: each seed draws `count` of the `pool` prompts."""
    timing = Timing()
    for seed in range(seeds):
        index = torch.randperm(pool, generator=torch.Generator().manual_seed(seed))[:count]
        _, _, t_plain = _decode_all(model, plain, prompts, labels, index, seed)
        _, stats, t_other = _decode_all(model, other, prompts, labels, index, seed)
        timing.plain.append(t_plain)
        timing.other.append(t_other)
        timing.tokens_per_forward.append(stats.tokens_per_forward)
    return timing


def _greedy(model: Any, data: Any, args: dict[str, Any], log: Callable[[str], None]) -> list:
    """Greedy Medusa with each tree size of `args["trees"]` against plain greedy decoding of
    the same prompts: identity, tokens per forward, interleaved timings."""
    from genlab.tokens.prior import Decoding
    from genlab.tokens.sampling import TokenSampling

    greedy = TokenSampling(0.0)
    plain = Decoding("plain", greedy)
    prompts, labels = _prompts(model, data, args["sequences"], args["prompt_rows"])
    n, index = prompts.shape[0], torch.arange(prompts.shape[0])
    log(f"greedy: {n} prompts of {prompts.shape[1]} codes, plain and Medusa")
    reference, _, _ = _decode_all(model, plain, prompts, labels, index, 0)
    rows = []
    for nodes in args["trees"]:
        tree = model.default_tree(nodes)
        medusa = Decoding("medusa", greedy, tree=tree)
        log(f"greedy Medusa, tree of {tree.size - 1} candidates")
        codes, stats, _ = _decode_all(model, medusa, prompts, labels, index, 0)
        timing = _time(model, plain, medusa, prompts, labels, args["timing"], args["seeds"], n)
        rows.append(
            {
                "tree_nodes": tree.size - 1,
                "tree_depth": tree.max_depth,
                "sequences": n,
                "identical": int((codes == reference).all(1).sum()),
                "generated_tokens": stats.tokens // n,
                "all_tokens_per_forward": stats.tokens_per_forward,
                **timing.summary(),
            }
        )
    return rows


def _sampling(
    model: Any, data: Any, decode: str, args: dict[str, Any], log: Callable[[str], None]
) -> dict:
    """A sampling decoder against plain sampling: histograms, FD, timing (no prompts)."""
    from genlab.runs import evaluate_images, test_labels
    from genlab.tokens.prior import Decoding
    from genlab.tokens.sampling import TokenSampling

    how = TokenSampling(args["temperature"])
    plain = Decoding("plain", how)
    other = Decoding(decode, how, tree_nodes=args["tree"], draft=args.get("draft"))
    n = args["samples"]
    labels = test_labels(data, n) if model.cfg.num_classes > 0 else None
    log(f"{decode}: {n} sequences, and {n} by plain sampling")
    a, _ = model.sample_codes(
        n, labels, generator=torch.Generator().manual_seed(10), decoding=plain
    )
    b, stats, _ = _decode_all(model, other, None, labels, torch.arange(n), 11)
    low, corrected = chi_square(a, b, model.cfg.vocab)
    grid = model.tokenizer.grid
    fd = {
        name: evaluate_images(model.tokenizer.decode(c.view(n, *grid)), data, labels=labels)
        for name, c in (("plain", a), (decode, b))
    }
    timing = _time(model, plain, other, None, labels, args["timing"], args["seeds"], n)
    setting = (
        {"tree_nodes": args["tree"]}
        if decode == "medusa"
        else {"draft": args.get("draft") or model.heads.n_heads}
    )
    return {
        "samples": n,
        **setting,
        "chi2_min_p": low,
        "chi2_bonferroni_p": corrected,
        "fd": fd[decode]["fd"],
        "fd_plain": fd["plain"]["fd"],
        "fd_floor": fd["plain"]["fd_floor"],
        "all_tokens_per_forward": stats.tokens_per_forward,
        **timing.summary(),
    }


def _heads(model: Any, data: Any) -> list[dict[str, float]]:
    from genlab.tokens.evaluate import head_accuracy

    labels = data.test_labels if model.cfg.num_classes > 0 else None
    acc, agree = head_accuracy(model, model.encode(data.test), labels)
    top = torch.cumsum(acc, 1)  # (K, R)
    return [
        {
            "head": k + 1,
            "top1": float(top[k, 0]),
            "top5": float(top[k, min(4, top.shape[1] - 1)]),
            "top1_prior": float(agree[k, 0]),
        }
        for k in range(acc.shape[0])
    ]


def run(run_dir: str | Path, log: Callable[[str], None] = print, **args: Any) -> dict[str, Any]:
    """Every measurement of the module docstring for the run in `run_dir`. `args`:
    sequences, timing, seeds, samples, prompt_rows, temperature, trees (tree sizes of the
    greedy runs; None: the run's), draft (None: every head)."""
    from genlab.runs import load_run, make_data

    loaded = load_run(run_dir)
    model = loaded.model
    if getattr(model, "heads", None) is None:
        raise ConfigError(
            f"{run_dir}: not a token-prior run with Medusa heads (token-prior.medusa_heads)"
        )
    data = make_data(loaded.config.data)
    args = {**args, "trees": args.get("trees") or [model.tree_nodes]}
    report: dict[str, Any] = {
        "run": str(run_dir),
        "length": model.cfg.length,
        "heads": _heads(model, data),
    }
    report["greedy"] = _greedy(model, data, args, log)
    best = max(report["greedy"], key=lambda r: r["speedup_cpu"])  # typical: the best tree
    args["tree"] = best["tree_nodes"]
    for decode in ("speculative", "medusa"):
        key = "typical" if decode == "medusa" else decode
        report[key] = _sampling(model, data, decode, args, log)
    return report


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def _text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


GREEDY = (
    "tree_nodes",
    "tree_depth",
    "identical",
    "tokens_per_forward",
    "plain_ms_wall",
    "ms_wall",
    "speedup_wall",
    "plain_ms_cpu",
    "ms_cpu",
    "speedup_cpu",
)


def main(
    run_dir: str, *, console: Any = None, out: str | None = None, threads: int = 1, **args: Any
) -> dict[str, Any]:
    """Run the benchmark and print its tables (see `run` for `args`)."""
    from rich.console import Console

    console = console or Console()
    torch.set_num_threads(threads)
    report = run(run_dir, log=lambda m: console.print(m, markup=False, highlight=False), **args)
    heads = [
        [str(h["head"]), f"{h['top1']:.3f}", f"{h['top5']:.3f}", f"{h['top1_prior']:.3f}"]
        for h in report["heads"]
    ]
    console.print(
        _table(
            f"Medusa heads of {run_dir} (held-out codes)",
            ["head", "top-1", "top-5", "top-1 = prior argmax"],
            heads,
        )
    )
    n = report["greedy"][0]["sequences"]
    console.print(
        _table(
            f"greedy Medusa vs plain greedy, batch 1, {n} prompts",
            list(GREEDY),
            [[_text(r[k]) for k in GREEDY] for r in report["greedy"]],
        )
    )
    for key, title in (
        ("speculative", "exact speculative sampling vs plain sampling, batch 1"),
        ("typical", "Medusa typical acceptance vs plain sampling, batch 1"),
    ):
        rows = [[k, _text(v)] for k, v in report[key].items()]
        console.print(_table(title, ["measure", "value"], rows))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=1) + "\n")
    return report
