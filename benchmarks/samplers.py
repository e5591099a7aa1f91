"""genlab's public samplers and grids on the analytic Gaussian-mixture beds.

    PYTHONPATH=src .venv/bin/python benchmarks/samplers.py [--quick] [--out FILE.md]
        [--beds ring8_D2/sd,...] [--nfe 10,20] [--n 4096] [--cache DIR]
        [--json rows.json] [--merge a.json b.json ...] [--threads 1]

Same run as `genlab bench samplers` (genlab.bench.samplers.run). ``--beds`` with ``--json``
lets the beds run as separate processes; ``--merge`` formats their rows together.
``--cache`` keeps the beds' exact endpoints between runs (and shares them with
benchmarks/reference_samplers.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from genlab.bench.beds import beds
from genlab.bench.samplers import Row, format_summary, format_table, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small, fast run (tests)")
    parser.add_argument("--out", type=Path, default=None, help="also write the tables here")
    parser.add_argument("--beds", default=None, help="comma-separated bed/setting names")
    parser.add_argument("--nfe", default="10,20", help="comma-separated NFE budgets")
    parser.add_argument("--n", type=int, default=4096, help="evaluation trajectories per bed")
    parser.add_argument("--cache", type=Path, default=Path("runs/bench-samplers"))
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON")
    parser.add_argument("--merge", type=Path, nargs="*", default=None, help="rows JSON files")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.merge:
        rows = [Row(**r) for f in args.merge for r in json.loads(f.read_text())]
    else:
        names = args.beds.split(",") if args.beds else [b.name for b in beds()]
        nfes = tuple(int(v) for v in args.nfe.split(","))
        rows = []
        for name in names:  # one bed at a time, its rows saved as soon as they exist
            rows += run(quick=args.quick, bed_names=(name,), nfes=nfes, n_samples=args.n,
                        cache=args.cache, log=lambda s: print(s, flush=True))  # fmt: skip
            if args.json is not None:
                args.json.write_text(json.dumps([dataclasses.asdict(r) for r in rows]))
    text = format_table(rows) + "\n### Summary\n\n" + format_summary(rows) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
