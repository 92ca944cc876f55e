"""The protocol through which the training loop reaches a model that fits a part of itself to training
images between gradient steps, rather than by them (GP-RF's error regression, readings R4 and R5). Models
that do not fit anything to data do not implement it; the loop asks ``isinstance(model, FitsToData)``."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class FitsToData(Protocol):
    """A model with a part fitted to data: which images, when, and the fit itself."""

    fits_after_training: bool  # whether :meth:`fit_to_data` runs on the best parameters after training

    def check_data(self, data, source: str) -> None:
        """Refuse (:class:`~gpvae.options.ConfigError`), before any work, options that ``data`` (a
        :class:`~gpvae.data.ImageData`; ``source``, the data as the run names it) cannot honour."""

    def data_fit_epochs(self, epochs: int) -> list[int]:
        """Epochs (0-based) before which :meth:`fit_to_data` runs."""

    def fit_images(self, data, seed: int) -> torch.Tensor:
        """The binarized images that every :meth:`fit_to_data` of a run sees, chosen from ``data`` (a
        :class:`~gpvae.data.ImageData`; training images binarized once with the run's ``seed``)."""

    def fit_to_data(self, x: torch.Tensor, seed: int, cache=None) -> dict:
        """Fit the part to binarized training images ``x``; ``cache`` may hold reusable intermediate
        results. Returns a record of the fit."""
