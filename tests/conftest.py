"""Shared test set-up: few threads per worker so `pytest -n 2` uses the two cores well, and
this folder on sys.path so test files can share helper modules (importlib import mode)."""

import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent))
