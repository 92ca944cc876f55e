"""Flow-based inference models on the shared encoder trunk: Householder flow and IAF.

Both start from the encoder's diagonal Gaussian N(μ_φ(x), diag exp ℓ_φ(x)) and push its draws through
invertible steps whose parameters the encoder also produces (:mod:`gpvae.flow_layers`); the proposal's
density is exact, so the one evaluation protocol applies unchanged. Trained on the single-sample
ELBO, log p(x, z_T) − log r(z_T | x), as in both papers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..distributions import diagonal_gaussian
from ..flow_layers import FlowProposal, IAFStep, householder_reflection
from ..networks import Decoder, Encoder
from ..options import OptionGroup, option
from .base import EncoderDecoderModel

HOUSEHOLDER_STEPS = 10
IAF_STEPS, IAF_WIDTH = 2, 320


@dataclass
class HFOptions(OptionGroup):
    title = "Householder flow (HF)"
    householder_steps: int = option(HOUSEHOLDER_STEPS, "HF: Householder reflections T", minimum=1)


@dataclass
class IAFOptions(OptionGroup):
    title = "inverse autoregressive flow (IAF)"
    iaf_steps: int = option(IAF_STEPS, "IAF: autoregressive flow steps", minimum=1)
    iaf_width: int = option(IAF_WIDTH, "IAF: hidden units of each MADE step (and of the encoder's context)", minimum=1)


def _reverse(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reverse the order of the latent dimensions (a permutation: log|det| = 0)."""
    return z.flip(-1), z.new_zeros(z.shape[:-1])


class HouseholderFlowVAE(EncoderDecoderModel):
    """VAE + Householder flow (Tomczak & Welling 2016): z_T = H_T ⋯ H_1 z_0, z_0 ~ N(μ_φ(x), diag σ²_φ(x)).

    The first Householder vector is a linear map of the encoder's last hidden layer, v_1 = W_1 ψ(x) + b_1,
    and each next one a linear map of the previous, v_{t+1} = W_{t+1} v_t + b_{t+1} (the paper's
    construction). Every step is orthogonal, so the flow is volume preserving and r(z_T | x) is a
    Gaussian with the full covariance H Σ Hᵀ. Default T = ``householder_steps`` = 10, the larger of the
    two settings of the paper's MNIST experiments (T = 1 and T = 10).
    """

    Options = HFOptions

    def __init__(self, encoder: Encoder, decoder: Decoder, householder_steps: int = HOUSEHOLDER_STEPS):
        super().__init__(encoder, decoder)
        d = self.latent_dim
        self.vector_maps = nn.ModuleList([nn.Linear(encoder.feature_dim, d)]
                                         + [nn.Linear(d, d) for _ in range(householder_steps - 1)])

    def householder_vectors(self, features: torch.Tensor) -> list[torch.Tensor]:
        """v_1..v_T, each (B, d), from the trunk features (B, p)."""
        vectors, v = [], features
        for linear in self.vector_maps:
            v = linear(v)
            vectors.append(v)
        return vectors

    def proposal(self, x: torch.Tensor) -> FlowProposal:
        features, mean, log_var = self.encoder.encode(x)
        steps = []
        for v in self.householder_vectors(features):
            reflect = householder_reflection(v)
            steps.append((reflect, lambda z, reflect=reflect: reflect(z)[0]))  # a reflection is its own inverse
        return FlowProposal(diagonal_gaussian(mean, log_var), steps)


class IAFVAE(EncoderDecoderModel):
    """VAE + inverse autoregressive flow (Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling 2016).

    The encoder trunk gives the initial Gaussian (μ, σ) and a context h = W ψ(x) + b of ``iaf_width``
    units; ``iaf_steps`` MADE steps (:class:`~gpvae.flow_layers.IAFStep`, ``iaf_width`` hidden units, each
    conditioned on h) follow, with the order of the latent dimensions reversed between steps.
    Defaults: 2 steps of width 320, the paper's smallest MNIST IAF (its Table 2 goes up to 8 steps of
    width 1920, on a ResNet VAE; here the network is the shared MLP).
    """

    Options = IAFOptions

    def __init__(self, encoder: Encoder, decoder: Decoder, iaf_steps: int = IAF_STEPS, iaf_width: int = IAF_WIDTH):
        super().__init__(encoder, decoder)
        self.context = nn.Linear(encoder.feature_dim, iaf_width)
        self.flow = nn.ModuleList([IAFStep(self.latent_dim, iaf_width) for _ in range(iaf_steps)])

    def proposal(self, x: torch.Tensor) -> FlowProposal:
        features, mean, log_var = self.encoder.encode(x)
        context = self.context(features)
        steps = []
        for index, step in enumerate(self.flow):
            if index > 0:
                steps.append((_reverse, lambda z: z.flip(-1)))
            steps.append((lambda z, step=step: step(z, context), lambda z, step=step: step.inverse(z, context)))
        return FlowProposal(diagonal_gaussian(mean, log_var), steps)
