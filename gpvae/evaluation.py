"""The evaluation protocol of the specification (book/specification.md) §4, identical for every model.

* Test log-likelihood: log p̂(x) = log (1/K) Σ_k p(x, z_k) / r(z_k | x), z_k ~ r, with r the model's
  own proposal and its exact density. K is split into chunks of :data:`SAMPLES_PER_CHUNK` so memory
  stays bounded (batch x chunk x pixels floats); the chunk results combine exactly by logsumexp.
* ELBO: E_r[log p(x, z) − log r(z | x)], estimated per model (:meth:`LatentVariableModel.elbo`).

Every function keeps per-example values; means are reported in nats, plus bits/dim for 8-bit data.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch.distributions import Distribution

from .distributions import DiagonalGaussianMixture, diagonal_gaussian
from .models.base import LatentVariableModel
from .objectives import gaussian_elbo
from .progress import progress
from .protocol import GAP_ELBO_SAMPLES, MOMENT_SAMPLES, NEIGHBOURS
from .refinement import Convergence, optimal_gaussian

from .ais import AISSettings, ais_log_likelihood, bdmc, settings_grid  # noqa: F401  (AIS is part of the protocol)

SAMPLES_PER_CHUNK = 250
ELBO_SAMPLES = 1
OPTIMUM_IS_SEED = 7_000_003  # seed (plus the batch index) of the importance sampling from q*


def _batches(x: torch.Tensor, batch_size: int, device: torch.device, desc: str):
    for start in progress(range(0, len(x), batch_size), desc=desc, unit="batch"):
        yield x[start:start + batch_size].to(device)


def _chunks(n_samples: int, samples_per_chunk: int) -> list[int]:
    """Sizes of the chunks that split ``n_samples`` draws into pieces of at most ``samples_per_chunk``."""
    return [min(samples_per_chunk, n_samples - done) for done in range(0, n_samples, samples_per_chunk)]


def _chunked_mean(per_example, n_samples: int, samples_per_chunk: int = SAMPLES_PER_CHUNK) -> torch.Tensor:
    """Mean over ``n_samples`` draws of ``per_example(n)`` (a (B,) average over n draws), in chunks."""
    return sum(per_example(n) * n for n in _chunks(n_samples, samples_per_chunk)) / n_samples


def log_likelihood(model: LatentVariableModel, x: torch.Tensor, k: int, batch_size: int = 100,
                   device: torch.device | str = "cpu", samples_per_chunk: int = SAMPLES_PER_CHUNK,
                   proposal: Callable[[torch.Tensor], Distribution] | None = None) -> torch.Tensor:
    """Importance-sampled log p̂(x) with ``k`` samples per example from the model's own proposal, or from
    ``proposal`` (x -> r(z | x) with exact density): x (N, ...) -> (N,) nats, on CPU."""
    model.eval()
    out = []
    for xb in _batches(x, batch_size, torch.device(device), f"log p(x), K={k}"):
        with torch.no_grad():
            r = model.proposal(xb) if proposal is None else proposal(xb)
            out.append(_importance_estimate(model, xb, r, k, samples_per_chunk).cpu())
    return torch.cat(out)


def widened_proposal(model: LatentVariableModel, scale: float = 1.0,
                     prior_weight: float = 0.0) -> Callable[[torch.Tensor], Distribution]:
    """A wider proposal made from a model whose own proposal is a diagonal Gaussian N(μ(x), diag σ²(x)):
    x -> N(μ, diag ``scale`` σ²), mixed with the prior N(0, I) at ``prior_weight`` (a defensive mixture,
    whose importance weights are bounded by p(x | z) / ``prior_weight``), with exact density."""
    if scale <= 0 or not 0 <= prior_weight < 1:
        raise ValueError(f"a widened proposal takes scale > 0 and 0 <= prior_weight < 1, got {scale}, {prior_weight}")

    def proposal(x: torch.Tensor) -> Distribution:
        own = model.proposal(x)
        mean, log_var = own.mean, own.variance.log() + math.log(scale)
        if not prior_weight:
            return diagonal_gaussian(mean, log_var)
        zeros = torch.zeros_like(mean)
        weights = torch.tensor([math.log1p(-prior_weight), math.log(prior_weight)], dtype=mean.dtype, device=mean.device)
        return DiagonalGaussianMixture(torch.stack([mean, zeros], -2), torch.stack([log_var, zeros], -2),
                                       weights.expand(*mean.shape[:-1], 2))
    return proposal


def _importance_estimate(model: LatentVariableModel, xb: torch.Tensor, proposal, k: int,
                         samples_per_chunk: int = SAMPLES_PER_CHUNK) -> torch.Tensor:
    """log (1/K) Σ_k p(x, z_k) / r(z_k | x), z_k ~ ``proposal``, in chunks: (B,) nats."""
    chunk_lse = [torch.logsumexp(model.log_weights(xb, n, proposal=proposal), 0) for n in _chunks(k, samples_per_chunk)]
    return torch.logsumexp(torch.stack(chunk_lse), 0) - math.log(k)


def elbo(model: LatentVariableModel, x: torch.Tensor, batch_size: int = 100, device: torch.device | str = "cpu",
         n_samples: int = ELBO_SAMPLES, samples_per_chunk: int = SAMPLES_PER_CHUNK) -> torch.Tensor:
    """Per-example ELBO averaged over ``n_samples`` draws (in chunks): x (N, ...) -> (N,) nats, on CPU."""
    model.eval()
    out = []
    with torch.no_grad():
        for xb in _batches(x, batch_size, torch.device(device), "ELBO"):
            out.append(_chunked_mean(lambda n: model.elbo(xb, n), n_samples, samples_per_chunk).cpu())
    return torch.cat(out)


def posterior_difficulty(model, x: torch.Tensor, batch_size: int = 100,
                         device: torch.device | str = "cpu") -> dict[str, list[float]]:
    """Per-example posterior difficulty of a model with a ``difficulty`` method (GP-RF): lists of length N."""
    model.eval()
    with torch.no_grad():
        parts = [model.difficulty(xb) for xb in _batches(x, batch_size, torch.device(device), "difficulty")]
    return {key: torch.cat([p[key].cpu() for p in parts]).tolist() for key in parts[0]}


def neighbour_distances(model, stored: torch.Tensor, x: torch.Tensor, neighbours: int = NEIGHBOURS,
                        batch_size: int = 100, device: torch.device | str = "cpu") -> list[float]:
    """Per image of ``x`` (N,): the mean Euclidean distance, in the input space of GP-RF's error model (its
    ``error_inputs`` of the encoder's features), to its ``neighbours`` nearest images of ``stored`` (the
    training images the errors were observed on) — how far an image lies from what the GP was fitted to,
    the control a GP variance must beat (a variance can grow with that distance alone)."""
    device = torch.device(device)

    def inputs(images: torch.Tensor, desc: str) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([model.error_inputs(model.encoder.features(xb)) for xb in _batches(images, batch_size,
                                                                                               device, desc)])
    fitted = inputs(stored, "neighbours: training features")
    return torch.cat([torch.cdist(part, fitted).topk(neighbours, largest=False).values.mean(-1).cpu()
                      for part in inputs(x, "neighbours: test features").split(batch_size)]).tolist()


def difficulty_scores(model, x: torch.Tensor, n_samples: int, batch_size: int = 100,
                      device: torch.device | str = "cpu") -> dict[str, list[float]]:
    """Per-image difficulty scores, lists of length N: the GP's predictive variances (models with a
    ``difficulty`` method), the encoder's variance (mean of exp ℓ over d) and the negative ELBO of the
    model's proposal (``n_samples`` draws) — the last two are what any VAE offers, the baselines."""
    scores = posterior_difficulty(model, x, batch_size, device) if hasattr(model, "difficulty") else {}
    with torch.no_grad():
        log_var = torch.cat([model.encoder(xb)[1].cpu() for xb in _batches(x, batch_size, torch.device(device),
                                                                            "encoder variance")])
    scores["encoder_variance"] = log_var.exp().mean(-1).tolist()
    scores["negative_elbo"] = (-elbo(model, x, batch_size, device, n_samples=n_samples)).tolist()
    return scores


