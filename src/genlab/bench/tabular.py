"""Real tables in raw units: every continuous family next to the classical density baselines.

``genlab bench tabular [--tables wine,diabetes,iris] [--configs DIR] [--families a,b]
[--max-seconds S] [--set key=value ...] [--quick] [--threads N]``

Tables: scikit-learn's bundled wine (178 x 13), diabetes in raw units
(``load_diabetes(scaled=False)``, 442 x 10) and iris (150 x 4), each written to a CSV with
a header in its raw units and read through the path a user's file takes (``data.name =
"points"``: `genlab.data.points.load_table`, then the data transform stage of
`genlab.transform`: per-column standardisation, grid columns dequantised).

One fixed split per table (`SPLIT`): 20% test rows by a permutation seeded 0, 15% of the
rest for validation (``train.val_fraction``, seed 0), the remaining rows train.

Rows. Each config of ``--configs`` (default ``configs/tabular``, one or more per family:
flow matching, EDM, VP-SDE, RealNVP, Glow, NICE, CNF, VAE; ``<family>.<variant>.toml`` are
variants of which the one with the best validation NLL is reported) is trained by
``genlab.bench.likelihood.run_one`` (``genlab.runs.train_run``: validation, early stopping,
best-checkpoint selection, a CPU-time budget), next to the baselines of
`genlab.bench.baselines` (full-covariance Gaussian, GaussianMixture, Gaussian KDE) fitted on
the same training rows and selected on the same validation rows. Columns:

- test NLL in nats per example of the raw values (the dequantised density of grid columns),
  ± its standard error over test rows; every row uses the same dequantisation draws;
- sample SW2 / floor in standardised units: sliced W2 of test-size sample sets against the
  test rows, over the same distance of test-size sets of training rows (`SW2_SETS` sets);
- training and evaluation CPU seconds.

Each table's summary line also compares the best family with the best baseline example by
example: the mean and standard error of the difference of their test NLLs over the same
rows (`genlab.bench.likelihood.paired_difference`), which says whether a gap is larger than
the test split can resolve.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genlab.bench.likelihood import (
    Row,
    budget,
    configs_in,
    console_log,
    load,
    paired_difference,
    per_example,
    run_one,
    write_json,
)
from genlab.errors import ConfigError

__all__ = ["SPLIT", "TABLES", "main", "run", "sample_quality", "write_table"]

TABLES = ("wine", "diabetes", "iris")
DEFAULT_CONFIGS = "configs/tabular"
SPLIT = ("data.seed=0", "train.seed=0", "train.val_fraction=0.15")
SW2_SETS = 8
QUICK = ("train.steps=30", "train.val_every=15", "train.patience=0", "likelihood.draws=2",
         "likelihood.k=16", "likelihood.elbo_draws=1", "likelihood.rtol=1e-3",
         "likelihood.atol=1e-3", "train.max_seconds=0")  # fmt: skip


def load_sklearn(name: str) -> tuple[np.ndarray, list[str]]:
    """A bundled scikit-learn table in its raw units: (values (N, D), column names)."""
    from sklearn import datasets

    loaders: dict[str, Callable[[], Any]] = {
        "wine": datasets.load_wine,
        "diabetes": lambda: datasets.load_diabetes(scaled=False),
        "iris": datasets.load_iris,
    }
    if name not in loaders:
        raise ConfigError(f"--tables: {name!r} is not one of {', '.join(TABLES)}")
    bunch = loaders[name]()
    return np.asarray(bunch.data, dtype=np.float64), list(bunch.feature_names)


def write_table(name: str, root: Path) -> Path:
    """`name` as a CSV with a header, in raw units, under `root`; returns its path."""
    from genlab.data.points import write_csv

    values, header = load_sklearn(name)
    path = root / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv(path, values, header)
    return path


def sample_quality(
    sample: Callable[[int, int], Tensor],
    data: Any,
    space: Callable[[Tensor], Tensor] | None,
    sets: int = SW2_SETS,
) -> dict[str, float]:
    """Mean sliced W2 of `sets` sample sets of the test size (``sample(n, seed)``) against
    the test rows, its floor and their ratio, in the coordinates of `space`."""
    from genlab.runs import evaluate

    n = data.test.shape[0]
    runs = [evaluate(sample(n, seed), data, seed=0, space=space) for seed in range(sets)]
    sw2 = float(np.mean([m["sliced_wasserstein"] for m in runs]))
    floor = runs[0]["sw2_floor"]
    return {"sw2": sw2, "sw2_floor": floor, "sw2_ratio": sw2 / floor}


def _sampler(model: Any) -> Callable[[int, int], Tensor]:
    return lambda n, seed: model.sample(n, generator=torch.Generator().manual_seed(seed))


def _measure_run(run: Any, data: Any) -> dict[str, float]:
    from genlab.runs import draw

    return sample_quality(lambda n, seed: draw(run, n, seed=seed), data, run.metric_space())


def baseline_rows(config: Path, overrides: Sequence[str], log: Callable[[str], None]) -> list[Row]:
    """The baselines of the table of `config` (its data, split and likelihood settings),
    fitted in per-column standardised and in whitened coordinates."""
    import time

    from genlab.bench.baselines import fit_baselines
    from genlab.data.columns import fit_columns
    from genlab.eval.likelihood import estimate
    from genlab.families import LikelihoodBound
    from genlab.runs import make_data
    from genlab.runs.stage import fitted_rows
    from genlab.transform import ColumnTransform

    cfg = load(config, overrides)
    data = make_data(cfg.data)
    table, train_rows, val_rows = fitted_rows(cfg, data)
    d = cfg.data
    spaces = {name: ColumnTransform.from_stats(fit_columns(
        table, train_rows, scaling=scaling, log=d.log_columns, grid=d.grid_columns))
        for name, scaling in (("standardised", "standard"), ("whitened", "whiten"))}  # fmt: skip
    raw = torch.from_numpy(table.values)  # (N, D) float64
    val = raw[val_rows] if val_rows is not None else raw[train_rows]
    log(f"[baselines] fitting on {len(train_rows)} rows, selecting on {len(val)}")
    s = cfg.likelihood
    rows = []
    for b in fit_baselines(spaces, raw[train_rows], val, s):
        start = time.process_time()
        (e,) = estimate(b.model, data.test[: s.n], s, [LikelihoodBound("exact")])
        quality = sample_quality(_sampler(b.model), data, b.model.standardize)
        rows.append(Row(b.name, "baseline", b.params, 0, None, b.fit_cpu_s, math.nan,
                        b.val_nll, e.nats, e.nats_se, "nats", b.notes,
                        extra={**quality, "mc_se": e.mc_se, **per_example(e, False)},
                        eval_cpu_s=time.process_time() - start))  # fmt: skip
    return rows


def run(
    tables: Sequence[str] = TABLES,
    *,
    configs: str | Path = DEFAULT_CONFIGS,
    families: Sequence[str] | None = None,
    max_seconds: float | None = None,
    overrides: Sequence[str] = (),
    quick: bool = False,
    cache: str | Path = "runs/bench-tabular",
    log: Callable[[str], None] = print,
    on_row: Callable[[dict[str, list[Row]]], None] | None = None,
) -> dict[str, list[Row]]:
    """Every table's rows: the baselines, then each config's family."""
    for name in tables:
        load_sklearn(name)  # an unknown table fails before any training
    paths = configs_in(configs, "", families)
    extra = [*SPLIT, *(QUICK if quick else ()), *overrides, *budget(max_seconds)]
    root = Path(cache) / ("quick" if quick else "full")
    out: dict[str, list[Row]] = {}
    for name in tables:
        csv = write_table(name, root / "tables")
        table_extra = [f'data.path="{csv.as_posix()}"', *extra]
        base = baseline_rows(paths[0], table_extra, log)
        trained: list[Row] = []
        for path in paths:
            trained += run_one(path, table_extra, root / name, label=path.stem, log=log,
                               measure=_measure_run)  # fmt: skip
            out[name] = base + select_variants(trained)
            if on_row is not None:
                on_row(out)
    return out


def _variant(row: Row) -> tuple[str, str]:
    """(family row, variant) of a row named ``<family>[.<variant>][ (<bound>)]``."""
    config = row.name.split(" (")[0]
    return config.split(".")[0], config


def select_variants(rows: Sequence[Row]) -> list[Row]:
    """Of the configs ``<family>.<variant>.toml`` of a family, the rows of the variant with
    the best validation NLL (the test split plays no part); notes name the alternatives."""
    groups: dict[str, dict[str, list[Row]]] = {}
    for r in rows:
        family, variant = _variant(r)
        groups.setdefault(family, {}).setdefault(variant, []).append(r)
    out = []
    for variants in groups.values():
        scores = {v: _val(rs[0]) for v, rs in variants.items()}
        best = min(scores, key=scores.__getitem__)
        if len(variants) > 1:
            others = ", ".join(f"{v} {scores[v]:.3f}" for v in sorted(variants))
            note = f"selected on val NLL among {others}; "
            out += [replace(r, notes=note + r.notes.removeprefix(note)) for r in variants[best]]
        else:
            out += variants[best]
    return out


def _val(row: Row) -> float:
    return math.inf if row.val is None or not math.isfinite(row.val) else row.val


def verdict(rows: Sequence[Row]) -> dict[str, Any]:
    """The targets of one table: the best family against the best baseline (also example by
    example: `paired_difference`), every family against the full-covariance Gaussian (a
    family's best row: the VAE's IWAE bound)."""
    base = [r for r in rows if r.family == "baseline"]
    models = [r for r in rows if r.family != "baseline"]
    gauss = next((r.test for r in base if r.name.startswith("full-covariance")), math.nan)
    best_base = min(base, key=lambda r: r.test, default=None)
    per_family: dict[str, Row] = {}  # family -> its tightest bound (the VAE: IWAE, not ELBO)
    for r in models:
        key = _variant(r)[0]
        if key not in per_family or r.test < per_family[key].test:
            per_family[key] = r
    best = min(per_family.values(), key=lambda r: r.test, default=None)
    paired = None if best is None or best_base is None else paired_difference(best, best_base)
    return {
        "best_family": None if best is None else best.name,
        "best_family_nll": math.nan if best is None else best.test,
        "best_baseline": None if best_base is None else best_base.name,
        "best_baseline_nll": math.nan if best_base is None else best_base.test,
        "best_beats_baselines": bool(best and best_base and best.test < best_base.test),
        "families_beating_gaussian": sorted(f for f, r in per_family.items() if r.test < gauss),
        "families_not_beating_gaussian": sorted(
            f for f, r in per_family.items() if not r.test < gauss
        ),  # fmt: skip
        "best_family_sw2_ratio": math.nan if best is None else best.extra.get("sw2_ratio"),
        # best family minus best baseline, example by example: (mean, standard error)
        "paired_difference": paired,
    }


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def format_table(name: str, rows: Sequence[Row]) -> Any:
    from rich.table import Table

    t = Table(title=f"{name}: test NLL in nats per example, raw units (lower is better)")
    for c in ("model", "params", "steps", "best", "val NLL", "test NLL", "± se", "SW2/floor",
              "train cpu s", "eval cpu s", "notes"):  # fmt: skip
        t.add_column(c, justify="left" if c in ("model", "notes") else "right", overflow="fold")
    for r in rows:
        t.add_row(r.name, f"{r.params:,}", str(r.steps), "–" if r.best_step is None
                  else str(r.best_step), _f(r.val), _f(r.test), _f(r.test_se),
                  _f(r.extra.get("sw2_ratio"), 2), f"{r.train_cpu_s:.1f}",
                  _f(r.eval_cpu_s, 1), r.notes)  # fmt: skip
    return t


def summary(name: str, rows: Sequence[Row]) -> str:
    """One line of the targets of a table."""
    v = verdict(rows)
    beats = "beats" if v["best_beats_baselines"] else "does NOT beat"
    missing = v["families_not_beating_gaussian"]
    paired = v["paired_difference"]
    diff = "" if paired is None else f", difference {paired[0]:+.3f} ± {paired[1]:.3f} (paired)"
    return (f"{name}: best family {v['best_family']} ({_f(v['best_family_nll'])}) {beats} the "
            f"best baseline {v['best_baseline']} ({_f(v['best_baseline_nll'])}{diff}); "
            f"SW2/floor of the best family {_f(v['best_family_sw2_ratio'], 2)}; families not "
            f"beating the full-covariance Gaussian: {', '.join(missing) or 'none'}")  # fmt: skip


def main(
    tables: Sequence[str] = TABLES,
    *,
    configs: str = DEFAULT_CONFIGS,
    families: Sequence[str] | None = None,
    max_seconds: float | None = None,
    overrides: Sequence[str] = (),
    quick: bool = False,
    cache: str = "runs/bench-tabular",
    out: str | None = None,
    threads: int = 1,
    console: Any = None,
) -> dict[str, list[Row]]:
    from rich.console import Console

    console = console or Console()
    torch.set_num_threads(threads)

    def write(result: dict[str, list[Row]]) -> None:
        payload = {name: {"rows": [asdict(r) for r in rows], "verdict": verdict(rows)}
                   for name, rows in result.items()}  # fmt: skip
        write_json(out, {"quick": quick, "tables": payload})

    log = console_log(console)
    result = run(tables, configs=configs, families=families, max_seconds=max_seconds,
                 overrides=overrides, quick=quick, cache=cache, log=log,
                 on_row=write)  # fmt: skip
    write(result)
    for name, rows in result.items():
        console.print(format_table(name, rows))
    for name, rows in result.items():
        console.print(summary(name, rows), markup=False, highlight=False)
    return result
