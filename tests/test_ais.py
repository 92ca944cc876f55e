"""AIS from the prior and its BDMC certificate, against a linear-Gaussian model whose log p(x) and
posterior are exact, and on the project's decoders."""
import json
import math

import pytest
import torch

import gpvae.ais
from gpvae import measurements
from gpvae import cli
from gpvae.ais import (AISSettings, ais_log_likelihood, anneal, bdmc, hmc_transition, log_likelihood_and_grad,
                       reverse_schedule, settings_grid, simulate, temperatures)
from gpvae.likelihoods import discretized_logistic_log_prob
from gpvae.models import LinearGaussian
from gpvae.networks import build_networks
from gpvae.io import RunFolderError

from .conftest import data_dir, requires_data


@pytest.fixture
def exact_model():
    return LinearGaussian(data_dim=8, latent_dim=3, noise_std=0.5, seed=1)


def test_temperatures_run_from_zero_to_one_increasing():
    for schedule in ("sigmoid", "linear"):
        betas = temperatures(50, schedule)
        assert betas.shape == (51,) and betas[0] == 0 and betas[-1] == 1 and (betas.diff() > 0).all()


def test_ais_matches_the_exact_log_px_within_monte_carlo_error(exact_model):
    x = exact_model.sample_data(64, seed=2)
    exact = exact_model.exact_log_marginal(x)
    result = ais_log_likelihood(exact_model, x, AISSettings(steps=500, chains=4, leapfrog=5, step_size=0.1),
                                batch_size=64)
    error = result["per_example"] - exact
    standard_error = error.std().item() / math.sqrt(len(error))
    assert abs(error.mean().item()) < 4 * standard_error + 0.01, (error.mean().item(), standard_error)
    assert error.abs().max() < 1.5 and 0.3 < result["acceptance"] < 0.95
    few = ais_log_likelihood(exact_model, x, AISSettings(steps=5, chains=4, leapfrog=5, step_size=0.1), batch_size=64)
    assert (few["per_example"] - exact).abs().mean() > 2 * error.abs().mean()  # more temperatures help


def test_ais_with_a_step_size_schedule_frozen_from_a_pilot_matches_the_exact_log_px(exact_model):
    x = exact_model.sample_data(64, seed=2)
    exact = exact_model.exact_log_marginal(x)
    settings = AISSettings(steps=300, chains=4, leapfrog=5, step_size=0.1, adapt="pilot")
    result = ais_log_likelihood(exact_model, x, settings, batch_size=32)
    error = result["per_example"] - exact
    assert abs(error.mean().item()) < 4 * error.std().item() / math.sqrt(len(error)) + 0.01
    assert settings.decoder_passes == 2 * 300 * 5 * 4  # the pilot's passes count
    # a frozen schedule is followed as given, whatever the chains accept
    schedule = torch.linspace(0.05, 0.2, 10)
    z = torch.randn(2, 8, exact_model.latent_dim, dtype=torch.float64)
    _, record = anneal(exact_model, x[:8], z, temperatures(10), settings, schedule)
    assert torch.allclose(record["step_sizes"], schedule)
    # the pilot draws from a stream of its own: the run takes as many draws of its seed's stream as without it
    after = {}
    for adapt in ("batch", "pilot"):
        ais_log_likelihood(exact_model, x[:8], AISSettings(steps=3, chains=2, adapt=adapt), batch_size=8, seed=5)
        after[adapt] = torch.rand(3)
    assert torch.equal(after["batch"], after["pilot"])
    with pytest.raises(ValueError, match="'image' with one chain"):
        AISSettings(chains=1, adapt="image")


