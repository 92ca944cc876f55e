"""Inference models behind one interface (:class:`LatentVariableModel`), and their registry."""
from __future__ import annotations

from ..networks import build_networks
from .base import EncoderDecoderModel, LatentVariableModel
from .flows import HouseholderFlowVAE, IAFVAE
from .gprf import GPRF
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
    return MODELS[config.model].from_config(encoder, decoder, config, n_train)


__all__ = ["MODELS", "LatentVariableModel", "EncoderDecoderModel", "LinearGaussian", "VAE", "IWAE", "SAVAE", "GPRF",
           "HouseholderFlowVAE", "IAFVAE", "VLAE", "RME", "build_model", "default_network"]
