"""The abstract's claims, each decided by one criterion fixed before the runs. The book's pages (the
landing page, the results and readings chapters) call these functions and render their sentences;
no page decides a claim on its own.

Every criterion rests on seed-matched values and has three outcomes, :data:`HOLDS`, :data:`FAILS`
and :data:`NOT_RESOLVED`, and a paired difference a fourth, :data:`TIED`:

* **A paired difference** (:func:`paired`; per-seed values of one quantity for two runs, e.g. test
  log p̂ of GP-RF minus a baseline's) holds when its mean is above zero by more than
  :data:`MARGIN_SDS` sample sds over at least :data:`MIN_SEEDS` seeds, fails when below zero by that
  margin, and is not resolved otherwise (one seed, or a mean within the margin). It is tied when it is
  exactly zero on every one of at least :data:`MIN_SEEDS` seeds (two runs with one decoder, by AIS):
  resolved, and not higher, so a claim of "higher" fails on it. A difference of AIS values on a seed
  whose BDMC certificate failed (row ``uncertified`` > 0) is not resolved whatever its size: either
  value may fall short of log p(x) by more than the difference.
* **1. Likelihood** (:func:`likelihood`): GP-RF's test log-likelihood minus each model's, paired: the
  claim holds when it holds against every model, fails when it fails against any, else not resolved.
* **2. Speed** (:func:`speed`): one pass of GP-RF costs at most :data:`SPEED_TARGET` × the VAE's
  inference time and less than SA-VAE's (benchmarks of record, one process): holds when both hold,
  fails when either is measured false, not resolved without both timings.
* **3. Difficulty** (:func:`ahead_of_baselines`): a score of the GP's (its predictive variance) as a
  measure of posterior difficulty, per seed — its Spearman ρ with the per-image amortization gap,
  or its AUROC for out-of-distribution inputs — holds when it beats chance (ρ = 0, AUROC = 0.5) and
  every baseline score (the VAE's own encoder variance and negative ELBO), each in its better
  orientation (:func:`oriented`) and as a paired difference; fails when it is behind chance or a
  baseline; else not resolved. On per-image values of several seeds (:func:`ahead_by_bootstrap`) the
  same comparisons are decided by a hierarchical bootstrap (seeds, then images within each seed): holds
  where the interval of the mean difference lies above zero, fails where it lies below.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd
from scipy.stats import rankdata

HOLDS, FAILS, NOT_RESOLVED, TIED = "holds", "fails", "not resolved", "tied"
MARGIN_SDS = 2.0  # a paired difference must clear zero by this many sample sds ...
MIN_SEEDS = 2  # ... over at least this many seeds
SPEED_TARGET = 1.5  # one pass of GP-RF at most this × the VAE's inference time (batch 100)
MIN_GAP_CLOSED = 0.2  # the default setting of R4 must close at least this share of the amortization gap


@dataclass(frozen=True)
class Verdict:
    """A claim's outcome with what it rests on: ``details`` maps each comparison to its own outcome."""

    claim: str
    criterion: str
    measured: str
    outcome: str
    details: dict[str, str] = field(default_factory=dict)
    # per comparison: its per-seed values (Series by seed), or a bootstrap's (estimate, low, high)
    differences: dict[str, pd.Series] = field(default_factory=dict, compare=False)
    reversed_baselines: tuple[str, ...] = ()  # the baselines that entered reversed (:func:`oriented`)

    def sentence(self) -> str:
        """The verdict as one Markdown sentence: claim, outcome, measurement, criterion."""
        return f"{self.claim}: **{self.outcome}** — {self.measured} (criterion: {self.criterion})."

    def breakdown(self) -> str:
        """Each comparison's outcome: ``"chance: holds; the VAE's −ELBO: fails"``."""
        return "; ".join(f"{name}: {outcome}" for name, outcome in self.details.items())


def spread(values) -> pd.Series:
    """Mean, sample sd and count of per-seed ``values`` (a sequence or a Series; NaN dropped), the row
    that :func:`paired` reads."""
    values = pd.Series(values, dtype=float).dropna()
    return pd.Series({"mean": values.mean() if len(values) else math.nan,
                      "sd": values.std(ddof=1) if len(values) > 1 else math.nan, "n": len(values)})