def bits_per_dim(log_likelihood_nats: float, n_dims: int) -> float:
    """Negative log-likelihood per dimension in bits."""
    return -log_likelihood_nats / (n_dims * math.log(2))


def evaluate(model: LatentVariableModel, x: torch.Tensor, k: int, batch_size: int, device: torch.device | str,
             likelihood: str, seed: int = 0) -> dict:
    """The protocol's summary: mean test log-likelihood and ELBO (nats; bits/dim for 8-bit data),
    with the per-example values under ``per_example``. Seeded, so a repeat gives the same numbers."""
    torch.manual_seed(seed)
    ll = log_likelihood(model, x, k, batch_size, device)
    lower = elbo(model, x, batch_size, device)
    result = {"test_ll": ll.mean().item(), "test_elbo": lower.mean().item(), "eval_k": k, "n_test": len(x),
              "per_example": {"test_ll": ll.tolist(), "test_elbo": lower.tolist()}}
    if likelihood == "logistic":
        n_dims = int(x[0].numel())
        result["test_bpd"] = bits_per_dim(result["test_ll"], n_dims)
        result["test_elbo_bpd"] = bits_per_dim(result["test_elbo"], n_dims)
    return result


def _moments(proposal, n_samples: int = MOMENT_SAMPLES) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and log-variance (B, d) of a proposal: exact where the distribution knows them, else from
    ``n_samples`` draws (flows)."""
    try:
        return proposal.mean, proposal.variance.log()
    except NotImplementedError:
        draws = proposal.rsample((n_samples,))
        return draws.mean(0), draws.var(0).log()


def optimal_elbo(model: LatentVariableModel, x: torch.Tensor, start, batch_size: int = 100,
                 device: torch.device | str = "cpu", convergence: Convergence = Convergence(),
                 elbo_samples: int = GAP_ELBO_SAMPLES, importance_k: int = 0
                 ) -> tuple[torch.Tensor, list[dict], torch.Tensor | None]:
    """ELBO(q*) per image of ``x`` (N,) on CPU, q* the best diagonal Gaussian found by SVI from
    ``start(xb)`` = (mean, log-variance) run to ``convergence``, each ELBO from ``elbo_samples`` draws;
    the SVI records of the batches (each with its ``images``); and with ``importance_k`` > 0 log p̂(x) by importance sampling
    from q* with that many draws (N,) — an estimate that does not use the model's own proposal."""
    device = torch.device(device)
    elbo_opt, records, from_optimum = [], [], []
    for xb in _batches(x, batch_size, device, "SVI to q*"):
        with torch.no_grad():
            mean, log_var = start(xb)
        mean, log_var, record = optimal_gaussian(model, xb, mean, log_var, convergence)
        with torch.no_grad():
            elbo_opt.append(_chunked_mean(lambda n: gaussian_elbo(model, xb, mean, log_var, n), elbo_samples).cpu())
            if importance_k:  # its own seeded stream: the SVI and ELBO draws stay as they were without it
                with torch.random.fork_rng(devices=[xb.device] if xb.device.type == "cuda" else []):
                    torch.manual_seed(OPTIMUM_IS_SEED + len(records))
                    optimum = diagonal_gaussian(mean, log_var)
                    from_optimum.append(_importance_estimate(model, xb, optimum, importance_k).cpu())
        records.append({**record, "images": len(xb)})
    return torch.cat(elbo_opt), records, torch.cat(from_optimum) if importance_k else None


