"""Cross-family likelihood table (thin wrapper of ``genlab.bench.likelihood``).

Same as ``genlab bench likelihood``; see that module's docstring for the protocol.

    PYTHONPATH=src .venv/bin/python benchmarks/likelihood_table.py --data digits \
        [--quick] [--max-seconds S] [--families edm,glow,...] [--out table.json]
"""

from __future__ import annotations

import argparse

from genlab.bench import likelihood


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits", choices=["digits", "ring"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--max-seconds", type=float, default=None)
    p.add_argument("--families", default="")
    p.add_argument("--cache", default="runs/bench-likelihood", help="'' disables the cache")
    p.add_argument("--out", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--markdown", action="store_true", help="also print a markdown table")
    a = p.parse_args()
    fams = [f for f in a.families.split(",") if f] or None
    rows = likelihood.main(
        a.data,
        quick=a.quick,
        families=fams,
        max_seconds=a.max_seconds,
        cache=a.cache or None,
        out=a.out,
        threads=a.threads,
    )
    if a.markdown:
        print(likelihood.to_markdown(rows))


if __name__ == "__main__":
    main()