def paired(difference: Mapping) -> str:
    """The paired-difference criterion for a row with ``mean``, ``sd`` and ``n`` over matched seeds; not
    resolved while a matched seed's AIS is uncertified (``uncertified`` > 0) or while seeds its grid declares
    for both runs are missing (``n`` below ``declared``: a verdict waits for the design's seeds)."""
    n, mean, sd = difference["n"], difference["mean"], difference["sd"]
    if difference.get("uncertified", 0) > 0 or n < difference.get("declared", 0):
        return NOT_RESOLVED
    if n >= MIN_SEEDS and mean == 0 and sd == 0:
        return TIED
    if n >= MIN_SEEDS and not math.isnan(sd) and mean > MARGIN_SDS * sd:
        return HOLDS
    if n >= MIN_SEEDS and not math.isnan(sd) and mean < -MARGIN_SDS * sd:
        return FAILS
    return NOT_RESOLVED


def combined(outcomes: list[str]) -> str:
    """Several criteria as one: holds when all hold, fails when any fails or is tied, else not resolved."""
    if outcomes and all(o == HOLDS for o in outcomes):
        return HOLDS
    return FAILS if FAILS in outcomes or TIED in outcomes else NOT_RESOLVED


PAIRED_CRITERION = f"a seed-matched difference beyond {MARGIN_SDS:g} sds over at least {MIN_SEEDS} seeds"


def likelihood(differences: pd.DataFrame, claim: str = "1. Higher test log-likelihood than every baseline") -> Verdict:
    """Claim 1 from GP-RF's paired differences against each model (rows: models; ``mean``, ``sd``, ``n``)."""
    details = {str(model): paired(row) for model, row in differences.iterrows()}
    counts = {o: sum(v == o for v in details.values()) for o in (HOLDS, FAILS, NOT_RESOLVED, TIED)}
    uncertified = int((differences["uncertified"] > 0).sum()) if "uncertified" in differences else 0
    measured = (f"ahead of {counts[HOLDS]}, behind {counts[FAILS]}, tied with {counts[TIED]} and not resolved "
                f"against {counts[NOT_RESOLVED]} "
                f"of {len(details)} models" if details else "no comparison recorded")
    if uncertified:
        measured += f" ({uncertified} of them not resolved because their AIS has no BDMC certificate)"
    return Verdict(claim, f"ahead of every model, {PAIRED_CRITERION}", measured, combined(list(details.values())),
                   details)


def speed(gp_ratio: float | None, savae_ratio: float | None,
          claim: str = "2. One pass at about the encoder's cost, much faster than SA-VAE", reading: str = "GP-RF") -> Verdict:
    """Claim 2 from the inference times relative to the VAE's (same benchmark, batch 100) of ``reading``'s
    GP-RF and of SA-VAE."""
    criterion = f"inference at most {SPEED_TARGET:g}× the VAE's and below SA-VAE's"
    if gp_ratio is None or savae_ratio is None:
        return Verdict(claim, criterion, "no benchmark of record with both GP-RF and SA-VAE", NOT_RESOLVED)
    details = {"within the target": HOLDS if gp_ratio <= SPEED_TARGET else FAILS,
               "faster than SA-VAE": HOLDS if gp_ratio < savae_ratio else FAILS}
    measured = f"{reading} {gp_ratio:.2f}× the VAE's inference time, SA-VAE {savae_ratio:.1f}×"
    return Verdict(claim, criterion, measured, combined(list(details.values())), details)


def oriented(values, chance: float = 0.0) -> tuple[pd.Series, bool]:
    """A baseline score's per-seed values in its better orientation: reflected about ``chance`` (ρ → −ρ,
    AUROC → 1 − AUROC) when their mean lies below it, so that a score that ranks difficulty backwards counts
    as the good score it is reversed. Chosen on the values, it can only strengthen a control. Returns the
    values and whether they were reversed."""
    values = pd.Series(values, dtype=float)
    reverse = bool(values.mean() < chance)
    return (2 * chance - values if reverse else values), reverse


