"""The paper's other baselines: Householder flow, IAF, VLAE and RME — their defining properties."""
import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian
from torch.distributions import MultivariateNormal

from gpvae import training
from gpvae.config import TrainConfig
from gpvae.distributions import DiagonalGaussianMixture, diagonal_gaussian
from gpvae.flow_layers import IAFStep, householder_reflection
from gpvae.models import RME, VLAE, HouseholderFlowVAE, IAFVAE, LinearGaussian
from gpvae.models.base import LatentVariableModel
from gpvae.models.linear_gaussian import LinearGaussianDecoder
from gpvae.networks import Encoder

from .conftest import assert_all_close, data_dir, requires_data

D, d = 6, 3


def linear_encoder(seed: int = 0) -> Encoder:
    """A linear Gaussian encoder on raw x (B, D), float64."""
    torch.manual_seed(seed)
    return Encoder(nn.Identity(), D, d).double()


@pytest.fixture
def exact():
    """A linear-Gaussian generative model (exact posterior, full covariance) and data from it."""
    model = LinearGaussian(data_dim=D, latent_dim=d, noise_std=0.5, seed=3)
    return model, model.sample_data(32, seed=4)


def test_householder_steps_are_orthogonal_symmetric_and_volume_preserving():
    v = torch.randn(5, d, dtype=torch.float64)
    reflect = householder_reflection(v)
    basis = torch.eye(d, dtype=torch.float64).unsqueeze(1).expand(d, 5, d)
    matrices = reflect(basis)[0].permute(1, 2, 0)  # (B, d, d): column j = H e_j
    eye = torch.eye(d, dtype=torch.float64).expand(5, d, d)
    assert_all_close(matrices.transpose(1, 2) @ matrices, eye, atol=1e-12, what="HᵀH − I")
    assert_all_close(matrices, matrices.transpose(1, 2), atol=1e-12, what="H − Hᵀ")
    z = torch.randn(5, d, dtype=torch.float64)
    assert (reflect(z)[1] == 0).all()
    for b in range(5):
        jac = jacobian(lambda point: householder_reflection(v[b:b + 1])(point)[0], z[b:b + 1]).reshape(d, d)
        assert abs(torch.linalg.slogdet(jac).logabsdet.item()) < 1e-12


def test_householder_flow_density_is_the_exact_full_covariance_gaussian():
    encoder = Encoder(nn.Identity(), D, d).double()
    model = HouseholderFlowVAE(encoder, LinearGaussianDecoder(LinearGaussian(D, d)), householder_steps=4).double()
    x = torch.randn(8, D, dtype=torch.float64)
    with torch.no_grad():
        r = model.proposal(x)
        mean, var = r.base.mean, r.base.variance
        push = lambda z: [z := step(z)[0] for step, _ in r.steps][-1]  # noqa: E731
        basis = torch.eye(d, dtype=torch.float64).unsqueeze(1).expand(d, 8, d)
        linear = push(basis).permute(1, 2, 0)  # (B, d, d): the flow is the linear map z_T = A z_0
        exact = MultivariateNormal(push(mean), linear @ torch.diag_embed(var) @ linear.transpose(1, 2))
        z = r.rsample((50,))
        assert_all_close(r.log_prob(z), exact.log_prob(z), atol=1e-10, what="cached log r")
        other = torch.randn(50, 8, d, dtype=torch.float64)
        assert_all_close(r.log_prob(other), exact.log_prob(other), atol=1e-10, what="log r by inversion")


@pytest.fixture
def iaf_step():
    step = IAFStep(latent_dim=4, width=16).double()
    with torch.no_grad():
        for p in step.parameters():
            p.add_(0.5 * torch.randn_like(p))  # away from the near-identity initialization
    return step, 0.3 * torch.randn(2, 16, dtype=torch.float64)


def test_iaf_step_is_invertible(iaf_step):
    step, context = iaf_step
    z = torch.randn(7, 2, 4, dtype=torch.float64)
    assert_all_close(step.inverse(step(z, context)[0], context), z, atol=1e-10, what="inverse(forward(z)) − z")


def test_iaf_jacobian_is_triangular_and_its_log_determinant_is_autograds(iaf_step):
    step, context = iaf_step
    z = torch.randn(2, 4, dtype=torch.float64)
    for b in range(2):
        jac = jacobian(lambda point: step(point, context[b:b + 1])[0], z[b:b + 1]).reshape(4, 4)
        assert_all_close(jac.triu(1), torch.zeros(4, 4), atol=0.0, what="∂z'_i/∂z_j for j > i")
        assert jac.diagonal().abs().min() > 1e-3, "a degenerate step would make the triangle test vacuous"
        assert jac.tril(-1).abs().max() > 1e-3, "the step ignores earlier dimensions"
        assert_all_close(step(z[b:b + 1], context[b:b + 1])[1], torch.linalg.slogdet(jac).logabsdet.reshape(1),
                         atol=1e-12, what="log|det J|")


