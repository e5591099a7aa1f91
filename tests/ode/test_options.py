"""ODEOptions: one validated value of the divergence estimator and the ODE solver."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from genlab.ode import ODEOptions
from genlab.ode.options import ADAPTIVE_METHODS, FIXED_GRID_METHODS


def test_defaults_and_solver_options() -> None:
    ode = ODEOptions()
    assert (ode.trace, ode.probes, ode.probe) == ("exact", 1, "rademacher")
    assert (ode.rtol, ode.atol, ode.method, ode.step_size) == (1e-5, 1e-5, "dopri5", None)
    assert ode.solver_options() is None
    assert ODEOptions(method="rk4", step_size=0.125).solver_options() == {"step_size": 0.125}
    for method in ADAPTIVE_METHODS:
        assert ODEOptions(method=method).solver_options() is None
    for method in FIXED_GRID_METHODS:
        assert ODEOptions(method=method, step_size=0.5).solver_options() == {"step_size": 0.5}


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            {"method": "rk5"},
            "'rk5' is not one of adaptive_heun, bosh3, dopri5, dopri8, euler, "
            "explicit_adams, fehlberg2, heun2, heun3, implicit_adams, midpoint, rk4",
        ),
        ({"method": "rk4"}, "method 'rk4' is fixed-grid: set step_size"),
        ({"step_size": 0.1}, "step_size is only for fixed-grid methods, not 'dopri5'"),
        ({"method": "euler", "step_size": 2.0}, "less than or equal to 1"),
        ({"method": "euler", "step_size": 0.0}, "greater than 0"),
        ({"trace": "hutch"}, "'exact', 'hutchinson' or 'auto'"),
        ({"probe": "normal"}, "'rademacher' or 'gaussian'"),
        ({"probes": 0}, "greater than or equal to 1"),
        ({"rtol": 0.0}, "greater than 0"),
        ({"n_probes": 2}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_settings_are_refused_with_one_message(kw: dict, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        ODEOptions(**kw)
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)


def test_frozen_and_subclassable() -> None:
    ode = ODEOptions()
    with pytest.raises(ValidationError):
        ode.rtol = 1e-3  # type: ignore[misc]
    assert ode == ODEOptions() and hash(ode) == hash(ODEOptions())

    class Training(ODEOptions):
        trace: str = "hutchinson"  # type: ignore[assignment]

    assert Training().trace == "hutchinson"
    with pytest.raises(ValidationError, match="fixed-grid: set step_size"):
        Training(method="rk4")
