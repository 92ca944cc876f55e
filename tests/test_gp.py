"""GP-RF: the fast marginals against GPyTorch, the marginal density, the bounds on an exact model."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from gpvae import run_folder
from gpvae.io import RunFolderError
from gpvae import objectives, training
from gpvae.config import ConfigError, TrainConfig
from gpvae.distributions import GaussHermiteMarginal, gauss_hermite
from gpvae.evaluation import log_likelihood
from gpvae.models.gprf import ErrorRegressionGPRF, VariationalGPRF
from gpvae.models import GPRF, MODELS, VAE, LinearGaussian, build_model
from gpvae.models.linear_gaussian import LinearGaussianDecoder
from gpvae.networks import Encoder

from .conftest import REPO, assert_all_close, data_dir, requires_data

FAMILIES = ("shared", "meanfield", "full", "natural")
CONVERGED_R4 = REPO / "results" / "workflow" / "converged" / "mnist" / "weights" / "gp_seed0" / "checkpoint.pt"


def _perturbed_gp(variational, kernel="rbf", dtype=torch.float64, objective="expected", link="lognormal"):
    config = TrainConfig(model="gp", gp_fit="elbo", variational=variational, kernel=kernel, inducing=12, latent_dim=3,
                         objective=objective, variance_link=link)
    model = build_model(config, (1, 28, 28), "bernoulli", n_train=1000).to(dtype)
    x = torch.rand(40, 1, 28, 28, dtype=dtype).round()
    model.initialize_from_data(x)
    with torch.no_grad():
        for name, p in model.gp.variational_strategy._variational_distribution.named_parameters():
            if name == "natural_mat":  # -S⁻¹/2 must stay negative definite
                p.mul_(0.8)
            else:
                p.add_(0.1 * torch.randn_like(p))
        if kernel == "rbf":
            model.gp.covar_module.outputscale = 0.5
    return model, x


@pytest.mark.parametrize("gp_fit, reading", [("elbo", VariationalGPRF), ("errors", ErrorRegressionGPRF)])
def test_gprf_builds_the_reading_that_gp_fit_names(gp_fit, reading):
    exact = LinearGaussian(data_dim=6, latent_dim=2, noise_std=0.7, seed=3)
    model = GPRF(Encoder(nn.Identity(), feature_dim=6, latent_dim=2), LinearGaussianDecoder(exact), n_train=100,
                 gp_fit=gp_fit, inducing=8, error_images=50, error_inducing=8)
    assert type(model) is reading and isinstance(model, GPRF) and MODELS["gp"] is GPRF
    config = TrainConfig(model="gp", gp_fit=gp_fit, inducing=8, latent_dim=2)
    assert type(build_model(config, (1, 28, 28), "bernoulli", n_train=100)) is reading
    with pytest.raises(ValueError, match="gp_fit"):
        GPRF(model.encoder, model.decoder, n_train=100, gp_fit="sometimes")


@pytest.mark.skipif(not CONVERGED_R4.exists(), reason="the committed converged R4 checkpoint is absent")
def test_the_committed_r4_checkpoint_loads_strictly():
    saved = torch.load(CONVERGED_R4, map_location="cpu", weights_only=False)
    model = build_model(TrainConfig(**saved["config"]), (1, 28, 28), "bernoulli", n_train=50000)
    assert isinstance(model, ErrorRegressionGPRF)
    model.load_state_dict(saved["best_model"])  # strict: every key, and no other
    assert bool(model.gp.fitted)


@pytest.mark.parametrize("variational", FAMILIES)
@pytest.mark.parametrize("kernel", ["rbf", "linear"])
def test_fast_and_cached_marginals_agree_with_gpytorch(variational, kernel):
    model, x = _perturbed_gp(variational, kernel)
    features = model.encoder.features(x[:9])
    reference = model.gp(features)  # GPyTorch's VariationalStrategy predictive
    mean, var = model.gp.marginals(features)
    assert_all_close(mean, reference.mean.T, atol=1e-5, what="training-path mean")
    assert_all_close(var, reference.variance.T, atol=1e-5, what="training-path variance")
    model.eval()
    with torch.no_grad():
        cached_mean, cached_var = model.gp.marginals(features)
        assert_all_close(cached_mean, reference.mean.T, atol=1e-5, what="cached mean")
        assert_all_close(cached_var, reference.variance.T, atol=1e-5, what="cached variance")
        q = model.gp.variational_distribution
        (q.natural_vec if variational == "natural" else q.variational_mean).add_(0.3)  # invalidates the cache
        moved = model.gp(features).mean.T
        assert_all_close(model.gp.marginals(features)[0], moved, atol=1e-5, what="mean after parameter change")


@pytest.mark.parametrize("variational", FAMILIES)
def test_kl_matches_gpytorch(variational):
    model, _ = _perturbed_gp(variational)
    expected = model.gp.variational_strategy.kl_divergence().sum()
    assert_all_close(model.gp.kl_divergence(), expected, atol=1e-8, what="KL(q(v) || p(v))")


def test_gauss_hermite_density_matches_monte_carlo_over_the_variance_function():
    torch.manual_seed(1)
    loc, mean_var = torch.randn(2, 3, dtype=torch.float64), torch.rand(2, 3, dtype=torch.float64) * 0.3
    mean_l, var_l = torch.randn(2, 3, dtype=torch.float64) * 0.5, torch.rand(2, 3, dtype=torch.float64) * 0.8
    nodes, log_w = gauss_hermite(20, dtype=torch.float64)
    q = GaussHermiteMarginal(loc, mean_var, (mean_l.unsqueeze(-1) + (2 * var_l).sqrt().unsqueeze(-1) * nodes).exp(), log_w)
    z = torch.randn(5, 2, 3, dtype=torch.float64)
    draws = mean_l + var_l.sqrt() * torch.randn(200_000, 1, 2, 3, dtype=torch.float64)  # L ~ N(mean_l, var_l)
    var = mean_var + draws.exp()
    values = torch.exp(-0.5 * (z - loc) ** 2 / var) / torch.sqrt(2 * math.pi * var)  # (draws, 5, 2, 3)
    density, stderr = values.mean(0), values.std(0) / math.sqrt(len(values))
    quadrature = torch.logsumexp(-0.5 * ((z - loc).unsqueeze(-1) ** 2 / q.component_var + q.component_var.log()
                                         + math.log(2 * math.pi)) + log_w, -1).exp()  # per dimension
    assert ((quadrature - density).abs() < 5 * stderr + 1e-9).all(), (quadrature - density).abs() / stderr
    assert_all_close(q.log_prob(z), quadrature.log().sum(-1), atol=1e-12, what="log q̄ is the product over dimensions")


def test_gauss_hermite_mixture_samples_follow_its_density():
    torch.manual_seed(2)
    nodes, log_w = gauss_hermite(8, dtype=torch.float64)
    q = GaussHermiteMarginal(torch.tensor([[0.5]], dtype=torch.float64), torch.tensor([[0.1]], dtype=torch.float64),
                             (0.3 * nodes).exp().view(1, 1, -1), log_w)
    grid = torch.linspace(-12, 12, 20001, dtype=torch.float64).view(-1, 1, 1)
    density = q.log_prob(grid).exp().squeeze()
    assert_all_close(torch.trapezoid(density, grid.squeeze()), 1.0, atol=1e-6, what="total mass")
    samples = q.sample((400_000,)).squeeze()
    assert_all_close(samples.mean(), 0.5, atol=0.01, what="sample mean")
    assert_all_close(samples.var(), q.variance.squeeze(), atol=0.01, what="sample variance")


# --------------------------------------------------------------------------------------------- #
# GP-RF on a linear-Gaussian decoder, where log p(x) is exact.

def _gp_on_linear_gaussian(objective="expected", outputscale=0.3):
    exact = LinearGaussian(data_dim=6, latent_dim=2, noise_std=0.7, seed=3)
    encoder = Encoder(nn.Identity(), feature_dim=6, latent_dim=2).double()
    model = GPRF(encoder, LinearGaussianDecoder(exact), n_train=100, gp_fit="elbo", inducing=8, objective=objective).double()
    x = exact.sample_data(32, seed=4)
    model.initialize_from_data(x)
    with torch.no_grad():
        model.gp.covar_module.outputscale = outputscale
        model.gp.variational_distribution.variational_mean.normal_(0, 0.3)
    return model, x, exact


def test_expected_elbo_below_marginal_elbo_below_iwae_below_log_px():
    model, x, exact = _gp_on_linear_gaussian()
    torch.manual_seed(5)
    n = 4000
    with torch.no_grad():
        expected_draws = torch.stack([model.expected_elbo(x) for _ in range(n)])
        marginal_draws = model.log_weights(x, n)
    expected, marginal = expected_draws.mean(0), marginal_draws.mean(0)
    stderr = ((expected_draws.var(0) + marginal_draws.var(0)) / n).sqrt()
    iwae = log_likelihood(model, x, k=2000, batch_size=32)
    log_px = exact.exact_log_marginal(x)
    assert (expected < marginal + 4 * stderr).all(), "expected ELBO above the marginal ELBO"
    assert expected.mean() < marginal.mean() - 4 * stderr.pow(2).mean().sqrt() / math.sqrt(len(x))
    assert (marginal < iwae + 4 * marginal_draws.std(0) / math.sqrt(n)).all() and marginal.mean() < iwae.mean() - 0.05
    assert iwae.mean() < log_px.mean() + 0.01
    assert iwae.mean() > log_px.mean() - 0.1, "IWAE-2000 should be close to the exact log p(x)"


def test_sampled_function_weights_are_unbiased_but_looser_than_the_marginal():
    """Drawing F and weighting by q(z | x, F) is unbiased for p(x); q̄ is its Rao–Blackwellization
    (1/q̄(z) = E[1/q(z|x,F) | z]), so the q̄ estimate is the tighter one at the same K."""
    model, x, exact = _gp_on_linear_gaussian(outputscale=1.0)
    k = 200
    torch.manual_seed(6)
    repeats = 20  # averages of independent IWAE-200 estimates, so the comparison is not decided by noise
    with torch.no_grad():
        sampled_f = torch.stack([objectives.iwae_bound(model.sampled_function_log_weights(x, k)) for _ in range(repeats)]).mean(0)
        marginal = torch.stack([objectives.iwae_bound(model.log_weights(x, k)) for _ in range(repeats)]).mean(0)
    log_px = exact.exact_log_marginal(x)
    assert sampled_f.mean() < marginal.mean() - 0.05, (sampled_f.mean(), marginal.mean())
    assert marginal.mean() < log_px.mean() + 0.02 and sampled_f.mean() < log_px.mean()


def test_zero_kernel_amplitude_is_the_vae():
    model, x = _perturbed_gp("shared")
    with torch.no_grad():
        model.gp.covar_module.outputscale = 1e-14
    vae = VAE(model.encoder, model.decoder).double()
    z = vae.proposal(x).sample((3,))
    with torch.no_grad():
        gp_log_w = model.log_joint(x, z) - model.proposal(x).log_prob(z)
        vae_log_w = vae.log_joint(x, z) - vae.proposal(x).log_prob(z)
    assert_all_close(gp_log_w, vae_log_w, atol=1e-3, what="log weights, GP-RF with zero amplitude vs VAE")


# --- the importance-weighted objectives (iw, iw_expected) ------------------------------------------

def _bound_draws(bound, x, n):
    """``n`` independent draws of a per-example bound: (n, B)."""
    with torch.no_grad():
        return torch.stack([bound(x) for _ in range(n)])


def test_importance_weighted_objectives_are_lower_bounds_that_tighten_with_k():
    """On the exact linear-Gaussian model: E[iw_k] and E[iw_expected_k] stay below log p(x) for every k,
    rise with k, and at k = 1 are the marginal and the (Monte Carlo) expected ELBO."""
    model, x, exact = _gp_on_linear_gaussian(outputscale=1.0)
    log_px = exact.exact_log_marginal(x).mean().item()
    torch.manual_seed(6)
    n = 300
    means = {}
    for name, bound in (("iw", model.iw_bound), ("iw_expected", model.expected_iw_bound)):
        for k in (1, 8, 64):
            draws = _bound_draws(lambda x: bound(x, k), x, n).mean(1)  # mean over images, per draw
            means[name, k] = (draws.mean().item(), draws.std().item() / math.sqrt(n))
            assert means[name, k][0] < log_px + 4 * means[name, k][1], (name, k, means[name, k], log_px)
        assert means[name, 1][0] < means[name, 8][0] < means[name, 64][0], (name, means)
    for name in ("iw", "iw_expected"):  # k = 64 closes most of the gap that k = 1 leaves
        assert log_px - means[name, 64][0] < 0.5 * (log_px - means[name, 1][0]), (name, means, log_px)
    marginal = _bound_draws(lambda x: model.elbo(x), x, n).mean(1)
    expected = _bound_draws(model.expected_elbo, x, n).mean(1)
    for (value, stderr), reference in ((means["iw", 1], marginal), (means["iw_expected", 1], expected)):
        tolerance = 4 * math.hypot(stderr, reference.std().item() / math.sqrt(n))
        assert abs(value - reference.mean().item()) < tolerance


@pytest.mark.parametrize("objective", ["iw", "iw_expected"])
def test_importance_weighted_gradients_match_finite_differences(objective):
    """The gradient of the loss with respect to the kernel amplitude (through q̄'s density for iw, through
    the sampled F for iw_expected) against a central difference with the same random numbers."""
    model, x, _ = _gp_on_linear_gaussian(objective=objective, outputscale=0.5)
    model.iw_k = 4
    raw = model.gp.covar_module.raw_outputscale

    def loss_at(value: float) -> torch.Tensor:
        with torch.no_grad():
            raw.fill_(value)
        torch.manual_seed(11)
        return model.loss(x)

    start = raw.item()
    model.zero_grad()
    loss_at(start).backward()
    analytic = raw.grad.item()
    h = 1e-5
    with torch.no_grad():
        numeric = (loss_at(start + h) - loss_at(start - h)).item() / (2 * h)
    assert analytic != 0.0 and math.isfinite(analytic)
    assert abs(analytic - numeric) < 1e-4 * max(1.0, abs(numeric)), (analytic, numeric)
    for name, p in model.named_parameters():  # every trained part receives a gradient
        if p.requires_grad and name.startswith(("encoder", "gp.variational")):
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_the_importance_weighted_objectives_are_a_switch_of_the_variational_reading_only():
    assert TrainConfig(model="gp", gp_fit="elbo", objective="iw", iw_k=5).objective == "iw"
    model = build_model(TrainConfig(model="gp", gp_fit="elbo", objective="iw_expected", iw_k=3, inducing=8,
                                    latent_dim=2), (1, 28, 28), "bernoulli", n_train=100)
    assert (model.objective, model.iw_k) == ("iw_expected", 3)
    with pytest.raises(ConfigError, match="objective = 'iw'.*gp_fit = 'elbo' only"):
        TrainConfig(model="gp", gp_fit="errors", objective="iw")
    with pytest.raises(ConfigError, match="iw_k = 3 concerns objective 'iw' or 'iw_expected' only"):
        TrainConfig(model="gp", gp_fit="elbo", objective="expected", iw_k=3)
    with pytest.raises(ConfigError, match="iw_k = 0 must be at least 1"):
        TrainConfig(model="gp", gp_fit="elbo", objective="iw", iw_k=0)


@pytest.mark.parametrize("objective,link", [("expected", "lognormal"), ("marginal", "lognormal"),
                                            ("expected", "squared"), ("marginal", "squared")])
def test_every_parameter_group_gets_a_gradient(objective, link):
    model, x = _perturbed_gp("shared", dtype=torch.float32, objective=objective, link=link)
    model.train()
    model.loss(x[:10]).backward()
    groups = {"decoder": model.decoder, "encoder": model.encoder, "kernel": model.gp.covar_module,
              "inducing and variational": model.gp.variational_strategy}
    for group, module in groups.items():
        for name, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{group}: {name} has no gradient"


# --------------------------------------------------------------------------------------------- #
# On real MNIST.

@requires_data
def test_thousand_float32_training_steps_on_mnist_without_not_psd_error(tmp_path):
    """Jitter policy: GPyTorch's float32 jitter (1e-4) on k(Ω, Ω) and k(x, x), psd_safe_cholesky's
    escalation if that is not enough, kernel hyperparameters at a tenth of the learning rate."""
    config = TrainConfig(model="gp", gp_fit="elbo", dataset="mnist", epochs=10, max_train=10_000, max_test=100, eval_k=50,
                         batch_size=100, device="cpu", data_dir=str(data_dir()), out=str(tmp_path / "gp"))
    metrics = training.train(config)
    history = metrics["history"]
    assert len(history) == 10 and all(math.isfinite(h["train_loss"]) for h in history)
    assert history[-1]["valid_elbo"] > history[0]["valid_elbo"] + 5, "GP-RF did not learn"
    assert metrics["test_elbo"] < metrics["test_ll"] < 0


@requires_data
def test_per_example_difficulty_and_bench_from_the_cli(tmp_path):
    out = tmp_path / "gp"
    training.train(TrainConfig(model="gp", gp_fit="elbo", dataset="mnist", epochs=1, max_train=500, max_test=30, eval_k=10,
                               device="cpu", data_dir=str(data_dir()), out=str(out)))
    env = {**os.environ, "GPVAE_QUIET": "1"}
    done = subprocess.run([sys.executable, "-m", "gpvae", "evaluate", str(out), "--per-example"], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    values = json.loads((out / "per_example_K10_N30.json").read_text())
    assert len(values["mean_function_variance"]) == len(values["test_ll"]) == 30
    assert all(v > 0 for v in values["variance_function_variance"])
    report = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "gpvae", "bench", "--models", "vae,gp", "--repeats", "2",
                           "--device", "cpu", "--data-dir", str(data_dir()), "--json", str(report)],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = {r["model"]: r for r in json.loads(report.read_text())["results"]}
    assert rows["vae"]["infer_ratio_to_vae"] == 1.0
    for key in ("infer_ms", "train_step_ms", "peak_mem_mb", "infer_ratio_to_vae", "train_ratio_to_vae"):
        assert rows["gp"][key] > 0
    assert "infer ms" in done.stdout


@requires_data
def test_warm_start_copies_the_vae_networks_and_refuses_other_shapes(tmp_path):
    common = dict(dataset="mnist", max_train=500, max_test=20, eval_k=5, latent_dim=4, device="cpu",
                  data_dir=str(data_dir()))
    training.train(TrainConfig(model="vae", epochs=1, out=str(tmp_path / "vae"), **common))
    best = run_folder.load_checkpoint(tmp_path / "vae")["best_model"]
    _, model, _ = run_folder.prepare(TrainConfig(model="gp", gp_fit="elbo", init_from=str(tmp_path / "vae"), **common))
    for key, value in model.state_dict().items():
        if key.split(".")[0] in ("encoder", "decoder"):
            assert torch.equal(value, best[key]), key
    assert model.gp.mean_module.head is model.encoder.head
    with pytest.raises(RunFolderError, match=r"trained with latent_dim 4 \(this run: 5\)"):
        run_folder.prepare(TrainConfig(model="gp", gp_fit="elbo", init_from=str(tmp_path / "vae"),
                                     **{**common, "latent_dim": 5}))
    with pytest.raises(RunFolderError, match="networks differ"):
        run_folder.prepare(TrainConfig(model="gp", gp_fit="elbo", init_from=str(tmp_path / "vae"),
                                     **{**common, "network": "conv"}))
