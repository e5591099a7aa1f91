"""The Gaussian-mixture base of normalizing flows: its density against the analytic mixture,
its samples' moments, its EM initialisation, and a flow that learns clustered data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genlab.data.gmm import GaussianMixture
from genlab.density import standard_normal_log_prob
from genlab.flows import GaussianMixtureBase, NormalizingFlow, realnvp_vector


def _base(dim: int = 3, k: int = 4, seed: int = 0) -> GaussianMixtureBase:
    g = torch.Generator().manual_seed(seed)
    base = GaussianMixtureBase(dim, k).double()
    with torch.no_grad():
        base.logits.copy_(torch.randn(k, generator=g, dtype=torch.float64))
        base.means.copy_(3 * torch.randn(k, dim, generator=g, dtype=torch.float64))
        base.log_scales.copy_(0.5 * torch.randn(k, dim, generator=g, dtype=torch.float64))
    return base


def _analytic(base: GaussianMixtureBase) -> GaussianMixture:
    return GaussianMixture(
        base.means.detach(), base.log_scales.detach().exp(), base.logits.detach().softmax(0)
    )


def test_log_prob_is_the_analytic_mixture_density() -> None:
    base = _base()
    z = 4 * torch.randn(256, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        got = base.log_prob(z)
    torch.testing.assert_close(got, _analytic(base).log_prob(z), rtol=1e-12, atol=1e-12)


def test_density_integrates_to_one_in_one_dimension() -> None:
    base = _base(dim=1, k=3)
    t = torch.linspace(-30, 30, 200_001, dtype=torch.float64)
    with torch.no_grad():
        mass = torch.trapezoid(base.log_prob(t[:, None]).exp(), t)
    assert abs(float(mass) - 1.0) < 1e-9


def test_an_untrained_base_is_the_standard_normal() -> None:
    base = GaussianMixtureBase(5, 7).double()
    z = torch.randn(64, 5, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(base.log_prob(z), standard_normal_log_prob(z))


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sample_moments_match_the_mixture(temperature: float) -> None:
    base = _base(dim=2, k=3)
    with torch.no_grad():
        base.log_scales.sub_(math.log(1 / temperature))  # the tempered mixture's scales
        exact = _analytic(base)
        base.log_scales.add_(math.log(1 / temperature))
        g = torch.Generator().manual_seed(2)
        z = base.sample(200_000, generator=g, temperature=temperature)
    cov = torch.cov(z.T)
    torch.testing.assert_close(z.mean(0), exact.mean(), atol=0.03, rtol=0)
    torch.testing.assert_close(cov, exact.covariance(), atol=0.06, rtol=0.01)


def test_initialise_fits_separated_clusters() -> None:
    truth = GaussianMixture(
        torch.tensor([[-6.0, 0.0], [0.0, 5.0], [6.0, -1.0]]),
        torch.tensor([[0.5, 1.0], [1.0, 0.3], [0.7, 0.7]]),
        torch.tensor([0.5, 0.3, 0.2]),
    )
    z = truth.sample(3000, generator=torch.Generator().manual_seed(3)).float()
    base = GaussianMixtureBase(2, 3)
    base.initialise(z)
    order = base.means[:, 0].argsort()  # components sorted by their first coordinate
    with torch.no_grad():
        torch.testing.assert_close(base.means[order], truth.means.float(), atol=0.1, rtol=0)
        torch.testing.assert_close(
            base.log_scales[order].exp(), truth.stds.float(), atol=0.06, rtol=0
        )
        torch.testing.assert_close(
            base.logits.softmax(0)[order], truth.weights.float(), atol=0.03, rtol=0
        )
    assert bool(base.initialised)
    with pytest.raises(ValueError, match="first batch"):
        GaussianMixtureBase(2, 8).initialise(z[:5])


def test_flow_log_prob_is_the_base_at_the_latent_plus_the_log_determinant() -> None:
    torch.manual_seed(0)
    flow = realnvp_vector(3, n_couplings=2, hidden=8)
    base = _base()
    model = NormalizingFlow(flow, (3,), base=base).double().eval()
    x = torch.randn(32, 3, dtype=torch.float64)
    with torch.no_grad():
        z, logdet = model.transform(x)
        torch.testing.assert_close(model.log_prob(x), base.log_prob(z) + logdet)
    assert not bool(base.initialised)  # evaluation never fits the base


def test_a_mixture_base_flow_learns_separated_clusters_to_their_exact_density() -> None:
    """Three clusters: a Real NVP with a mixture base gets within 0.1 nats per example of the
    data's exact entropy on held-out points; with the standard normal base it cannot."""
    truth = GaussianMixture(
        torch.tensor([[-5.0, -2.0], [0.0, 4.0], [5.0, -2.0]]), 0.6, torch.tensor([0.4, 0.3, 0.3])
    )
    g = torch.Generator().manual_seed(4)
    train = truth.sample(2048, generator=g).float()
    test = truth.sample(2048, generator=g).float()
    entropy = float(-truth.log_prob(test).mean())
    nll = {}
    for name in ("normal", "mixture"):
        torch.manual_seed(0)
        base = GaussianMixtureBase(2, 3) if name == "mixture" else None
        model = NormalizingFlow(realnvp_vector(2, n_couplings=4, hidden=32), (2,), base=base)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(300):
            batch = train[torch.randint(0, 2048, (256,), generator=g)]
            loss = -model.log_prob(batch).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            nll[name] = float(-model.log_prob(test).mean())
    assert nll["mixture"] < entropy + 0.1
    assert nll["normal"] > nll["mixture"] + 0.2


