"""Evaluation: two-sample distances and density-based checks for generated samples."""

from genlab.eval.metrics import (
    energy_distance,
    log_density_gap,
    mmd_rbf,
    sample_metrics,
    sliced_wasserstein,
)

__all__ = [
    "energy_distance",
    "log_density_gap",
    "mmd_rbf",
    "sample_metrics",
    "sliced_wasserstein",
]
