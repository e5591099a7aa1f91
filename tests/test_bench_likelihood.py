"""`genlab bench likelihood`: the quick ring table and the change-of-variables helpers."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.bench import likelihood as lk
from genlab.data.gmm import GaussianMixture

LOG2_17 = math.log2(17)


def test_uniform_density_gives_log2_17_in_every_representation() -> None:
    d = 64
    # uniform on [0,1)^D: -ln p = 0, scale 1 (the anchor's formula)
    assert lk.discrete_bpd(0.0, d, 17, scale=1.0) == pytest.approx(LOG2_17, abs=1e-12)
    # uniform on [-1,1]^D (y = 2x - 1): -ln p = D ln 2, scale 2
    assert lk.discrete_bpd(d * math.log(2.0), d, 17, scale=2.0) == pytest.approx(LOG2_17, abs=1e-12)
    # the same through the library's own helpers, per example
    from genlab.data.dequantize import bits_per_dim as flow_bpd
    from genlab.diffusion.likelihood import bits_per_dim as diffusion_bpd

    assert flow_bpd(0.0, d, 17) == pytest.approx(LOG2_17, abs=1e-12)
    v = torch.randint(0, 17, (5, d)).double()
    uniform_pm1 = lambda x: torch.full((x.shape[0],), -d * math.log(2.0), dtype=x.dtype)  # noqa: E731
    got = diffusion_bpd(uniform_pm1, v, 17, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(got, torch.full((5,), LOG2_17, dtype=torch.float64))


def test_uniform_model_through_the_represented_adapter() -> None:
    """A 'model' with the uniform density on [-1,1]^D, evaluated by the same code path as the
    diffusion / CNF rows, gives exactly log2 17 bpd on the discrete data."""
    d = 64
    ds = lk.Dataset("digits", torch.zeros(2, d), torch.zeros(2, d),
                    torch.randint(0, 17, (7, 1, 8, 8)).float(), d, 17)  # fmt: skip

    def uniform(_m: torch.nn.Module, y: torch.Tensor, _g: torch.Generator) -> torch.Tensor:
        assert float(y.min()) >= -1.0 and float(y.max()) < 1.0
        return torch.full((y.shape[0],), -d * math.log(2.0), dtype=torch.float64)

    model = lk.Represented(torch.nn.Identity(), d, 17, uniform)
    bpd = lk._ode_metric(ds, {})(model, ds.test, lk.TEST_SEEDS[:2])
    torch.testing.assert_close(bpd, torch.full((7,), LOG2_17, dtype=torch.float64))


def test_categorical_baseline_matches_the_anchor() -> None:
    ds = lk.load_data("digits")
    cat = lk.categorical_bpd(torch.cat([ds.train, ds.val]), ds.test, 17)
    assert cat == pytest.approx(2.431434, abs=1e-5)


def test_quick_ring_table(tmp_path) -> None:
    torch.set_num_threads(1)
    rows = lk.run("ring", quick=True, cache=tmp_path, log=lambda _m: None)
    names = [r.family for r in rows]
    assert names[0] == "exact mixture"
    for fam in lk.FAMILIES:
        expected = ["vae (ELBO)"] if fam == "vae" else [fam]
        for name in expected:
            assert name in names, name
    assert any(n.startswith("vae (IWAE k=") for n in names)
    for r in rows:
        assert math.isfinite(r.test), r
        assert r.unit == "nats"
        if r.family != "exact mixture":
            assert r.params > 0 and r.steps > 0
            assert math.isfinite(r.val) and math.isfinite(r.train_cpu_s)
            assert math.isfinite(r.train_wall_s)
    # the exact-mixture row is the mixture's own NLL on the same test points
    ds = lk.load_data("ring", quick=True)
    gmm = GaussianMixture.ring()
    exact = float(-gmm.log_prob(ds.test.double()).mean())
    assert rows[0].test == pytest.approx(exact, rel=0, abs=1e-12)
    # the cache returns the same rows without training
    again = lk.run("ring", quick=True, families=["nice"], cache=tmp_path, log=lambda _m: None)
    assert again[1].test == next(r.test for r in rows if r.family == "nice")


def test_cli_bench_likelihood_writes_json(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from genlab.cli import app

    out = tmp_path / "table.json"
    args = ["bench", "likelihood", "--data", "ring", "--quick", "--families", "nice,glow",
            "--cache", "", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert [r["family"] for r in rows] == ["exact mixture", "nice", "glow"]
    assert all(math.isfinite(r["test"]) for r in rows)
