import torch

from gpvae.likelihoods import bernoulli_log_prob, discretized_logistic_log_prob

from .conftest import assert_all_close


def test_discretized_logistic_is_a_probability_mass_over_256_values():
    values = torch.arange(256.0).view(256, 1, 1, 1)
    for mean, log_scale in [(0.0, -2.0), (0.9, -5.0), (-1.0, -6.5), (0.3, 1.0), (0.0, -7.0)]:
        logp = discretized_logistic_log_prob(torch.full((1, 1, 1), mean), torch.full((1, 1, 1), log_scale), values)
        assert_all_close(torch.logsumexp(logp, 0), 0.0, atol=2e-4, what=f"log total mass at ({mean}, {log_scale})")


def test_discretized_logistic_sums_over_pixels_and_broadcasts_samples():
    mean, log_scale = torch.zeros(3, 2, 1, 4, 4), torch.full((3, 2, 1, 4, 4), -1.0)
    x = torch.randint(0, 256, (2, 1, 4, 4)).float()
    out = discretized_logistic_log_prob(mean, log_scale, x)
    assert out.shape == (3, 2)
    single = discretized_logistic_log_prob(mean[0, 0, :, :1, :1], log_scale[0, 0, :, :1, :1], x[0, :, :1, :1])
    assert single < 0


def test_bernoulli_matches_torch_distribution():
    logits, x = torch.randn(5, 1, 3, 3), torch.randint(0, 2, (5, 1, 3, 3)).float()
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    assert_all_close(bernoulli_log_prob(logits, x), expected, atol=1e-5)
