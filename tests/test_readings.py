"""GP-RF's readings (the specification (book/specification.md) §3b) as switches: R2 amplitude, R3 freezing, R4 error regression and
its kNN control, R5 refit rounds, natural gradients, many inducing points, presets, diagnostics."""
import json
import math

import gpytorch
import pytest
import torch

from gpvae import run_folder
from gpvae.data import cache_dir
from gpvae import training
from gpvae.gp.options import ERROR_IMAGES
from gpvae.config import ConfigError, TrainConfig
from gpvae.distributions import diagonal_gaussian
from gpvae.models import build_model
from gpvae.models.data_fit import FitsToData
from gpvae.gp.error_regression import ErrorRegressionGP, NearestNeighbourErrors, multi_output_log_marginal
from gpvae.gp.options import INITIAL_OUTPUTSCALE


from .conftest import REPO, assert_all_close, data_dir, requires_data


def _gp(**options):
    config = TrainConfig(model="gp", **{"gp_fit": "elbo", "inducing": 12, "latent_dim": 3, **options})
    model = build_model(config, (1, 28, 28), "bernoulli", n_train=1000)
    x = torch.rand(40, 1, 28, 28).round()
    model.initialize_from_data(x)
    return model, x


def _steps(model, x, n=20, lr=0.05):
    optimizers = model.optimizers(lr)
    for _ in range(n):
        loss = model.loss(x)
        for o in optimizers:
            o.zero_grad()
        loss.backward()
        for o in optimizers:
            o.step()


# --- R2: the kernel amplitude -------------------------------------------------------------------

def test_fixed_amplitude_stays_and_learned_amplitude_moves():
    fixed, x = _gp(amplitude="fixed", amplitude_value=0.3, objective="marginal")
    learned, _ = _gp(amplitude="learned", amplitude_value=0.3, objective="marginal")
    _steps(fixed, x)
    _steps(learned, x)
    assert fixed.gp.covar_module.outputscale.item() == pytest.approx(0.3, rel=1e-6)
    assert abs(learned.gp.covar_module.outputscale.item() - 0.3) > 1e-3


def test_floored_amplitude_never_goes_below_its_floor():
    model, x = _gp(amplitude="floored", amplitude_value=0.2, objective="expected")
    with torch.no_grad():  # push the raw parameter far down: the constraint still holds the floor
        model.gp.covar_module.raw_outputscale.fill_(-30.0)
    assert model.gp.covar_module.outputscale.item() >= 0.2 * (1 - 1e-5)
    _steps(model, x)
    assert model.gp.covar_module.outputscale.item() >= 0.2 * (1 - 1e-5)


def test_linear_kernel_amplitude_fixed():
    model, x = _gp(kernel="linear", amplitude="fixed", amplitude_value=0.5)
    before = model.gp.covar_module.variance.item()
    _steps(model, x, n=5)
    assert model.gp.covar_module.variance.item() == before


# --- natural gradients and capacity ---------------------------------------------------------------

def test_natural_family_trains_with_ngd_and_adam():
    model, x = _gp(variational="natural", objective="marginal", ngd_lr=0.01)
    optimizers = model.optimizers(1e-3)
    assert [type(o).__name__ for o in optimizers] == ["Adam", "NGD"]
    adam_ids = {id(p) for g in optimizers[0].param_groups for p in g["params"]}
    natural = list(model.gp.variational_distribution.parameters())
    assert natural and not adam_ids & {id(p) for p in natural}, "natural parameters must not be in Adam"
    before = [p.detach().clone() for p in natural]
    _steps(model, x, n=2)
    assert any(not torch.equal(b, p) for b, p in zip(before, natural))


