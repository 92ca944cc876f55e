"""The variational readings' GP over the inference function (the specification (book/specification.md) §3).

The inference function F = (M, L): x ↦ R^{2d} is random. Each output is a Gaussian process on the
encoder's features ψ(x) ∈ R^p,

    F_j ~ GP(h_j(ψ), k(ψ, ψ')),      h(ψ) = W ψ + b  (the encoder's own output head),

so the GP models the amortized encoder's *error*. Given F, q(z | x, F) = N(M(x), diag σ²(L(x))),
with σ² = exp(L) (``lognormal`` link) or σ² = L² (``squared`` link, L then being the standard
deviation). The posterior over functions is a whitened sparse variational GP: M inducing inputs Ω
in feature space shared by all 2d outputs, q(v_j) = N(m_j, S_j), p(v_j) = N(0, I), so that

    q(F_j(x)) = N(h_j(x) + a_jᵀ m_j,  k(x, x) − ‖a‖² + aᵀ S_j a),     a = L_Ω⁻¹ k(Ω, x),

with L_Ω the Cholesky factor of k(Ω, Ω) + jitter. GPyTorch provides the kernel, the prior mean
(the head), the inducing points, the variational distribution and the reference predictive
(``self.gp(u)``); :meth:`InferenceFunctionGP.marginals` computes the same marginals in a few
shared matrix products — one Cholesky factor for all outputs, and in evaluation mode the
inducing-point solves cached — so that inference costs little more than the encoder.

Variational families (``variational``):

* ``shared`` — a mean m_j per output and one full covariance per output *group* (mean function,
  variance function): S_j = S_{g(j)}. Cost per batch: O(M²B) per group.
* ``meanfield`` — a diagonal S_j per output: O(M²B + MBd).
* ``full`` — a full S_j per output (GPyTorch's CholeskyVariationalDistribution): O(M²Bd).
* ``natural`` — a full S_j per output in natural parameters (GPyTorch's TrilNaturalVariationalDistribution),
  stepped by natural gradients.
"""
from __future__ import annotations

import gpytorch
import torch
from gpytorch.distributions import MultivariateNormal
from gpytorch.variational import (CholeskyVariationalDistribution, MeanFieldVariationalDistribution,
                                  TrilNaturalVariationalDistribution, VariationalStrategy,
                                  _VariationalDistribution)
from linear_operator import to_dense
from linear_operator.operators import CholLinearOperator, TriangularLinearOperator
from linear_operator.utils.cholesky import psd_safe_cholesky
from torch import nn

from .error_regression import MIN_VARIANCE
from .options import AMPLITUDES, INITIAL_OUTPUTSCALE, KERNELS, VARIATIONAL_FAMILIES


def jitter(dtype: torch.dtype) -> float:
    """GPyTorch's variational Cholesky jitter: 1e-4 in float32, 1e-6 in float64 (added to k(Ω, Ω) and k(x, x))."""
    return gpytorch.settings.variational_cholesky_jitter.value(dtype)


