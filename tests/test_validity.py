"""The premises behind a number: each rule says why a value is not measurable, and nothing when it is."""
import pytest

from gpvae import validity


@pytest.mark.parametrize("model", ["vae", "iwae", "savae"])
def test_the_gaps_of_a_diagonal_gaussian_are_measurable(model):
    assert validity.gap_family_premise(model) is None


@pytest.mark.parametrize("model", ["hf", "iaf", "vlae", "rme", "gp"])
def test_the_gaps_of_a_richer_proposal_are_not(model):
    reason = validity.gap_family_premise(model)
    assert "smaller family" in reason and validity.PROPOSAL_FAMILY[model] in reason


def test_an_undeclared_proposal_family_is_not_measurable_by_name():
    assert "'mystery'" in validity.gap_family_premise("mystery")


@pytest.mark.parametrize("width, measurable", [(0.1, True), (0.5, True), (0.51, False), (17.0, False),
                                               (None, False), (float("nan"), False)])
def test_ais_needs_a_certificate_no_wider_than_half_a_nat(width, measurable):
    assert (validity.ais_premise(width) is None) == measurable


@pytest.mark.parametrize("error, measurable", [(None, True), ({"of_mean": 0.03, "per_output": 0.2}, True),
                                               ({"of_mean": 5.0, "per_output": 6.0}, False)])
def test_a_low_rank_predictive_must_stay_within_its_tolerance(error, measurable):
    assert (validity.low_rank_premise(error) is None) == measurable


def test_a_cell_shows_the_reason_instead_of_the_value():
    assert validity.shown(-12.3, "AIS without a BDMC certificate") == "not measurable (AIS without a BDMC certificate)"
    assert validity.shown(1.234, None) == "1.23"
    assert validity.shown(float("nan"), None) == "–"


@pytest.mark.parametrize("gap, measurable", [(0.5, True), (-0.99, True), (-1.0, True), (-1.01, False), (-40.0, False)])
def test_an_importance_estimate_more_than_a_nat_below_elbo_of_q_star_is_not_a_log_likelihood(gap, measurable):
    assert (validity.importance_estimate_premise(gap) is None) == measurable


def test_a_low_rank_predictive_exactly_at_its_tolerance_is_measurable():
    assert validity.low_rank_premise({"of_mean": validity.LOW_RANK_VARIANCE_TOLERANCE}) is None