def test_bdmc_with_a_pilot_runs_the_reverse_chains_on_the_forward_pilot_s_schedule(exact_model, monkeypatch):
    # the reverse transition at β_t takes the forward one's at β_t; at β_0 the forward one's at β_1
    assert torch.equal(reverse_schedule(torch.tensor([1.0, 2.0, 3.0, 4.0])), torch.tensor([3.0, 2.0, 1.0, 1.0]))
    followed = []

    def recording(model, x, z, betas, settings, step_sizes=None):
        followed.append((betas[0].item(), None if step_sizes is None else step_sizes.clone()))
        return real_anneal(model, x, z, betas, settings, step_sizes)

    real_anneal = gpvae.ais.anneal
    monkeypatch.setattr(gpvae.ais, "anneal", recording)
    settings = AISSettings(steps=40, chains=2, leapfrog=3, step_size=0.1, adapt="pilot")
    result = bdmc(exact_model, 12, settings, batch_size=6)
    # per batch: the forward pilot (no schedule, from β = 0), the forward run on its schedule, then the reverse
    # run (from β = 1) on that schedule reversed; no pilot starts from the exact posterior sample
    forward = [s for b, s in followed if b == 0.0 and s is not None]
    reverse = [s for b, s in followed if b == 1.0]
    assert len(forward) == len(reverse) == 2 and sum(s is None for _, s in followed) == 2
    assert all(torch.equal(r, reverse_schedule(f)) for f, r in zip(forward, reverse))
    assert result["lower_mean"] < result["upper_mean"] + 0.5


def test_bdmc_sandwich_contains_the_exact_value_and_narrows_with_more_temperatures(exact_model):
    _, x = simulate(exact_model, 64, seed=0)
    exact = exact_model.exact_log_marginal(x).mean().item()
    widths = []
    for steps in (30, 500):
        result = bdmc(exact_model, 64, AISSettings(steps=steps, chains=8, leapfrog=5, step_size=0.1), batch_size=64)
        standard_errors = [result[k].std().item() / 8 for k in ("lower", "upper")]  # sd over 64 images / √64
        assert result["lower_mean"] < exact + 3 * standard_errors[0], (steps, result["lower_mean"], exact)
        assert result["upper_mean"] > exact - 3 * standard_errors[1], (steps, result["upper_mean"], exact)
        widths.append(result["width"])
    assert widths[1] < widths[0] / 3 and widths[1] < 0.3, widths


def test_bdmc_forward_chains_are_independent_of_the_simulated_latents(exact_model):
    """One chain and one temperature is importance sampling from the prior with one draw: far below
    log p(x) on average. A chain started at the latent its image was drawn from would be far above."""
    _, x = simulate(exact_model, 64, seed=0)
    exact = exact_model.exact_log_marginal(x).mean().item()
    result = bdmc(exact_model, 64, AISSettings(steps=1, chains=1, leapfrog=1, step_size=1e-3), batch_size=64)
    assert result["lower_mean"] < exact - 1.0, (result["lower_mean"], exact)


