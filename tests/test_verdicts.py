"""Every claim's criterion: a case that holds, one that fails, one not resolved."""
import math

import numpy as np
import pandas as pd
import pytest

from gpvae import verdicts
from gpvae.verdicts import FAILS, HOLDS, NOT_RESOLVED, TIED


@pytest.mark.parametrize("values, outcome", [
    ([0.5, 0.6, 0.55], HOLDS), ([-0.5, -0.6, -0.55], FAILS),
    ([0.5], NOT_RESOLVED),  # one seed resolves nothing, however large
    ([0.1, -0.05, 0.2], NOT_RESOLVED),  # within two sds of zero
    ([0.3, 0.3], HOLDS),  # sd 0: any positive mean clears the margin
    ([0.0, 0.0], TIED), ([0.0], NOT_RESOLVED),  # one decoder by AIS: equal on every seed, resolved from two
])
def test_the_paired_criterion(values, outcome):
    assert verdicts.paired(verdicts.spread(values)) == outcome


def test_a_paired_difference_waits_for_the_declared_seeds():
    decided = {"mean": 1.0, "sd": 0.1, "n": 2}
    assert verdicts.paired(decided) == verdicts.HOLDS
    assert verdicts.paired({**decided, "declared": 3}) == verdicts.NOT_RESOLVED
    assert verdicts.paired({**decided, "n": 3, "declared": 3}) == verdicts.HOLDS


def test_spread_drops_missing_seeds():
    row = verdicts.spread([1.0, float("nan"), 3.0])
    assert row["n"] == 2 and row["mean"] == 2.0 and math.isclose(row["sd"], math.sqrt(2))


def _differences(**rows):
    return pd.DataFrame({name: verdicts.spread(values) for name, values in rows.items()}).T


def test_likelihood_holds_only_against_every_model_and_fails_against_any():
    ahead = verdicts.likelihood(_differences(vae=[0.4, 0.5, 0.45], iwae=[0.2, 0.25, 0.22]))
    assert ahead.outcome == HOLDS and ahead.details == {"vae": HOLDS, "iwae": HOLDS}
    behind = verdicts.likelihood(_differences(vae=[0.4, 0.5, 0.45], iwae=[-0.2, -0.25, -0.22]))
    assert behind.outcome == FAILS and "behind 1" in behind.measured
    open_ = verdicts.likelihood(_differences(vae=[0.4, 0.5, 0.45], iwae=[0.3]))
    assert open_.outcome == NOT_RESOLVED and "**not resolved**" in open_.sentence()
    assert verdicts.likelihood(pd.DataFrame(columns=["mean", "sd", "n"])).outcome == NOT_RESOLVED
    same_decoder = verdicts.likelihood(_differences(vae=[0.0, 0.0], iwae=[0.3, 0.35]))  # tied is not higher
    assert same_decoder.outcome == FAILS and same_decoder.details["vae"] == TIED and "tied with 1" in same_decoder.measured


def test_speed_needs_the_target_and_sa_vae():
    assert verdicts.speed(1.2, 33.0).outcome == HOLDS
    slow = verdicts.speed(4.8, 33.0)
    assert slow.outcome == FAILS and slow.details == {"within the target": FAILS, "faster than SA-VAE": HOLDS}
    assert verdicts.speed(1.2, None).outcome == NOT_RESOLVED
    assert verdicts.speed(4.8, 33.0, reading="GP-RF (R4)").measured.startswith("GP-RF (R4) 4.80× the VAE's inference time")


def test_a_difficulty_score_must_beat_chance_and_every_baseline_seed_by_seed():
    own = {0: 0.60, 1: 0.62, 2: 0.61}
    assert verdicts.ahead_of_baselines(own, {"negative ELBO": {0: 0.50, 1: 0.51, 2: 0.52}}).outcome == HOLDS
    behind = verdicts.ahead_of_baselines(own, {"negative ELBO": {0: 0.70, 1: 0.73, 2: 0.72}})
    assert behind.outcome == FAILS and behind.details["chance"] == HOLDS
    # matched by seed: the baseline of seed 2 is missing, so two pairs remain, and they straddle zero
    mixed = verdicts.ahead_of_baselines(own, {"negative ELBO": {0: 0.55, 1: 0.66}})
    assert mixed.outcome == NOT_RESOLVED
    auroc = verdicts.ahead_of_baselines({0: 0.45, 1: 0.44}, {}, chance=0.5)
    assert auroc.outcome == FAILS


