"""Observation models log p(x | z) given decoder outputs. Every function returns per-example sums.

``bernoulli`` is for binary pixels only; ``logistic`` is the 8-bit discretized logistic of
PixelCNN++ (one component), a proper probability mass over the 256 pixel values.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LIKELIHOODS = ("bernoulli", "logistic")
LOGISTIC_BINS = 256


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | logits) for binary x; logits (..., C, H, W), x broadcastable; returns (...)."""
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").flatten(-3).sum(-1)


def to_logistic_scale(x: torch.Tensor) -> torch.Tensor:
    """Pixel values 0..255 to bin centres in [-1, 1]."""
    return x / 127.5 - 1.0


def discretized_logistic_log_prob(mean: torch.Tensor, log_scale: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log P(x) of 8-bit pixel values x (0..255) under a logistic on [-1, 1] binned into 256 cells.

    ``mean`` and ``log_scale`` are (..., C, H, W) on the [-1, 1] scale; the edge bins take the
    tails, so the 256 probabilities of a pixel sum to one. Returns (...), in nats.
    """
    centred = to_logistic_scale(x) - mean
    inv_scale = torch.exp(-log_scale)
    half_bin = 1.0 / (LOGISTIC_BINS - 1)
    upper = inv_scale * (centred + half_bin)
    lower = inv_scale * (centred - half_bin)
    log_cdf_upper = F.logsigmoid(upper)
    log_one_minus_cdf_lower = -F.softplus(lower)
    # Interior bins: the CDF difference, or the mid-point density times the bin width where it underflows.
    cdf_delta = torch.sigmoid(upper) - torch.sigmoid(lower)
    mid = inv_scale * centred
    log_pdf_mid = mid - log_scale - 2.0 * F.softplus(mid) + math.log(2 * half_bin)
    log_inner = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp(min=1e-12)), log_pdf_mid)
    log_probs = torch.where(x < 0.5, log_cdf_upper, torch.where(x > LOGISTIC_BINS - 1.5, log_one_minus_cdf_lower, log_inner))
    return log_probs.flatten(-3).sum(-1)
