"""Semi-amortized VAE (Kim, Wiseman, Miller, Sontag & Rush 2018).

The encoder's Gaussian λ₀ = (μ_φ(x), ℓ_φ(x)) is refined by T SVI steps on the ELBO, at training and
at test time; the proposal is the refined Gaussian λ_T. Training follows the paper's Algorithm 1:
the decoder receives ∂ELBO(λ_T, θ)/∂θ with λ_T held fixed, and the encoder receives the gradient of
ELBO(λ_T) through the unrolled steps (second-order terms included).

Defaults: T = 20 steps of SGD with momentum 0.5 as in SA-VAE; the step size 1e-3 is this project's
choice for the 28x28 MLP (the SA-VAE paper's lr = 1 with gradient clipping was tuned for text).
A steeper likelihood (the 8-bit logistic decoder) makes the same step size overshoot: ``svi_max_grad_norm``
clips each image's SVI gradients as SA-VAE's code does, and :meth:`SAVAE.failure` fails an epoch whose
SVI steps lower the validation ELBO.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..networks import Decoder, Encoder
from ..distributions import diagonal_gaussian
from ..objectives import gaussian_elbo
from ..options import ConfigError, OptionGroup, option
from ..refinement import GaussianRefinement
from .base import frozen
from .vae import VAE

SVI_STEPS, SVI_LR, SVI_MOMENTUM = 20, 1e-3, 0.5
SVI_GAIN_SAMPLES = 10  # draws per image behind the per-epoch check that SVI raises the ELBO


@dataclass
class SAVAEOptions(OptionGroup):
    title = "SA-VAE"
    svi_steps: int = option(SVI_STEPS, "SA-VAE: SVI steps T from the encoder's output (training and test)", minimum=0)
    svi_lr: float = option(SVI_LR, "SA-VAE: SVI step size", minimum=0.0)
    svi_momentum: float = option(SVI_MOMENTUM, "SA-VAE: SVI momentum", minimum=0.0)
    svi_max_grad_norm: float | None = option(None, "SA-VAE: clip each image's SVI gradient (of the mean, and of the "
                                             "log-variance) to this Euclidean norm before a step, as SA-VAE's code "
                                             "does (None: no clipping)", minimum=0.0)

    def check(self) -> None:
        if self.svi_max_grad_norm is not None and self.svi_max_grad_norm <= 0:
            raise ConfigError(f"svi_max_grad_norm = {self.svi_max_grad_norm!r} must be positive (or None: no clipping)")


class SAVAE(VAE):
    """VAE whose proposal is the encoder's Gaussian after ``svi_steps`` SVI steps."""

    Options = SAVAEOptions

    def __init__(self, encoder: Encoder, decoder: Decoder, svi_steps: int = SVI_STEPS, svi_lr: float = SVI_LR,
                 svi_momentum: float = SVI_MOMENTUM, svi_max_grad_norm: float | None = None):
        super().__init__(encoder, decoder)
        SAVAEOptions(svi_steps, svi_lr, svi_momentum, svi_max_grad_norm).check()
        self.refinement = GaussianRefinement(svi_steps, svi_lr, svi_momentum, update="sgd",
                                             max_grad_norm=svi_max_grad_norm)

    def refined(self, x: torch.Tensor, differentiable: bool,
                start: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """λ_T = (mean, log_var), (B, d) each, from λ₀ = ``start`` (default: the encoder's output for ``x``);
        with ``differentiable``, a function of the encoder."""
        mean, log_var = self.encoder(x) if start is None else start
        refine = dataclasses.replace(self.refinement, differentiable=differentiable)
        with frozen(self.decoder):
            return refine(lambda m, v: gaussian_elbo(self, x, m, v), mean, log_var)

    def proposal(self, x: torch.Tensor):
        return diagonal_gaussian(*self.refined(x, differentiable=False))

    def elbo(self, x: torch.Tensor, n_samples: int = 1) -> torch.Tensor:
        with torch.no_grad():
            mean, log_var = self.refined(x, differentiable=False)
            return gaussian_elbo(self, x, mean, log_var, n_samples)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return -gaussian_elbo(self, x, *self.refined(x, differentiable=True)).mean()

    def svi_gain(self, x: torch.Tensor, n_samples: int = SVI_GAIN_SAMPLES) -> torch.Tensor:
        """ELBO(λ_T) − ELBO(λ₀) per image (B,) [nats]: what the SVI steps add to the encoder's Gaussian,
        both ELBOs from the same ``n_samples`` standard-normal draws (common random numbers)."""
        with torch.no_grad():
            start = self.encoder(x)
        refined = self.refined(x, differentiable=False, start=start)
        seed = int(torch.randint(2 ** 31, ()))
        values = []
        for mean, log_var in (refined, start):
            with torch.random.fork_rng(devices=[x.device] if x.is_cuda else []), torch.no_grad():
                torch.manual_seed(seed)
                values.append(gaussian_elbo(self, x, mean, log_var, n_samples))
        return values[0] - values[1]

    def diagnostics(self, x_train: torch.Tensor, x_valid: torch.Tensor) -> dict:
        """``svi_gain_valid``: the mean of :meth:`svi_gain` over the validation images [nats]."""
        return {"svi_gain_valid": self.svi_gain(x_valid).mean().item()}

    def failure(self, diagnostics: dict) -> str | None:
        gain = diagnostics["svi_gain_valid"]
        if not gain >= 0:  # NaN too
            return (f"SA-VAE's {self.refinement.steps} SVI steps lower the validation ELBO by {-gain:.4g} nats per image "
                    f"(step size {self.refinement.lr:g}, gradient clipping {self.refinement.max_grad_norm}): the steps "
                    "overshoot; lower --svi-lr or set --svi-max-grad-norm")
        return None
