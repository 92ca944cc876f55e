"""Proposal distributions with exact densities that are not in torch.distributions."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.distributions import Distribution, Independent, Normal, constraints

QUADRATURE_NODES = 20


def diagonal_gaussian(mean: torch.Tensor, log_var: torch.Tensor) -> Independent:
    """N(mean, diag exp log_var) with batch shape (B,) and event shape (d,)."""
    return Independent(Normal(mean, (0.5 * log_var).exp(), validate_args=False), 1, validate_args=False)


def gauss_hermite(n_nodes: int, dtype=torch.float32, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes t_q and log-weights log(w_q / √π) of n-point Gauss–Hermite quadrature:
    E_{g ~ N(μ, s)}[f(g)] ≈ Σ_q (w_q / √π) f(μ + √(2s) t_q). Shapes (n,), (n,)."""
    nodes, weights = np.polynomial.hermite.hermgauss(n_nodes)
    return (torch.as_tensor(nodes, dtype=dtype, device=device),
            torch.as_tensor(np.log(weights) - 0.5 * math.log(math.pi), dtype=dtype, device=device))


class GaussHermiteMarginal(Distribution):
    """q̄(z | x) = Π_i Σ_q π_q N(z_i; μ_i, s_i + v_iq): per latent dimension a mixture of Gaussians.

    This is the marginal of q(z | x, F) = N(M(x), diag σ²(L(x))) over a Gaussian random function
    F = (M, L): the mean function integrates in closed form (its variance s adds to σ²), the
    variance function by Gauss–Hermite quadrature, σ²(L) evaluated at the nodes giving ``node_var``
    v. Sampling picks a node per dimension with probability π_q, then draws the Gaussian, so samples
    follow *exactly* the density that :meth:`log_prob` returns (the importance weights are exact).

    ``loc``, ``mean_var``: (B, d); ``node_var``: (B, d, Q); ``log_node_weights``: (Q,).
    """

    arg_constraints = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: torch.Tensor, mean_var: torch.Tensor, node_var: torch.Tensor,
                 log_node_weights: torch.Tensor):
        self.loc, self.mean_var, self.node_var, self.log_node_weights = loc, mean_var, node_var, log_node_weights
        super().__init__(batch_shape=loc.shape[:-1], event_shape=loc.shape[-1:], validate_args=False)

    @property
    def component_var(self) -> torch.Tensor:
        """s_i + v_iq: (B, d, Q)."""
        return self.mean_var.unsqueeze(-1) + self.node_var

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def variance(self) -> torch.Tensor:
        return (self.component_var * self.log_node_weights.exp()).sum(-1)

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.loc.shape
        node = torch.multinomial(self.log_node_weights.exp(), shape.numel(), replacement=True).view(shape)
        var = self.component_var.expand(*shape, -1).gather(-1, node.unsqueeze(-1)).squeeze(-1)
        return self.loc + var.sqrt() * torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """(..., B, d) -> (..., B)."""
        var = self.component_var
        sq = (z - self.loc).unsqueeze(-1).pow(2)
        log_normal = -0.5 * (sq / var + var.log() + math.log(2 * math.pi))
        return torch.logsumexp(log_normal + self.log_node_weights, -1).sum(-1)


class DiagonalGaussianMixture(Distribution):
    """r(z | x) = Σ_k α_k N(z; μ_k, diag exp ℓ_k), with exact density.

    ``means``, ``log_vars``: (B, K, d); ``log_weights``: (B, K), log α normalized over K. ``rsample``
    picks a component (no gradient through the choice) and reparameterizes within it; objectives
    that need gradients for the weights average over components instead (:meth:`rsample_per_component`,
    used by :class:`gpvae.models.RME`).
    """

    arg_constraints = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, means: torch.Tensor, log_vars: torch.Tensor, log_weights: torch.Tensor):
        self.means, self.log_vars, self.log_weights = means, log_vars, log_weights
        super().__init__(batch_shape=means.shape[:-2], event_shape=means.shape[-1:], validate_args=False)

    @property
    def mean(self) -> torch.Tensor:
        return (self.log_weights.exp().unsqueeze(-1) * self.means).sum(-2)

    @property
    def variance(self) -> torch.Tensor:
        second_moment = (self.log_weights.exp().unsqueeze(-1) * (self.log_vars.exp() + self.means.pow(2))).sum(-2)
        return second_moment - self.mean.pow(2)

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        n_components, n_draws = self.log_weights.shape[-1], shape.numel() // max(self.batch_shape.numel(), 1)
        choice = torch.multinomial(self.log_weights.exp().reshape(-1, n_components), n_draws, replacement=True)
        choice = choice.T.reshape(*shape, 1, 1)  # one component per draw and example
        pick = choice.expand(*shape, 1, self.means.shape[-1])
        mean = self.means.expand(*shape, *self.means.shape[-2:]).gather(-2, pick).squeeze(-2)
        log_var = self.log_vars.expand(*shape, *self.log_vars.shape[-2:]).gather(-2, pick).squeeze(-2)
        return mean + (0.5 * log_var).exp() * torch.randn_like(mean)

    def rsample_per_component(self, n_samples: int) -> torch.Tensor:
        """``n_samples`` reparameterized draws from every component: (S, K, B, d). The noise is drawn
        component by component, so the first components' draws do not depend on how many follow."""
        means, stds = self.means.transpose(0, 1), (0.5 * self.log_vars).exp().transpose(0, 1)  # (K, B, d)
        noise = torch.randn(len(means), n_samples, *means.shape[1:], dtype=means.dtype, device=means.device)
        return (means.unsqueeze(1) + stds.unsqueeze(1) * noise).transpose(0, 1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """(..., B, d) -> (..., B)."""
        diff = z.unsqueeze(-2) - self.means
        log_normal = -0.5 * (diff.pow(2) / self.log_vars.exp() + self.log_vars + math.log(2 * math.pi)).sum(-1)
        return torch.logsumexp(log_normal + self.log_weights, -1)
