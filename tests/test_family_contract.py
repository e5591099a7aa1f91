"""The one protocol every family in the table implements, checked on every family.

For each family of `genlab.families` and each kind of data it accepts (points and 8x8
digits): `loss(x, cond)` is per example, shape (B,), and finite; `sample(n)` has the data's
shape; `log_prob(x)` is per example and finite for every bound the family reports; the same
seeded generator gives the same samples; and a run directory round-trips (train a few steps
-> load -> sample equals the model that was trained). A family added to the table later is
picked up here without any change to this file, unless it is built on another run (it has
a `prepare` hook): `DEPENDENCIES` then says how to train that run for the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from genlab import families
from genlab.config import RunConfig
from genlab.families import IMAGE, VECTOR, Family
from genlab.runs import build_model, draw, load_run, make_data, train_run
from genlab.train.checkpoint import EMA_FILE, read_tensors

# Small settings of the built-in families, to keep the suite fast; a family not listed here
# is tested with its defaults.
SMALL: dict[str, dict[str, Any]] = {
    "diffusion": {"net": {"name": "mlp", "hidden": 32, "depth": 2}},
    "cnf": {"net": {"name": "mlp", "hidden": 16, "depth": 2},
            "cnf": {"rtol": 1e-2, "atol": 1e-2}},
    "nice": {"flow": {"steps": 2, "hidden": 16}},
    "realnvp": {"flow": {"steps": 2, "hidden": 8, "levels": 1, "checkerboard": 2}},
    "glow": {"flow": {"steps": 2, "hidden": 8, "levels": 1}},
    "vae": {"vae": {"hidden": 32, "latent_dim": 4}},
    "categorical-vae": {"categorical-vae": {"hidden": 32, "n_latents": 4, "n_classes": 4}},
    "vqvae": {"tokenizer": {"channels": 8, "vq": {"codebook_size": 16}}},
    "fsq": {"tokenizer": {"channels": 8, "fsq": {"levels": [4, 4]}}},
    "gumbel-vq": {"tokenizer": {"channels": 8, "gumbel": {"codebook_size": 16}}},
    "vqgan": {"tokenizer": {"channels": 8, "gan": {"disc_start": 0, "disc_channels": 8}}},
    "token-prior": {"token-prior": {"dim": 16, "depth": 1, "heads": 2, "medusa_heads": 2}},
    "kl-autoencoder": {"kl-autoencoder": {"channels": 8, "latent_dim": 2}},
    "latent-diffusion": {"net": {"name": "unet", "channels": 8, "channel_mult": [1, 2],
                                 "attention_levels": []}},
}  # fmt: skip


def _tokenizer(root: Path) -> dict[str, dict[str, Any]]:
    """A stand-in tokenizer run (tests/tokens/standin.py) for the token prior."""
    from tokens.standin import train_tokenizer

    return {"token-prior": {"tokenizer": str(train_tokenizer(root / "tokenizer"))}}


def _autoencoder(root: Path) -> dict[str, dict[str, Any]]:
    """A tiny KL autoencoder run (tests/latent/tiny.py) for latent diffusion."""
    from latent.tiny import train_autoencoder

    return {"latent-diffusion": {"autoencoder": str(train_autoencoder(root / "kl-ae", 20))}}


# Families built on another run: for each, a function that trains that run under a
# directory (once per module) and returns the options that name it.
DEPENDENCIES: dict[str, Callable[[Path], dict[str, dict[str, Any]]]] = {
    "token-prior": _tokenizer,
    "latent-diffusion": _autoencoder,
}
DATA = {
    VECTOR: {"name": "moons", "n_train": 256, "n_test": 64},
    IMAGE: {"name": "digits"},
}
TRAIN = {"steps": 3, "batch_size": 32, "warmup_steps": 1, "checkpoint_every": 3,
         "progress": False}  # fmt: skip
LIKELIHOOD = {"draws": 1, "k": 4, "elbo_draws": 1, "rtol": 1e-2, "atol": 1e-2, "n": 8}
CASES = [(f, kind) for f in families.all_families() for kind in f.data]


def config_of(family: Family, kind: str, root: Path | None = None) -> RunConfig:
    """The small config of a family; one built on another run is prepared (that run trained
    under `root` first), as `train_run` does."""
    values: dict[str, Any] = {"data": dict(DATA[kind]), "model": {"family": family.name},
                              "train": dict(TRAIN), "likelihood": dict(LIKELIHOOD)}  # fmt: skip
    if kind == IMAGE and family.dequantize_images:
        values["data"]["dequantize"] = True
    sections = [SMALL.get(family.name, {})]
    if family.prepare is not None:
        assert family.name in DEPENDENCIES, f"{family.name}: add its run to DEPENDENCIES"
        assert root is not None
        sections.append(DEPENDENCIES[family.name](root))
    for section, options in (item for s in sections for item in s.items()):
        values.setdefault(section, {}).update(options)
    cfg = RunConfig.from_dict(values)
    return cfg if family.prepare is None else family.prepare(cfg)


@pytest.fixture(scope="module")
def dependencies(tmp_path_factory):
    """The directory of the runs other families are built on, with the test families they
    need registered for the module."""
    from tokens.standin import FAMILY as STANDIN

    families.register(STANDIN, replace=True)
    yield tmp_path_factory.mktemp("dependencies")
    families.unregister(STANDIN.name)


@pytest.fixture(params=CASES, ids=[f"{f.name}-{kind}" for f, kind in CASES])
def case(request) -> tuple[Family, RunConfig]:
    family, kind = request.param
    root = request.getfixturevalue("dependencies") if family.prepare is not None else None
    return family, config_of(family, kind, root)


def test_loss_sample_and_log_prob_have_the_protocol_shapes(case) -> None:
    family, cfg = case
    data = make_data(cfg.data)
    torch.manual_seed(0)
    model = build_model(cfg, data.shape)
    x = data.train[:8]
    loss = model.loss(x, None)
    assert loss.shape == (8,) and bool(torch.isfinite(loss).all())
    loss.mean().backward()  # the loss trains the model
    assert any(p.grad is not None for p in model.parameters())
    model.eval()
    sample = model.sample(5, None, generator=torch.Generator().manual_seed(1))
    assert sample.shape == (5, *data.shape) and bool(torch.isfinite(sample).all())
    if family.likelihood is None:
        return
    for bound in family.likelihood(cfg.likelihood):
        g = torch.Generator().manual_seed(2)
        lp = model.log_prob(data.test[:4], None, generator=g, **bound.options)
        assert lp.shape == (4,) and bool(torch.isfinite(lp).all()), bound.name


def test_same_seed_same_samples(case) -> None:
    _, cfg = case
    data = make_data(cfg.data)
    model = build_model(cfg, data.shape).eval()
    a = model.sample(4, None, generator=torch.Generator().manual_seed(3))
    b = model.sample(4, None, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_run_directory_round_trips(case, tmp_path: Path) -> None:
    _, cfg = case
    result, data = train_run(cfg, tmp_path / "run", progress=False)
    assert result.steps == TRAIN["steps"]
    run = load_run(tmp_path / "run")
    assert run.config == cfg and run.shape == data.shape
    saved = read_tensors(run.checkpoint / EMA_FILE)  # the trained (EMA) weights
    state = run.model.state_dict()
    assert set(saved) == set(state)
    assert all(torch.equal(saved[k], state[k]) for k in saved)
    again = load_run(tmp_path / "run")
    x, y = draw(run, 4, seed=5), draw(again, 4, seed=5)
    assert x.shape == (4, *data.shape) and torch.equal(x, y)
