"""`genlab demo` and `genlab families`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from genlab.cli.app import app, console


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("runs/demo"),
    quick: Annotated[bool, typer.Option("--quick", help="Tiny run for tests (< 30 s).")] = False,
) -> None:
    """Train flow matching, EDM and DDPM on two toy sets, a digits UNet and a text-to-image
    latent diffusion model, and write an HTML report."""
    from genlab.demo import run_demo

    index = run_demo(out, quick=quick, console=console)
    console.print(f"report: {index}")


@app.command("families")
def families_() -> None:
    """List the model families a config can name (`[model] family = ...`)."""
    from genlab import families

    table = Table(title="model families (model.family)")
    for col in ("family", "section", "data", "likelihood", "description"):
        table.add_column(col, overflow="fold")
    for f in families.all_families():
        bounds = "-" if f.likelihood is None else "yes"
        table.add_row(f.name, f.table, " / ".join(f.data), bounds, f.description)
    console.print(table)
