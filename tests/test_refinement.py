"""SVI refinement, SA-VAE and the gap decomposition on models whose posterior is exact."""
import math

import pytest
import torch

from gpvae.config import TrainConfig
from gpvae.evaluation import amortization_gaps
from gpvae.models import LinearGaussian, build_model
from gpvae.objectives import gaussian_elbo
from gpvae.refinement import GaussianRefinement, optimal_gaussian

from .conftest import assert_all_close


def _diagonal_posterior_model():
    """Linear-Gaussian model with orthogonal decoder columns: p(z | x) is a diagonal Gaussian."""
    model = LinearGaussian(data_dim=5, latent_dim=2, noise_std=0.6, seed=7)
    with torch.no_grad():
        q, _ = torch.linalg.qr(model.weight)
        model.weight.copy_(q * torch.tensor([1.5, 0.7], dtype=torch.float64))
    return model


@pytest.mark.parametrize("update,momentum", [("sgd", 0.0), ("sgd", 0.5), ("adam", 0.0)])
def test_each_small_step_raises_the_elbo(update, momentum):
    model = LinearGaussian(data_dim=6, latent_dim=3, seed=1)
    x = model.sample_data(8, seed=2)
    start = model.proposal(x)
    trace = []
    GaussianRefinement(steps=40, lr=1e-3, momentum=momentum, update=update)(
        lambda m, v: model.analytic_elbo(x, m, v), start.mean, start.variance.log(), trace)
    steps = torch.stack(trace).mean(1).diff()
    assert (steps > 0).all(), f"ELBO fell at steps {torch.nonzero(steps <= 0).flatten().tolist()}"


@pytest.mark.parametrize("update", ["sgd", "adam"])
def test_gradient_through_unrolled_steps_matches_finite_differences(update):
    model = LinearGaussian(data_dim=3, latent_dim=2, seed=3)
    x = model.sample_data(2, seed=4)
    refine = GaussianRefinement(steps=5, lr=0.05, momentum=0.5, update=update, differentiable=True)
    objective = lambda m, v: model.analytic_elbo(x, m, v)  # noqa: E731
    log_var0 = torch.full((2, 2), -0.5, dtype=torch.float64)

    def final_elbo(mean0):
        return objective(*refine(objective, mean0, log_var0)).sum()

    mean0 = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(final_elbo(mean0), mean0)
    numeric = torch.zeros_like(grad)
    eps = 1e-6
    for i in range(2):
        for j in range(2):
            step = torch.zeros_like(mean0)
            step[i, j] = eps
            numeric[i, j] = (final_elbo(mean0.detach() + step) - final_elbo(mean0.detach() - step)) / (2 * eps)
    assert_all_close(grad, numeric, atol=1e-6, what="d ELBO(λ_T) / d λ_0")


def test_converged_q_star_is_the_exact_posterior_and_the_approximation_gap_vanishes():
    model = _diagonal_posterior_model()
    x = model.sample_data(10, seed=5)
    torch.manual_seed(0)
    start = model.proposal(x)
    mean, log_var, record = optimal_gaussian(model, x, start.mean.detach(), start.variance.log().detach())
    post_mean, post_cov = model.exact_posterior(x)
    assert record["converged"], record
    assert_all_close(mean, post_mean, atol=0.03, what="q* mean vs exact posterior mean")
    assert_all_close(log_var, post_cov.diagonal().log().expand_as(log_var), atol=0.1, what="q* log-variance")
    gap = model.exact_log_marginal(x) - model.analytic_elbo(x, mean.detach(), log_var.detach())
    assert (gap >= -1e-9).all() and gap.mean() < 0.01, f"approximation gap of q*: {gap.tolist()}"


def test_gap_decomposition_adds_up_and_its_approximation_gap_vanishes_when_the_family_is_exact():
    model = _diagonal_posterior_model()
    with torch.no_grad():
        model.encoder_log_var.fill_(0.0)  # over-dispersed amortized proposal: finite-variance importance weights
    x = model.sample_data(6, seed=6)
    torch.manual_seed(1)
    gaps = amortization_gaps(model, x, k=50_000, batch_size=6, elbo_samples=20_000)
    assert all(record["converged"] for record in gaps["svi"]["batches"])
    values = {k: torch.tensor(gaps[k]["per_example"], dtype=torch.float64) for k in
              ("log_px", "elbo_model", "approximation_gap", "amortization_gap")}
    total = values["log_px"] - values["elbo_model"]
    parts = values["approximation_gap"] + values["amortization_gap"]
    assert_all_close(parts, total, atol=1e-9, what="gaps add up")
    assert abs(gaps["approximation_gap"]["mean"]) < 0.05, gaps["approximation_gap"]
    assert gaps["amortization_gap"]["mean"] > 0.5, "the untrained amortized encoder should be far from q*"
    assert_all_close(gaps["log_px"]["mean"], model.exact_log_marginal(x).mean(), atol=0.02, what="log p̂ vs exact")


