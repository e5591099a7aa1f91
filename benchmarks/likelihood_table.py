"""Cross-family likelihood table (thin wrapper of ``genlab.bench.likelihood``).

Same as ``genlab bench likelihood``; see that module's docstring for the protocol. With
``--markdown`` it also prints the table as markdown (as in the issue notes).

    PYTHONPATH=src .venv/bin/python benchmarks/likelihood_table.py --data digits \
        [--configs configs/likelihood] [--families edm,glow,...] [--max-seconds S] \
        [--quick] [--out table.json] [--markdown]
"""

from __future__ import annotations

import argparse

from genlab.bench import likelihood


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits", choices=list(likelihood.DATA))
    p.add_argument("--configs", default=likelihood.DEFAULT_CONFIGS)
    p.add_argument("--families", default="")
    p.add_argument("--max-seconds", type=float, default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--cache", default="runs/bench-likelihood")
    p.add_argument("--out", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--markdown", action="store_true", help="also print a markdown table")
    a = p.parse_args()
    rows = likelihood.main(
        a.data, configs=a.configs, families=[f for f in a.families.split(",") if f] or None,
        max_seconds=a.max_seconds, overrides=a.overrides, quick=a.quick, cache=a.cache,
        out=a.out, threads=a.threads,
    )  # fmt: skip
    if a.markdown:
        print(likelihood.to_markdown(rows))


if __name__ == "__main__":
    main()
