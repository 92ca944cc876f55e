"""The Gaussian-process pieces of GP-RF, laid out like GPyTorch's concepts; the model itself, built on them,
is :mod:`gpvae.models.gprf`.

The readings of the specification (book/specification.md) §3b and the classes that hold them:

* R1 — a variational GP over the inference function, trained in the ELBO with the networks
  (``gp_fit="elbo"``): :class:`~gpvae.models.gprf.VariationalGPRF` with its :class:`InferenceFunctionGP`;
* R2 — R1 with the kernel amplitude of :class:`InferenceFunctionGP` ``fixed`` or ``floored`` (``amplitude``);
* R3 — R1 warm-started from a trained run with frozen networks (options of the training, not of the model);
* R4 — a regression of the encoder's observed SVI errors, fitted after training (``gp_fit="errors"``):
  :class:`~gpvae.models.gprf.ErrorRegressionGPRF` with its :class:`ErrorRegressionGP`, or the control :class:`NearestNeighbourErrors`;
* R5 — R4 refitted between rounds of training with the corrected proposal
  (:meth:`~gpvae.models.gprf.ErrorRegressionGPRF.data_fit_epochs`).

Both readings share :class:`~gpvae.models.gprf.GPRF` (their base, which builds the reading ``gp_fit`` names): the marginal
proposal q̄ and the objectives over the random function.

Modules: :mod:`~gpvae.gp.options` (:class:`GPRFOptions`, :data:`PRESETS`), :mod:`~gpvae.gp.variational`
(the variational family and the inference-function GP), :mod:`~gpvae.gp.error_regression` (the error
regression and its control).
"""
from __future__ import annotations

from .error_regression import ErrorRegressionGP, NearestNeighbourErrors
from .options import PRESETS, GPRFOptions
from .variational import GroupSharedCholeskyVariationalDistribution, InferenceFunctionGP

__all__ = ["GPRFOptions", "PRESETS", "InferenceFunctionGP",
           "GroupSharedCholeskyVariationalDistribution", "ErrorRegressionGP", "NearestNeighbourErrors"]
