"""When a number is a measurement: the premises behind the gap decomposition, AIS and the low-rank
predictive, each a function that returns ``None`` when the premise holds and the reason otherwise.
Pages print :data:`NOT_MEASURABLE` with that reason in place of a value whose premise fails.
No torch: the book's pages import it with the records."""
from __future__ import annotations

import math

NOT_MEASURABLE = "not measurable"
AIS_CERTIFIED_WIDTH = 0.5  # nats: the widest BDMC sandwich that certifies an AIS setting (the grids' max_width)
LOW_RANK_VARIANCE_TOLERANCE = 0.10  # a low-rank predictive's total variance within 10 % of the full-rank one's

# The family of each model's proposal. q* of the gap decomposition is the best diagonal Gaussian
# (gpvae.evaluation.optimal_elbo): an amortization gap ELBO(q*) − ELBO(q) compares like with like only
# where q is a diagonal Gaussian too.
DIAGONAL_GAUSSIAN = "diagonal Gaussian"
PROPOSAL_FAMILY = {
    "vae": DIAGONAL_GAUSSIAN, "iwae": DIAGONAL_GAUSSIAN, "savae": DIAGONAL_GAUSSIAN, "external": DIAGONAL_GAUSSIAN,
    "gp": "Gauss–Hermite mixture of Gaussians (GP-RF's marginal q̄)",
    "hf": "Householder flow", "iaf": "inverse autoregressive flow",
    "vlae": "full-covariance Gaussian (Laplace)", "rme": "mixture of diagonal Gaussians",
}


def gap_family_premise(model: str) -> str | None:
    """Why the gap decomposition of a ``model`` (its ``config.model`` name) is not measurable, or None.
    q* is sought among diagonal Gaussians; a richer proposal can beat it, so its amortization gap
    ELBO(q*) − ELBO(q) compares families, not amortization, and its approximation gap log p(x) − ELBO(q*)
    is not the part of log p(x) − ELBO(q) that the model's own family leaves: neither is reported."""
    family = PROPOSAL_FAMILY.get(model)
    if family == DIAGONAL_GAUSSIAN:
        return None
    if family is None:
        return f"the proposal family of model {model!r} is not declared (gpvae.validity.PROPOSAL_FAMILY)"
    return f"q* is sought among diagonal Gaussians, a smaller family than the model's proposal ({family})"


def ais_premise(width: float | None) -> str | None:
    """Why AIS with this BDMC sandwich ``width`` [nats] (None: no certificate) cannot enter a gap, or None."""
    if width is None or (isinstance(width, float) and math.isnan(width)):
        return "AIS without a BDMC certificate"
    if width > AIS_CERTIFIED_WIDTH:
        return f"AIS not certified: the BDMC sandwich is {width:.2f} nats wide, over {AIS_CERTIFIED_WIDTH:g}"
    return None


def low_rank_premise(variance_error: dict | None, tolerance: float = LOW_RANK_VARIANCE_TOLERANCE) -> str | None:
    """Why a low-rank predictive (``variance_error`` of :mod:`gpvae.frontier`; None at full rank) is broken, or None."""
    if not variance_error:
        return None
    off = variance_error["of_mean"]
    if off <= tolerance:
        return None
    return (f"the low-rank predictive variance is off the full-rank one by {off:.0%} (tolerance "
            f"{tolerance:.0%}): its gap closed and difficulty scores are not those of the GP")


LOOSE_NATS = 1.0  # beyond the Monte Carlo error of a mean over a gap subset


def importance_estimate_premise(approximation_gap: float) -> str | None:
    """Why log p̂(x) by importance sampling cannot enter a gap, or None: the mean ``approximation_gap``
    log p̂(x) − ELBO(q*) [nats] below −:data:`LOOSE_NATS`, which log p(x) ≥ ELBO(q*) never allows (the
    estimate falls short of log p(x) by at least that much)."""
    if approximation_gap < -LOOSE_NATS:
        return f"log p̂(x) by IS is {-approximation_gap:.1f} nats below ELBO(q*), which log p(x) never is"
    return None


def shown(value: float | None, reason: str | None, digits: int = 2, brief: bool = False) -> str:
    """A table cell: the value with ``digits`` decimals, or ``not measurable (reason)`` (``brief``: without the
    reason, for a table whose caption gives it)."""
    if reason:
        return NOT_MEASURABLE if brief else f"{NOT_MEASURABLE} ({reason})"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"