class EncoderHeadMean(gpytorch.means.Mean):
    """GP prior mean h(ψ) = W ψ + b: the encoder's output head itself (the same parameters)."""

    def __init__(self, head: nn.Linear):
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(..., n, p) -> (..., 2d, n)."""
        return self.head(features).transpose(-1, -2)


class GroupSharedCholeskyVariationalDistribution(_VariationalDistribution):
    """q(v_j) = N(m_j, S_{g(j)}): a mean per output, one full covariance per group of outputs.

    Outputs are grouped in order: with 2d outputs and 2 groups, outputs 0..d−1 share S_0 and
    outputs d..2d−1 share S_1. Whitened initialization: m ≈ 0, S = I.
    """

    def __init__(self, num_inducing_points: int, num_outputs: int, num_groups: int, mean_init_std: float = 1e-3):
        super().__init__(num_inducing_points, batch_shape=torch.Size([num_outputs]), mean_init_std=mean_init_std)
        self.group_size = num_outputs // num_groups
        self.variational_mean = nn.Parameter(torch.zeros(num_outputs, num_inducing_points))
        self.chol_variational_covar = nn.Parameter(torch.eye(num_inducing_points).repeat(num_groups, 1, 1))

    def initialize_variational_distribution(self, prior_dist: MultivariateNormal) -> None:
        """GPyTorch's abstract initialization from the prior, required by its base class but never reached:
        q(v) starts whitened (m ≈ 0, S = I) in ``__init__`` and :class:`InferenceFunctionGP` marks it
        initialized. A call means that contract broke, so it fails loudly rather than re-initialize."""
        raise RuntimeError("GroupSharedCholeskyVariationalDistribution is initialized at construction; "
                           "its variational strategy must be marked initialized (variational_params_initialized = 1)")

    def group_chol(self) -> torch.Tensor:
        """Lower-triangular Cholesky factors R_g of S_g: (G, M, M)."""
        return self.chol_variational_covar.tril()

    def forward(self) -> MultivariateNormal:
        chol = self.group_chol().repeat_interleave(self.group_size, 0)
        return MultivariateNormal(self.variational_mean, CholLinearOperator(TriangularLinearOperator(chol)))


class InferenceFunctionGP(gpytorch.models.ApproximateGP):
    """2d independent GPs on encoder features with a shared kernel and shared inducing inputs.

    ``self(u)`` is GPyTorch's own predictive (a batch of 2d MultivariateNormals over the n inputs);
    :meth:`marginals` computes its diagonal fast, and :meth:`kl_divergence` its KL term.
    """

    def __init__(self, head: nn.Linear, feature_dim: int, n_outputs: int, n_inducing: int, kernel: str,
                 variational: str, amplitude: str = "learned", amplitude_value: float = INITIAL_OUTPUTSCALE):
        if variational == "shared":
            distribution = GroupSharedCholeskyVariationalDistribution(n_inducing, n_outputs, num_groups=2)
        elif variational == "meanfield":
            distribution = MeanFieldVariationalDistribution(n_inducing, batch_shape=torch.Size([n_outputs]))
        elif variational == "full":
            distribution = CholeskyVariationalDistribution(n_inducing, batch_shape=torch.Size([n_outputs]))
        elif variational == "natural":
            distribution = TrilNaturalVariationalDistribution(n_inducing, batch_shape=torch.Size([n_outputs]))
        else:
            raise ValueError(f"unknown variational family {variational!r}; choose one of {VARIATIONAL_FAMILIES}")
        strategy = VariationalStrategy(self, torch.zeros(n_inducing, feature_dim), distribution,
                                       learn_inducing_locations=True)
        strategy.variational_params_initialized.fill_(1)  # already whitened-prior initialized above
        super().__init__(strategy)
        self.variational = variational
        self.n_outputs = n_outputs
        self.mean_module = EncoderHeadMean(head)
        if kernel == "rbf":
            self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(ard_num_dims=feature_dim))
            amplitude_name, value = "outputscale", amplitude_value
        elif kernel == "linear":
            self.covar_module = gpytorch.kernels.LinearKernel()
            amplitude_name, value = "variance", amplitude_value / feature_dim
        else:
            raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}")
        self._set_amplitude(amplitude_name, amplitude, value)
        self._cache: tuple | None = None

    def _set_amplitude(self, name: str, mode: str, value: float) -> None:
        """Reading R2: the kernel amplitude (the prior variance of the encoder's error) is ``learned``
        from ``value``, ``fixed`` at ``value`` (no gradient), or ``floored``: learned but ≥ ``value``."""
        if mode not in AMPLITUDES:
            raise ValueError(f"unknown amplitude mode {mode!r}; choose one of {AMPLITUDES}")
        raw = getattr(self.covar_module, "raw_" + name)
        if mode == "floored":
            self.covar_module.register_constraint("raw_" + name, gpytorch.constraints.GreaterThan(value * (1 - 1e-6)))
            value = value * 1.01  # start just above the floor, where the softplus is not flat
        setattr(self.covar_module, name, value)
        raw.requires_grad_(mode != "fixed")

    def forward(self, features: torch.Tensor) -> MultivariateNormal:
        """The GP prior at ``features`` (n, p): mean (2d, n), shared covariance (n, n)."""
        mean = self.mean_module(features)
        covar = self.covar_module(features).expand(self.n_outputs, len(features), len(features))
        return MultivariateNormal(mean, covar)

    @property
    def inducing_points(self) -> torch.Tensor:
        return self.variational_strategy.inducing_points

    @property
    def variational_distribution(self):
        return self.variational_strategy._variational_distribution

    def _moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """q(v)'s means m (2d, M) and the Cholesky factors of the S's — (G, M, M) shared, (2d, M, M)
        full or natural — or, for ``meanfield``, the diagonal variances (2d, M). For ``natural`` they
        come through GPyTorch's natural-to-moment map, whose backward pass makes a gradient step on
        the natural parameters a natural-gradient step (:class:`gpytorch.optim.NGD`)."""
        q = self.variational_distribution
        if self.variational == "natural":
            moments = q()
            return moments.mean, moments.lazy_covariance_matrix.root.to_dense()
        if self.variational == "shared":
            return q.variational_mean, q.group_chol()
        if self.variational == "full":
            return q.variational_mean, q.chol_variational_covar.tril()
        return q.variational_mean, q.variational_stddev.pow(2)

    def _variance_update(self, a: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
        """aᵀ (S_j − I) a for every output: a (M, B), ``chol`` from :meth:`_moments` -> (B, 2d)."""
        if self.variational == "meanfield":
            return a.pow(2).T @ (chol - 1.0).T
        quad = (chol.mT @ a).pow(2).sum(-2) - a.pow(2).sum(0)  # (G or 2d, B)
        if self.variational == "shared":
            quad = quad.repeat_interleave(self.n_outputs // chol.shape[0], 0)
        return quad.T

    def kernel(self, x1: torch.Tensor, x2: torch.Tensor | None = None, diag: bool = False) -> torch.Tensor:
        """k(x1, x2) as a dense tensor (n1, n2), or its diagonal (n,). Calls the GPyTorch kernel's
        ``forward`` directly: the same computation as ``covar_module(x1, x2)`` without building a
        lazily evaluated operator first, which dominates the cost at these sizes."""
        return to_dense(self.covar_module.forward(x1, x1 if x2 is None else x2, diag=diag))

    def _prior_diag(self, features: torch.Tensor) -> torch.Tensor:
        return self.kernel(features, diag=True) + jitter(features.dtype)

    def marginals(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(F_j(x)) for every output: features (B, p) -> (B, 2d), (B, 2d)."""
        if not self.training and not torch.is_grad_enabled():
            return self._cached_marginals(features)
        omega = self.inducing_points
        k_mm = self.kernel(omega)
        chol = psd_safe_cholesky(k_mm + jitter(k_mm.dtype) * torch.eye(len(omega), dtype=k_mm.dtype, device=k_mm.device))
        a = torch.linalg.solve_triangular(chol, self.kernel(omega, features), upper=False)
        m, s_chol = self._moments()
        mean = self.mean_module.head(features) + a.T @ m.T
        var = self._prior_diag(features).unsqueeze(-1) + self._variance_update(a, s_chol)
        return mean, var.clamp(min=MIN_VARIANCE)

    def _cache_key(self) -> tuple:
        return tuple((p.data_ptr(), p._version) for p in (*self.covar_module.parameters(),
                                                           *self.variational_strategy.parameters()))

    def _cached_marginals(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Evaluation path: K_ΩΩ's Cholesky solves folded into cached matrices, rebuilt when parameters change.

        mean = h(x) + k_xΩ α with α = L⁻ᵀ m (M, 2d); for the shared family the variance is
        k(x, x) + k_xΩ Q_g k_Ωx with Q_g = L⁻ᵀ (S_g − I) L⁻¹ (one M x M matrix per group); for the
        other families a = L⁻¹ k_Ωx with L⁻¹ cached.
        """
        key = self._cache_key()
        if self._cache is None or self._cache[0] != key:
            omega = self.inducing_points
            k_mm = self.kernel(omega).double()
            eye = torch.eye(len(omega), dtype=k_mm.dtype, device=k_mm.device)
            chol_inv = torch.linalg.solve_triangular(psd_safe_cholesky(k_mm + jitter(omega.dtype) * eye), eye,
                                                     upper=False)
            m, s_chol = self._moments()
            alpha = chol_inv.T @ m.double().T
            if self.variational == "shared":
                r = s_chol.double()
                extra = chol_inv.T @ (r @ r.mT - eye) @ chol_inv  # (G, M, M)
            else:
                extra = chol_inv
            dtype = omega.dtype
            self._cache = (key, alpha.to(dtype), extra.to(dtype), s_chol)
        _, alpha, extra, s_chol = self._cache
        k_xm = self.kernel(features, self.inducing_points)
        mean = self.mean_module.head(features) + k_xm @ alpha
        if self.variational == "shared":
            quad = ((k_xm @ extra) * k_xm).sum(-1)  # (G, B)
            update = quad.repeat_interleave(self.n_outputs // len(extra), 0).T
        else:
            update = self._variance_update(extra @ k_xm.T, s_chol)
        var = self._prior_diag(features).unsqueeze(-1) + update
        return mean, var.clamp(min=MIN_VARIANCE)

    def kl_divergence(self) -> torch.Tensor:
        """KL(q(v) ‖ p(v)) summed over outputs, with p(v_j) = N(0, I); computed once per shared S."""
        m, chol = self._moments()
        n_inducing = m.shape[-1]
        if self.variational == "meanfield":
            return 0.5 * (chol + m.pow(2) - 1.0 - chol.log()).sum()
        per_factor = 0.5 * (chol.pow(2).sum((-1, -2)) - n_inducing) - chol.diagonal(dim1=-2, dim2=-1).abs().log().sum(-1)
        copies = self.n_outputs // chol.shape[0]
        return 0.5 * m.pow(2).sum() + copies * per_factor.sum()