def test_iaf_proposal_density_matches_change_of_variables_by_autograd():
    encoder = Encoder(nn.Identity(), D, d).double()
    model = IAFVAE(encoder, LinearGaussianDecoder(LinearGaussian(D, d)), iaf_steps=3, iaf_width=12).double()
    with torch.no_grad():
        for step in model.flow:
            step.gate.weight.add_(0.5 * torch.randn_like(step.gate.weight))
            step.shift.weight.add_(0.5 * torch.randn_like(step.shift.weight))
    x = torch.randn(1, D, dtype=torch.float64)
    r = model.proposal(x)

    def flow(z0):
        for forward, _ in r.steps:
            z0 = forward(z0)[0]
        return z0
    z0 = r.base.sample()
    jac = jacobian(flow, z0).reshape(d, d)
    expected = r.base.log_prob(z0) - torch.linalg.slogdet(jac).logabsdet
    z_t = flow(z0).detach()
    assert_all_close(r.log_prob(z_t.clone()), expected, atol=1e-10, what="log r(z_T) by inversion")
    drawn = r.rsample((20,))
    assert_all_close(r.log_prob(drawn), r.log_prob(drawn.clone()), atol=1e-10, what="cached vs inverted log r")


def test_vlae_recovers_the_exact_posterior_of_a_linear_gaussian_model(exact):
    model, x = exact
    for iterations, exact_expected in ((0, False), (1, True), (3, True)):
        vlae = VLAE(linear_encoder(), LinearGaussianDecoder(model), laplace_iterations=iterations)
        with torch.no_grad():
            r = vlae.proposal(x)
            mean, cov = model.exact_posterior(x)
        assert_all_close(r.covariance_matrix, cov.expand_as(r.covariance_matrix), atol=1e-10, what="covariance")
        mean_error = (r.mean - mean).abs().max().item()
        assert (mean_error < 1e-10) == exact_expected, (iterations, mean_error)
    with torch.no_grad():  # the exact posterior as proposal: every importance weight is p(x)
        log_w = vlae.log_weights(x, 5)
    assert_all_close(log_w, model.exact_log_marginal(x).expand_as(log_w), atol=1e-9, what="log w − log p(x)")


def test_vlae_elbo_matches_its_closed_form_on_a_linear_gaussian_model(exact):
    model, x = exact
    vlae = VLAE(linear_encoder(), LinearGaussianDecoder(model), laplace_iterations=0)
    with torch.no_grad():
        q = vlae.proposal(x)
        noise_var = (2 * model.log_noise_std).exp()
        resid = x - (q.mean @ model.weight.T + model.bias)
        trace = torch.einsum("ij,bjk,ik->b", model.weight, q.covariance_matrix, model.weight)
        expected_ll = -0.5 * ((resid.pow(2).sum(-1) + trace) / noise_var + D * torch.log(2 * torch.pi * noise_var))
        prior = MultivariateNormal(torch.zeros(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64))
        closed_form = expected_ll - torch.distributions.kl_divergence(q, prior)
        estimate = vlae.elbo(x, n_samples=20000)
        standard_error = vlae.log_likelihood(x, q.rsample((20000,))).std(0) / 20000 ** 0.5
    z_scores = (estimate - closed_form) / standard_error
    assert z_scores.abs().max() < 5, f"ELBO off its closed form by {z_scores.abs().max():.1f} standard errors"


def test_mixture_density_moments_and_sampling():
    means, log_vars = torch.randn(4, 3, 2, dtype=torch.float64), 0.3 * torch.randn(4, 3, 2, dtype=torch.float64)
    log_weights = torch.log_softmax(torch.randn(4, 3, dtype=torch.float64), -1)
    q = DiagonalGaussianMixture(means, log_vars, log_weights)
    z = torch.randn(10, 4, 2, dtype=torch.float64)
    manual = torch.stack([diagonal_gaussian(means[:, k], log_vars[:, k]).log_prob(z) for k in range(3)], -1)
    assert_all_close(q.log_prob(z), torch.logsumexp(manual + log_weights, -1), atol=1e-12, what="log q")
    draws = q.rsample((40000,))
    assert draws.shape == (40000, 4, 2)
    assert_all_close(draws.mean(0), q.mean, atol=0.05, what="sample mean")
    assert_all_close(draws.var(0), q.variance, atol=0.1, what="sample variance")


def _rme_on(model: LinearGaussian, components: int = 2, schedule: str = "staged") -> RME:
    rme = RME(linear_encoder(), LinearGaussianDecoder(model), mixture_components=components, mixture_schedule=schedule).double()
    rme.decoder.requires_grad_(False)
    return rme


def _fit(rme: RME, x: torch.Tensor, steps: int) -> None:
    trainable = [p for p in rme.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=0.02)
    for _ in range(steps):
        optimizer.zero_grad()
        rme.loss(x).backward()
        optimizer.step()


