"""Semi-amortized VAE (Kim, Wiseman, Miller, Sontag & Rush 2018).

The encoder's Gaussian λ₀ = (μ_φ(x), ℓ_φ(x)) is refined by T SVI steps on the ELBO, at training and
at test time; the proposal is the refined Gaussian λ_T. Training follows the paper's Algorithm 1:
the decoder receives ∂ELBO(λ_T, θ)/∂θ with λ_T held fixed, and the encoder receives the gradient of
ELBO(λ_T) through the unrolled steps (second-order terms included).

Defaults: T = 20 steps of SGD with momentum 0.5 as in SA-VAE; the step size 1e-3 is this project's
choice for the 28x28 MLP (the SA-VAE paper's lr = 1 with gradient clipping was tuned for text).
"""
from __future__ import annotations

import dataclasses

import torch

from ..networks import Decoder, Encoder
from ..distributions import diagonal_gaussian
from ..objectives import gaussian_elbo
from ..refinement import GaussianRefinement
from .base import frozen
from .vae import VAE

SVI_STEPS, SVI_LR, SVI_MOMENTUM = 20, 1e-3, 0.5


class SAVAE(VAE):
    """VAE whose proposal is the encoder's Gaussian after ``svi_steps`` SVI steps."""

    def __init__(self, encoder: Encoder, decoder: Decoder, svi_steps: int = SVI_STEPS, svi_lr: float = SVI_LR,
                 svi_momentum: float = SVI_MOMENTUM):
        super().__init__(encoder, decoder)
        self.refinement = GaussianRefinement(svi_steps, svi_lr, svi_momentum, update="sgd")

    def refined(self, x: torch.Tensor, differentiable: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """λ_T = (mean, log_var), (B, d) each; with ``differentiable``, a function of the encoder."""
        mean, log_var = self.encoder(x)
        refine = dataclasses.replace(self.refinement, differentiable=differentiable)
        with frozen(self.decoder):
            return refine(lambda m, v: gaussian_elbo(self, x, m, v), mean, log_var)

    def proposal(self, x: torch.Tensor):
        return diagonal_gaussian(*self.refined(x, differentiable=False))

    def elbo(self, x: torch.Tensor, n_samples: int = 1) -> torch.Tensor:
        with torch.no_grad():
            mean, log_var = self.refined(x, differentiable=False)
            return gaussian_elbo(self, x, mean, log_var, n_samples)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return -gaussian_elbo(self, x, *self.refined(x, differentiable=True)).mean()
