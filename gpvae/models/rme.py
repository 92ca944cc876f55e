"""Recursive mixture estimation (Kim & Pavlovic 2020, "Recursive Inference for Variational Autoencoders").

The inference model is a mixture of M Gaussian component encoders h_1..h_M (the shared encoder and
copies of its architecture with their own, independently initialized weights), built recursively with mixing weights
ε_m(x) = sigmoid(w_m · ψ_m(x) + b_m) from each new component's own trunk features ψ_m:

    q_m(z | x) = (1 − ε_m(x)) q_{m−1}(z | x) + ε_m(x) h_m(z | x),        q_1 = h_1,

and each new component and its weight are fitted to maximize the ELBO of the mixture q_m with
q_{m−1} held fixed; the decoder trains on the ELBO of the whole mixture q_M, which is the proposal
(exact density). Two schedules (``mixture_schedule``):

* ``recursive`` (default): every training step fits every component to its own partial mixture —
  h_1 to ELBO(q_1) (a VAE encoder), h_m and ε_m to ELBO(q_m) with h_1..h_{m−1}, ε_2..ε_{m−1} detached —
  so all components stay matched to the current decoder.
* ``staged``: components are grown over training; the epochs are split evenly into S = min(M, E)
  stages (epoch e of E is in stage 1 + ⌊e S / E⌋); stage m copies h_{m−1} into h_m and trains only
  (h_m, ε_m) and the decoder, earlier components frozen.

Guarantee (tested): for a fixed decoder, the best ELBO of q_m is at least the ELBO of q_{m−1},
because ε_m = 0 gives q_m = q_{m−1}; fitting a new component (from ε_m small) does not lower the
objective. The ELBO of a mixture is computed without sampling the component,
ELBO(q) = Σ_k α_k E_{z ~ h_k}[log p(x, z) − log q(z | x)], so the α_k get exact gradients.

The paper derives each new component from the functional gradient of the ELBO at q_{m−1},
E_h[log p(x, z) − log q_{m−1}(z | x)] = ELBO(h) + KL(h ‖ q_{m−1}); here the component and its weight
are fitted jointly on the mixture ELBO, the objective that criterion ascends.
Default M = ``mixture_components`` = 4: a choice of this library (the paper's own value is not in its abstract).
"""
from __future__ import annotations

import contextlib
import copy
import math

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..distributions import DiagonalGaussianMixture
from ..networks import Decoder, Encoder
from ..options import OptionGroup, option
from .base import EncoderDecoderModel, frozen

MIXTURE_COMPONENTS = 4
SCHEDULES = ("recursive", "staged")
MIXTURE_SCHEDULE = "recursive"
INITIAL_WEIGHT = 0.1  # ε_m(x) of a new component before it is fitted


@dataclass
class RMEOptions(OptionGroup):
    title = "RME"
    mixture_components: int = option(MIXTURE_COMPONENTS, "RME: mixture components", minimum=1)
    mixture_schedule: str = option(MIXTURE_SCHEDULE, "RME: fit every component to its partial mixture at every step, "
                                   "or grow one component per training stage", choices=SCHEDULES)