def test_rme_elbo_over_components_equals_the_elbo_of_mixture_samples(exact):
    model, x = exact
    rme = _rme_on(model, components=3)
    with torch.no_grad():
        for gate in rme.gates:
            gate.bias.fill_(0.0)
        for encoder in rme.new_encoders:
            encoder.head.bias.add_(torch.randn_like(encoder.head.bias))
        stratified = rme.elbo(x, n_samples=20000)  # 3 x 20000 draws, at most the variance of 60000 plain ones
        log_w = LatentVariableModel.log_weights(rme, x, 60000)
    standard_error = (2 * log_w.var(0) / 60000).sqrt()  # of the difference, bounded
    z_scores = (stratified - log_w.mean(0)) / standard_error
    assert z_scores.abs().max() < 5, f"stratified ELBO off the sampled one by {z_scores.abs().max():.1f} standard errors"


def test_staged_rme_adding_a_component_does_not_lower_the_elbo_for_a_fixed_decoder(exact):
    model, x = exact
    rme = _rme_on(model, components=2)
    rme.begin_epoch(0, 2)  # stage 1: the first component alone, fitted first
    _fit(rme, x, 300)

    def mixture_elbo():
        torch.manual_seed(7)  # common random numbers for every comparison
        with torch.no_grad():
            return rme.elbo(x, n_samples=4000).mean().item()
    one = mixture_elbo()
    rme.begin_epoch(1, 2)  # stage 2: a second component, initialized as a copy of the first
    assert int(rme.active_components) == 2
    assert not any(p.requires_grad for p in rme.encoder.parameters())
    with torch.no_grad():
        bias = rme.gates[0].bias.clone()
        rme.gates[0].bias.fill_(-60.0)  # ε → 0: the new mixture is the old one
    assert abs(mixture_elbo() - one) < 1e-9
    with torch.no_grad():
        rme.gates[0].bias.copy_(bias)
    first = {k: v.clone() for k, v in rme.encoder.state_dict().items()}
    _fit(rme, x, 300)
    two = mixture_elbo()
    assert two >= one - 1e-3, f"adding a component lowered the ELBO: {one:.4f} -> {two:.4f}"
    assert two > one + 0.01, f"a second diagonal component should help a correlated posterior: {one:.4f} -> {two:.4f}"
    assert all(torch.equal(first[k], v) for k, v in rme.encoder.state_dict().items()), "stage 2 moved component 1"


def test_recursive_rme_trains_the_first_component_exactly_as_a_vae_encoder(exact):
    model, x = exact
    rme = _rme_on(model, components=3, schedule="recursive")
    with torch.no_grad():
        for gate in rme.gates:
            gate.weight.add_(torch.randn_like(gate.weight))
    torch.manual_seed(5)
    rme.loss(x).backward()
    from_loss = [p.grad.clone() for p in rme.encoder.parameters()]
    rme.zero_grad()
    torch.manual_seed(5)  # the first partial objective draws the first noise: same draws
    first = rme.mixture(*[t[:, :1] if t.dim() == 3 else t[:, :0] for t in rme.components(x)])
    (-rme.mixture_elbo(x, first).mean()).backward()
    for got, want in zip(from_loss, rme.encoder.parameters()):
        assert_all_close(got, want.grad, atol=1e-12, what="gradient of component 1")


def test_recursive_rme_mixture_beats_its_first_component_for_a_fixed_decoder(exact):
    model, x = exact
    rme = _rme_on(model, components=2, schedule="recursive")
    _fit(rme, x, 400)

    def mixture_elbo(components):
        rme.active_components.fill_(components)
        torch.manual_seed(7)
        with torch.no_grad():
            return rme.elbo(x, n_samples=4000).mean().item()
    one, two = mixture_elbo(1), mixture_elbo(2)
    assert two > one + 0.01, f"the fitted second component did not raise the ELBO: {one:.4f} -> {two:.4f}"


@requires_data
@pytest.mark.parametrize("model", ["hf", "iaf", "vlae", "rme"])
def test_baseline_trains_on_mnist_and_reports_a_finite_log_likelihood(tmp_path, model):
    config = TrainConfig(model=model, dataset="mnist", max_train=200, max_test=20, eval_k=20, batch_size=50,
                         latent_dim=8, epochs=2, device="cpu", data_dir=str(data_dir()), out=str(tmp_path / model),
                         householder_steps=2, iaf_width=32, laplace_iterations=1, mixture_components=2,
                         mixture_schedule="staged" if model == "rme" else "recursive")
    metrics = training.train(config)
    assert torch.isfinite(torch.tensor([metrics["test_ll"], metrics["test_elbo"]])).all()
    assert metrics["test_ll"] > metrics["test_elbo"] - 1.0
    if model == "rme":
        assert metrics["model_summary"]["active_components"] in (1, 2)
