"""Reading R4 of GP-RF (the specification (book/specification.md) §3b): regression of the amortized encoder's observed errors.

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

from .options import INDUCING_PLACEMENTS

KMEANS_ITERATIONS = 20  # Lloyd iterations of the k-means placement of the inducing inputs
HYPER_SUBSET = 2000  # observed errors behind the marginal-likelihood fit of the hyperparameters
HYPER_STEPS = 100  # Adam steps on the hyperparameters
HYPER_LR = 0.05
INITIAL_NOISE = 0.5  # of the standardized errors
JITTER = 1e-6  # added to K_mm (float64)
MIN_VARIANCE = 1e-8  # floor on every predictive and latent variance of GP-RF


def multi_output_log_marginal(kernel: gpytorch.kernels.Kernel, noise: torch.Tensor, x: torch.Tensor,
                              y: torch.Tensor) -> torch.Tensor:
    """Σ_j log N(y_j; 0, K(x, x) + σ² I) over the columns of ``y`` (n, b), one Cholesky for all: scalar."""
    n, b = y.shape
    covar = to_dense(kernel(x)) + noise * torch.eye(n, dtype=x.dtype, device=x.device)
    chol = torch.linalg.cholesky(covar)
    white = torch.linalg.solve_triangular(chol, y, upper=False)
    return -0.5 * white.pow(2).sum() - b * chol.diagonal().log().sum() - 0.5 * n * b * math.log(2 * math.pi)


def median_distance(x: torch.Tensor) -> torch.Tensor:
    """The median heuristic for an RBF lengthscale: the median pairwise distance of the first 1,000 rows
    of ``x`` (N, p), at least 1e-3: a scalar."""
    return torch.pdist(x[:1000]).median().clamp(min=1e-3)


class ErrorRegressionGP(nn.Module):
    """GP regression of the encoder's 2d errors on features (p,), with M inducing inputs.

    :meth:`fit` takes features (N, p) and errors (N, 2d); :meth:`marginals` gives the predicted
    correction and the latent function's predictive variance, (B, 2d) each. Before :meth:`fit`, the
    correction is 0 and the variance :data:`MIN_VARIANCE` (q̄ is then the encoder's Gaussian).
    """

    def __init__(self, feature_dim: int, n_outputs: int, n_inducing: int, groups: int = 2,
                 placement: str = "random", variance_rank: int = 0):
        super().__init__()
        if groups not in (1, 2) or placement not in INDUCING_PLACEMENTS or not 0 <= variance_rank:
            raise ValueError(f"error GP: groups 1 or 2, placement in {INDUCING_PLACEMENTS}, variance_rank >= 0")
        self.n_outputs, self.groups, self.placement = n_outputs, groups, placement
        self.variance_rank = min(variance_rank, n_inducing) if variance_rank else 0
        self.kernels = nn.ModuleList(gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(ard_num_dims=feature_dim))
                                     for _ in range(groups))
        self.likelihoods = nn.ModuleList(gpytorch.likelihoods.GaussianLikelihood() for _ in range(groups))
        self.register_buffer("inducing", torch.zeros(n_inducing, feature_dim))
        self.register_buffer("offset", torch.zeros(n_outputs))  # mean error per output
        self.register_buffer("scale", torch.zeros(n_outputs))  # sd of the error per output (0: not fitted)
        self.register_buffer("alpha", torch.zeros(n_inducing, n_outputs))  # k_xm α: standardized mean
        self.register_buffer("extra", torch.zeros(groups, n_inducing, n_inducing))  # K_mm⁻¹ − Σ, per group
        # with variance_rank r: E ≈ F Fᵀ, F (groups, M, r) from E's r leading eigenpairs (E is PSD)
        self.register_buffer("factor", torch.zeros(groups, n_inducing, self.variance_rank))
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
        if self.placement == "kmeans":
            inducing = kmeans(x, inducing)
        subset = order[:HYPER_SUBSET]
        alphas, extras, summary = [], [], {}
        for g, cols in enumerate(self._group_slices()):
            kernel, likelihood = self.kernels[g].double(), self.likelihoods[g].double()
            params = [*kernel.parameters(), *likelihood.parameters()]
            for p in params:
                p.requires_grad_(True)
            kernel.base_kernel.lengthscale = median_distance(x[subset]).expand(1, x.shape[-1])
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
        if self.variance_rank:
            eigenvalues, eigenvectors = torch.linalg.eigh(torch.stack(extras))  # ascending
            top = slice(-self.variance_rank, None)
            self.factor.copy_(eigenvectors[..., top] * eigenvalues[..., top].clamp(min=0).sqrt().unsqueeze(-2))
            summary["variance_rank"] = {"rank": self.variance_rank, "kept_trace_share": (
                eigenvalues[..., top].clamp(min=0).sum(-1) / eigenvalues.clamp(min=0).sum(-1)).tolist()}
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

    def kernel_matrix(self, features: torch.Tensor) -> torch.Tensor:
        """k(x, Z) of every group in one batched pass: features (B, p) -> (groups, B, M). Each group's
        scaled RBF s_g exp(−|x − z|²_ℓg / 2), as its GPyTorch kernel computes it."""
        lengthscale = torch.stack([k.base_kernel.lengthscale for k in self.kernels])  # (G, 1, p)
        outputscale = torch.stack([k.outputscale for k in self.kernels]).reshape(-1, 1, 1)
        x, z = features / lengthscale, self.inducing / lengthscale  # (G, B, p), (G, M, p)
        squared = x.pow(2).sum(-1, keepdim=True) - 2 * x @ z.transpose(-1, -2) + z.pow(2).sum(-1).unsqueeze(-2)
        return outputscale * torch.exp(-0.5 * squared.clamp(min=0))

    def marginals(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted error (correction) and its variance: features (B, p) -> (B, 2d), (B, 2d)."""
        k_xm = self.kernel_matrix(features)  # (G, B, M)
        size = self.n_outputs // self.groups
        alpha = self.alpha.reshape(len(self.inducing), self.groups, size).transpose(0, 1)  # (G, M, size)
        mean = (k_xm @ alpha).transpose(0, 1).reshape(len(features), self.n_outputs)
        prior = torch.stack([k.outputscale for k in self.kernels]).unsqueeze(-1)  # k(x, x) of a scaled RBF
        if self.variance_rank:
            reduction = (k_xm @ self.factor).pow(2).sum(-1)
        else:
            reduction = ((k_xm @ self.extra) * k_xm).sum(-1)
        var = (prior - reduction).transpose(0, 1).repeat_interleave(size, dim=1)  # (B, 2d)
        mean = self.offset + self.scale * mean
        return mean, (self.scale.pow(2) * var).clamp(min=MIN_VARIANCE)

    def macs_per_image(self, feature_dim: int) -> int:
        """Multiply-adds of :meth:`marginals` per image, counted from the shapes."""
        m, size = len(self.inducing), self.n_outputs // self.groups
        kernel = m * feature_dim + m  # the cross term x zᵀ and the norms
        variance = m * self.variance_rank if self.variance_rank else m * m + m
        return self.groups * (kernel + m * size + variance)

    def summary(self) -> dict:
        return {f"error_gp_{('mean', 'log_variance')[g]}_outputscale": k.outputscale.item()
                for g, k in enumerate(self.kernels)} if self.groups == 2 else {}


def kmeans(x: torch.Tensor, start: torch.Tensor, iterations: int = KMEANS_ITERATIONS, chunk: int = 8192) -> torch.Tensor:
    """Lloyd's k-means of the rows of ``x`` (N, p) from the centres ``start`` (M, p); a centre left
    without points keeps its place. Deterministic given ``start``: (M, p)."""
    centres = start.clone()
    for _ in range(iterations):
        nearest = torch.cat([torch.cdist(part, centres).argmin(-1) for part in x.split(chunk)])
        sums = torch.zeros_like(centres).index_add_(0, nearest, x)
        counts = torch.bincount(nearest, minlength=len(centres)).unsqueeze(-1)
        centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
    return centres


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

    def macs_per_image(self, feature_dim: int) -> int:
        """Multiply-adds of :meth:`marginals` per image: the distances to every stored feature."""
        return len(self.features) * feature_dim

    def summary(self) -> dict:
        return {}
