"""The interface every model answers (the specification (book/specification.md) §1, §4).

A model is a generative model log p_θ(x, z) = log N(z; 0, I) + log p_θ(x | z) together with a
proposal r(z | x): a distribution that can be sampled (with reparameterization) and whose density
is exact. Every estimator in :mod:`gpvae.evaluation` is built from these two pieces, so the same
protocol serves every model.
"""
from __future__ import annotations

import contextlib
import math

import torch
from torch import nn
from torch.distributions import Distribution

from .. import objectives
from ..options import OptionGroup


@contextlib.contextmanager
def frozen(module: torch.nn.Module):
    """Parameters of ``module`` treated as constants (no gradient) inside the block."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I): (..., d) -> (...)."""
    return -0.5 * (z.pow(2).sum(-1) + z.shape[-1] * math.log(2 * math.pi))


class LatentVariableModel(nn.Module):
    """Base class: subclasses define :meth:`log_likelihood` (log p(x|z)) and :meth:`proposal`."""

    latent_dim: int
    initialization_images: int = 0  # training images :meth:`initialize_from_data` needs (beyond the default)

    Options = OptionGroup  # the model's switches (an OptionGroup declared next to it): none by default

    @classmethod
    def from_config(cls, encoder, decoder, config, n_train: int):
        """The model with the networks and its :attr:`Options` read from ``config`` (a
        :class:`gpvae.config.TrainConfig`), passed as the constructor's keywords; ``n_train`` is the
        training-set size."""
        return cls(encoder, decoder, **cls.Options.values(config))

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p_θ(x | z): x (B, ...), z (S, B, d) -> (S, B)."""
        raise NotImplementedError

    def proposal(self, x: torch.Tensor) -> Distribution:
        """r(z | x), batch shape (B,), event shape (d,), with ``rsample`` and an exact ``log_prob``."""
        raise NotImplementedError

    def parameter_groups(self, lr: float) -> list[dict]:
        """Optimizer parameter groups; models with hyperparameters that need other rates override this."""
        return [{"params": list(self.parameters()), "lr": lr}]

    def initialize_from_data(self, x: torch.Tensor) -> None:
        """Data-dependent initialization from training images ``x`` (B, ...); nothing by default."""

    def optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """The optimizers of a training step (all stepped after each backward pass): Adam by default."""
        return [torch.optim.Adam(self.parameter_groups(lr))]

    def diagnostics(self, x_train: torch.Tensor, x_valid: torch.Tensor) -> dict:
        """Scalars recorded in the training history after every epoch, from fixed binarized training
        and validation images (none by default)."""
        return {}

    def failure(self, diagnostics: dict) -> str | None:
        """Why the model has failed after an epoch, read from that epoch's :meth:`diagnostics` (the
        training loop then stops as diverged), or None; never by default."""
        return None

    def summary(self) -> dict:
        """Scalar hyperparameters worth recording beside the metrics (none by default)."""
        return {}

    def begin_epoch(self, epoch: int, epochs: int) -> None:
        """Called by the training loop before epoch ``epoch`` (0-based) of ``epochs``; models trained
        in stages (RME) switch stage here. Nothing by default."""

    def sample_observation(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x ~ p_θ(x | z): z (B, d) -> x (B, ...), drawn from ``generator`` when given."""
        raise NotImplementedError

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p_θ(x, z): (S, B)."""
        return standard_normal_log_prob(z) + self.log_likelihood(x, z)

    def log_weights(self, x: torch.Tensor, n_samples: int, proposal: Distribution | None = None) -> torch.Tensor:
        """log w = log p(x, z) − log r(z | x) for ``n_samples`` draws z ~ r: (S, B)."""
        r = self.proposal(x) if proposal is None else proposal
        z = r.rsample((n_samples,))
        return self.log_joint(x, z) - r.log_prob(z)

    def elbo(self, x: torch.Tensor, n_samples: int = 1) -> torch.Tensor:
        """ELBO per example (B,), Monte Carlo over ``n_samples`` draws."""
        return objectives.elbo(self.log_weights(x, n_samples))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Training loss for a minibatch (scalar): minus the mean per-example objective."""
        return -self.elbo(x).mean()


class EncoderDecoderModel(LatentVariableModel):
    """A model built on the shared networks: an :class:`~gpvae.networks.Encoder` (trunk and head)
    and a :class:`~gpvae.networks.Decoder` giving log p_θ(x | z)."""

    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = encoder.latent_dim

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.decoder.log_prob(x, z)

    def sample_observation(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.decoder.sample(z, generator)