CONFIG = """
[data]
name = "points"
path = "{path}"

[model]
family = "{family}"

[flow]
steps = 2
hidden = 16
base = "mixture"
components = {components}

[train]
steps = 40
batch_size = 64
val_every = 20
val_fraction = 0.15
checkpoint_every = 20
select = "best"
progress = false
"""


def _clusters_csv(tmp_path) -> object:  # type: ignore[no-untyped-def]
    """Three clusters in raw units (one column in the thousands), with a header."""
    g = torch.Generator().manual_seed(5)
    labels = torch.randint(0, 3, (300,), generator=g)
    centres = torch.tensor([[1000.0, 0.1], [3000.0, 0.5], [5000.0, 0.2]])
    x = centres[labels] + torch.randn(300, 2, generator=g) * torch.tensor([150.0, 0.03])
    path = tmp_path / "clusters.csv"
    rows = "\n".join(f"{a:.3f},{b:.5f}" for a, b in x.tolist())
    path.write_text("size,fraction\n" + rows + "\n")
    return path


@pytest.mark.parametrize("family", ["realnvp", "glow", "nice"])
def test_mixture_base_runs_train_load_sample_and_score_from_the_cli(
    family: str, tmp_path, capsys
) -> None:
    from cli_helpers import run_cli

    from genlab.runs import load_run

    cfg = tmp_path / "flow.toml"
    cfg.write_text(CONFIG.format(path=_clusters_csv(tmp_path).as_posix(), family=family,
                                 components=3))  # fmt: skip
    run_dir = tmp_path / "run"
    code, out, err = run_cli(["train", cfg, "--out", run_dir], capsys)
    assert code == 0, err
    run = load_run(run_dir)
    base = run.model.model.base
    assert bool(base.initialised) and not torch.allclose(base.means, torch.zeros_like(base.means))
    code, out, err = run_cli(["sample", run_dir, "--out", tmp_path / "s.csv", "-n", 50], capsys)
    assert code == 0, err
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "size,fraction" and len(lines) == 51
    values = np.array([[float(v) for v in r.split(",")] for r in lines[1:]])
    assert 500 < float(np.median(values[:, 0])) < 6000  # raw units, not standardised
    assert 0.0 < float(np.median(values[:, 1])) < 1.0
    code, out, err = run_cli(["eval", run_dir, "-n", 30, "--likelihood"], capsys)
    assert code == 0, err


def test_a_first_batch_smaller_than_the_mixture_is_refused(tmp_path, capsys) -> None:
    from cli_helpers import assert_one_line_error, run_cli

    cfg = tmp_path / "flow.toml"
    text = CONFIG.format(path=_clusters_csv(tmp_path).as_posix(), family="realnvp", components=100)
    cfg.write_text(text)
    code, _, err = run_cli(["train", cfg, "--out", tmp_path / "run"], capsys)
    assert_one_line_error(code, err, "flow.components = 100", "train.batch_size = 64")
