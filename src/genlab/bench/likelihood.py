"""Cross-family likelihood table: every family's test likelihood on the same data.

``genlab bench likelihood [--data digits|ring] [--configs DIR] [--families a,b]
[--max-seconds S] [--set key=value ...] [--quick]``

Each row is an ordinary run config, ``<configs>/<data>-<name>.toml`` (default
``configs/likelihood``), trained by ``genlab.runs.train_run`` (the trainer with its
validation split, checkpoint selection, early stopping and time budget) into a run directory
under ``--cache`` keyed by the config's hash, so an interrupted table resumes and a finished
row is reused. The selected weights are then evaluated on the test split by
``genlab.eval.likelihood.estimate``, the one estimator every family shares.

Data sets
---------
``digits`` (scikit-learn 8x8 digits, D = 64, 17 levels; the protocol of the flows_digits
anchor): 1437 train / 360 test (``default_rng(0).permutation``); with validation on, the last
144 training images are the validation split, so models train on 1293. Continuous families
model uniformly dequantised pixels (``data.dequantize``; ``genlab.discrete.Dequantized``), the
VAE the discrete pixels directly (discretised logistic decoder). The table reports bits/dim
of the DISCRETE pixels, an upper bound of -log2 P(v)/D; dequantised models average 10 fixed
draws (seeds 1000..1009) unless their config says otherwise (noted in the row). Baselines: a
per-pixel categorical (counts + 1 on all 1437 training images; 2.4314) and uniform
(log2 17 = 4.0875).

``ring`` (8 Gaussians on a circle of radius 4, std 0.3): the table reports the test NLL in
nats next to the exact mixture's NLL of the same points.

Budgets are each config's ``train.max_seconds`` on the process-CPU clock (the development
machine is shared, so wall time varies with load; both are reported); ``--max-seconds``
overrides them all. ``--quick`` shrinks steps and evaluation for a smoke run.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from genlab.config import RunConfig, apply_override, read_toml
from genlab.density import bits_per_dim
from genlab.errors import ConfigError

__all__ = [
    "Row",
    "categorical_bpd",
    "find_configs",
    "format_table",
    "main",
    "paired_difference",
    "per_example",
    "run",
    "to_markdown",
]

DATA = ("digits", "ring")
DEFAULT_CONFIGS = "configs/likelihood"
# --quick: a smoke run of every config (minutes on a CPU)
QUICK = ("train.steps=40", "train.val_every=20", "train.patience=0", "likelihood.n=32",
         "likelihood.draws=1", "likelihood.k=16", "likelihood.elbo_draws=1",
         "likelihood.val_n=16", "likelihood.rtol=1e-3", "likelihood.atol=1e-3")  # fmt: skip


@dataclass
class Row:
    name: str
    family: str
    params: int
    steps: int
    best_step: int | None
    train_cpu_s: float
    train_wall_s: float
    val: float | None  # the selection's validation score: an NLL in the test's unit, or a loss
    test: float  # bits/dim (digits) or nats (ring)
    test_se: float
    unit: str
    notes: str = ""
    beats_baseline: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    eval_cpu_s: float = math.nan  # CPU seconds of the test evaluation (and `measure`)


def categorical_bpd(train_v: torch.Tensor, test_v: torch.Tensor, levels: int) -> float:
    """Per-pixel categorical (counts + 1) fit on train_v, mean bpd on test_v (exact, discrete)."""
    tr = train_v.flatten(1).long()
    te = test_v.flatten(1).long()
    d = tr.shape[1]
    counts = torch.ones(d, levels, dtype=torch.float64)
    counts.scatter_add_(1, tr.T, torch.ones(tr.T.shape, dtype=torch.float64))
    logp = torch.log(counts / counts.sum(1, keepdim=True))  # (D, L)
    ll = logp.gather(1, te.T).sum(0)  # (N_test,)
    return float(bits_per_dim(-ll, d).mean())


def find_configs(configs: str | Path, data: str, only: Sequence[str] | None = None) -> list[Path]:
    """``<configs>/<data>-*.toml`` in name order; ``only`` keeps the named ones."""
    if data not in DATA:
        raise ConfigError(f"--data: {data!r} is not one of {', '.join(DATA)}")
    return configs_in(configs, f"{data}-", only)


def configs_in(configs: str | Path, prefix: str, only: Sequence[str] | None = None) -> list[Path]:
    """``<configs>/<prefix>*.toml`` in name order, named without the prefix; ``only`` keeps
    the named ones (a name missing is a one-line error)."""
    root = Path(configs)
    if not root.is_dir():
        raise ConfigError(f"--configs {root}: directory not found")
    found = {p.stem.removeprefix(prefix): p for p in sorted(root.glob(f"{prefix}*.toml"))}
    if only:
        unknown = [n for n in only if n not in found]
        if unknown:
            raise ConfigError(f"--families: no config {', '.join(unknown)} in {root} "
                              f"(have: {', '.join(found) or 'none'})")  # fmt: skip
        return [found[n] for n in only]
    if not found:
        raise ConfigError(f"--configs {root}: no {prefix}*.toml configs")
    return list(found.values())


def load(path: Path, overrides: Sequence[str]) -> RunConfig:
    values = read_toml(path)
    for item in overrides:
        apply_override(values, item)
    try:
        return RunConfig.from_dict(values)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def _key(cfg: RunConfig) -> str:
    blob = json.dumps(cfg.to_dict(), sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def describe(cfg: RunConfig) -> str:
    """The row's model in a few words: the family's description, then the data's form."""
    what = cfg.family.describe(cfg)
    if cfg.data.dequantize:
        what += f"; logit {cfg.data.logit:g}" if cfg.data.logit is not None else "; [-1, 1)"
    return what


