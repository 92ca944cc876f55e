"""Estimators against a linear-Gaussian model whose log p(x) and ELBO are exact."""
import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from gpvae import data, evaluation, objectives
from gpvae.evaluation import elbo, log_likelihood
from gpvae.models import LinearGaussian

from .conftest import assert_all_close


@pytest.fixture
def model_and_data():
    """A linear-Gaussian model whose amortized encoder has the exact posterior mean map and twice the
    posterior standard deviations, ignoring correlations: over-dispersed, so importance weights
    have finite variance, with an ELBO gap of a few nats."""
    model = LinearGaussian(data_dim=8, latent_dim=3, noise_std=0.5, seed=1)
    with torch.no_grad():
        cov = model.exact_posterior(torch.zeros(1, 8, dtype=torch.float64))[1]
        gain = (cov @ model.weight.T) / (2 * model.log_noise_std).exp()
        model.encoder_weight.copy_(gain)
        model.encoder_bias.copy_(-gain @ model.bias)
        model.encoder_log_var.copy_(cov.diagonal().log() + math.log(4.0))
    return model, model.sample_data(64, seed=2)


def test_elbo_monte_carlo_equals_its_analytic_value(model_and_data):
    model, x = model_and_data
    with torch.no_grad():
        r = model.proposal(x)
        analytic = model.analytic_elbo(x, r.mean, r.variance.log())
        estimate = model.elbo(x, n_samples=20000)
    assert_all_close(estimate, analytic, atol=0.1, what="per-example ELBO")
    assert_all_close(estimate.mean(), analytic.mean(), atol=0.02, what="mean ELBO")


def test_exact_posterior_as_proposal_gives_exact_log_px_with_one_sample(model_and_data):
    model, x = model_and_data
    with torch.no_grad():
        mean, cov = model.exact_posterior(x)
        log_w = model.log_weights(x, 4, proposal=MultivariateNormal(mean, cov.expand(len(x), -1, -1)))
    assert_all_close(log_w, model.exact_log_marginal(x).expand_as(log_w), atol=1e-9, what="log w")


@pytest.mark.parametrize("scale, prior_weight", [(1.0, 0.0), (2.0, 0.0), (1.0, 0.2), (1.5, 0.05)])
def test_a_widened_or_defensive_proposal_has_an_exact_density_and_converges_to_log_px(model_and_data, scale,
                                                                                      prior_weight):
    model, x = model_and_data
    exact = model.exact_log_marginal(x)
    proposal = evaluation.widened_proposal(model, scale, prior_weight)
    estimate = log_likelihood(model, x, k=4000, batch_size=16, samples_per_chunk=500, proposal=proposal)
    assert_all_close(estimate, exact, atol=0.2, what=f"log p̂(x), scale {scale}, prior weight {prior_weight}")
    assert_all_close(estimate.mean(), exact.mean(), atol=0.03, what="its mean over the images")
    with torch.no_grad():
        r, own = proposal(x), model.proposal(x)
        z = own.sample((3,))
        expected = own.log_prob(z) if (scale, prior_weight) == (1.0, 0.0) else None
        if expected is not None:
            assert_all_close(r.log_prob(z), expected, atol=1e-9, what="the unwidened proposal is the model's own")
        assert_all_close(r.mean, own.mean * (1 - prior_weight), atol=1e-9, what="the mixture's mean")


@pytest.mark.parametrize("scale, prior_weight", [(0.0, 0.0), (1.0, 1.0), (1.0, -0.1)])
def test_a_widened_proposal_refuses_settings_that_are_no_distribution(model_and_data, scale, prior_weight):
    with pytest.raises(ValueError, match="scale > 0 and 0 <= prior_weight < 1"):
        evaluation.widened_proposal(model_and_data[0], scale, prior_weight)


def test_iwae_estimate_is_below_log_px_rises_with_k_and_converges(model_and_data):
    model, x = model_and_data
    exact = model.exact_log_marginal(x).mean().item()
    estimates = {k: log_likelihood(model, x, k=k, batch_size=16, samples_per_chunk=64).mean().item()
                 for k in (1, 10, 100, 2000)}
    gaps = [exact - estimates[k] for k in (1, 10, 100, 2000)]
    assert all(g > -0.01 for g in gaps), f"estimates above log p(x): gaps {gaps}"
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3], f"gap does not shrink with K: {gaps}"
    assert gaps[0] > 1.0, f"the amortized proposal is too good for this test to mean anything: {gaps[0]}"
    assert gaps[3] < 0.02, f"IWAE-2000 does not converge to log p(x): gap {gaps[3]}"


def test_chunking_does_not_change_the_estimate(model_and_data):
    model, x = model_and_data
    torch.manual_seed(3)
    one_chunk = log_likelihood(model, x, k=300, samples_per_chunk=300)
    torch.manual_seed(3)
    chunked = log_likelihood(model, x, k=300, samples_per_chunk=7)
    assert_all_close(chunked.mean(), one_chunk.mean(), atol=0.03, what="mean log p(x), chunked vs one chunk")


def test_iwae_bound_of_identical_weights_is_the_weight():
    log_w = torch.full((5, 3), -2.5)
    assert_all_close(objectives.iwae_bound(log_w), torch.full((3,), -2.5), atol=1e-12)
    assert_all_close(objectives.iwae_bound(torch.log(torch.tensor([[1.0], [3.0]]))), math.log(2.0), atol=1e-6)


def test_evaluation_elbo_is_per_example(model_and_data):
    model, x = model_and_data
    values = elbo(model, x, batch_size=10)
    assert values.shape == (64,) and torch.isfinite(values).all()


@pytest.mark.parametrize("size", [0, -5, 11])
def test_a_test_subset_outside_one_to_the_test_set_is_refused(size):
    with pytest.raises(ValueError, match=f"a subset of {size} images of a test set of 10: it takes 1 to 10"):
        data.test_subset(10, size, seed=0)


def test_the_neighbour_control_is_the_mean_distance_to_the_nearest_training_images_in_the_error_model_s_inputs():
    from types import SimpleNamespace

    from gpvae.evaluation import neighbour_distances

    model = SimpleNamespace(encoder=SimpleNamespace(features=lambda x: x.flatten(1)),
                            error_inputs=lambda features: 2 * features)  # the error model's own input space
    stored = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    distances = neighbour_distances(model, stored, torch.tensor([[0.4], [9.0]]), neighbours=2, batch_size=1)
    assert distances == pytest.approx([2 * (0.4 + 0.6) / 2, 2 * (1.0 + 7.0) / 2])