class RME(EncoderDecoderModel):
    """Mixture of ``mixture_components`` Gaussian encoders, fitted by the ``mixture_schedule`` of the module
    docstring. A freshly built model uses all components (a ``staged`` run starts from one)."""

    Options = RMEOptions

    def __init__(self, encoder: Encoder, decoder: Decoder, mixture_components: int = MIXTURE_COMPONENTS,
                 mixture_schedule: str = MIXTURE_SCHEDULE):
        super().__init__(encoder, decoder)
        if mixture_schedule not in SCHEDULES:
            raise ValueError(f"unknown mixture schedule {mixture_schedule!r}; choose one of {SCHEDULES}")
        self.schedule = mixture_schedule
        self.new_encoders = nn.ModuleList([copy.deepcopy(encoder) for _ in range(mixture_components - 1)])
        for layer in self.new_encoders.modules():  # own random initialization: identical copies stay symmetric
            if isinstance(layer, (nn.Linear, nn.Conv2d)):
                layer.reset_parameters()
        self.gates = nn.ModuleList([nn.Linear(encoder.feature_dim, 1) for _ in range(mixture_components - 1)])
        for gate in self.gates:
            nn.init.zeros_(gate.weight)
            nn.init.constant_(gate.bias, math.log(INITIAL_WEIGHT / (1 - INITIAL_WEIGHT)))
        self.register_buffer("active_components", torch.tensor(mixture_components))

    @property
    def component_encoders(self) -> list[Encoder]:
        return [self.encoder, *self.new_encoders][:int(self.active_components)]

    def summary(self) -> dict:
        return {"active_components": int(self.active_components), "mixture_schedule": self.schedule}

    def begin_epoch(self, epoch: int, epochs: int) -> None:
        """``staged`` schedule: enter the stage of ``epoch`` — add (copy-initialize) the components it
        needs, and let only the newest component, its weight and the decoder train."""
        if self.schedule != "staged":
            return
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

    def components(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Means and log-variances (B, K, d) of the active components, and the logits of ε_2..ε_K (B, K − 1)."""
        means, log_vars, logits = [], [], []
        for k, encoder in enumerate(self.component_encoders):
            features, mean, log_var = encoder.encode(x)
            means.append(mean)
            log_vars.append(log_var)
            if k > 0:
                logits.append(self.gates[k - 1](features))
        logits = torch.cat(logits, -1) if logits else means[0].new_zeros(len(x), 0)
        return torch.stack(means, 1), torch.stack(log_vars, 1), logits

    @staticmethod
    def mixture(means: torch.Tensor, log_vars: torch.Tensor, logits: torch.Tensor) -> DiagonalGaussianMixture:
        """The recursion's weights α_1 = Π_{j≥2} (1 − ε_j), α_k = ε_k Π_{j>k} (1 − ε_j) and the mixture."""
        log_weights = means.new_zeros(len(means), 1)
        for k in range(logits.shape[-1]):  # (not split: a (B, 0) tensor splits into one empty piece)
            logit = logits[:, k:k + 1]
            log_weights = torch.cat([log_weights + F.logsigmoid(-logit), F.logsigmoid(logit)], dim=-1)
        return DiagonalGaussianMixture(means, log_vars, log_weights)

    def proposal(self, x: torch.Tensor) -> DiagonalGaussianMixture:
        """q_K(z | x) over the K active components."""
        return self.mixture(*self.components(x))

    def mixture_elbo(self, x: torch.Tensor, q: DiagonalGaussianMixture, n_samples: int = 1) -> torch.Tensor:
        """Σ_k α_k E_{h_k}[log p(x, z) − log q(z | x)] with ``n_samples`` draws per component: (B,)."""
        n_components = q.means.shape[1]
        z = q.rsample_per_component(n_samples)  # (S, K, B, d)
        log_joint = self.log_joint(x, z.reshape(-1, *z.shape[2:])).view(n_samples, n_components, -1)
        log_w = log_joint - q.log_prob(z)  # (S, K, B)
        return (q.log_weights.exp().T * log_w.mean(0)).sum(0)

    def elbo(self, x: torch.Tensor, n_samples: int = 1) -> torch.Tensor:
        return self.mixture_elbo(x, self.proposal(x), n_samples)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """−ELBO(q_K); under the ``recursive`` schedule each h_m, ε_m also ascends its partial ELBO(q_m)
        (earlier components detached, decoder fixed) — those terms add gradient, not value."""
        if self.schedule == "staged":
            return -self.elbo(x).mean()
        means, log_vars, logits = self.components(x)
        n_components = means.shape[1]
        loss = 0.0
        for m in range(1, n_components + 1):
            last = m == n_components
            partial = self.mixture(torch.cat([means[:, :m - 1].detach(), means[:, m - 1:m]], 1),
                                   torch.cat([log_vars[:, :m - 1].detach(), log_vars[:, m - 1:m]], 1),
                                   torch.cat([logits[:, :max(m - 2, 0)].detach(), logits[:, max(m - 2, 0):m - 1]], 1))
            with contextlib.nullcontext() if last else frozen(self.decoder):
                objective = -self.mixture_elbo(x, partial).mean()
            loss = loss + (objective if last else objective - objective.detach())
        return loss