def test_a_baseline_that_ranks_difficulty_backwards_counts_reversed_the_stronger_control():
    own = {0: 0.60, 1: 0.62, 2: 0.61}
    backwards = {0: -0.70, 1: -0.72, 2: -0.71}  # ranks by ease: reversed, a better score than the GP's
    decided = verdicts.ahead_of_baselines(own, {"encoder variance": backwards})
    assert decided.outcome == FAILS and decided.details["encoder variance"] == FAILS
    assert decided.differences["encoder variance"].round(2).tolist() == [-0.1, -0.1, -0.1]
    assert "against encoder variance (reversed): fails" in decided.measured
    weak = verdicts.ahead_of_baselines(own, {"encoder variance": {0: -0.10, 1: -0.12, 2: -0.11}})
    assert weak.outcome == HOLDS and weak.differences["encoder variance"].round(2).tolist() == [0.5, 0.5, 0.5]
    ood = verdicts.ahead_of_baselines({0: 0.80, 1: 0.81}, {"−ELBO": {0: 0.10, 1: 0.12}}, chance=0.5)
    assert ood.outcome == FAILS  # an AUROC of 0.1 is 0.9 reversed: ahead of the GP's 0.8
    assert verdicts.oriented({0: 0.3, 1: -0.1})[1] is False  # the mean decides, not a seed


def images(seed: int, own_noise: float, baseline_noise: float, n: int = 400) -> pd.DataFrame:
    """Per-image values of one seed: a gap, a score that tracks it with ``own_noise``, a baseline with
    ``baseline_noise``, and the baseline reversed (higher means easier)."""
    rng = np.random.default_rng(seed)
    gap = rng.gamma(2.0, 2.0, n)
    baseline = gap + baseline_noise * rng.standard_normal(n)
    return pd.DataFrame({"gap": gap, "own": gap + own_noise * rng.standard_normal(n), "baseline": baseline,
                         "reversed": -baseline})


@pytest.mark.parametrize("own_noise, baseline_noise, outcome", [(1.0, 6.0, verdicts.HOLDS), (6.0, 1.0, verdicts.FAILS)])
def test_the_bootstrap_decides_a_score_against_its_baselines(own_noise, baseline_noise, outcome):
    per_seed = {s: images(s, own_noise, baseline_noise) for s in range(3)}
    decided = verdicts.ahead_by_bootstrap(per_seed, "own", ["baseline", "reversed"], resamples=200)
    assert decided.details == {"chance": verdicts.HOLDS, "baseline": outcome, "reversed": outcome}
    assert decided.outcome == outcome and decided.reversed_baselines == ("reversed",)
    row = decided.differences["baseline"]
    assert row["low"] < row["estimate"] < row["high"]
    assert decided == verdicts.ahead_by_bootstrap(per_seed, "own", ["baseline", "reversed"], resamples=200)  # seeded


def test_a_score_against_itself_or_at_chance_is_not_resolved():
    per_seed = {s: images(s, 1.0, 1.0).assign(copy=lambda f: f["own"], noise=np.random.default_rng(s).random(400))
                for s in range(3)}
    assert verdicts.ahead_by_bootstrap(per_seed, "own", ["copy"], resamples=100).details["copy"] == verdicts.NOT_RESOLVED
    assert verdicts.ahead_by_bootstrap(per_seed, "noise", [], resamples=100).details["chance"] == verdicts.NOT_RESOLVED


def test_resampled_spearman_is_spearman_of_each_resample_ties_and_missing_values_included():
    rng = np.random.default_rng(3)
    values = np.round(rng.normal(size=(200, 5)), 1)  # many ties
    values[:, 3] = 1.0  # a constant score: no ρ
    values[:10, 4] = np.inf  # tied infinities
    values[20, 2] = np.nan  # a missing value: no ρ for a resample that draws it
    index = rng.integers(0, 200, (9, 200))
    index[0, 0] = 20  # drawn at least once
    fast = verdicts._spearman_resampled(values, index)
    slow = np.array([verdicts._spearman_columns(values[pick, 0], values[pick, 1:]) for pick in index])
    assert fast.shape == (9, 4) and np.isnan(fast[:, 2]).all() and np.isnan(fast[0, 1])
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)  # NaN where the other is NaN