def amortization_gaps(model: LatentVariableModel, x: torch.Tensor, k: int, batch_size: int = 100,
                      device: torch.device | str = "cpu", convergence: Convergence = Convergence(),
                      elbo_samples: int = GAP_ELBO_SAMPLES) -> dict:
    """Gap decomposition of Cremer, Li & Duvenaud (2018) for each image of ``x``, with the model's own decoder:

    approximation gap = log p̂(x) − ELBO(q*),  amortization gap = ELBO(q*) − ELBO(q_model),

    log p̂ with ``k`` importance samples of the model's proposal, q* the best diagonal Gaussian found
    by SVI from the proposal's mean and variance (:func:`_moments`), run to ``convergence``; every ELBO averages
    ``elbo_samples`` draws. Where q_model is richer than a diagonal Gaussian (GP-RF's marginal q̄,
    flows, VLAE's full covariance, RME's mixture) its amortization gap may be negative. Beside them,
    ``log_px_from_optimum``: log p̂(x) by importance sampling from q* with the same K, a second estimate
    that does not use the model's proposal (two models with one decoder share it up to SVI's
    convergence). Values in nats, per example and averaged.
    """
    device = torch.device(device)
    log_px = log_likelihood(model, x, k, batch_size, device)
    elbo_model = elbo(model, x, batch_size, device, n_samples=elbo_samples)
    elbo_opt, records, log_px_optimum = optimal_elbo(model, x, lambda xb: _moments(model.proposal(xb)), batch_size,
                                                     device, convergence, elbo_samples, importance_k=k)
    values = {"log_px": log_px, "elbo_opt": elbo_opt, "elbo_model": elbo_model,
              "approximation_gap": log_px - elbo_opt, "amortization_gap": elbo_opt - elbo_model,
              "log_px_from_optimum": log_px_optimum}
    result = {name: {"mean": v.mean().item(), "per_example": v.tolist()} for name, v in values.items()}
    result.update(eval_k=k, n=len(x), elbo_samples=elbo_samples,
                  svi={"window": convergence.window, "tolerance": convergence.tolerance,
                       "max_steps": convergence.max_steps, "batches": records})
    return result


