"""Normalizing flows: NICE, Real NVP and Glow layers, architectures and the model.

Every layer implements ``forward(x, cond=None) -> (z, logdet)`` and
``inverse(z, cond=None) -> x`` (:class:`FlowLayer`).
"""

from genlab.density import standard_normal_log_prob
from genlab.flows.architectures import glow_image, glow_vector, nice, realnvp_image, realnvp_vector
from genlab.flows.base import Compose, Flatten, FlowLayer, Squeeze, squeeze2d, unsqueeze2d
from genlab.flows.conditioners import ConvConditioner, MLPConditioner
from genlab.flows.coupling import (
    AdditiveCoupling,
    AffineCoupling,
    ChannelPartition,
    CheckerboardPartition,
    DiagonalScaling,
    Partition,
)
from genlab.flows.glow import ActNorm, InvConv1x1
from genlab.flows.mixture import GaussianMixtureBase
from genlab.flows.model import NormalizingFlow, dequantized_bpd
from genlab.flows.multiscale import MultiScale
from genlab.flows.preprocess import Logit

__all__ = [
    "GaussianMixtureBase",
    "FlowLayer",
    "Compose",
    "Squeeze",
    "Flatten",
    "squeeze2d",
    "unsqueeze2d",
    "Partition",
    "ChannelPartition",
    "CheckerboardPartition",
    "AdditiveCoupling",
    "AffineCoupling",
    "DiagonalScaling",
    "ConvConditioner",
    "MLPConditioner",
    "ActNorm",
    "InvConv1x1",
    "MultiScale",
    "Logit",
    "NormalizingFlow",
    "standard_normal_log_prob",
    "dequantized_bpd",
    "nice",
    "realnvp_vector",
    "glow_vector",
    "realnvp_image",
    "glow_image",
]