def test_ngd_step_on_conjugate_problem_reaches_the_optimum():
    """With a Gaussian likelihood, one natural-gradient step of size 1 lands on the optimal q(v)
    (Salimbeni et al. 2018): what makes NGD worth having. The ELBO does not move afterwards."""
    x = torch.linspace(-2, 2, 30, dtype=torch.float64).unsqueeze(-1)
    y = torch.sin(2 * x.squeeze())

    class Tiny(gpytorch.models.ApproximateGP):
        def __init__(self):
            distribution = gpytorch.variational.NaturalVariationalDistribution(10)
            super().__init__(gpytorch.variational.VariationalStrategy(self, x[::3].clone(), distribution,
                                                                      learn_inducing_locations=False))
            self.mean_module, self.covar_module = gpytorch.means.ZeroMean(), gpytorch.kernels.RBFKernel()

        def forward(self, inputs):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(inputs), self.covar_module(inputs))

    tiny = Tiny().double()
    likelihood = gpytorch.likelihoods.GaussianLikelihood().double()
    likelihood.noise = 0.1
    mll = gpytorch.mlls.VariationalELBO(likelihood, tiny, num_data=len(x))
    ngd = gpytorch.optim.NGD(tiny.variational_strategy._variational_distribution.parameters(), num_data=len(x), lr=1.0)
    values = []
    for _ in range(3):
        ngd.zero_grad()
        loss = -mll(tiny(x), y)
        loss.backward()
        ngd.step()
        values.append(mll(tiny(x), y).item())
    assert abs(values[0] - values[2]) < 1e-6, values


@requires_data
def test_more_inducing_points_than_the_default_initialization_images(tmp_path):
    common = dict(model="gp", gp_fit="elbo", dataset="mnist", max_train=1500, max_test=10, eval_k=5, latent_dim=4, device="cpu",
                  data_dir=str(data_dir()))
    _, model, _ = run_folder.prepare(TrainConfig(inducing=1200, **common))
    omega = model.gp.inducing_points
    assert omega.shape[0] == 1200 and torch.unique(omega, dim=0).shape[0] > 1100, "inducing inputs not distinct"
    with pytest.raises(ConfigError, match="needs 2000 training images"):
        run_folder.prepare(TrainConfig(inducing=2000, **common))


# --- presets and validation ---------------------------------------------------------------------

def test_default_is_the_error_regression_and_the_paper_preset_is_the_literal_reading():
    assert TrainConfig(model="gp").gp_fit == "errors"
    paper = TrainConfig(model="gp", gp_preset="paper")
    assert (paper.gp_fit, paper.objective, paper.amplitude) == ("elbo", "expected", "learned")
    assert TrainConfig(model="gp", gp_preset="paper", inducing=64).inducing == 64


def test_freeze_needs_a_warm_start_and_natural_needs_the_elbo_fit():
    with pytest.raises(ConfigError, match="needs init_from"):
        TrainConfig(model="gp", freeze="both")
    with pytest.raises(ConfigError, match="natural"):
        TrainConfig(model="gp", variational="natural")
    with pytest.raises(ConfigError, match="amplitude"):
        TrainConfig(model="gp", amplitude="sometimes")


# --- R4: the error regression ------------------------------------------------------------------

def test_multi_output_marginal_likelihood_matches_gpytorch():
    torch.manual_seed(1)
    x, y = torch.randn(25, 3, dtype=torch.float64), torch.randn(25, 2, dtype=torch.float64)
    kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(ard_num_dims=3)).double()
    kernel.outputscale, kernel.base_kernel.lengthscale = 1.7, torch.tensor([[0.5, 1.0, 2.0]])
    likelihood = gpytorch.likelihoods.GaussianLikelihood().double()
    likelihood.noise = 0.3

    class Exact(gpytorch.models.ExactGP):
        def forward(self, inputs):
            return gpytorch.distributions.MultivariateNormal(torch.zeros(len(inputs), dtype=inputs.dtype), kernel(inputs))

    total = 0.0
    for j in range(2):
        gp = Exact(x, y[:, j], likelihood).double()
        gp.train()
        total += gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, gp)(gp(x), y[:, j]) * len(x)
    assert_all_close(multi_output_log_marginal(kernel, likelihood.noise, x, y), total, atol=1e-8,
                     what="Σ_j log N(y_j; 0, K + σ²I)")


