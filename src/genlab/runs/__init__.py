"""Runs: data and model built from a `RunConfig`, trained into a run directory, loaded back,
sampled and evaluated (`data`, `run`, `sampling`, `evaluate`)."""

from genlab.runs.data import Data, gmm_ring, make_data, split_holdout
from genlab.runs.evaluate import evaluate, evaluate_images, test_labels
from genlab.runs.run import (
    CONFIG_FILE,
    METRICS_FILE,
    Run,
    build_model,
    genlab_version,
    load_run,
    read_run_config,
    run_record,
    train_run,
)
from genlab.runs.sampling import SampleSpec, draw, sampling_record

__all__ = [
    "CONFIG_FILE",
    "METRICS_FILE",
    "Data",
    "Run",
    "SampleSpec",
    "build_model",
    "draw",
    "evaluate",
    "evaluate_images",
    "genlab_version",
    "gmm_ring",
    "load_run",
    "make_data",
    "read_run_config",
    "run_record",
    "sampling_record",
    "split_holdout",
    "test_labels",
    "train_run",
]
