"""The `genlab` command line: train, sample, eval, demo, families, bench.

`genlab.cli.app` holds the application and the entry point `main`; each command module
registers its commands when imported here.
"""

from genlab.cli import bench, run, tabular, tools
from genlab.cli.app import app, main

__all__ = ["app", "bench", "main", "run", "tabular", "tools"]