def test_inducing_predictive_at_the_training_inputs_is_the_exact_gp_posterior():
    """Titsias' predictive with Z = X equals the exact GP regression posterior (GPyTorch's ExactGP)."""
    torch.manual_seed(2)
    x = torch.randn(40, 2, dtype=torch.float64)
    y = torch.sin(x.sum(-1, keepdim=True)) + 0.1 * torch.randn(40, 1, dtype=torch.float64)
    kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(ard_num_dims=2)).double()
    kernel.outputscale, kernel.base_kernel.lengthscale = 0.8, torch.tensor([[0.7, 1.3]])
    noise = torch.tensor(0.05, dtype=torch.float64)
    alpha, extra = ErrorRegressionGP._sgpr(kernel, noise, x, x, y)
    x_new = torch.randn(7, 2, dtype=torch.float64)
    k_xm = kernel(x_new, x).to_dense()
    mean, var = (k_xm @ alpha).squeeze(-1), 0.8 - ((k_xm @ extra) * k_xm).sum(-1)
    likelihood = gpytorch.likelihoods.GaussianLikelihood().double()
    likelihood.noise = noise

    class Exact(gpytorch.models.ExactGP):
        def forward(self, inputs):
            return gpytorch.distributions.MultivariateNormal(torch.zeros(len(inputs), dtype=inputs.dtype), kernel(inputs))

    exact = Exact(x, y.squeeze(-1), likelihood).double().eval()
    with torch.no_grad(), gpytorch.settings.fast_pred_var(False):
        reference = exact(x_new)
    # up to the 1e-6 jitter on K_ZZ, which moves an ill-conditioned Z = X solve by ~1e-4
    assert_all_close(mean, reference.mean, atol=5e-4, what="predictive mean")
    assert_all_close(var, reference.variance, atol=5e-4, what="latent predictive variance")
    assert (mean - reference.mean).abs().max() < 0.01 * reference.mean.abs().max()


def test_error_gp_learns_a_smooth_error_function_and_is_unsure_far_from_data():
    torch.manual_seed(3)
    features = torch.randn(800, 4)
    truth = torch.stack([torch.sin(features[:, 0]), features[:, 1] ** 2 / 4, torch.cos(features[:, 2]),
                         0.5 * features[:, 3]], -1)
    errors = truth + 0.05 * torch.randn_like(truth)
    gp = ErrorRegressionGP(feature_dim=4, n_outputs=4, n_inducing=200)
    mean, var = gp.marginals(features[:5])
    assert torch.equal(mean, torch.zeros_like(mean)), "an unfitted error model corrects nothing"
    summary = gp.fit(features, errors, torch.Generator().manual_seed(0))
    test = torch.randn(200, 4)
    truth_test = torch.stack([torch.sin(test[:, 0]), test[:, 1] ** 2 / 4, torch.cos(test[:, 2]), 0.5 * test[:, 3]], -1)
    mean, var = gp.marginals(test)
    explained = 1 - (mean - truth_test).pow(2).mean(0) / truth_test.var(0)
    assert (explained > 0.9).all(), explained
    assert summary["mean"]["explained_on_fit_subset"] > 0.9
    _, var_far = gp.marginals(10 + torch.randn(20, 4))
    assert var_far.mean() > 20 * var.mean(), "predictive variance should grow away from the observed errors"


def test_nearest_neighbour_control_averages_the_closest_errors():
    features = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
    errors = torch.tensor([[1.0, 0.0], [3.0, 2.0], [-5.0, 1.0], [7.0, 3.0]])
    knn = NearestNeighbourErrors(feature_dim=1, n_outputs=2, n_stored=4, neighbours=2)
    knn.fit(features, errors)
    mean, var = knn.marginals(torch.tensor([[0.2], [10.6]]))
    assert_all_close(mean, torch.tensor([[2.0, 1.0], [1.0, 2.0]]), what="kNN average")
    assert (var < 1e-6).all()


def test_unfitted_error_reading_is_the_vae():
    model, x = _gp(gp_fit="errors")
    model = model.double()
    x = x.double()
    mean, log_var = model.encoder(x)
    z = diagonal_gaussian(mean, log_var).sample((3,))
    with torch.no_grad():
        assert_all_close(model.proposal(x).log_prob(z), diagonal_gaussian(mean, log_var).log_prob(z), atol=1e-4,
                         what="q̄ before the error fit vs the encoder's Gaussian")
    assert not any(p.requires_grad for p in model.gp.parameters()), "the error GP is fitted, not trained"