def test_savae_decoder_gets_the_partial_gradient_and_the_encoder_the_unrolled_one():
    model = build_model(TrainConfig(model="savae", latent_dim=3, svi_steps=3), (1, 28, 28), "bernoulli")
    x = torch.rand(4, 1, 28, 28).round()
    torch.manual_seed(0)
    model.loss(x).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for {name}"
    decoder_grad = [p.grad.clone() for p in model.decoder.parameters()]
    model.zero_grad()
    torch.manual_seed(0)
    mean, log_var = model.refined(x, differentiable=False)
    (-gaussian_elbo(model, x, mean, log_var).mean()).backward()
    for got, want in zip(decoder_grad, model.decoder.parameters()):
        assert_all_close(got, want.grad, atol=1e-5, what="decoder gradient = ∂ELBO(λ_T, θ)/∂θ")
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.encoder.parameters())


def test_savae_proposal_is_the_refined_gaussian_and_beats_the_encoder():
    model = build_model(TrainConfig(model="savae", latent_dim=3, svi_steps=30, svi_lr=1e-2), (1, 28, 28), "bernoulli")
    x = torch.rand(16, 1, 28, 28).round()
    torch.manual_seed(2)
    with torch.no_grad():
        refined = model.elbo(x, n_samples=500).mean()
        amortized = gaussian_elbo(model, x, *model.encoder(x), n_samples=500).mean()
    assert refined > amortized + 1.0, (refined, amortized)
    assert math.isfinite(model.proposal(x).log_prob(torch.zeros(16, 3)).sum().item())


def test_importance_sampling_from_q_star_recovers_log_p_x_and_leaves_the_gaps_as_they_were():
    from gpvae.evaluation import optimal_elbo

    model = _diagonal_posterior_model()
    x = model.sample_data(6, seed=7)
    start = lambda xb: (lambda r: (r.mean.detach(), r.variance.log().detach()))(model.proposal(xb))  # noqa: E731
    torch.manual_seed(2)
    elbo_opt, _, from_optimum = optimal_elbo(model, x, start, batch_size=3, elbo_samples=200, importance_k=2000)
    # q* is the exact posterior here, so every importance weight is p(x): the estimate is exact
    assert_all_close(from_optimum, model.exact_log_marginal(x).float(), atol=0.02, what="IS from q* vs exact log p(x)")
    torch.manual_seed(2)
    without, _, none = optimal_elbo(model, x, start, batch_size=3, elbo_samples=200)
    assert none is None and torch.equal(without, elbo_opt), "importance sampling from q* changed the other draws"


def test_clipping_bounds_each_images_step_and_leaves_small_gradients_alone():
    """On a quadratic objective the gradient is (target − parameter), of known norm 0.1 … 10 per row."""
    torch.manual_seed(3)
    direction = torch.nn.functional.normalize(torch.randn(12, 4, dtype=torch.float64), dim=-1)
    target = direction * torch.logspace(-1, 1, 12, dtype=torch.float64)[:, None]
    objective = lambda m, v: -0.5 * ((m - target) ** 2).sum(-1) - 0.5 * ((v + target) ** 2).sum(-1)  # noqa: E731
    origin = torch.zeros(12, 4, dtype=torch.float64)
    clip, lr = 1.0, 1e-2
    free = GaussianRefinement(steps=1, lr=lr)(objective, origin, origin)
    clipped = GaussianRefinement(steps=1, lr=lr, max_grad_norm=clip)(objective, origin, origin)
    small = target.norm(dim=-1) <= clip
    for sign, got, want in zip((1, -1), clipped, free):
        assert_all_close(want, sign * lr * target, atol=1e-15, what="one free step")
        assert_all_close(got[small], want[small], atol=0.0, what="rows under the clip")
        assert_all_close(got[~small], sign * lr * clip * direction[~small], atol=1e-15, what="clipped rows: norm × direction")
    with pytest.raises(ValueError, match="max_grad_norm"):
        GaussianRefinement(steps=1, lr=lr, max_grad_norm=0.0)


def test_savae_whose_svi_steps_overshoot_reports_a_failure_and_clipping_rescues_it():
    """Regression: on Fashion-MNIST's logistic decoder SA-VAE's SVI at lr 1e-3 overshot and its training
    ended hundreds of nats below its VAE without any error. A step size that overshoots now lowers
    ``svi_gain_valid`` below zero, which :meth:`failure` reports; clipping the gradients restores a gain."""
    x = torch.rand(64, 1, 28, 28).round()
    results = {}
    for name, clip in (("free", None), ("clipped", 0.05)):
        torch.manual_seed(0)
        model = build_model(TrainConfig(model="savae", latent_dim=3, svi_lr=3.0, svi_max_grad_norm=clip),
                            (1, 28, 28), "bernoulli")
        torch.manual_seed(1)
        results[name] = (model.diagnostics(x, x), model)
    (free, model), (clipped, _) = results["free"], results["clipped"]
    assert free["svi_gain_valid"] < 0 and "lower --svi-lr or set --svi-max-grad-norm" in model.failure(free)
    assert clipped["svi_gain_valid"] > 0 and model.failure(clipped) is None
    assert "SVI steps lower" in model.failure({"svi_gain_valid": float("nan")})  # a NaN gain is a failure too
