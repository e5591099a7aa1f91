"""Variational autoencoders: Gaussian latents (Kingma & Welling 2014) and categorical latents
trained with Gumbel-softmax, straight-through or score-function gradients."""

from genlab.autoencoders.categorical import (
    CategoricalVAE,
    categorical_kl_uniform,
    gumbel_softmax,
    gumbel_temperature,
    leave_one_out_baseline,
    reinforce_surrogate,
    sample_gumbel,
)
from genlab.autoencoders.decoders import (
    BernoulliLikelihood,
    DiscretizedLogisticLikelihood,
    GaussianLikelihood,
    Likelihood,
)
from genlab.autoencoders.vae import VAE, LatentVAE, mlp

__all__ = [
    "VAE",
    "BernoulliLikelihood",
    "CategoricalVAE",
    "DiscretizedLogisticLikelihood",
    "GaussianLikelihood",
    "LatentVAE",
    "Likelihood",
    "categorical_kl_uniform",
    "gumbel_softmax",
    "gumbel_temperature",
    "leave_one_out_baseline",
    "mlp",
    "reinforce_surrogate",
    "sample_gumbel",
]
