"""GP-RF: the random-function inference model (the specification (book/specification.md) §3), built on GPyTorch.

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

Objectives (``objective``), both lower bounds on Σ_i log p(x_i):

* ``expected`` — Σ_i E_{q(F(x_i))}[ELBO(x_i; F(x_i))] − KL(q(v) ‖ p(v)), one draw of F(x_i) per
  example (closest to the paper's wording: the encoder's deviation is random noise).
* ``marginal`` — Σ_i ELBO(x_i; q̄) − KL(q(v) ‖ p(v)) with q̄ = E_F q(z | x, F), the
  :class:`~gpvae.distributions.GaussHermiteMarginal`. Tighter, since the entropy of a mixture is
  at least the mean entropy of its components.

Minibatches scale the data term by N/B: the loss is −mean_i(objective_i) + KL/N. Test-time
inference uses q̄ with its exact density, whatever the training objective.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

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

from .. import objectives
from ..distributions import QUADRATURE_NODES, GaussHermiteMarginal, gauss_hermite
from ..networks import Decoder, Encoder
from ..objectives import gaussian_elbo
from ..options import option, validate
from ..progress import progress
from ..provenance import parameter_digest
from ..refinement import Convergence, optimal_gaussian
from .base import EncoderDecoderModel
from .error_gp import (ERROR_MODELS, INDUCING_PLACEMENTS, MIN_VARIANCE, ErrorRegressionGP, NearestNeighbourErrors,
                       median_distance)

KERNELS = ("rbf", "linear")
VARIANCE_LINKS = ("lognormal", "squared")
OBJECTIVES = ("expected", "marginal")
VARIATIONAL_FAMILIES = ("shared", "meanfield", "full", "natural")
AMPLITUDES = ("learned", "fixed", "floored")
FITS = ("elbo", "errors")
ERROR_INPUTS = ("features", "features_and_moments")
INITIAL_OUTPUTSCALE = 0.01  # prior variance of the encoder's error at initialization
KERNEL_LR_FACTOR = 0.1  # kernel hyperparameters learn 10x slower than the networks (NotPSDError guard)
DIAGNOSTIC_SAMPLES = 10  # draws per validation image behind the expected-minus-marginal ELBO diagnostic


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


@dataclass
class GPRFOptions:
    """Every switch of GP-RF, in one place: fields of :class:`gpvae.config.TrainConfig`, so CLI
    options, papermill parameters and Python keywords. The readings of the specification (book/specification.md) §3b:

    * R1 — ``gp_fit="elbo"``, ``amplitude="learned"``, trained jointly (the :data:`PRESETS` ``paper``);
    * R2 — ``amplitude="fixed"`` or ``"floored"`` at ``amplitude_value``;
    * R3 — ``init_from`` a trained run with ``freeze`` (options of the training, not of the model);
    * R4 — ``gp_fit="errors"``: GP regression of SVI errors (``error_*``; ``error_model="knn"`` is the control);
    * R5 — ``refit_rounds`` rounds of ``refit_epochs`` epochs with the corrected proposal, refitting between;
    * capacity and optimisation — ``inducing``, ``variational="natural"`` (natural gradients, ``ngd_lr``).
    """

    kernel: str = option("rbf", "GP-RF kernel on encoder features", choices=KERNELS)
    inducing: int = option(128, "GP-RF inducing points M (gp_fit elbo)", minimum=1)
    variance_link: str = option("lognormal", "GP-RF variance link: GP on log sigma^2, or on sigma",
                                choices=VARIANCE_LINKS)
    objective: str = option("expected", "GP-RF objective: expected ELBO over F, or ELBO of the marginal",
                            choices=OBJECTIVES)
    variational: str = option("shared", "GP-RF q(v): covariance shared per output group, diagonal, full per "
                              "output, or full with natural parameters trained by natural gradients",
                              choices=VARIATIONAL_FAMILIES)
    amplitude: str = option("learned", "GP-RF kernel amplitude (prior variance of the encoder's error): learned, "
                            "fixed at amplitude_value, or floored at it (reading R2)", choices=AMPLITUDES)
    amplitude_value: float = option(INITIAL_OUTPUTSCALE, "GP-RF kernel amplitude: initial, fixed or floor value",
                                    minimum=1e-8)
    ngd_lr: float = option(0.1, "GP-RF natural-gradient step size for q(v) (variational natural)", minimum=0.0)
    gp_fit: str = option("errors", "GP-RF posterior over functions: regression of observed SVI errors on training "
                         "images (reading R4, the study's best), or a variational GP in the ELBO (R1-R3)", choices=FITS)
    error_model: str = option("gp", "gp_fit errors: GP regression, or the k-nearest-neighbour control",
                              choices=ERROR_MODELS)
    error_images: int = option(10_000, "gp_fit errors: training images whose SVI errors are observed", minimum=1)
    error_inducing: int = option(512, "gp_fit errors: inducing inputs of the error GP's predictive", minimum=1)
    error_neighbours: int = option(10, "gp_fit errors with error_model knn: neighbours averaged", minimum=1)
    error_kernel_groups: int = option(2, "gp_fit errors: kernels of the error GP, one per output group (mean and "
                                      "log-variance errors) or one shared by all outputs", choices=(1, 2))
    error_inducing_placement: str = option("random", "gp_fit errors: inducing inputs at a seeded random subset of the "
                                           "observed features, or at their k-means centres", choices=INDUCING_PLACEMENTS)
    error_inputs: str = option("features", "gp_fit errors: inputs of the error model, the encoder's trunk features, "
                               "or those and the encoder's own mean and log-variance", choices=ERROR_INPUTS)
    error_variance_rank: int = option(0, "gp_fit errors: predictive variance through a rank-r factor of the M x M "
                                      "correction matrix (0: the full matrix)", minimum=0)
    quadrature_nodes: int = option(QUADRATURE_NODES, "Gauss-Hermite nodes of the marginal proposal's log-variance "
                                   "integral", minimum=2)
    error_svi_steps: int = option(250, "gp_fit errors: most SVI steps per observed error (Adam, lr 1e-2)",
                                  minimum=100)
    error_svi_samples: int = option(4, "gp_fit errors: draws per SVI step", minimum=1)
    refit_rounds: int = option(0, "gp_fit errors: rounds of training with the corrected proposal, the error model "
                               "refitted before each (reading R5)", minimum=0)
    refit_epochs: int = option(5, "gp_fit errors: epochs per refit round (the last rounds x refit_epochs epochs)",
                               minimum=1)


# Named configurations: ``--gp-preset paper`` is the paper's wording read literally (reading R1).
PRESETS = {"paper": dict(gp_fit="elbo", objective="expected", amplitude="learned", amplitude_value=INITIAL_OUTPUTSCALE,
                         inducing=128, variational="shared", kernel="rbf", variance_link="lognormal")}
ERROR_SVI_BATCH = 1000  # training images per SVI batch when observing errors


class GPRF(EncoderDecoderModel):
    """Random-function inference model: encoder, decoder, and a GP over the inference function
    (a variational GP trained in the ELBO, or a GP regression of observed errors: ``gp_fit``)."""

    def __init__(self, encoder: Encoder, decoder: Decoder, n_train: int, **options):
        super().__init__(encoder, decoder)
        self.options = GPRFOptions(**options)
        validate(self.options)
        o = self.options
        self.n_train, self.variance_link, self.objective = n_train, o.variance_link, o.objective
        n_outputs = 2 * self.latent_dim
        if o.gp_fit == "elbo":
            self.gp = InferenceFunctionGP(encoder.head, encoder.feature_dim, n_outputs, o.inducing, o.kernel,
                                          o.variational, o.amplitude, o.amplitude_value)
            self.initialization_images = o.inducing
        elif o.error_model == "gp":
            self.gp = ErrorRegressionGP(self.error_input_dim, n_outputs, min(o.error_inducing, o.error_images, n_train),
                                        o.error_kernel_groups, o.error_inducing_placement, o.error_variance_rank)
        else:
            self.gp = NearestNeighbourErrors(self.error_input_dim, n_outputs, min(o.error_images, n_train),
                                             o.error_neighbours)
        nodes, log_weights = gauss_hermite(o.quadrature_nodes)
        self.register_buffer("quadrature_nodes", nodes, persistent=False)
        self.register_buffer("quadrature_log_weights", log_weights, persistent=False)

    @classmethod
    def from_config(cls, encoder: Encoder, decoder: Decoder, config, n_train: int) -> "GPRF":
        return cls(encoder, decoder, n_train, **{f.name: getattr(config, f.name) for f in fields(GPRFOptions)})

    @property
    def fits_errors(self) -> bool:
        return self.options.gp_fit == "errors"

    @property
    def error_input_dim(self) -> int:
        """Width of the error model's inputs (:meth:`error_inputs`)."""
        extra = 2 * self.latent_dim if self.options.error_inputs == "features_and_moments" else 0
        return self.encoder.feature_dim + extra

    def error_inputs(self, features: torch.Tensor) -> torch.Tensor:
        """The error model's inputs from trunk features (B, p): the features, or with ``error_inputs``
        ``features_and_moments`` also the encoder's mean and log-variance, (B, p + 2d)."""
        if self.options.error_inputs == "features":
            return features
        return torch.cat([features, self.encoder.head(features)], -1)

    def parameter_groups(self, lr: float) -> list[dict]:
        slow = list(self.gp.covar_module.parameters()) if not self.fits_errors else []
        excluded = {id(p) for p in slow} | {id(p) for p in self._natural_parameters()}
        rest = [p for p in self.parameters() if id(p) not in excluded]
        return [{"params": rest, "lr": lr}, {"params": slow, "lr": lr * KERNEL_LR_FACTOR}]

    def _natural_parameters(self) -> list[torch.nn.Parameter]:
        if self.fits_errors or self.options.variational != "natural":
            return []
        return list(self.gp.variational_distribution.parameters())

    def optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """Adam for networks and kernel; with ``variational="natural"`` also NGD on q(v)'s natural
        parameters (the loss is the objective per training image, hence ``num_data = n_train``)."""
        adam = [torch.optim.Adam(self.parameter_groups(lr))]
        natural = self._natural_parameters()
        return adam + ([gpytorch.optim.NGD(natural, num_data=self.n_train, lr=self.options.ngd_lr)] if natural else [])

    def summary(self) -> dict:
        """The kernel's amplitude (prior variance of the encoder's error) and its lengthscales."""
        if self.fits_errors:
            return self.gp.summary()
        kernel = self.gp.covar_module
        if isinstance(kernel, gpytorch.kernels.ScaleKernel):
            lengthscale = kernel.base_kernel.lengthscale.detach()
            return {"kernel_outputscale": kernel.outputscale.item(), "lengthscale_median": lengthscale.median().item()}
        return {"kernel_variance": kernel.variance.item()}

    @torch.no_grad()
    def initialize_from_data(self, x: torch.Tensor) -> None:
        """Inducing inputs at the features of the first M images of ``x``; RBF lengthscales by the
        median heuristic (the median distance between those features). Nothing for ``gp_fit="errors"``."""
        if self.fits_errors:
            return
        n_inducing = len(self.gp.inducing_points)
        if len(x) < n_inducing:
            raise ValueError(f"initialization needs at least M = {n_inducing} images, got {len(x)}")
        features = self.encoder.features(x[:n_inducing])
        self.gp.inducing_points.copy_(features)
        if isinstance(self.gp.covar_module, gpytorch.kernels.ScaleKernel):
            self.gp.covar_module.base_kernel.lengthscale = median_distance(features).expand(1, features.shape[-1])

    # --- reading R4/R5: the posterior over functions from observed errors -----------------------------

    def data_fit_epochs(self, epochs: int) -> list[int]:
        """Epochs (0-based) before which the error model is refitted (R5 rounds); [] for ``gp_fit="elbo"``."""
        if not self.fits_errors:
            return []
        starts = (epochs - r * self.options.refit_epochs for r in range(self.options.refit_rounds, 0, -1))
        return sorted({e for e in starts if e >= 0})

    @property
    def fits_after_training(self) -> bool:
        return self.fits_errors

    def observed_errors(self, x: torch.Tensor, seed: int, cache_dir: Path | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Encoder features (N, p) and errors (N, 2d) = (μ* − μ_φ, ℓ* − ℓ_φ) of binarized images ``x``,
        q* by the SVI oracle (:func:`gpvae.refinement.optimal_gaussian`) from the encoder's output with
        at most ``error_svi_steps`` steps (draws from the global RNG, seeded by the caller with ``seed``).
        With ``cache_dir``, q* is kept there under a digest of everything it depends on — the encoder's
        and decoder's parameters, the images, the SVI settings and the seed — written atomically; a
        cached file that cannot be read is computed again."""
        with torch.no_grad():
            features, mean, log_var = (torch.cat(t) for t in zip(*(self.encoder.encode(xb)
                                                                  for xb in x.split(ERROR_SVI_BATCH))))
        cache = cache_dir / f"svi_errors_{self._error_digest(x, seed)}.pt" if cache_dir is not None else None
        saved = _load_cache(cache)
        if saved is not None:
            record = {**saved["record"], "cache": str(cache)}
            return features, torch.cat([saved["mean"] - mean, saved["log_var"] - log_var], -1), record
        convergence = Convergence(window=50, tolerance=0.01, max_steps=self.options.error_svi_steps)
        means, log_vars, records = [], [], []
        for start in progress(range(0, len(x), ERROR_SVI_BATCH), desc="SVI errors", unit="batch"):
            part = slice(start, start + ERROR_SVI_BATCH)
            m, v, rec = optimal_gaussian(self, x[part], mean[part], log_var[part], convergence,
                                         n_samples=self.options.error_svi_samples)
            means.append(m)
            log_vars.append(v)
            records.append({k: rec[k] for k in ("steps", "converged")})
        record = {"images": len(x), "batches": records, "max_steps": convergence.max_steps,
                  "samples_per_step": self.options.error_svi_samples}
        opt_mean, opt_log_var = torch.cat(means), torch.cat(log_vars)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_name(f"{cache.name}.{os.getpid()}.partial")
            torch.save({"mean": opt_mean, "log_var": opt_log_var, "record": record}, partial)
            os.replace(partial, cache)
        return features, torch.cat([opt_mean - mean, opt_log_var - log_var], -1), record

    def _error_digest(self, x: torch.Tensor, seed: int) -> str:
        """SHA-256 (first 32 hex digits) of what the observed errors of ``x`` depend on."""
        digest = hashlib.sha256()
        for part in (parameter_digest(self.encoder), parameter_digest(self.decoder),
                     json.dumps([list(x.shape), self.options.error_svi_steps, self.options.error_svi_samples,
                                 ERROR_SVI_BATCH, seed])):
            digest.update(part.encode())
        digest.update(x.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:32]

    def fit_to_data(self, x: torch.Tensor, seed: int, cache: Path | None = None) -> dict:
        """Observe the errors on the first ``error_images`` images of ``x`` (binarized) and fit the error
        model; ``cache``: a folder for the observed errors (:meth:`observed_errors`)."""
        features, errors, record = self.observed_errors(x[:self.options.error_images], seed, cache)
        with torch.no_grad():
            inputs = self.error_inputs(features)
        fit = self.gp.fit(inputs, errors, torch.Generator().manual_seed(seed))
        return {"svi": record, "error_model": fit}

    # --- the proposal and the objectives -----------------------------------------------------------------

    def _marginals(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(F(x)) for the 2d outputs: (B, 2d) each."""
        if not self.fits_errors:
            return self.gp.marginals(features)
        correction, var = self.gp.marginals(self.error_inputs(features))
        return self.encoder.head(features) + correction, var

    def latent_variance(self, variance_function: torch.Tensor) -> torch.Tensor:
        """σ²(L): exp(L) for the lognormal link, L² for the squared link (floored at MIN_VARIANCE)."""
        if self.variance_link == "lognormal":
            return variance_function.exp()
        return variance_function.pow(2).clamp(min=MIN_VARIANCE)

    def function_marginals(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(mean of M, variance of M, mean of L, variance of L), each (B, d)."""
        mean, var = self._marginals(self.encoder.features(x))
        d = self.latent_dim
        return mean[:, :d], var[:, :d], mean[:, d:], var[:, d:]

    def proposal(self, x: torch.Tensor) -> GaussHermiteMarginal:
        """q̄(z | x): the GP marginal of q(z | x, F), with exact sampling and density."""
        mean_m, var_m, mean_l, var_l = self.function_marginals(x)
        nodes = mean_l.unsqueeze(-1) + (2 * var_l).sqrt().unsqueeze(-1) * self.quadrature_nodes
        return GaussHermiteMarginal(mean_m, var_m, self.latent_variance(nodes), self.quadrature_log_weights)

    def expected_elbo(self, x: torch.Tensor) -> torch.Tensor:
        """E_{q(F(x))}[ELBO(x; F(x))] per example, one draw of F(x) and of z: (B,)."""
        mean_m, var_m, mean_l, var_l = self.function_marginals(x)
        m = mean_m + var_m.sqrt() * torch.randn_like(mean_m)
        var_z = self.latent_variance(mean_l + var_l.sqrt() * torch.randn_like(mean_l))
        z = m + var_z.sqrt() * torch.randn_like(m)
        return self.log_likelihood(x, z.unsqueeze(0)).squeeze(0) - objectives.gaussian_kl_to_standard(m, var_z.log())

    def sampled_function_log_weights(self, x: torch.Tensor, n_samples: int) -> torch.Tensor:
        """log w with a fresh function draw per sample and its *conditional* density:
        F_s ~ q(F(x)), z_s ~ q(z | x, F_s), log w_s = log p(x, z_s) − log q(z_s | x, F_s). (S, B).

        Unbiased for p(x) like q̄'s weights, but q̄ is its Rao–Blackwellization
        (1/q̄(z) = E[1/q(z | x, F) | z]), so the estimate with q̄ is tighter at the same S. For
        comparison only; the evaluation protocol uses :meth:`proposal`.
        """
        mean_m, var_m, mean_l, var_l = self.function_marginals(x)
        shape = (n_samples, *mean_m.shape)
        m = mean_m + var_m.sqrt() * torch.randn(shape, dtype=x.dtype, device=x.device)
        std_z = self.latent_variance(mean_l + var_l.sqrt() * torch.randn(shape, dtype=x.dtype, device=x.device)).sqrt()
        z = m + std_z * torch.randn_like(m)
        conditional = torch.distributions.Normal(m, std_z, validate_args=False).log_prob(z).sum(-1)
        return self.log_joint(x, z) - conditional

    def difficulty(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Posterior difficulty per example: the GP's predictive variance averaged over the d outputs
        of the mean function and of the variance function, (B,) each; for the nearest-neighbour
        control, which has no variance, also the mean feature distance to its neighbours."""
        _, var_m, _, var_l = self.function_marginals(x)
        scores = {"mean_function_variance": var_m.mean(-1), "variance_function_variance": var_l.mean(-1)}
        if isinstance(self.gp, NearestNeighbourErrors):
            scores["neighbour_distance"] = self.gp.neighbour_distance(self.error_inputs(self.encoder.features(x)))[0].mean(-1)
        return scores

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        if self.fits_errors:  # the encoder's ELBO until the error model is fitted, then q̄'s (R5)
            if not bool(self.gp.fitted):
                return -gaussian_elbo(self, x, *self.encoder(x)).mean()
            return -self.elbo(x).mean()
        data_term = self.expected_elbo(x) if self.objective == "expected" else self.elbo(x)
        return -data_term.mean() + self.gp.kl_divergence() / self.n_train

    @torch.no_grad()
    def diagnostics(self, x_train: torch.Tensor, x_valid: torch.Tensor, n_samples: int = DIAGNOSTIC_SAMPLES) -> dict:
        """What the random function does, on training and validation images (binarized), for the
        training history: the correction's size ‖mean of F − h‖ / ‖h‖ (mean over images), the mean
        predictive variance of the mean and variance functions on both sets, and for ``gp_fit="elbo"``
        the amplitude, lengthscale, KL(q(v) ‖ p(v))/N and the expected-minus-marginal ELBO (validation,
        ``n_samples`` draws per image)."""
        out = {}
        for split, x in (("train", x_train), ("valid", x_valid)):
            features = self.encoder.features(x)
            head = self.encoder.head(features)
            mean, var = self._marginals(features)
            d = self.latent_dim
            out[f"correction_ratio_{split}"] = ((mean - head).norm(dim=-1) / head.norm(dim=-1)).mean().item()
            out[f"mean_function_variance_{split}"] = var[:, :d].mean().item()
            out[f"variance_function_variance_{split}"] = var[:, d:].mean().item()
        if not self.fits_errors:
            out.update(self.summary(), kl_per_example=self.gp.kl_divergence().item() / self.n_train)
            expected = torch.stack([self.expected_elbo(x_valid) for _ in range(n_samples)]).mean()
            out["expected_minus_marginal_elbo"] = (expected - self.elbo(x_valid, n_samples).mean()).item()
        return out


def _load_cache(path: Path | None) -> dict | None:
    """A cache file's contents, or None when there is none or it cannot be read (then it is recomputed)."""
    if path is None or not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return saved if isinstance(saved, dict) and {"mean", "log_var", "record"} <= set(saved) else None
    except Exception:  # truncated or foreign: torch raises many types; the cache is derived data
        return None
