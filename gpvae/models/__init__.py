"""Inference models behind one interface (:class:`LatentVariableModel`), and their registry."""
from __future__ import annotations

from ..networks import build_networks
from .base import EncoderDecoderModel, LatentVariableModel
from .flows import HouseholderFlowVAE, IAFVAE
from .gp import GPRF
from .rme import RME
from .savae import SAVAE
from .linear_gaussian import LinearGaussian
from .vae import IWAE, VAE
from .vlae import VLAE

MODELS = {"vae": VAE, "iwae": IWAE, "savae": SAVAE, "gp": GPRF, "hf": HouseholderFlowVAE, "iaf": IAFVAE,
          "vlae": VLAE, "rme": RME}


def default_network(image_shape: tuple[int, int, int], likelihood: str) -> str:
    """``mlp`` for binary 28x28 images (the IWAE paper's network), ``conv`` otherwise."""
    return "mlp" if likelihood == "bernoulli" and image_shape[1:] == (28, 28) else "conv"


def build_model(config, image_shape: tuple[int, int, int], likelihood: str, n_train: int = 1) -> LatentVariableModel:
    """The model ``config.model`` with the networks ``config.network`` for images of ``image_shape``;
    ``n_train`` (the training-set size) scales the GP's KL term."""
    network = config.network if config.network != "auto" else default_network(image_shape, likelihood)
    encoder, decoder = build_networks(network, image_shape, likelihood, config.latent_dim)
    if config.model == "iwae":
        return IWAE(encoder, decoder, iwae_k=config.iwae_k)
    if config.model == "savae":
        return SAVAE(encoder, decoder, svi_steps=config.svi_steps, svi_lr=config.svi_lr, svi_momentum=config.svi_momentum)
    if config.model == "gp":
        return GPRF(encoder, decoder, n_train, n_inducing=config.inducing, kernel=config.kernel,
                    variance_link=config.variance_link, objective=config.objective, variational=config.variational)
    if config.model == "hf":
        return HouseholderFlowVAE(encoder, decoder, householder_steps=config.householder_steps)
    if config.model == "iaf":
        return IAFVAE(encoder, decoder, iaf_steps=config.iaf_steps, iaf_width=config.iaf_width)
    if config.model == "vlae":
        return VLAE(encoder, decoder, laplace_iterations=config.laplace_iterations)
    if config.model == "rme":
        return RME(encoder, decoder, mixture_components=config.mixture_components, schedule=config.mixture_schedule)
    return MODELS[config.model](encoder, decoder)


__all__ = ["MODELS", "LatentVariableModel", "EncoderDecoderModel", "LinearGaussian", "VAE", "IWAE", "SAVAE", "GPRF",
           "HouseholderFlowVAE", "IAFVAE", "VLAE", "RME", "build_model", "default_network"]
