"""Amortized Gaussian inference: the VAE (Kingma & Welling 2014) and IWAE (Burda et al. 2016)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import Independent

from .. import objectives
from ..distributions import diagonal_gaussian
from ..networks import Decoder, Encoder
from ..options import OptionGroup, option
from .base import EncoderDecoderModel

IWAE_K = 5


@dataclass
class IWAEOptions(OptionGroup):
    title = "IWAE"
    iwae_k: int = option(IWAE_K, "importance samples in the IWAE training bound (model iwae)", minimum=1)


class VAE(EncoderDecoderModel):
    """q_φ(z | x) = N(μ_φ(x), diag exp ℓ_φ(x)) from one encoder pass (the specification (book/specification.md) §2).

    The ELBO uses the analytic KL to the standard-normal prior and a Monte Carlo reconstruction term.
    """

    def proposal(self, x: torch.Tensor) -> Independent:
        return diagonal_gaussian(*self.encoder(x))

    def elbo(self, x: torch.Tensor, n_samples: int = 1) -> torch.Tensor:
        return objectives.gaussian_elbo(self, x, *self.encoder(x), n_samples)


class IWAE(VAE):
    """The VAE's networks trained on the IWAE-K bound (K = ``iwae_k`` importance samples)."""

    Options = IWAEOptions

    def __init__(self, encoder: Encoder, decoder: Decoder, iwae_k: int = IWAE_K):
        super().__init__(encoder, decoder)
        self.iwae_k = iwae_k

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return -objectives.iwae_bound(self.log_weights(x, self.iwae_k)).mean()
