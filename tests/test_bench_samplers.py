"""`genlab bench samplers`: public-API cells on exact mixture beds, next to the references."""

from __future__ import annotations

import math

import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli

from genlab.bench import samplers as bench
from genlab.bench.beds import bed, beds, mixture, problem, reference_solution
from genlab.diffusion.samplers import euler
from genlab.diffusion.schedules import karras


def test_beds_span_dimensions_components_and_widths() -> None:
    names = [b.name for b in beds()]
    assert len(names) == len(set(names)) == 20
    gmms = [mixture(n.split("/")[0]) for n in names[::2]]
    assert {g.dim for g in gmms} == {2, 16, 64, 256}
    assert {g.num_components for g in gmms} >= {4, 16, 64}
    assert {round(float(g.stds[0, 0]), 3) for g in gmms} >= {0.1, 0.5, 1.0}
    with pytest.raises(ValueError, match="setting"):
        bed("ring8_D2/ve")
    with pytest.raises(ValueError, match="unknown mixture"):
        bed("ring/sd")


def test_reference_endpoint_is_exact_for_one_gaussian() -> None:
    """One Gaussian N(m, s^2): the PF-ODE maps x(sigma) to m + s (x - m) / sqrt(s^2 + sigma^2)."""
    g = mixture("gmm4_D2_s0.1")
    one = type(g)(g.means[:1], 0.1)
    x = torch.tensor([[3.0, -2.0], [0.5, 0.1]], dtype=torch.float64)
    m = one.means[0]
    expected = m + 0.1 * (x - m) / math.sqrt(0.01 + 80.0**2)
    torch.testing.assert_close(
        reference_solution(one, x, 80.0, tol=1e-8), expected, rtol=1e-6, atol=1e-7
    )


def test_quick_run_measures_the_public_calls() -> None:
    rows = bench.run(quick=True)
    assert {(r.sampler, r.grid) for r in rows} == {
        ("euler", "karras"), ("unipc(final_step=extrapolate)", "karras"),
        ("unipc(final_step=extrapolate)", "fitted(rmse, P=256)"),
    }  # fmt: skip
    assert all(math.isfinite(r.rmse) and r.calls <= r.nfe for r in rows)
    b = bed("ring8_D2/edm")
    x, ref = problem(b, 256, tol=1e-8)
    by_hand = euler(b.gmm, x, karras(5, b.sigma_min, b.sigma_max))
    row = next(r for r in rows if r.sampler == "euler" and r.nfe == 5)
    assert math.isclose(row.rmse, float((by_hand - ref).pow(2).mean().sqrt()), rel_tol=1e-9)
    refs = {"ring8_D2/edm": {5: (2 * row.rmse, "kd_lms")}}
    best5 = min(r.rmse for r in rows if r.nfe == 5)
    (s5,) = [s for s in bench.summary(rows, refs) if s["nfe"] == 5]
    assert s5["rmse"] == best5 and math.isclose(s5["ratio"], best5 / (2 * row.rmse))
    assert "kd_lms" in bench.format_summary(rows, refs)


def test_references_cover_every_bed_at_nfe_10_and_20() -> None:
    refs = bench.references()
    for b in beds():
        assert {10, 20} <= set(refs[b.name]), b.name
        assert all(v[0] > 0 and v[1] for v in refs[b.name].values())


def test_cli_rejects_unknown_beds(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["bench", "samplers", "--beds", "ring8_D2/ve"], capsys)
    assert_one_line_error(code, err, "--beds", "setting")
