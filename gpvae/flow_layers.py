"""Normalizing-flow layers and the flow proposal, the building blocks of :mod:`gpvae.models.flows`: a
diagonal Gaussian pushed through invertible steps, with exact density.

A step maps z (..., d) to (z', log|det ∂z'/∂z|) with shapes (..., d) and (...). The proposal's density
is log r(z_T) = log N(z_0; μ, diag σ²) − Σ_t log|det J_t| (change of variables). Samples remember
their density (no inversion needed); any other point is inverted exactly.

* :func:`householder_reflection` — H = I − 2 v vᵀ / ‖v‖² (Tomczak & Welling 2016): orthogonal,
  its own inverse, log-determinant zero.
* :class:`IAFStep` — z' = σ ⊙ z + (1 − σ) ⊙ m with (m, s) from a MADE network of z and a context h,
  σ = sigmoid(s) (Kingma et al. 2016, their numerically stable "LSTM-type" update). The Jacobian is
  triangular, log|det| = Σ log σ.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, constraints

Step = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def householder_reflection(v: torch.Tensor) -> Step:
    """The reflection z -> (I − 2 v vᵀ / ‖v‖²) z for vectors ``v`` (B, d), applied to z (..., B, d)."""
    unit = v / v.norm(dim=-1, keepdim=True).clamp(min=1e-12)

    def reflect(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return z - 2 * (z * unit).sum(-1, keepdim=True) * unit, z.new_zeros(z.shape[:-1])
    return reflect


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 ``mask`` (out, in)."""

    def __init__(self, mask: torch.Tensor):
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class IAFStep(nn.Module):
    """One inverse autoregressive flow step on d latent dimensions with a ``width``-unit, two-hidden-layer
    MADE (Germain et al. 2015) conditioned on a context h (B, width) added to its first hidden layer.

    Output i depends only on z_1..z_{i−1} (natural order), so ∂z'_i/∂z_j = 0 for j > i. The gate
    bias starts at ``gate_bias`` (σ ≈ 0.88 for 2), so the step starts close to the identity.
    """

    def __init__(self, latent_dim: int, width: int, gate_bias: float = 2.0):
        super().__init__()
        d = latent_dim
        in_degree = torch.arange(1, d + 1)
        hidden_degree = torch.arange(width) % max(d - 1, 1) + 1
        hidden_mask = (hidden_degree[:, None] >= in_degree[None, :])
        output_mask = (in_degree[:, None] > hidden_degree[None, :])
        self.layer1 = MaskedLinear(hidden_mask)
        self.layer2 = MaskedLinear(hidden_degree[:, None] >= hidden_degree[None, :])
        self.shift = MaskedLinear(output_mask)
        self.gate = MaskedLinear(output_mask)
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, gate_bias)
        self.latent_dim = latent_dim

    def shift_and_gate(self, z: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(m, s): z (..., B, d), context (B, width) -> (..., B, d) each."""
        hidden = F.elu(self.layer2(F.elu(self.layer1(z) + context)))
        return self.shift(hidden), self.gate(hidden)

    def forward(self, z: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z', log|det ∂z'/∂z|): (..., B, d), (..., B)."""
        shift, gate = self.shift_and_gate(z, context)
        sigma = torch.sigmoid(gate)
        return sigma * z + (1 - sigma) * shift, F.logsigmoid(gate).sum(-1)

    def inverse(self, z_out: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """z with forward(z) = z_out, exact after d passes (pass i fixes coordinate i)."""
        z = torch.zeros_like(z_out)
        for _ in range(self.latent_dim):
            shift, gate = self.shift_and_gate(z, context)
            sigma = torch.sigmoid(gate)
            z = (z_out - (1 - sigma) * shift) / sigma
        return z


class FlowProposal(Distribution):
    """r(z | x): ``base`` (a diagonal Gaussian, batch (B,), event (d,)) pushed through ``steps``.

    ``steps`` is a list of (forward, inverse) pairs; forward: z -> (z', log|det J|), inverse: z' -> z.
    ``rsample`` remembers the density of the draws it returns, so ``log_prob`` of those draws costs
    nothing; ``log_prob`` of any other point inverts the steps.
    """

    arg_constraints = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, base: Independent, steps: list[tuple[Step, Callable[[torch.Tensor], torch.Tensor]]]):
        self.base, self.steps = base, steps
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None
        super().__init__(batch_shape=base.batch_shape, event_shape=base.event_shape, validate_args=False)

    def rsample_with_log_prob(self, sample_shape=torch.Size()) -> tuple[torch.Tensor, torch.Tensor]:
        """Draws z_T (*sample_shape, B, d) and their log-density (*sample_shape, B)."""
        z = self.base.rsample(sample_shape)
        log_prob = self.base.log_prob(z)
        for forward, _ in self.steps:
            z, log_det = forward(z)
            log_prob = log_prob - log_det
        return z, log_prob

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        z, log_prob = self.rsample_with_log_prob(sample_shape)
        self._last = (z, log_prob)
        return z

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        if self._last is not None and z is self._last[0]:
            return self._last[1]
        points = [z]
        for _, inverse in reversed(self.steps):
            points.append(inverse(points[-1]))
        log_prob = self.base.log_prob(points[-1])
        for (forward, _), before in zip(self.steps, reversed(points[1:])):
            log_prob = log_prob - forward(before)[1]
        return log_prob