def spearman(a, b) -> float:
    """Spearman rank correlation of two equally long sequences (average ranks for ties); NaN when
    either is constant (a score that does not vary ranks nothing)."""
    from scipy.stats import spearmanr
    a, b = torch.as_tensor(a).numpy(), torch.as_tensor(b).numpy()
    if a.min() == a.max() or b.min() == b.max():
        return float("nan")
    return float(spearmanr(a, b).statistic)


def partial_spearman(score, target, control) -> float:
    """Spearman correlation of ``score`` and ``target`` given ``control``: the correlation of their ranks'
    residuals after a linear fit on the ranks of ``control``. Does a score rank ``target`` beyond what
    ``control`` already does? NaN for a constant score."""
    import numpy as np
    from scipy.stats import rankdata
    if min(score) == max(score):
        return float("nan")
    ranks = [rankdata(v) for v in (score, target, control)]
    design = np.column_stack([np.ones_like(ranks[2]), ranks[2]])
    residual = [v - design @ np.linalg.lstsq(design, v, rcond=None)[0] for v in ranks[:2]]
    return float(np.corrcoef(*residual)[0, 1])


def auroc(in_scores, out_scores) -> float:
    """Area under the ROC curve of a score meant to be higher on ``out_scores`` (out-of-distribution)
    than on ``in_scores``: P(out > in) + P(tie)/2, by the Mann–Whitney U statistic."""
    from scipy.stats import mannwhitneyu
    a, b = torch.as_tensor(out_scores).numpy(), torch.as_tensor(in_scores).numpy()
    return float(mannwhitneyu(a, b).statistic / (len(a) * len(b)))


def roc_curve(in_scores, out_scores, points: int = 51) -> dict[str, list[float]]:
    """False- and true-positive rates of "score above threshold means out-of-distribution" at ``points``
    thresholds (quantiles of all scores, highest first), with (0, 0) and (1, 1) added: for plotting; the
    AUROC is :func:`auroc`, exact."""
    a, b = torch.as_tensor(in_scores, dtype=torch.float64), torch.as_tensor(out_scores, dtype=torch.float64)
    thresholds = torch.quantile(torch.cat([a, b]), torch.linspace(1, 0, points, dtype=torch.float64))
    rates = lambda v: [float(f"{(v > t).double().mean().item():.4g}") for t in thresholds]
    return {"fpr": [0.0] + rates(a) + [1.0], "tpr": [0.0] + rates(b) + [1.0]}
