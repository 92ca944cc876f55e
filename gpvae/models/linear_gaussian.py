"""A linear-Gaussian latent variable model whose log p(x) and posterior are exact: the test bed of
every estimator (STYLE.md: test estimators against a model whose log p(x) is exact).

p(z) = N(0, I_d), p(x | z) = N(W z + b, σ² I_D), hence p(x) = N(b, W Wᵀ + σ² I) and
p(z | x) = N(Σ Wᵀ (x − b) / σ², Σ) with Σ = (I + Wᵀ W / σ²)⁻¹. The amortized proposal is a
diagonal Gaussian with a linear mean and a per-dimension log-variance.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import objectives
from .base import LatentVariableModel
from ..distributions import diagonal_gaussian


class LinearGaussian(LatentVariableModel):
    """Data x (B, D); latent z (B, d). All parameters are float64 for exact comparisons."""

    def __init__(self, data_dim: int, latent_dim: int, noise_std: float = 0.5, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        kw = dict(dtype=torch.float64)
        self.latent_dim = latent_dim
        self.weight = nn.Parameter(torch.randn(data_dim, latent_dim, generator=g, **kw) / math.sqrt(latent_dim))
        self.bias = nn.Parameter(torch.randn(data_dim, generator=g, **kw) * 0.1)
        self.log_noise_std = nn.Parameter(torch.tensor(math.log(noise_std), **kw))
        self.encoder_weight = nn.Parameter(0.1 * torch.randn(latent_dim, data_dim, generator=g, **kw))
        self.encoder_bias = nn.Parameter(torch.zeros(latent_dim, **kw))
        self.encoder_log_var = nn.Parameter(torch.full((latent_dim,), -1.0, **kw))

    def sample_data(self, n: int, seed: int = 0) -> torch.Tensor:
        """n draws x ~ p(x): (n, D)."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            z = torch.randn(n, self.latent_dim, generator=g, dtype=torch.float64)
            noise = torch.randn(n, self.bias.shape[0], generator=g, dtype=torch.float64)
            return z @ self.weight.T + self.bias + self.log_noise_std.exp() * noise

    def sample_observation(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(*z.shape[:-1], self.bias.shape[0], generator=generator, dtype=z.dtype)
        return z @ self.weight.T + self.bias + self.log_noise_std.exp() * noise

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        var = (2 * self.log_noise_std).exp()
        resid = x - (z @ self.weight.T + self.bias)
        return -0.5 * (resid.pow(2).sum(-1) / var + x.shape[-1] * torch.log(2 * math.pi * var))

    def proposal(self, x: torch.Tensor):
        mean = x @ self.encoder_weight.T + self.encoder_bias
        return diagonal_gaussian(mean, self.encoder_log_var.expand_as(mean))

    def exact_log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats: (B, D) -> (B,)."""
        cov = self.weight @ self.weight.T + (2 * self.log_noise_std).exp() * torch.eye(x.shape[-1], dtype=x.dtype)
        return torch.distributions.MultivariateNormal(self.bias, cov).log_prob(x)

    def exact_posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (B, d) and covariance (d, d) of p(z | x)."""
        var = (2 * self.log_noise_std).exp()
        precision = torch.eye(self.latent_dim, dtype=x.dtype) + self.weight.T @ self.weight / var
        cov = torch.linalg.inv(precision)
        return (x - self.bias) @ self.weight @ cov / var, cov

    def analytic_elbo(self, x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """ELBO of q = N(mean, diag exp log_var) in closed form: (B,)."""
        var = (2 * self.log_noise_std).exp()
        resid = x - (mean @ self.weight.T + self.bias)
        trace = (log_var.exp() * self.weight.pow(2).sum(0)).sum(-1)
        expected_ll = -0.5 * ((resid.pow(2).sum(-1) + trace) / var + x.shape[-1] * torch.log(2 * math.pi * var))
        return expected_ll - objectives.gaussian_kl_to_standard(mean, log_var)


class LinearGaussianDecoder(nn.Module):
    """The p(x | z) of a :class:`LinearGaussian` as a decoder (``log_prob(x, z)``; ``forward(z)``, the
    mean W z + b; ``likelihood`` and ``noise_var``), so that any encoder-based model (GP-RF, VLAE, RME)
    can be put on a generative model whose log p(x) is exact."""

    likelihood = "gaussian"

    def __init__(self, exact: LinearGaussian):
        super().__init__()
        self.exact = exact

    @property
    def noise_var(self) -> torch.Tensor:
        return (2 * self.exact.log_noise_std).exp()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Mean of p(x | z): (..., d) -> (..., D)."""
        return z @ self.exact.weight.T + self.exact.bias

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.exact.log_likelihood(x, z)
