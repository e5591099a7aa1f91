"""The tiny autoencoder run every latent test builds on, trained once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from latent.tiny import train_autoencoder


@pytest.fixture(scope="session")
def ae_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_autoencoder(tmp_path_factory.mktemp("kl-autoencoder") / "ae")
