"""Reading R4 of GP-RF (METHOD.md §3b): regression of the amortized encoder's observed errors.

Per-instance SVI on N training images gives q*(x_i) = N(μ*_i, diag exp ℓ*_i) and so the observed
errors y_i = (μ*_i − μ_φ(x_i), ℓ*_i − ℓ_φ(x_i)) ∈ R^{2d}. A Gaussian-process regression with
Gaussian noise on the encoder's features ψ(x) predicts, at any x, the correction (predictive mean)
and its uncertainty (the latent function's predictive variance); GP-RF integrates both exactly in
its marginal proposal q̄, as for the variational reading.

:class:`ErrorRegressionGP` — two output groups (the d mean errors, the d log-variance errors), each
with its own GPyTorch kernel s·RBF(ARD) and noise σ², shared by the outputs of the group after each
output is standardized (so an output with another scale gets the same fit, rescaled). Hyperparameters
maximize the exact marginal likelihood Σ_j log N(ỹ_j; 0, K + σ²I) of a seeded subset of
:data:`HYPER_SUBSET` errors (one Cholesky per step serves all outputs of a group). The predictive then
conditions on all N errors through M inducing inputs (Titsias' SGPR / DTC predictive, M training
features drawn with the same seed): O(N M²) once, and per test batch O(B M p + B M²) — the M×M
matrices are cached as buffers, so inference is a few matrix products over the encoder.

:class:`NearestNeighbourErrors` — the control: the average error of the k nearest training images in
feature space (no uncertainty). It shows what the GP adds over smoothing.
"""
from __future__ import annotations

import math

import gpytorch
from linear_operator import to_dense
import torch
from torch import nn

ERROR_MODELS = ("gp", "knn")
HYPER_SUBSET = 2000  # observed errors behind the marginal-likelihood fit of the hyperparameters
HYPER_STEPS = 100  # Adam steps on the hyperparameters
HYPER_LR = 0.05
INITIAL_NOISE = 0.5  # of the standardized errors
JITTER = 1e-6  # added to K_mm (float64)
MIN_VARIANCE = 1e-8


def multi_output_log_marginal(kernel: gpytorch.kernels.Kernel, noise: torch.Tensor, x: torch.Tensor,
                              y: torch.Tensor) -> torch.Tensor:
    """Σ_j log N(y_j; 0, K(x, x) + σ² I) over the columns of ``y`` (n, b), one Cholesky for all: scalar."""
    n, b = y.shape
    covar = to_dense(kernel(x)) + noise * torch.eye(n, dtype=x.dtype, device=x.device)
    chol = torch.linalg.cholesky(covar)
    white = torch.linalg.solve_triangular(chol, y, upper=False)
    return -0.5 * white.pow(2).sum() - b * chol.diagonal().log().sum() - 0.5 * n * b * math.log(2 * math.pi)


def _median_distance(x: torch.Tensor) -> torch.Tensor:
    return torch.pdist(x[:1000]).median().clamp(min=1e-3)