def test_refit_rounds_schedule():
    model, _ = _gp(gp_fit="errors", refit_rounds=2, refit_epochs=3)
    assert model.data_fit_epochs(10) == [4, 7]
    assert model.data_fit_epochs(4) == [1]  # a round that would start before epoch 0 is dropped
    assert not isinstance(_gp()[0], FitsToData)  # the variational reading fits nothing to data


@requires_data
def test_error_reading_end_to_end_with_frozen_encoder_refit_and_cache(tmp_path):
    common = dict(dataset="mnist", max_train=1000, max_test=20, eval_k=5, latent_dim=4, device="cpu",
                  data_dir=str(data_dir()))
    training.train(TrainConfig(model="vae", epochs=1, out=str(tmp_path / "vae"), **common))
    vae = run_folder.load_checkpoint(tmp_path / "vae")["best_model"]
    options = dict(model="gp", gp_fit="errors", init_from=str(tmp_path / "vae"), error_images=200, error_inducing=50,
                   error_svi_steps=100, **common)
    metrics = training.train(TrainConfig(epochs=2, refit_rounds=1, refit_epochs=1, freeze="encoder",
                                         out=str(tmp_path / "r5"), **options))
    fits = metrics["fits"]
    assert [f["after_epoch"] for f in fits] == [1, metrics["best_epoch"]] and fits[-1]["final"]
    assert all(math.isfinite(h["valid_elbo"]) for h in metrics["history"])
    assert "correction_ratio_valid" in metrics["history"][-1]
    best = run_folder.load_checkpoint(tmp_path / "r5")["best_model"]
    for key, value in best.items():
        if key.startswith("encoder."):
            assert torch.equal(value, vae[key]), f"{key} moved although the encoder is frozen"
    assert any(not torch.equal(best[k], vae[k]) for k in vae if k.startswith("decoder."))
    # a post-hoc fit of the same VAE caches q* under a digest of what it depends on (never in the VAE's
    # folder); a second reading of the same VAE, images and settings reuses it
    fits_cache = cache_dir() / "fits"
    before = set(fits_cache.glob("svi_errors_*.pt"))
    first = training.train(TrainConfig(epochs=0, out=str(tmp_path / "r4"), **options))
    cached = sorted(set(fits_cache.glob("svi_errors_*.pt")) - before)
    assert len(cached) == 1 and not list((tmp_path / "vae").glob("*cache*"))
    knn = training.train(TrainConfig(epochs=0, error_model="knn", out=str(tmp_path / "knn"), **options))
    assert knn["fits"][0]["svi"].get("cache") == str(cached[0])
    assert first["test_ll"] > first["test_elbo"]


@requires_data
def test_gp_history_records_the_collapse_diagnostics(tmp_path):
    metrics = training.train(TrainConfig(model="gp", gp_fit="elbo", dataset="mnist", epochs=1, max_train=1000, max_test=10,
                                         eval_k=5, latent_dim=4, device="cpu", data_dir=str(data_dir()),
                                         out=str(tmp_path / "gp")))
    last = metrics["history"][-1]
    for key in ("kernel_outputscale", "lengthscale_median", "kl_per_example", "correction_ratio_train",
                "correction_ratio_valid", "mean_function_variance_train", "mean_function_variance_valid",
                "variance_function_variance_valid", "expected_minus_marginal_elbo"):
        assert key in last and math.isfinite(last[key]), key
    assert last["expected_minus_marginal_elbo"] < 0.5, "the expected ELBO is below the marginal one (up to noise)"
    assert 0 < last["kernel_outputscale"] and abs(last["kernel_outputscale"] - INITIAL_OUTPUTSCALE) < 0.01


@requires_data
def test_a_gp_covariance_leaving_the_psd_cone_is_a_divergence(tmp_path, monkeypatch):
    from linear_operator.utils.errors import NotPSDError

    from gpvae.models import GPRF

    def broken(self, x):
        raise NotPSDError("Matrix not positive definite")

    monkeypatch.setattr(GPRF, "loss", broken)
    with pytest.raises(training.TrainingDiverged, match="lower --lr or --ngd-lr"):
        training.train(TrainConfig(model="gp", gp_fit="elbo", dataset="mnist", epochs=1, max_train=1000, max_test=10,
                                   eval_k=5, latent_dim=4, device="cpu", data_dir=str(data_dir()),
                                   out=str(tmp_path / "gp")))


