"""Samplers x grids x NFE on the anchors' analytic Gaussian-mixture beds.

    PYTHONPATH=src .venv/bin/python benchmarks/samplers.py [--quick] [--out FILE.md]
        [--beds ring8_D2/sd,...] [--json rows.json] [--merge a.json b.json ...]

Same run as `genlab bench samplers` (genlab.bench.samplers.run). ``--beds`` with ``--json``
lets the four beds run as separate processes; ``--merge`` formats their rows together.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from genlab.bench.samplers import Row, format_summary, format_table, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small, fast run (tests)")
    parser.add_argument("--out", type=Path, default=None, help="also write the tables here")
    parser.add_argument("--beds", default=None, help="comma-separated bed/setting names")
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON")
    parser.add_argument("--merge", type=Path, nargs="*", default=None, help="rows JSON files")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.merge:
        rows = [Row(**r) for f in args.merge for r in json.loads(f.read_text())]
    else:
        beds = tuple(args.beds.split(",")) if args.beds else None
        rows = run(quick=args.quick, bed_names=beds, log=lambda s: print(s, flush=True))
    if args.json is not None:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in rows]))
    text = format_table(rows) + "\n### Summary\n\n" + format_summary(rows) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
