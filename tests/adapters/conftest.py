"""Module-scoped tiny random-weight diffusers UNets (see `diffusers_models`)."""

from __future__ import annotations

import pytest
from diffusers import UNet2DConditionModel, UNet2DModel
from diffusers_models import tiny_cond_unet, tiny_unet


@pytest.fixture(scope="module")
def unet() -> UNet2DModel:
    return tiny_unet()


@pytest.fixture(scope="module")
def cond_unet() -> UNet2DConditionModel:
    return tiny_cond_unet()