def test_the_study_grid_reproduces_the_options_of_every_committed_study_record():
    # each cell's configuration of the study grid is the one its record was trained with (options added
    # since keep their defaults; a VAE ignores GP options)
    from gpvae.runs.grid import Grid

    grid = Grid.of("study")
    cells = grid.cells()
    assert len(cells) == 23 and ("omniglot", "r4_gp", 1) not in cells and ("mnist", "r4_gp", 2) in cells
    for dataset, run, seed in cells:
        params = grid.chapter_parameters(dataset, run, seed)
        config = TrainConfig(**{k: v for k, v in params.items() if k != "options"}, **params["options"]).to_dict()
        if config["error_images"] is None:  # the default adapts to the data: 10,000 here (every study dataset has more)
            config["error_images"] = ERROR_IMAGES
        record = json.loads(grid.layout.record_path(dataset, run, seed).read_text())
        ignored = {"out", "init_from", "data_dir", "resume", *(() if config["model"] == "gp" else ("gp_fit",))}
        differ = {k: (v, config[k]) for k, v in record["options"].items() if k not in ignored and config[k] != v}
        assert not differ, (dataset, run, seed, differ)


def test_roc_points_match_the_auroc():
    from gpvae.evaluation import auroc, roc_curve

    torch.manual_seed(0)
    inside, outside = torch.randn(400), torch.randn(300) + 1.0
    curve = roc_curve(inside.tolist(), outside.tolist(), points=401)
    area = sum((f1 - f0) * (t1 + t0) / 2 for f0, f1, t0, t1 in zip(curve["fpr"], curve["fpr"][1:], curve["tpr"],
                                                                    curve["tpr"][1:]))
    assert abs(area - auroc(inside, outside)) < 0.01
    assert abs(auroc(inside, outside) - 0.76) < 0.05  # Φ(1/√2) for unit-variance Gaussians one apart


def test_the_readings_table_from_the_study_records():
    from gpvae import report

    table = report.readings_table(REPO / "results" / "workflow" / "study", "mnist")
    assert table["r3_posthoc_ngd"]["diverged"].startswith("non-finite loss")
    vae, r4 = table["vae"], table["r4_gp"]
    assert vae["test_ll"]["seeds"] == r4["test_ll"]["seeds"] == [0, 1, 2]
    assert vae["fraction_closed"]["values"] == [0.0, 0.0, 0.0]
    r4_records = [json.loads((REPO / f"results/workflow/study/mnist/{run}_seed0.json").read_text())
                  for run in ("r4_gp", "vae")]
    assert r4["fraction_closed"]["values"][0] == pytest.approx(
        1 - r4_records[0]["gaps"]["amortization_gap"] / r4_records[1]["gaps"]["amortization_gap"])
    assert r4["spearman_gp"]["n"] == 3 and "spearman_gp" not in table["r1_paper"]  # R1 trains its own encoder
    for own_decoder in ("r1_paper", "r2_fixed", "r5_refit"):  # GP-RF with a decoder of its own: no share of the VAE's gap
        assert "fraction_closed" not in table[own_decoder]
    assert {"r3_posthoc", "r4_knn", "vae_decoder_control"} <= {run for run, row in table.items() if "fraction_closed" in row}
    assert set(vae) >= {"spearman_encoder", "spearman_elbo", "auroc_omniglot_elbo"}  # the baselines' row
    assert "infer_ratio_to_vae" in r4


def test_partial_spearman_removes_what_the_control_already_ranks():
    from gpvae.evaluation import partial_spearman, spearman
    generator = torch.Generator().manual_seed(0)
    control, own = torch.randn(2000, generator=generator), torch.randn(2000, generator=generator)
    target = control + own
    echo = control + 0.01 * torch.randn(2000, generator=generator)  # knows only what the control knows
    assert spearman(echo, target) > 0.6 and abs(partial_spearman(echo, target, control)) < 0.1
    assert partial_spearman(own, target, control) > 0.9  # knows what the control lacks
    assert math.isnan(partial_spearman([1.0] * 5, [1, 2, 3, 4, 5], [5, 3, 1, 2, 4]))
