"""Shared test set-up: few threads per worker so `pytest -n 2` uses the two cores well."""

import torch

torch.set_num_threads(1)