def run_one(
    path: Path,
    overrides: Sequence[str],
    cache: Path,
    *,
    label: str | None = None,
    log: Callable[[str], None] = print,
    measure: Callable[[Any, Any], dict[str, Any]] | None = None,
) -> list[Row]:
    """Train (or resume, or reuse) one config and evaluate it on the test split;
    `measure(run, data)` adds measurements of its own to each row's `extra`."""
    from genlab.eval.likelihood import estimate
    from genlab.runs import load_run, train_run

    cfg = load(path, overrides)
    run_dir = cache / f"{path.stem}-{_key(cfg)}"
    rows_file = run_dir / "rows.json"
    if rows_file.is_file():
        log(f"[{path.stem}] cached: {rows_file}")
        rows = [Row(**r) for r in json.loads(rows_file.read_text())]
        if cfg.is_image or all(PER_EXAMPLE in r.extra for r in rows):
            return rows
        rows = _add_per_example(rows, run_dir, cfg)  # rows cached before they were kept
        rows_file.write_text(json.dumps([asdict(r) for r in rows], indent=1))
        return rows
    log(f"[{path.stem}] training into {run_dir}")
    result, data = train_run(cfg, run_dir, resume=True, progress=False)
    run = load_run(run_dir)
    s = cfg.likelihood
    x = data.test[: s.n]
    t0, c0 = time.perf_counter(), time.process_time()
    if run.family.likelihood is None:
        raise ConfigError(f"{path}: model.family = {run.family.name!r} has no likelihood")
    estimates = estimate(run.model, x, s, run.family.likelihood(s), image=run.is_image)
    extra = {} if measure is None else measure(run, data)
    eval_s, eval_cpu = time.perf_counter() - t0, time.process_time() - c0
    image = run.is_image
    unit = "bpd" if image else "nats"
    params = sum(p.numel() for p in run.model.parameters())
    stop = result.stop_reason
    val_is_nll = s.select == "nll" or run.model.loss_is_nll
    sel = "val NLL" if val_is_nll else "val loss"
    val = result.best_val
    if val is not None and val_is_nll:
        val = bits_per_dim(val, math.prod(x.shape[1:])) if image else val  # the test's unit
    common_notes = [
        describe(cfg),
        f"stop: {stop}, best step {result.best_step} ({sel})",
        f"test: {x.shape[0]} examples"
        + (f" x {s.draws} draws" if image and cfg.data.dequantize else ""),
    ]
    rows = []
    for e in estimates:
        value = e.bpd if image else e.nats
        se = e.bpd_se if image else e.nats_se
        name = label or path.stem
        name = name if len(estimates) == 1 else f"{name} ({e.name})"
        notes = "; ".join([*common_notes, f"{e.name}, eval {eval_s:.0f}s wall"])
        rows.append(Row(
            name=name, family=cfg.model.family, params=params, steps=result.steps,
            best_step=result.best_step, train_cpu_s=_train_seconds(run_dir, result),
            train_wall_s=result.elapsed, val=val,
            test=value if value is not None else math.nan, test_se=se or math.nan,
            unit=unit, notes=notes, extra={**extra, "mc_se": e.mc_se, **per_example(e, image)},
            eval_cpu_s=eval_cpu,
        ))  # fmt: skip
    rows_file.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return rows


