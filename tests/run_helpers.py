"""Helpers shared by the tests of run directories: a trained tiny run, a directory's state."""

from __future__ import annotations

from pathlib import Path


def train_tiny(root: Path, toml: str) -> Path:
    """Write `toml` to `root/c.toml`, train it into `root/run` and return that run."""
    from genlab.config import load_config
    from genlab.runs import train_run

    (root / "c.toml").write_text(toml)
    train_run(load_config(root / "c.toml"), root / "run", progress=False)
    return root / "run"


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes (the directory's exact state)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}  # fmt: skip
