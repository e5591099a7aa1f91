"""Runs: data and model built from a `RunConfig`, trained into a run directory, loaded back,
sampled and evaluated (`data`, `record`, `run`, `sampling`, `evaluate`).

Names are imported on first use: `genlab.runs.record` (the run directory's config) loads
no torch, so the command line checks a run before loading a model."""

from typing import TYPE_CHECKING

from genlab._lazy import lazy_exports

_EXPORTS = {
    "Data": "genlab.runs.data",
    "gmm_ring": "genlab.runs.data",
    "make_data": "genlab.runs.data",
    "split_holdout": "genlab.runs.data",
    "evaluate": "genlab.runs.evaluate",
    "evaluate_images": "genlab.runs.evaluate",
    "test_labels": "genlab.runs.evaluate",
    "CONFIG_FILE": "genlab.runs.record",
    "METRICS_FILE": "genlab.runs.record",
    "genlab_version": "genlab.runs.record",
    "read_run_config": "genlab.runs.record",
    "run_record": "genlab.runs.record",
    "Run": "genlab.runs.run",
    "build_model": "genlab.runs.run",
    "load_run": "genlab.runs.run",
    "train_run": "genlab.runs.run",
    "SampleSpec": "genlab.runs.sampling",
    "draw": "genlab.runs.sampling",
    "sampling_record": "genlab.runs.sampling",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from genlab.runs.data import Data as Data
    from genlab.runs.data import gmm_ring as gmm_ring
    from genlab.runs.data import make_data as make_data
    from genlab.runs.data import split_holdout as split_holdout
    from genlab.runs.evaluate import evaluate as evaluate
    from genlab.runs.evaluate import evaluate_images as evaluate_images
    from genlab.runs.evaluate import test_labels as test_labels
    from genlab.runs.record import CONFIG_FILE as CONFIG_FILE
    from genlab.runs.record import METRICS_FILE as METRICS_FILE
    from genlab.runs.record import genlab_version as genlab_version
    from genlab.runs.record import read_run_config as read_run_config
    from genlab.runs.record import run_record as run_record
    from genlab.runs.run import Run as Run
    from genlab.runs.run import build_model as build_model
    from genlab.runs.run import load_run as load_run
    from genlab.runs.run import train_run as train_run
    from genlab.runs.sampling import SampleSpec as SampleSpec
    from genlab.runs.sampling import draw as draw
    from genlab.runs.sampling import sampling_record as sampling_record