PER_EXAMPLE = "test_nll"  # Row.extra key: the NLL of every test example (vector data)


def per_example(e: Any, image: bool) -> dict[str, list[float]]:
    """The per-example NLLs in nats of an estimate, for a row's `extra` (vector data: a few
    hundred numbers that let two rows be compared example by example, `paired_difference`)."""
    return {} if image else {PER_EXAMPLE: e.per_example.double().tolist()}


def paired_difference(a: Row, b: Row) -> tuple[float, float] | None:
    """Mean and standard error of row a's test NLL minus row b's over the same test examples
    (both scored with the same dequantisation draws): far tighter than either row's own
    standard error when the two models find the same examples hard. None if either row
    lacks its per-example NLLs."""
    x, y = a.extra.get(PER_EXAMPLE), b.extra.get(PER_EXAMPLE)
    if x is None or y is None or len(x) != len(y) or len(x) < 2:
        return None
    d = torch.tensor(x, dtype=torch.float64) - torch.tensor(y, dtype=torch.float64)
    return float(d.mean()), float(d.std() / math.sqrt(d.numel()))


def _add_per_example(rows: list[Row], run_dir: Path, cfg: RunConfig) -> list[Row]:
    """Cached rows with the per-example NLLs of their estimates, rescored from the trained
    run (the same deterministic evaluation that made them: their means must agree)."""
    from genlab.eval.likelihood import estimate
    from genlab.runs import load_run, make_data

    run = load_run(run_dir)
    s = cfg.likelihood
    x = make_data(cfg.data).test[: s.n]
    estimates = estimate(run.model, x, s, run.family.likelihood(s), image=False)
    out = []
    for r, e in zip(rows, estimates, strict=True):
        if not math.isclose(e.nats, r.test, rel_tol=1e-6, abs_tol=1e-6):
            raise ConfigError(f"{run_dir}: rescoring gives {e.nats} nats, its rows {r.test}; "
                              f"delete {run_dir / 'rows.json'} to evaluate it afresh")  # fmt: skip
        out.append(replace(r, extra={**r.extra, **per_example(e, False)}))
    return out


def _train_seconds(run_dir: Path, result: Any) -> float:
    """Seconds in optimizer steps on the run's budget clock (from its trainer state)."""
    from genlab.train import checkpoint as ckpt

    latest = ckpt.latest_checkpoint(run_dir)
    if latest is None:
        return math.nan
    return float(ckpt.read_trainer_state(latest).get("train_seconds", result.elapsed))


def baseline_rows(data: str) -> list[Row]:
    if data == "digits":
        from genlab.data.digits import DIGITS_LEVELS, digits_split

        split = digits_split()
        cat = categorical_bpd(split.train_x, split.test_x, DIGITS_LEVELS)
        base = dict(family="baseline", steps=0, best_step=None, train_cpu_s=0.0,
                    train_wall_s=0.0, val=None, test_se=math.nan, unit="bpd")  # fmt: skip
        return [
            Row("categorical (per pixel, +1)", params=64 * DIGITS_LEVELS, test=cat,
                notes="exact discrete NLL; fit on all 1437 train images", **base),
            Row("uniform", params=0, test=math.log2(DIGITS_LEVELS), notes="log2 17", **base),
        ]  # fmt: skip
    return []  # ring: the exact mixture's row depends on the configs' test points (run())


def budget(max_seconds: float | None) -> list[str]:
    """The overrides of a CPU-second training budget for every config (none if None)."""
    if max_seconds is None:
        return []
    return [f"train.max_seconds={max_seconds}", 'train.time_clock="cpu"']


def write_json(out: str | None, payload: Any) -> None:
    """`payload` as JSON in the file `out` (its folder created); nothing when None."""
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(payload, indent=1))


def console_log(console: Any) -> Callable[[str], None]:
    """A log function printing plain lines (no markup) on a rich console."""

    def log(msg: str) -> None:
        console.print(msg, markup=False, highlight=False)

    return log


