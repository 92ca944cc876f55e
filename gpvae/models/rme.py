"""Recursive mixture estimation (Kim & Pavlovic 2020, "Recursive Inference for Variational Autoencoders").

The inference model is a mixture grown one component at a time. Stage 1 trains an ordinary VAE encoder
h_1 (the shared encoder). Stage m adds a component encoder h_m (same architecture, its own weights,
initialized as a copy of h_{m−1}) and a mixing weight ε_m(x) = sigmoid(w_m · ψ_m(x) + b_m) from its
own trunk features ψ_m:

    q_m(z | x) = (1 − ε_m(x)) q_{m−1}(z | x) + ε_m(x) h_m(z | x),        q_1 = h_1,

and fits (h_m, ε_m) — earlier components frozen — to maximize the ELBO of the new mixture q_m; the
decoder keeps training on the same objective. The mixture density is exact and is the proposal.

Guarantee (tested): for a fixed decoder, the best ELBO of q_m is at least the ELBO of q_{m−1},
because ε_m = 0 gives q_m = q_{m−1}; fitting a new component from ε_m small therefore does not lower
the training objective. The ELBO of a mixture is computed without sampling the component,
ELBO(q) = Σ_k α_k E_{z ~ h_k}[log p(x, z) − log q(z | x)], so the α_k get exact gradients.

The paper derives the new component from the functional gradient of the ELBO at q_{m−1}, the
criterion E_{h}[log p(x, z) − log q_{m−1}(z | x)] = ELBO(h) + KL(h ‖ q_{m−1}); here the component and its
weight are fitted jointly on the mixture ELBO, the objective that criterion ascends.

Stages split the training epochs evenly: epoch e (0-based) of E is in stage 1 + ⌊e S / E⌋ with
S = min(M, E) stages (a run shorter than M epochs grows only E components).
Default M = ``mixture_components`` = 4, set without the paper's text at hand (closing note of issue 5).
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..distributions import DiagonalGaussianMixture
from ..networks import Decoder, Encoder
from .base import EncoderDecoderModel

MIXTURE_COMPONENTS = 4
INITIAL_WEIGHT = 0.1  # ε_m(x) of a new component before it is fitted


class RME(EncoderDecoderModel):
    """Mixture of ``mixture_components`` Gaussian encoders grown in stages (:meth:`begin_epoch`).

    A freshly built model uses all components (as after training); training starts from one.
    """

    def __init__(self, encoder: Encoder, decoder: Decoder, mixture_components: int = MIXTURE_COMPONENTS):
        super().__init__(encoder, decoder)
        self.new_encoders = nn.ModuleList([copy.deepcopy(encoder) for _ in range(mixture_components - 1)])
        self.gates = nn.ModuleList([nn.Linear(encoder.feature_dim, 1) for _ in range(mixture_components - 1)])
        for gate in self.gates:
            nn.init.zeros_(gate.weight)
            nn.init.constant_(gate.bias, math.log(INITIAL_WEIGHT / (1 - INITIAL_WEIGHT)))
        self.register_buffer("active_components", torch.tensor(mixture_components))

    @property
    def component_encoders(self) -> list[Encoder]:
        return [self.encoder, *self.new_encoders][:int(self.active_components)]

    def summary(self) -> dict:
        return {"active_components": int(self.active_components)}

    def begin_epoch(self, epoch: int, epochs: int) -> None:
        """Enter the stage of ``epoch``: add (copy-initialize) the components it needs, and let only the
        newest component, its weight and the decoder train."""
        n_stages = min(len(self.new_encoders) + 1, max(epochs, 1))
        stage = 1 + epoch * n_stages // max(epochs, 1)
        if epoch == 0:
            self.active_components.fill_(1)
        while int(self.active_components) < stage:
            newest = int(self.active_components)
            self.new_encoders[newest - 1].load_state_dict(self.component_encoders[-1].state_dict())
            self.active_components += 1
        newest = int(self.active_components) - 1
        for k, encoder in enumerate([self.encoder, *self.new_encoders]):
            encoder.requires_grad_(k == newest)
        for k, gate in enumerate(self.gates, start=1):
            gate.requires_grad_(k == newest)

    def proposal(self, x: torch.Tensor) -> DiagonalGaussianMixture:
        """q_M(z | x) with the weights of the recursion: α_1 = Π_{j≥2} (1 − ε_j), α_k = ε_k Π_{j>k} (1 − ε_j)."""
        means, log_vars, log_weights = [], [], None
        for k, encoder in enumerate(self.component_encoders):
            features = encoder.features(x)
            mean, log_var = encoder.head(features).chunk(2, dim=-1)
            means.append(mean)
            log_vars.append(log_var)
            if k == 0:
                log_weights = features.new_zeros(len(x), 1)
            else:
                logit = self.gates[k - 1](features)
                log_weights = torch.cat([log_weights + F.logsigmoid(-logit), F.logsigmoid(logit)], dim=-1)
        return DiagonalGaussianMixture(torch.stack(means, 1), torch.stack(log_vars, 1), log_weights)

    def elbo(self, x: torch.Tensor, n_samples: int = 1) -> torch.Tensor:
        """Σ_k α_k E_{h_k}[log p(x, z) − log q(z | x)] with ``n_samples`` draws per component: (B,)."""
        q = self.proposal(x)
        n_components = q.means.shape[1]
        means, stds = q.means.transpose(0, 1), (0.5 * q.log_vars).exp().transpose(0, 1)  # (K, B, d)
        noise = torch.randn(n_components, n_samples, *means.shape[1:], dtype=x.dtype, device=x.device)
        z = (means.unsqueeze(1) + stds.unsqueeze(1) * noise).transpose(0, 1)  # (S, K, B, d); component-major noise
        log_joint = self.log_joint(x, z.reshape(-1, *z.shape[2:])).view(n_samples, n_components, -1)
        log_w = log_joint - q.log_prob(z)  # (S, K, B)
        return (q.log_weights.exp().T * log_w.mean(0)).sum(0)