class ErrorRegressionGP(nn.Module):
    """GP regression of the encoder's 2d errors on features (p,), with M inducing inputs.

    :meth:`fit` takes features (N, p) and errors (N, 2d); :meth:`marginals` gives the predicted
    correction and the latent function's predictive variance, (B, 2d) each. Before :meth:`fit`, the
    correction is 0 and the variance :data:`MIN_VARIANCE` (q̄ is then the encoder's Gaussian).
    """

    def __init__(self, feature_dim: int, n_outputs: int, n_inducing: int, groups: int = 2):
        super().__init__()
        self.n_outputs, self.groups = n_outputs, groups
        self.kernels = nn.ModuleList(gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(ard_num_dims=feature_dim))
                                     for _ in range(groups))
        self.likelihoods = nn.ModuleList(gpytorch.likelihoods.GaussianLikelihood() for _ in range(groups))
        self.register_buffer("inducing", torch.zeros(n_inducing, feature_dim))
        self.register_buffer("offset", torch.zeros(n_outputs))  # mean error per output
        self.register_buffer("scale", torch.zeros(n_outputs))  # sd of the error per output (0: not fitted)
        self.register_buffer("alpha", torch.zeros(n_inducing, n_outputs))  # k_xm α: standardized mean
        self.register_buffer("extra", torch.zeros(groups, n_inducing, n_inducing))  # K_mm⁻¹ − Σ, per group
        self.register_buffer("fitted", torch.tensor(False))
        for p in self.parameters():
            p.requires_grad_(False)  # fitted by :meth:`fit`, never by the ELBO's optimizer

    def _group_slices(self) -> list[slice]:
        size = self.n_outputs // self.groups
        return [slice(g * size, (g + 1) * size) for g in range(self.groups)]

    def fit(self, features: torch.Tensor, errors: torch.Tensor, generator: torch.Generator) -> dict:
        """Hyperparameters by marginal likelihood on a subset, then the SGPR predictive on all errors.
        Returns the fitted hyperparameters and the explained share of each group's error variance."""
        x, y = features.double(), errors.double()
        offset, scale = y.mean(0), y.std(0).clamp(min=1e-6)
        y_std = (y - offset) / scale
        order = torch.randperm(len(x), generator=generator)
        inducing = x[order[:len(self.inducing)]]
        subset = order[:HYPER_SUBSET]
        alphas, extras, summary = [], [], {}
        for g, cols in enumerate(self._group_slices()):
            kernel, likelihood = self.kernels[g].double(), self.likelihoods[g].double()
            params = [*kernel.parameters(), *likelihood.parameters()]
            for p in params:
                p.requires_grad_(True)
            kernel.base_kernel.lengthscale = _median_distance(x[subset]).expand(1, x.shape[-1])
            kernel.outputscale = 1.0
            likelihood.noise = INITIAL_NOISE
            optimizer = torch.optim.Adam(params, lr=HYPER_LR)
            for _ in range(HYPER_STEPS):
                optimizer.zero_grad()
                loss = -multi_output_log_marginal(kernel, likelihood.noise, x[subset], y_std[subset, cols])
                loss.backward()
                optimizer.step()
            for p in params:
                p.requires_grad_(False)
            alpha, extra = self._sgpr(kernel, likelihood.noise.detach(), inducing, x, y_std[:, cols])
            alphas.append(alpha)
            extras.append(extra)
            name = ("mean", "log_variance")[g] if self.groups == 2 else str(g)
            summary[name] = {"outputscale": kernel.outputscale.item(), "noise": likelihood.noise.item(),
                             "lengthscale_median": kernel.base_kernel.lengthscale.median().item(),
                             "error_variance": y[:, cols].var(0).mean().item(),
                             "log_marginal_per_value": -loss.item() / y_std[subset, cols].numel()}
        dtype = self.inducing.dtype
        self.kernels.to(dtype)
        self.likelihoods.to(dtype)
        self.inducing.copy_(inducing)
        self.offset.copy_(offset)
        self.scale.copy_(scale)
        self.alpha.copy_(torch.cat(alphas, 1))
        self.extra.copy_(torch.stack(extras))
        self.fitted.fill_(True)
        with torch.no_grad():
            fitted_mean, _ = self.marginals(features[subset])
        residual = (errors[subset] - fitted_mean).pow(2).mean(0) / errors[subset].var(0).clamp(min=1e-12)
        for g, cols in enumerate(self._group_slices()):
            summary[("mean", "log_variance")[g] if self.groups == 2 else str(g)]["explained_on_fit_subset"] = \
                1 - residual[cols].mean().item()
        return summary

    @staticmethod
    def _sgpr(kernel, noise, inducing, x, y) -> tuple[torch.Tensor, torch.Tensor]:
        """Titsias' predictive with inducing inputs Z: mean(x*) = k_*Z α, var(x*) = k** − k_*Z E k_Z*.

        With L L^T = K_ZZ, A = L⁻¹ K_ZX / σ and L_B L_Bᵀ = I + A Aᵀ: α = L⁻ᵀ L_B⁻ᵀ L_B⁻¹ A y / σ and
        E = L⁻ᵀ (I − (I + A Aᵀ)⁻¹) L⁻¹. ``y`` (N, b) -> α (M, b), E (M, M).
        """
        eye = torch.eye(len(inducing), dtype=x.dtype, device=x.device)
        chol = torch.linalg.cholesky(to_dense(kernel(inducing)) + JITTER * eye)
        with torch.no_grad():
            a = torch.cat([torch.linalg.solve_triangular(chol, to_dense(kernel(inducing, part)), upper=False)
                           for part in x.split(4096)], 1) / noise.sqrt()
            chol_b = torch.linalg.cholesky(eye + a @ a.T)
            c = torch.linalg.solve_triangular(chol_b, a @ y, upper=False) / noise.sqrt()
            alpha = torch.linalg.solve_triangular(chol.T, torch.linalg.solve_triangular(chol_b.T, c, upper=True),
                                                  upper=True)
            chol_inv = torch.linalg.solve_triangular(chol, eye, upper=False)
            b_inv = torch.cholesky_inverse(chol_b)
            extra = chol_inv.T @ (eye - b_inv) @ chol_inv
        return alpha, extra

    def marginals(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted error (correction) and its variance: features (B, p) -> (B, 2d), (B, 2d)."""
        means, variances = [], []
        for g, cols in enumerate(self._group_slices()):
            kernel = self.kernels[g]
            k_xm = to_dense(kernel.forward(features, self.inducing))
            means.append(k_xm @ self.alpha[:, cols])
            prior = kernel.outputscale.expand(len(features))  # k(x, x) of a scaled RBF
            var = prior - ((k_xm @ self.extra[g]) * k_xm).sum(-1)
            variances.append(var.unsqueeze(-1).expand(-1, cols.stop - cols.start))
        mean = self.offset + self.scale * torch.cat(means, -1)
        var = self.scale.pow(2) * torch.cat(variances, -1)
        return mean, var.clamp(min=MIN_VARIANCE)

    def summary(self) -> dict:
        return {f"error_gp_{('mean', 'log_variance')[g]}_outputscale": k.outputscale.item()
                for g, k in enumerate(self.kernels)} if self.groups == 2 else {}


class NearestNeighbourErrors(nn.Module):
    """Control for :class:`ErrorRegressionGP`: the mean error of the ``neighbours`` nearest stored
    training images (Euclidean in feature space), with zero variance. Before :meth:`fit`, zero."""

    def __init__(self, feature_dim: int, n_outputs: int, n_stored: int, neighbours: int):
        super().__init__()
        self.neighbours = neighbours
        self.register_buffer("features", torch.zeros(n_stored, feature_dim))
        self.register_buffer("errors", torch.zeros(n_stored, n_outputs))
        self.register_buffer("fitted", torch.tensor(False))

    def fit(self, features: torch.Tensor, errors: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        self.features.copy_(features[:len(self.features)])
        self.errors.copy_(errors[:len(self.errors)])
        self.fitted.fill_(True)
        return {"stored": len(self.features), "neighbours": self.neighbours}

    def neighbour_distance(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances (B, k) to the k nearest stored features and their indices (B, k)."""
        return torch.cdist(features, self.features).topk(self.neighbours, largest=False)

    def marginals(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, index = self.neighbour_distance(features)
        mean = self.errors[index].mean(1)
        return mean, torch.full_like(mean, MIN_VARIANCE)

    def summary(self) -> dict:
        return {}
