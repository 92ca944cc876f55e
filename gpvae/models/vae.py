"""Amortized Gaussian inference: the VAE (Kingma & Welling 2014) and IWAE (Burda et al. 2016)."""
from __future__ import annotations

import torch
from torch.distributions import Independent, Normal

from .. import objectives
from ..networks import Decoder, Encoder
from .base import LatentVariableModel


def diagonal_gaussian(mean: torch.Tensor, log_var: torch.Tensor) -> Independent:
    """N(mean, diag exp log_var) with batch shape (B,) and event shape (d,)."""
    return Independent(Normal(mean, (0.5 * log_var).exp(), validate_args=False), 1, validate_args=False)


class VAE(LatentVariableModel):
    """q_φ(z | x) = N(μ_φ(x), diag exp ℓ_φ(x)) from one encoder pass (METHOD.md §2).

    The ELBO uses the analytic KL to the standard-normal prior and a Monte Carlo reconstruction term.
    """

    def __init__(self, encoder: Encoder, decoder: Decoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = encoder.latent_dim

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.decoder.log_prob(x, z)

    def proposal(self, x: torch.Tensor) -> Independent:
        return diagonal_gaussian(*self.encoder(x))

    def elbo(self, x: torch.Tensor, n_samples: int = 1) -> torch.Tensor:
        mean, log_var = self.encoder(x)
        z = diagonal_gaussian(mean, log_var).rsample((n_samples,))
        return self.log_likelihood(x, z).mean(0) - objectives.gaussian_kl_to_standard(mean, log_var)


class IWAE(VAE):
    """The VAE's networks trained on the IWAE-K bound (K = ``iwae_k`` importance samples)."""

    def __init__(self, encoder: Encoder, decoder: Decoder, iwae_k: int = 5):
        super().__init__(encoder, decoder)
        self.iwae_k = iwae_k

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return -objectives.iwae_bound(self.log_weights(x, self.iwae_k)).mean()