def ahead_of_baselines(own, baselines: dict[str, object], chance: float = 0.0,
                       claim: str = "3. The GP's variance measures posterior difficulty") -> Verdict:
    """Claim 3 for one score: ``own`` and each of ``baselines`` are per-seed values (Series indexed by
    seed, or {seed: value}); ``chance`` is the value of a score that knows nothing (ρ 0, AUROC 0.5). Each
    baseline enters in its better orientation (:func:`oriented`); the per-seed differences are the verdict's
    ``differences``."""
    own = pd.Series(own, dtype=float)
    differences, reversed_ = {"chance": own - chance}, []
    for name, values in baselines.items():
        values, reverse = oriented(values, chance)
        differences[name] = (own - values).dropna()  # aligned by seed
        reversed_ += [name] if reverse else []
    details = {name: paired(spread(difference)) for name, difference in differences.items()}
    stat = spread(own)
    measured = f"{stat['mean']:.3f} over {int(stat['n'])} seed(s); " + "; ".join(
        f"against {name}{' (reversed)' if name in reversed_ else ''}: {outcome}" for name, outcome in details.items())
    return Verdict(claim, f"above chance ({chance:g}) and every baseline in its better orientation, "
                          f"{PAIRED_CRITERION}", measured, combined(list(details.values())), details, differences,
                   tuple(reversed_))


BOOTSTRAP_LEVEL = 0.95  # the central interval of a hierarchical bootstrap that decides a comparison
BOOTSTRAP_SEED = 0  # the bootstrap's generator seed, fixed with the design
BOOTSTRAP_CHUNK = 256  # resamples of one seed's images ranked at once (memory: chunk × images × scores)


