"""Variational Laplace autoencoder (Park, Kim & Kim 2019).

The encoder proposes a starting point μ_0 = μ_φ(x). Each of ``laplace_iterations`` updates linearizes
the decoder's output η(z) (Bernoulli logits, or the mean of a Gaussian decoder) at the current μ,
η(z) ≈ η(μ) + J (z − μ), J = ∂η/∂z (D, d), which makes log p(x | z) a quadratic in z with curvature
−Jᵀ W J, W = −∂² log p(x | η)/∂η² (diagonal: p(1 − p) for Bernoulli, 1/σ² for a Gaussian). The
posterior of the linearized model is Gaussian with precision Λ = I + Jᵀ W J, and μ moves to its mode:

    μ ← μ + Λ⁻¹ (Jᵀ ∂log p(x | η)/∂η − μ)        (a Gauss–Newton step on log p(x, z)).

The proposal is the full-covariance Gaussian N(μ_T, Λ(μ_T)⁻¹) of the Laplace approximation at the
last μ. For a linear-Gaussian decoder one update reaches the exact posterior. Training maximizes the
ELBO of this Gaussian (Monte Carlo reconstruction, analytic KL) with gradients through the updates,
so the encoder learns a good starting point and the decoder sees the refined posterior.

Default: ``laplace_iterations`` = 4. The VLAE paper studies the number of updates as a
hyperparameter; this default is a choice of this library, not a value taken from that paper.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import MultivariateNormal
from torch.func import jacfwd, vmap

from ..networks import Decoder, Encoder
from ..options import OptionGroup, option
from .base import EncoderDecoderModel

LAPLACE_ITERATIONS = 4
LIKELIHOODS = ("bernoulli", "gaussian")


@dataclass
class VLAEOptions(OptionGroup):
    title = "VLAE"
    laplace_iterations: int = option(LAPLACE_ITERATIONS, "VLAE: posterior-mode updates before the Laplace Gaussian",
                                     minimum=0)


def output_derivatives(likelihood: str, x: torch.Tensor, eta: torch.Tensor,
                       noise_var: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(∂ log p(x | η)/∂η, −∂² log p(x | η)/∂η²) elementwise, each (B, D), for x and η (B, D)."""
    if likelihood == "bernoulli":
        p = torch.sigmoid(eta)
        return x - p, p * (1 - p)
    if likelihood == "gaussian":
        return (x - eta) / noise_var, (1 / noise_var).expand_as(eta)
    raise ValueError(f"VLAE needs a decoder likelihood in {LIKELIHOODS}, not {likelihood!r}")


class VLAE(EncoderDecoderModel):
    """VLAE on the shared networks. ``decoder`` must expose ``forward(z)`` -> η (..., *) and
    ``likelihood`` in :data:`LIKELIHOODS` (and ``noise_var`` for ``gaussian``)."""

    Options = VLAEOptions

    def __init__(self, encoder: Encoder, decoder: Decoder, laplace_iterations: int = LAPLACE_ITERATIONS):
        super().__init__(encoder, decoder)
        if decoder.likelihood not in LIKELIHOODS:
            raise ValueError(f"VLAE needs a decoder likelihood in {LIKELIHOODS}, not {decoder.likelihood!r} "
                             "(the discretized logistic's curvature is not diagonal in its outputs)")
        self.laplace_iterations = laplace_iterations

    def _outputs_and_jacobian(self, mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """η(μ) (B, D) and J = ∂η/∂z at μ (B, D, d), differentiable in μ and the decoder."""
        def flat_output(z):
            return self.decoder(z.unsqueeze(0)).reshape(-1)
        return self.decoder(mean).flatten(1), vmap(jacfwd(flat_output))(mean)

    def laplace(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mode μ_T (B, d) and precision Λ(μ_T) (B, d, d) after the updates."""
        mean = self.encoder(x)[0]
        x_flat = x.flatten(1)
        noise_var = getattr(self.decoder, "noise_var", None)
        eye = torch.eye(self.latent_dim, dtype=mean.dtype, device=mean.device)
        for iteration in range(self.laplace_iterations + 1):
            eta, jac = self._outputs_and_jacobian(mean)
            grad_eta, curvature = output_derivatives(self.decoder.likelihood, x_flat, eta, noise_var)
            precision = eye + jac.transpose(1, 2) @ (curvature.unsqueeze(-1) * jac)
            if iteration == self.laplace_iterations:
                return mean, precision
            grad = (jac.transpose(1, 2) @ grad_eta.unsqueeze(-1)).squeeze(-1) - mean
            mean = mean + torch.cholesky_solve(grad.unsqueeze(-1), torch.linalg.cholesky(precision)).squeeze(-1)

    def proposal(self, x: torch.Tensor) -> MultivariateNormal:
        mean, precision = self.laplace(x)
        return MultivariateNormal(mean, precision_matrix=precision, validate_args=False)

    def elbo(self, x: torch.Tensor, n_samples: int = 1) -> torch.Tensor:
        """Monte Carlo reconstruction term minus the analytic KL(N(μ, Λ⁻¹) ‖ N(0, I)): (B,)."""
        q = self.proposal(x)
        z = q.rsample((n_samples,))
        scale = q.scale_tril
        kl = 0.5 * (scale.pow(2).sum((-1, -2)) + q.loc.pow(2).sum(-1) - self.latent_dim) \
            - scale.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        return self.log_likelihood(x, z).mean(0) - kl
