"""Per-example objectives built from log importance weights. The caller reduces over examples.

``log_w`` has shape (S, B): S samples z_s ~ r(z | x) for each of B examples, with
log w_s = log p(x, z_s) − log r(z_s | x) where r is the proposal *with its exact density*.
"""
from __future__ import annotations

import math

import torch

from .distributions import diagonal_gaussian


def elbo(log_w: torch.Tensor) -> torch.Tensor:
    """Monte Carlo ELBO per example: mean over samples of log w. (S, B) -> (B,)."""
    return log_w.mean(0)


def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """IWAE-S bound per example: log (1/S) Σ_s w_s, computed with logsumexp. (S, B) -> (B,)."""
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


def gaussian_kl_to_standard(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, diag exp log_var) ‖ N(0, I)) per example: (B, d) -> (B,)."""
    return 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var).sum(-1)


def gaussian_elbo(model, x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor,
                  n_samples: int = 1) -> torch.Tensor:
    """ELBO of q = N(mean, diag exp log_var) under ``model.log_likelihood``: Monte Carlo
    reconstruction (reparameterized, ``n_samples`` draws) minus the analytic KL to N(0, I). (B,)."""
    z = diagonal_gaussian(mean, log_var).rsample((n_samples,))
    return model.log_likelihood(x, z).mean(0) - gaussian_kl_to_standard(mean, log_var)
