"""The names configs accept are exactly the keys of the tables of objects they stand for."""

from __future__ import annotations

import pytest

from genlab import registry
from genlab.data.toy import TOY_DATASETS
from genlab.diffusion.objectives import NOISE_DISTRIBUTIONS, WEIGHTINGS
from genlab.diffusion.parameterization import PARAMETERIZATIONS
from genlab.diffusion.paths import PATHS
from genlab.diffusion.presets import PRESETS
from genlab.diffusion.sample import SAMPLERS
from genlab.diffusion.schedules import GRIDS
from genlab.text.encoder import ENCODERS

TABLES = {
    "SAMPLERS": SAMPLERS, "GRIDS": GRIDS, "PRESETS": PRESETS, "PATHS": PATHS,
    "PARAMETERIZATIONS": PARAMETERIZATIONS, "NOISE_DISTRIBUTIONS": NOISE_DISTRIBUTIONS,
    "WEIGHTINGS": WEIGHTINGS, "TOY_DATASETS": TOY_DATASETS, "TEXT_ENCODERS": ENCODERS,
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(TABLES))
def test_names_are_the_keys_of_their_table(name: str) -> None:
    assert tuple(getattr(registry, name)) == tuple(TABLES[name])


def test_the_fitted_schedule_is_the_grid_search_name() -> None:
    from genlab.diffusion.grid_search import FITTED

    assert registry.SCHEDULES == (*GRIDS, FITTED)


def test_data_set_names_are_unique() -> None:
    assert len(set(registry.DATASETS)) == len(registry.DATASETS)
