"""The `genlab` command line: train, sample, eval, generate, encode, demo, families, bench.

`genlab.cli.app` holds the application and the entry point `main`; each command module
registers its commands when imported here.
"""

from genlab.cli import bench, decode, generate, run, tabular, tokens, tools
from genlab.cli.app import app, main

__all__ = ["app", "bench", "decode", "generate", "main", "run", "tabular", "tokens", "tools"]
