"""GP-RF, the random-function inference model (the specification (book/specification.md) §3), in its two readings.

:class:`GPRF` holds what both readings share: the marginal proposal q̄(z | x) = E_F q(z | x, F), a
:class:`~gpvae.distributions.GaussHermiteMarginal` built from the marginals of F(x) = (M(x), L(x)),
with its exact density, the objectives over F and the diagnostics of the correction. What differs is
where q(F(x)) comes from (:meth:`GPRF._marginals`) and how it is trained:

* :class:`VariationalGPRF` (``gp_fit="elbo"``, readings R1–R3) — a sparse variational GP
  (:class:`~gpvae.gp.variational.InferenceFunctionGP`) trained in the ELBO with the networks;
* :class:`ErrorRegressionGPRF` (``gp_fit="errors"``, readings R4, R5) — a regression of the encoder's
  observed SVI errors (:mod:`gpvae.gp.error_regression`), fitted between gradient steps.

``GPRF(encoder, decoder, n_train, **options)`` builds the reading that ``gp_fit`` names.

Objectives of the variational reading (``objective``), each a lower bound on Σ_i log p(x_i) (the
book's chapter on the random function derives them):

* ``expected`` — Σ_i E_{q(F(x_i))}[ELBO(x_i; F(x_i))] − KL(q(v) ‖ p(v)), one draw of F(x_i) per
  example (closest to the paper's wording: the encoder's deviation is random noise).
* ``marginal`` — Σ_i ELBO(x_i; q̄) − KL(q(v) ‖ p(v)). Tighter, since the entropy of a mixture is
  at least the mean entropy of its components.
* ``iw`` — Σ_i E log (1/k) Σ_j p(x_i, z_j) / q̄(z_j | x_i), z_j ~ q̄, − KL(q(v) ‖ p(v)): the
  importance-weighted bound with q̄ as the proposal (k = ``iw_k``); it rewards a proposal that covers
  the posterior, where the ELBO punishes the spread F adds.
* ``iw_expected`` — Σ_i E_{q(F(x_i))} E log (1/k) Σ_j p(x_i, z_j) / q(z_j | x_i, F), z_j ~ q(z | x_i, F),
  − KL(q(v) ‖ p(v)): the importance-weighted bound of each conditional proposal, averaged over F.

Minibatches scale the data term by N/B: the loss is −mean_i(objective_i) + KL/N. Test-time
inference uses q̄ with its exact density, whatever the training objective.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import gpytorch
import torch

from .. import objectives
from ..distributions import GaussHermiteMarginal, gauss_hermite
from ..io import atomic_write
from ..networks import Decoder, Encoder
from ..objectives import gaussian_elbo
from ..options import ConfigError, validate
from ..progress import progress
from ..provenance import parameter_digest
from ..refinement import Convergence, optimal_gaussian
from ..gp.error_regression import MIN_VARIANCE, ErrorRegressionGP, NearestNeighbourErrors, median_distance
from ..gp.options import GPRFOptions
from ..gp.variational import InferenceFunctionGP
from .base import EncoderDecoderModel

KERNEL_LR_FACTOR = 0.1  # kernel hyperparameters learn 10x slower than the networks (NotPSDError guard)
DIAGNOSTIC_SAMPLES = 10  # draws per validation image behind the expected-minus-marginal ELBO diagnostic
ERROR_SVI_BATCH = 1000  # training images per SVI batch when observing errors


class GPRF(EncoderDecoderModel):
    """Random-function inference model: encoder, decoder, and a GP over the inference function
    (a variational GP trained in the ELBO, or a GP regression of observed errors: ``gp_fit``).

    The base of both readings: ``GPRF(...)`` returns the :class:`VariationalGPRF` or the
    :class:`ErrorRegressionGPRF` that ``gp_fit`` names. A reading defines :meth:`_marginals`,
    :meth:`training_objective` and :meth:`kl_per_example`."""

    def __new__(cls, *args, **options):
        if cls is GPRF:  # the reading that gp_fit names once the preset is applied (n_train may come as a keyword)
            given = {k: v for k, v in options.items() if k in GPRFOptions.__dataclass_fields__}
            cls = READINGS[cls.checked_options(given).gp_fit]
        return super().__new__(cls)

    @staticmethod
    def checked_options(options: dict) -> GPRFOptions:
        """``options`` as a validated :class:`GPRFOptions`, its ``gp_preset`` applied."""
        checked = GPRFOptions(**options)
        validate(checked)
        checked.check()
        return checked

    def __init__(self, encoder: Encoder, decoder: Decoder, n_train: int, **options):
        super().__init__(encoder, decoder)
        self.options = self.checked_options(options)
        if not isinstance(self, READINGS[self.options.gp_fit]):
            raise ConfigError(f"gp_fit = {self.options.gp_fit!r} is read by {READINGS[self.options.gp_fit].__name__}, "
                              f"not {type(self).__name__}")
        self.n_train, self.variance_link = n_train, self.options.variance_link
        nodes, log_weights = gauss_hermite(self.options.quadrature_nodes)
        self.register_buffer("quadrature_nodes", nodes, persistent=False)
        self.register_buffer("quadrature_log_weights", log_weights, persistent=False)

    Options = GPRFOptions

    @classmethod
    def from_config(cls, encoder: Encoder, decoder: Decoder, config, n_train: int) -> "GPRF":
        return cls(encoder, decoder, n_train, **GPRFOptions.values(config))

    # --- optimisation: one layout of parameter groups for both readings ---------------------------------

    def _kernel_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters stepped at ``lr`` × :data:`KERNEL_LR_FACTOR` (none by default)."""
        return []

    def _natural_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters stepped by natural gradients instead of Adam (none by default)."""
        return []

    def parameter_groups(self, lr: float) -> list[dict]:
        """Two groups in every reading (so that optimizer states have one layout): the kernel
        hyperparameters at ``lr`` × :data:`KERNEL_LR_FACTOR`, and all but them and the natural parameters at ``lr``."""
        slow = self._kernel_parameters()
        excluded = {id(p) for p in slow} | {id(p) for p in self._natural_parameters()}
        rest = [p for p in self.parameters() if id(p) not in excluded]
        return [{"params": rest, "lr": lr}, {"params": slow, "lr": lr * KERNEL_LR_FACTOR}]

    def optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """Adam for networks and kernel; with ``variational="natural"`` also NGD on q(v)'s natural
        parameters (the loss is the objective per training image, hence ``num_data = n_train``)."""
        adam = [torch.optim.Adam(self.parameter_groups(lr))]
        natural = self._natural_parameters()
        return adam + ([gpytorch.optim.NGD(natural, num_data=self.n_train, lr=self.options.ngd_lr)] if natural else [])

    # --- the proposal and the objectives -----------------------------------------------------------------

    def _marginals(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(F(x)) for the 2d outputs from trunk features (B, p): (B, 2d) each."""
        raise NotImplementedError

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

    def _sampled_conditional(self, x: torch.Tensor, shape: tuple = ()) -> tuple[torch.Tensor, torch.Tensor]:
        """One draw of F(x) ~ q(F(x)) per element of ``shape``: the mean and standard deviation of
        q(z | x, F), (*shape, B, d) each."""
        mean_m, var_m, mean_l, var_l = self.function_marginals(x)
        draw = lambda: torch.randn((*shape, *mean_m.shape), dtype=x.dtype, device=x.device)
        m = mean_m + var_m.sqrt() * draw()
        return m, self.latent_variance(mean_l + var_l.sqrt() * draw()).sqrt()

    def iw_bound(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """log (1/k) Σ_j p(x, z_j) / q̄(z_j | x) with z_j ~ q̄ and q̄'s exact density: (B,)."""
        return objectives.iwae_bound(self.log_weights(x, k))

    def expected_iw_bound(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """One draw of F(x), then log (1/k) Σ_j p(x, z_j) / q(z_j | x, F) with z_j ~ q(z | x, F): (B,)."""
        m, std_z = self._sampled_conditional(x)
        conditional = torch.distributions.Normal(m, std_z, validate_args=False)
        z = conditional.rsample((k,))
        return objectives.iwae_bound(self.log_joint(x, z) - conditional.log_prob(z).sum(-1))

    def sampled_function_log_weights(self, x: torch.Tensor, n_samples: int) -> torch.Tensor:
        """log w with a fresh function draw per sample and its *conditional* density:
        F_s ~ q(F(x)), z_s ~ q(z | x, F_s), log w_s = log p(x, z_s) − log q(z_s | x, F_s). (S, B).

        Unbiased for p(x) like q̄'s weights, but q̄ is its Rao–Blackwellization
        (1/q̄(z) = E[1/q(z | x, F) | z]), so the estimate with q̄ is tighter at the same S. For
        comparison only; the evaluation protocol uses :meth:`proposal`.
        """
        m, std_z = self._sampled_conditional(x, (n_samples,))
        z = m + std_z * torch.randn_like(m)
        conditional = torch.distributions.Normal(m, std_z, validate_args=False).log_prob(z).sum(-1)
        return self.log_joint(x, z) - conditional

    def difficulty(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Posterior difficulty per example: the GP's predictive variance averaged over the d outputs
        of the mean function and of the variance function, (B,) each."""
        _, var_m, _, var_l = self.function_marginals(x)
        return {"mean_function_variance": var_m.mean(-1), "variance_function_variance": var_l.mean(-1)}

    def training_objective(self, x: torch.Tensor) -> torch.Tensor:
        """The per-example data term of the loss: (B,)."""
        raise NotImplementedError

    def kl_per_example(self) -> torch.Tensor | float:
        """KL(q(v) ‖ p(v)) / N of the posterior over functions, the loss's penalty: a scalar."""
        raise NotImplementedError

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """−mean_i(:meth:`training_objective`) + :meth:`kl_per_example`: a scalar."""
        return -self.training_objective(x).mean() + self.kl_per_example()

    @torch.no_grad()
    def diagnostics(self, x_train: torch.Tensor, x_valid: torch.Tensor) -> dict:
        """What the random function does, on training and validation images (binarized), for the
        training history: the correction's size ‖mean of F − h‖ / ‖h‖ (mean over images) and the mean
        predictive variance of the mean and variance functions on both sets."""
        out = {}
        for split, x in (("train", x_train), ("valid", x_valid)):
            features = self.encoder.features(x)
            head = self.encoder.head(features)
            mean, var = self._marginals(features)
            d = self.latent_dim
            out[f"correction_ratio_{split}"] = ((mean - head).norm(dim=-1) / head.norm(dim=-1)).mean().item()
            out[f"mean_function_variance_{split}"] = var[:, :d].mean().item()
            out[f"variance_function_variance_{split}"] = var[:, d:].mean().item()
        return out


class VariationalGPRF(GPRF):
    """Readings R1–R3 (``gp_fit="elbo"``): q(F) a sparse variational GP on the encoder's features
    (:class:`~gpvae.gp.variational.InferenceFunctionGP`), trained with the networks in the ELBO
    (``objective``) minus KL(q(v) ‖ p(v))."""

    def __init__(self, encoder: Encoder, decoder: Decoder, n_train: int, **options):
        super().__init__(encoder, decoder, n_train, **options)
        o = self.options
        self.objective, self.iw_k = o.objective, o.iw_k
        self.gp = InferenceFunctionGP(encoder.head, encoder.feature_dim, 2 * self.latent_dim, o.inducing, o.kernel,
                                      o.variational, o.amplitude, o.amplitude_value)
        self.initialization_images = o.inducing

    def _kernel_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.gp.covar_module.parameters())

    def _natural_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.gp.variational_distribution.parameters()) if self.options.variational == "natural" else []

    def summary(self) -> dict:
        """The kernel's amplitude (prior variance of the encoder's error) and its lengthscales."""
        kernel = self.gp.covar_module
        if isinstance(kernel, gpytorch.kernels.ScaleKernel):
            lengthscale = kernel.base_kernel.lengthscale.detach()
            return {"kernel_outputscale": kernel.outputscale.item(), "lengthscale_median": lengthscale.median().item()}
        return {"kernel_variance": kernel.variance.item()}

    @torch.no_grad()
    def initialize_from_data(self, x: torch.Tensor) -> None:
        """Inducing inputs at the features of the first M images of ``x``; RBF lengthscales by the
        median heuristic (the median distance between those features)."""
        n_inducing = len(self.gp.inducing_points)
        if len(x) < n_inducing:
            raise ValueError(f"initialization needs at least M = {n_inducing} images, got {len(x)}")
        features = self.encoder.features(x[:n_inducing])
        self.gp.inducing_points.copy_(features)
        if isinstance(self.gp.covar_module, gpytorch.kernels.ScaleKernel):
            self.gp.covar_module.base_kernel.lengthscale = median_distance(features).expand(1, features.shape[-1])

    def _marginals(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.gp.marginals(features)

    def training_objective(self, x: torch.Tensor) -> torch.Tensor:
        """The per-example bound ``objective`` names (the module's list): (B,)."""
        if self.objective == "iw":
            return self.iw_bound(x, self.iw_k)
        if self.objective == "iw_expected":
            return self.expected_iw_bound(x, self.iw_k)
        return self.expected_elbo(x) if self.objective == "expected" else self.elbo(x)

    def kl_per_example(self) -> torch.Tensor:
        return self.gp.kl_divergence() / self.n_train

    @torch.no_grad()
    def diagnostics(self, x_train: torch.Tensor, x_valid: torch.Tensor, n_samples: int = DIAGNOSTIC_SAMPLES) -> dict:
        """:meth:`GPRF.diagnostics`, and the amplitude, lengthscale, KL(q(v) ‖ p(v))/N and the
        expected-minus-marginal ELBO (validation, ``n_samples`` draws per image)."""
        out = super().diagnostics(x_train, x_valid)
        out.update(self.summary(), kl_per_example=self.gp.kl_divergence().item() / self.n_train)
        expected = torch.stack([self.expected_elbo(x_valid) for _ in range(n_samples)]).mean()
        out["expected_minus_marginal_elbo"] = (expected - self.elbo(x_valid, n_samples).mean()).item()
        return out


class ErrorRegressionGPRF(GPRF):
    """Readings R4, R5 (``gp_fit="errors"``): q(F) the encoder's head plus a regression of its observed
    SVI errors (:class:`~gpvae.gp.error_regression.ErrorRegressionGP`, or the k-nearest-neighbour control
    :class:`~gpvae.gp.error_regression.NearestNeighbourErrors`), fitted by :meth:`fit_to_data` after
    training (R4) and before each of ``refit_rounds`` rounds of training with q̄ (R5)."""

    fits_after_training = True

    def __init__(self, encoder: Encoder, decoder: Decoder, n_train: int, **options):
        super().__init__(encoder, decoder, n_train, **options)
        o, n_outputs = self.options, 2 * self.latent_dim
        if o.error_model == "gp":
            self.gp = ErrorRegressionGP(self.error_input_dim, n_outputs,
                                        min(o.error_inducing, o.observed_images(n_train), n_train),
                                        o.error_kernel_groups, o.error_inducing_placement, o.error_variance_rank)
        else:
            self.gp = NearestNeighbourErrors(self.error_input_dim, n_outputs, min(o.observed_images(n_train), n_train),
                                             o.error_neighbours)

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

    def summary(self) -> dict:
        return self.gp.summary()

    def _source(self, data) -> tuple[torch.Tensor, str]:
        """The images of ``error_source`` in ``data`` and their name."""
        return (data.valid, "validation images") if self.options.error_source == "valid" else (data.train, "training images")

    def check_data(self, data, source: str) -> None:
        """Refuse an ``error_images`` given beyond the images of ``error_source`` in ``data`` (ConfigError)."""
        images, name = self._source(data)
        if self.options.observed_images(len(images)) > len(images):
            raise ConfigError(f"--error-images {self.options.error_images} exceeds the {len(images)} {name} of {source}")

    def fit_images(self, data, seed: int) -> torch.Tensor:
        """The first :meth:`~gpvae.gp.options.GPRFOptions.observed_images` images of ``error_source``: training
        images binarized once with ``seed``, or validation images (binarized once already, held out of training)."""
        images, _ = self._source(data)
        images = images[:self.options.observed_images(len(images))]
        return images if self.options.error_source == "valid" else data.training_batch(images, torch.Generator().manual_seed(seed))

    def data_fit_epochs(self, epochs: int) -> list[int]:
        """Epochs (0-based) before which the error model is refitted (R5 rounds)."""
        starts = (epochs - r * self.options.refit_epochs for r in range(self.options.refit_rounds, 0, -1))
        return sorted({e for e in starts if e >= 0})

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
            state = {"mean": opt_mean, "log_var": opt_log_var, "record": record}
            atomic_write(cache, lambda partial: torch.save(state, partial))
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
        """Observe the errors on the binarized images ``x`` (:meth:`fit_images`) and fit the error
        model; ``cache``: a folder for the observed errors (:meth:`observed_errors`)."""
        features, errors, record = self.observed_errors(x, seed, cache)
        with torch.no_grad():
            inputs = self.error_inputs(features)
        fit = self.gp.fit(inputs, errors, torch.Generator().manual_seed(seed))
        return {"svi": record, "error_model": fit}

    def _marginals(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        correction, var = self.gp.marginals(self.error_inputs(features))
        return self.encoder.head(features) + correction, var

    def difficulty(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`GPRF.difficulty`; for the nearest-neighbour control, which has no variance, also the
        mean feature distance to its neighbours, (B,)."""
        scores = super().difficulty(x)
        if isinstance(self.gp, NearestNeighbourErrors):
            scores["neighbour_distance"] = self.gp.neighbour_distance(self.error_inputs(self.encoder.features(x)))[0].mean(-1)
        return scores

    def training_objective(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's ELBO until the error model is fitted, then q̄'s (R5): (B,)."""
        if not bool(self.gp.fitted):
            return gaussian_elbo(self, x, *self.encoder(x))
        return self.elbo(x)

    def kl_per_example(self) -> float:
        """0: the error model is fitted to observed errors, not a variational posterior trained in the loss."""
        return 0.0


READINGS = {"elbo": VariationalGPRF, "errors": ErrorRegressionGPRF}  # gp_fit -> the reading's class


def _load_cache(path: Path | None) -> dict | None:
    """A cache file's contents, or None when there is none or it cannot be read (then it is recomputed)."""
    if path is None or not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return saved if isinstance(saved, dict) and {"mean", "log_var", "record"} <= set(saved) else None
    except Exception:  # truncated or foreign: torch raises many types; the cache is derived data
        return None