def run(
    data: str = "digits",
    *,
    configs: str | Path = DEFAULT_CONFIGS,
    families: Sequence[str] | None = None,
    max_seconds: float | None = None,
    overrides: Sequence[str] = (),
    quick: bool = False,
    cache: str | Path = "runs/bench-likelihood",
    log: Callable[[str], None] = print,
    on_row: Callable[[list[Row]], None] | None = None,
) -> list[Row]:
    """Every config's test likelihood on ``data``, baselines first; ``on_row(rows so far)``
    after each config."""
    paths = find_configs(configs, data, families)
    extra = [*(QUICK if quick else ()), *overrides, *budget(max_seconds)]
    cache_dir = Path(cache) / data / ("quick" if quick else "full")
    rows = baseline_rows(data)
    exact_done = False
    for path in paths:
        if data == "ring" and not exact_done:
            rows += _exact_ring_rows(load(path, extra))
            exact_done = True
        rows += run_one(path, extra, cache_dir, label=path.stem.removeprefix(f"{data}-"), log=log)
        if on_row is not None:
            on_row(_mark(rows))
    return _mark(rows)


def _exact_ring_rows(cfg: RunConfig) -> list[Row]:
    """The exact mixture's NLL of the test points of a ring config."""
    from genlab.runs import make_data

    data = make_data(cfg.data)
    if data.gmm is None:
        return []
    x = data.test[: cfg.likelihood.n].double()
    nll = -data.gmm.log_prob(x)
    se = float(nll.std() / math.sqrt(nll.numel()))
    return [
        Row(
            "exact mixture",
            "baseline",
            0,
            0,
            None,
            0.0,
            0.0,
            None,
            float(nll.mean()),
            se,
            "nats",
            f"GaussianMixture.log_prob of the same {x.shape[0]} test points",
        )
    ]


def _mark(rows: list[Row]) -> list[Row]:
    base = next((r.test for r in rows if r.name.startswith("categorical")), None)
    for r in rows:
        if base is not None and r.steps > 0:
            r.beats_baseline = bool(math.isfinite(r.test) and r.test < base)
    return rows


def _versus(r: Row, rows: Sequence[Row]) -> str:
    """digits: does the row beat the categorical baseline; ring: its gap to the exact NLL."""
    if r.unit == "bpd":
        return "" if r.beats_baseline is None else ("yes" if r.beats_baseline else "NO")
    exact = next((x.test for x in rows if x.name == "exact mixture"), None)
    return "" if exact is None or r.steps == 0 else f"{r.test - exact:+.4f}"


def _f(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


COLUMNS = ("model", "params", "steps", "best", "train cpu s", "train wall s", "val", "test",
           "± se")  # fmt: skip


def _cells(r: Row, rows: Sequence[Row]) -> list[str]:
    return [r.name, f"{r.params:,}", str(r.steps), "–" if r.best_step is None else str(r.best_step),
            f"{r.train_cpu_s:.0f}", f"{r.train_wall_s:.0f}", _f(r.val), _f(r.test), _f(r.test_se),
            _versus(r, rows), r.notes]  # fmt: skip


def format_table(rows: Sequence[Row], title: str = "") -> Any:
    from rich.table import Table

    unit = rows[-1].unit if rows else "bpd"
    t = Table(title=title or f"test {unit} (lower is better)")
    last = "< categorical" if unit == "bpd" else "- exact"
    for c in (*COLUMNS, last, "notes"):
        t.add_column(c, justify="left" if c in ("model", "notes") else "right", overflow="fold")
    for r in rows:
        t.add_row(*_cells(r, rows))
    return t


def to_markdown(rows: Sequence[Row]) -> str:
    unit = rows[-1].unit if rows else "bpd"
    last = "< categorical" if unit == "bpd" else "- exact"
    head = [*COLUMNS[:-2], f"**test {unit}**", "± se", last, "notes"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = _cells(r, rows)
        cells[7] = f"**{cells[7]}**"
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(
    data: str = "digits",
    *,
    configs: str = DEFAULT_CONFIGS,
    families: Sequence[str] | None = None,
    max_seconds: float | None = None,
    overrides: Sequence[str] = (),
    quick: bool = False,
    cache: str = "runs/bench-likelihood",
    out: str | None = None,
    threads: int = 1,
    console: Any = None,
) -> list[Row]:
    from rich.console import Console

    console = console or Console()
    torch.set_num_threads(threads)

    def write(rows: list[Row]) -> None:
        write_json(out, {"data": data, "quick": quick, "rows": [asdict(r) for r in rows]})

    log = console_log(console)

    rows = run(data, configs=configs, families=families, max_seconds=max_seconds,
               overrides=overrides, quick=quick, cache=cache, log=log,
               on_row=write)  # fmt: skip
    write(rows)
    console.print(format_table(rows, f"genlab likelihood table: {data}"
                                     + (" (quick)" if quick else "")))  # fmt: skip
    return rows
