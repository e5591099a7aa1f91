"""Ordinary differential equations with a log-density: the solver settings (`ODEOptions`,
torch-free) here; the joint state and log-density solve in `genlab.ode.integrate`."""

from genlab.ode.options import ODEOptions

__all__ = ["ODEOptions"]