def test_hmc_leaves_the_exact_posterior_invariant(exact_model):
    x = exact_model.sample_data(16, seed=3)
    mean, cov = exact_model.exact_posterior(x)
    with torch.no_grad():
        z = mean + torch.randn(400, 16, 3, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
        step_size = torch.full((400, 16), 0.3)
        log_lik, grad = log_likelihood_and_grad(exact_model, x, z)
        for _ in range(100):
            z, accept, log_lik, grad = hmc_transition(exact_model, x, z, log_lik, grad, 1.0, step_size, leapfrog=5)
    assert (z.mean(0) - mean).abs().max() < 5 * cov.diagonal().max().sqrt() / math.sqrt(400)
    assert torch.allclose(torch.cov(z[:, 0].T), cov, atol=0.03), (torch.cov(z[:, 0].T), cov)
    assert 0.5 < accept.mean() < 1.0


def test_a_transition_costs_its_leapfrog_steps_and_carries_the_gradient_of_its_state(exact_model, monkeypatch):
    x = exact_model.sample_data(8, seed=5)
    z = torch.randn(2, 8, 3, dtype=torch.float64)
    log_lik, grad = log_likelihood_and_grad(exact_model, x, z)
    calls = []
    original = type(exact_model).log_likelihood
    monkeypatch.setattr(type(exact_model), "log_likelihood", lambda self, *a: calls.append(1) or original(self, *a))
    z, _, log_lik, grad = hmc_transition(exact_model, x, z, log_lik, grad, 0.5, torch.full((2, 8), 0.2), leapfrog=3)
    assert len(calls) == 3  # one decoder pass per leapfrog step: the start's gradient comes with the state
    expected_lik, expected_grad = log_likelihood_and_grad(exact_model, x, z)
    assert torch.allclose(log_lik, expected_lik) and torch.allclose(grad, expected_grad)


def test_the_settings_grid_pairs_each_t_with_one_l():
    assert [(s.steps, s.leapfrog, s.decoder_passes) for s in settings_grid([10, 40], 5, chains=2)] == [(10, 5, 100),
                                                                                                       (40, 5, 400)]
    assert [(s.steps, s.leapfrog) for s in settings_grid([10, 40], [5, 1])] == [(10, 5), (40, 1)]
    with pytest.raises(ValueError, match="one L or one per T"):
        settings_grid([10, 40], [5, 1, 2])


def test_ais_never_asks_for_the_proposal(exact_model):
    x = exact_model.sample_data(8, seed=4)
    settings = AISSettings(steps=20, chains=2, leapfrog=2, step_size=0.1)
    before = ais_log_likelihood(exact_model, x, settings, seed=7)["per_example"]
    exact_model.proposal = lambda *_: pytest.fail("AIS called the proposal")
    with torch.no_grad():
        exact_model.encoder_weight.mul_(5.0)
    assert torch.equal(ais_log_likelihood(exact_model, x, settings, seed=7)["per_example"], before)


@pytest.mark.parametrize("network, likelihood, shape", [("mlp", "bernoulli", (1, 28, 28)),
                                                        ("conv", "logistic", (1, 28, 28))])
def test_ais_and_bdmc_run_on_the_project_decoders(network, likelihood, shape):
    from gpvae.models.vae import VAE
    encoder, decoder = build_networks(network, shape, likelihood, latent_dim=4)
    model = VAE(encoder, decoder)
    _, x = simulate(model, 3, seed=0)
    assert x.shape == (3, *shape) and ((x == 0) | (x == 1)).all() if likelihood == "bernoulli" else x.max() <= 255
    settings = AISSettings(steps=3, chains=2, leapfrog=2)
    assert torch.isfinite(ais_log_likelihood(model, x, settings)["per_example"]).all()
    assert math.isfinite(bdmc(model, 3, settings)["width"])


def test_logistic_decoder_samples_follow_its_probabilities():
    """Decoder.sample bins the logistic as discretized_logistic_log_prob does: frequencies match."""
    encoder, decoder = build_networks("conv", (1, 28, 28), "logistic", latent_dim=2)
    z = torch.zeros(1, 2)
    draws = torch.stack([decoder.sample(z, torch.Generator().manual_seed(s))[0, 0, 14, 14] for s in range(4000)])
    mean, log_scale = decoder(z)[0].chunk(2, dim=0)
    levels = torch.arange(256.0).reshape(256, 1, 1, 1)
    probs = discretized_logistic_log_prob(torch.tanh(mean[:, 14:15, 14:15]),
                                          log_scale[:, 14:15, 14:15].clamp(min=-7.0), levels).exp()
    assert abs(probs.sum().item() - 1.0) < 1e-4
    expected = (probs * torch.arange(256.0)).sum()
    assert abs(draws.mean() - expected) < 4 * draws.std() / math.sqrt(4000) + 0.5


@requires_data
def test_ais_of_gp_rf_equals_its_vaes_while_their_protocol_estimates_differ(tmp_path):
    """R4 keeps its VAE's decoder: AIS gives both one number (the same draws), IS two."""
    common = ["--max-train", "1000", "--max-test", "50", "--eval-k", "20", "--device", "cpu", "--data-dir", str(data_dir())]
    assert cli.main(["train", "--model", "vae", "--epochs", "1", "--out", str(tmp_path / "vae"), *common]) == 0
    assert cli.main(["train", "--model", "gp", "--init-from", str(tmp_path / "vae"), "--epochs", "0",
                     "--error-images", "100", "--error-svi-steps", "100", "--error-inducing", "32",
                     "--out", str(tmp_path / "gp"), *common]) == 0
    ais = {}
    for run in ("vae", "gp"):
        assert cli.main(["evaluate", str(tmp_path / run), "--ais-steps", "20", "--ais-subset", "6",
                         "--subset-seed", "3", "--eval-k", "50"]) == 0
        ais[run] = json.loads((tmp_path / run / "ais.json").read_text())
    assert ais["vae"]["decoder_sha256"] == ais["gp"]["decoder_sha256"]
    assert ais["vae"]["indices"] == ais["gp"]["indices"] != list(range(6))
    assert ais["vae"]["per_example"] == ais["gp"]["per_example"]
    assert ais["vae"]["is"]["per_example"] != ais["gp"]["is"]["per_example"]
    assert {"steps", "chains", "leapfrog"} <= set(ais["vae"]["settings"]) and ais["vae"]["seconds"] > 0
    # the approximation gap by AIS on the gap subset: the AIS subset's values reused, the other images annealed
    for gap_args, annealed in ((["--subset-seed", "3"], 0), ([], 4)):
        assert cli.main(["evaluate", str(tmp_path / "vae"), "--gaps", "--gap-subset", "4", "--eval-k", "50",
                         *gap_args]) == 0
        assert cli.main(["evaluate", str(tmp_path / "vae"), "--ais-steps", "20", "--ais-subset", "6", "--subset-seed",
                         "3", "--eval-k", "50", "--ais-gap-subset"]) == 0
        result = json.loads((tmp_path / "vae" / "ais.json").read_text())
        block, gaps = result["gap_subset"], json.loads((tmp_path / "vae" / "gaps.json").read_text())
        assert block["indices"] == gaps["indices"] and block["annealed"] == annealed and block["model_checked"]
        # the images annealed for the gap subset have chains of their own seed (run seed 0 + the offset)
        assert block["annealed_seed"] == (measurements.GAP_SUBSET_SEED_OFFSET if annealed else None)
        assert result["per_example"] == ais["vae"]["per_example"]  # the AIS subset's values do not move
        if annealed == 0:
            assert block["per_example"] == [result["per_example"][result["indices"].index(i)] for i in gaps["indices"]]
        assert block["approximation_gap"]["per_example"] == pytest.approx(
            [a - e for a, e in zip(block["per_example"], gaps["elbo_opt"]["per_example"])], abs=1e-3)
    gaps["model_sha256"] = "0" * 64  # gaps.json of another model: refused, named
    (tmp_path / "vae" / "gaps.json").write_text(json.dumps(gaps))
    with pytest.raises(RunFolderError, match="another model"):
        measurements.ais_run(tmp_path / "vae", AISSettings(steps=5), 2, gap_subset=True)
    assert cli.main(["bdmc", str(tmp_path / "vae"), "--ais-steps", "5", "20", "--ais-leapfrog", "2", "1",
                     "--bdmc-images", "4"]) == 0
    sandwich = json.loads((tmp_path / "vae" / "bdmc.json").read_text())["sandwich"]
    assert [(s["settings"]["steps"], s["settings"]["leapfrog"], s["decoder_passes"]) for s in sandwich] == [
        (5, 2, 10), (20, 1, 20)] and all(math.isfinite(s["width"]) for s in sandwich)
    with pytest.raises(SystemExit) as stopped:  # three L for two T: named, nothing measured
        cli.main(["bdmc", str(tmp_path / "vae"), "--ais-steps", "5", "20", "--ais-leapfrog", "1", "2", "3"])
    assert stopped.value.code == 2


@requires_data
def test_the_ais_cost_benchmark_times_both_estimators_on_a_trained_run(tmp_path):
    from gpvae import training
    from gpvae.config import TrainConfig

    out = tmp_path / "vae"
    training.train(TrainConfig(model="vae", dataset="mnist", epochs=1, max_train=500, max_test=10, eval_k=5,
                               latent_dim=4, device="cpu", data_dir=str(data_dir()), out=str(out)))
    report = tmp_path / "ais_cost.json"
    assert cli.main(["bench-ais", str(out), "--ais-steps", "20", "--images", "3", "--eval-k", "50", "--repeats", "1",
                     "--json", str(report)]) == 0
    cost = json.loads(report.read_text())
    assert cost["ais_seconds_per_image"] > 0 and cost["is_seconds_per_image"] > 0
    assert cost["ratio"] == pytest.approx(cost["ais_seconds_per_image"] / cost["is_seconds_per_image"])
    assert cost["settings"]["steps"] == 20 and cost["images"] == 3