def _spearman_columns(gap: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Spearman ρ of each column of ``scores`` (N, S) with ``gap`` (N,), average ranks for ties; NaN for a
    constant column."""
    ranked = rankdata(np.column_stack([gap, scores]), axis=0)
    ranked -= ranked.mean(axis=0)
    norms = np.sqrt((ranked ** 2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ranked[:, 1:] * ranked[:, :1]).sum(axis=0) / (norms[1:] * norms[0])


def _spearman_resampled(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """:func:`_spearman_columns` of ``values[pick]`` for every row ``pick`` of ``index`` (k, M), ``values`` (N, 1 + S)
    the gap and the scores: (k, S). A resample is a count per image; each column's average ranks come from its
    tie groups in the full data, weighted by those counts, so that nothing is sorted per resample."""
    k, (n, columns) = len(index), values.shape
    counts = np.bincount((np.arange(k)[:, None] * n + index).ravel(), minlength=k * n).reshape(k, n).astype(float)
    centred = np.empty((k, n, columns))
    for c in range(columns):
        order = np.argsort(values[:, c], kind="stable")
        ordered = values[order, c]
        starts = np.r_[True, ordered[1:] != ordered[:-1]]  # a tie group begins (equal infinities tie)
        in_groups = np.add.reduceat(counts[:, order], np.flatnonzero(starts), axis=1)  # (k, groups)
        group_ranks = np.cumsum(in_groups, axis=1) - in_groups + (in_groups + 1) / 2
        centred[:, order, c] = group_ranks[:, np.cumsum(starts) - 1]
    centred -= (index.shape[1] + 1) / 2
    weighted = counts[..., None] * centred
    covariance = (weighted[..., 1:] * centred[..., :1]).sum(axis=1)
    variance = (weighted * centred).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = covariance / np.sqrt(variance[:, 1:] * variance[:, :1])
    missing = counts @ np.isnan(values)  # (k, 1 + S): NaNs drawn, which rank nothing
    rho[(missing[:, 1:] > 0) | (missing[:, :1] > 0)] = np.nan
    return rho


def bootstrap_outcome(low: float, high: float) -> str:
    """A bootstrap interval's outcome: holds above zero, fails below, else not resolved."""
    return HOLDS if low > 0 else FAILS if high < 0 else NOT_RESOLVED


def ahead_by_bootstrap(per_seed: Mapping[int, pd.DataFrame], own: str, baselines: list[str], resamples: int,
                       seed: int = BOOTSTRAP_SEED,
                       claim: str = "3. The GP's variance measures posterior difficulty") -> Verdict:
    """Claim 3 for the score ``own`` on per-image values: ``per_seed`` maps each seed to a frame of its images
    with a ``gap`` column (the per-image amortization gap) and a column per score. The statistic of each
    comparison is the mean over seeds of ρ(own, gap) − ρ(baseline, gap) (against chance, of ρ(own, gap)), each
    baseline in its better orientation on the full data; ``resamples`` hierarchical bootstrap resamples (the
    seeds drawn with replacement, then the images within each drawn seed) give its central
    :data:`BOOTSTRAP_LEVEL` interval, which decides it (:func:`bootstrap_outcome`). The claim holds when every
    comparison holds, fails when one fails. ``differences`` holds each comparison's (estimate, low, high)."""
    seeds = sorted(per_seed)
    names = ["chance", *baselines]
    if not seeds:
        return Verdict(claim, f"at least {MIN_SEEDS} seeds", "no seed", NOT_RESOLVED, dict.fromkeys(names, NOT_RESOLVED))
    columns = [own, *baselines]
    full = np.array([_spearman_columns(per_seed[s]["gap"].to_numpy(float), per_seed[s][columns].to_numpy(float))
                     for s in seeds])  # (seeds, scores)
    signs = np.array([1.0] + [-1.0 if oriented(full[:, 1 + j])[1] else 1.0 for j in range(len(baselines))])
    reversed_ = tuple(b for b, sign in zip(baselines, signs[1:]) if sign < 0)

    def statistic(rhos: np.ndarray) -> np.ndarray:  # (..., seeds drawn, scores) -> (..., comparisons)
        oriented_rhos = rhos * signs
        return np.nanmean(np.concatenate([oriented_rhos[..., :1], oriented_rhos[..., :1] - oriented_rhos[..., 1:]],
                                         axis=-1), axis=-2)

    if len(seeds) < MIN_SEEDS:  # as for a paired difference: one seed resolves nothing (its estimate is shown)
        estimate = statistic(full)
        return Verdict(claim, f"at least {MIN_SEEDS} seeds", f"ρ = {estimate[0]:.3f} on {len(seeds)} seed(s)",
                       NOT_RESOLVED, dict.fromkeys(names, NOT_RESOLVED),
                       {n: pd.Series({"estimate": e, "low": np.nan, "high": np.nan}) for n, e in zip(names, estimate)},
                       reversed_)
    generator = np.random.default_rng(seed)
    values = {s: (per_seed[s]["gap"].to_numpy(float), per_seed[s][columns].to_numpy(float)) for s in seeds}
    picks: dict[int, list[tuple[int, int, np.ndarray]]] = {s: [] for s in seeds}  # resample b's j-th seed, its images
    for b in range(resamples):
        for j, s in enumerate(generator.choice(seeds, size=len(seeds), replace=True)):
            picks[s].append((b, j, generator.integers(0, len(values[s][0]), len(values[s][0]))))
    rhos = np.empty((resamples, len(seeds), len(columns)))
    for s, drawn_here in picks.items():  # every resample of one seed's images, in chunks
        both = np.column_stack(values[s])
        for start in range(0, len(drawn_here), BOOTSTRAP_CHUNK):
            chunk = drawn_here[start:start + BOOTSTRAP_CHUNK]
            index = np.stack([pick for _, _, pick in chunk])
            rhos[[b for b, _, _ in chunk], [j for _, j, _ in chunk]] = _spearman_resampled(both, index)
    draws = statistic(rhos)
    tail = (1 - BOOTSTRAP_LEVEL) / 2 * 100
    low, high = np.nanpercentile(draws, tail, axis=0), np.nanpercentile(draws, 100 - tail, axis=0)
    estimate = statistic(full)
    details = {name: bootstrap_outcome(lo, hi) for name, lo, hi in zip(names, low, high)}
    differences = {name: pd.Series({"estimate": e, "low": lo, "high": hi}) for name, e, lo, hi in zip(names, estimate, low, high)}
    images = sum(len(per_seed[s]) for s in seeds)
    measured = (f"ρ = {estimate[0]:.3f} [{low[0]:.3f}, {high[0]:.3f}] over {len(seeds)} seed(s) and {images:,} images; "
                + "; ".join(f"− {name}{' (reversed)' if name in reversed_ else ''}: {e:+.3f} [{lo:+.3f}, {hi:+.3f}]: {details[name]}"
                            for name, e, lo, hi in zip(baselines, estimate[1:], low[1:], high[1:])))
    return Verdict(claim, f"above chance and every baseline in its better orientation, the {BOOTSTRAP_LEVEL:.0%} "
                          f"interval of a hierarchical bootstrap ({resamples:,} resamples of seeds, then images) "
                          "clear of zero", measured, combined(list(details.values())), details, differences, reversed_)

