"""A VAE nobody here wrote: pythae's VAE, trained by pythae's own trainer on gpvae's binarized MNIST, measured by
gpvae (gpvae.external.from_pythae, gpvae.pythae_check). gpvae's importance sampling agrees with pythae's own
estimate within Monte Carlo error, and a perturbed decoder does not; AIS, BDMC and the gaps run on it; a
model that does not fit the data is refused by name."""
import copy
import json
from functools import partial

import pytest
import torch

from gpvae import data as datasets
from gpvae import external, measurements, pythae_check
from gpvae.ais import AISSettings, ais_log_likelihood, bdmc
from gpvae.config import ConfigError
from gpvae.evaluation import amortization_gaps
from gpvae.refinement import Convergence

from .conftest import data_dir, requires_data

pythae_models = pytest.importorskip("pythae.models")

pytestmark = requires_data
LATENT = 8
SHORT_SVI = Convergence(window=5, tolerance=10.0, max_steps=20)  # q* by 20 steps of SVI at most


@pytest.fixture(scope="module")
def mnist():
    return datasets.load("mnist", data_dir())


@pytest.fixture(scope="module")
def trained(mnist, tmp_path_factory):
    """pythae's VAE (its default MLP networks) trained by pythae for 2 epochs on 500 binarized training images."""
    saved = pythae_check.train(datasets.binarize_once(mnist.train[:500], 0), mnist.valid[:200], epochs=2,
                               latent_dim=LATENT, output_dir=tmp_path_factory.mktemp("pythae"))
    return pythae_models.AutoModel.load_from_folder(str(saved)).eval()


def test_gpvae_importance_sampling_agrees_with_pythae_s_own_estimate_and_a_perturbed_decoder_does_not(mnist, trained):
    images = mnist.test[:50]  # gpvae's fixed-seed binarization of the test set
    agreed = pythae_check.agreement(trained, images, k=200, seed=0)
    assert agreed["pythae_get_nll"] < 0 and agreed["standard_error"] > 0
    assert abs(agreed["difference"]) <= 4 * agreed["standard_error"] and agreed["agrees"], pythae_check.agreement_text(agreed)
    perturbed = copy.deepcopy(trained)
    with torch.no_grad():
        perturbed.decoder.layers[-1][0].bias.add_(0.5)  # every pixel's logit up by a half
    shifted = pythae_check.agreement(trained, images, k=200, seed=0, measured=external.from_pythae(perturbed))
    assert abs(shifted["difference"]) > 4 * shifted["standard_error"] and not shifted["agrees"]


def test_ais_bdmc_and_the_gap_decomposition_run_on_a_pythae_model(mnist, trained):
    model = external.from_pythae(trained)
    x = mnist.test[:4]
    external.check(model, x, torch.device("cpu"))
    settings = AISSettings(steps=20, leapfrog=2)
    annealed = ais_log_likelihood(model, x, settings, batch_size=4)
    sandwich = bdmc(model, 4, settings, batch_size=4)
    gaps = amortization_gaps(model, x, k=50, batch_size=4, elbo_samples=10, convergence=SHORT_SVI)
    values = [annealed["mean"], sandwich["width"], *(gaps[key]["mean"] for key in ("log_px", "elbo_opt", "elbo_model"))]
    assert all(torch.isfinite(torch.tensor(values))), values
    assert gaps["log_px"]["mean"] >= gaps["elbo_model"]["mean"] - 1.0


def test_a_pythae_model_that_does_not_fit_the_data_is_refused_by_name(mnist):
    images = mnist.test[:8]
    wrong_size = pythae_models.VAE(pythae_models.VAEConfig(input_dim=(1, 32, 32), latent_dim=LATENT,
                                                           reconstruction_loss="bce"))
    with pytest.raises(ConfigError, match=r"the data's images are \(1, 28, 28\), the model declares image_shape \(1, 32, 32\)"):
        external.check(external.from_pythae(wrong_size), images, "cpu")
    gaussian = pythae_models.VAE(pythae_models.VAEConfig(input_dim=(1, 28, 28), latent_dim=LATENT))
    with pytest.raises(ConfigError, match=r"reconstruction_loss='bce'.*this model's reconstruction_loss is 'mse'"):
        external.from_pythae(gaussian)
    flat = pythae_models.VAE(pythae_models.VAEConfig(input_dim=(784,), latent_dim=LATENT, reconstruction_loss="bce"))
    with pytest.raises(ConfigError, match=r"input_dim is \(784,\): give image_shape=\(C, H, W\)"):
        external.from_pythae(flat)
    external.check(external.from_pythae(flat, image_shape=(1, 28, 28)), images, "cpu")
    vamp = pythae_models.VAMP(pythae_models.VAMPConfig(input_dim=(1, 28, 28), latent_dim=LATENT,
                                                       reconstruction_loss="bce"))
    with pytest.raises(ConfigError, match="this model is VAMP"):
        external.from_pythae(vamp)


def test_the_full_check_s_command_writes_a_record_the_chapter_renders_with_its_provenance(tmp_path, monkeypatch):
    monkeypatch.setattr(measurements, "amortization_gaps", partial(amortization_gaps, convergence=SHORT_SVI))
    out = tmp_path / "pythae_mnist.json"
    assert "Not yet measured at full scale" in pythae_check.record_text(out)
    assert pythae_check.COMMAND in pythae_check.record_text(out)
    argv = ["--epochs", "1", "--max-train", "300", "--images", "10", "--eval-k", "20", "--max-test", "20",
            "--ais-steps", "10", "--ais-subset", "2", "--gap-subset", "2", "--error-images", "100",
            "--error-inducing", "16", "--latent-dim", "4", "--device", "cpu", "--data-dir", str(data_dir()),
            "--runs-dir", str(tmp_path / "runs"), "--out", str(out)]
    assert pythae_check.main(argv) == 0
    record = json.loads(out.read_text())
    assert record["command"] == "python -m gpvae.pythae_check " + " ".join(argv)
    assert record["training"]["images"] == 300 and len(record["agreement"]["indices"]) == 10
    quantities = {row["quantity"] for row in record["summary"]}
    assert {"log p̂(x), importance sampling", "log p(x), AIS from the prior", "amortization gap",
            "BDMC sandwich width, T = 10, L = 5", "GP-RF (R4) log p̂(x) − the VAE's"} <= quantities
    text = pythae_check.record_text(out)
    assert f"Commit `{record['git_commit']}`" in text and record["command"] in text and record["device"] in text
    # a check parked part-way: the chapter shows the stages it measured and names the one left
    (tmp_path / "runs" / "measured" / "gprf.json").rename(tmp_path / "gprf.json")
    parked = pythae_check.record_text(tmp_path / "none.json", parked=tmp_path / "runs")
    assert parked.startswith("**Parked part-way:**") and "not yet: GP-RF (" in parked
    assert "trained by pythae for 1 epoch on 300 binarized MNIST images" in parked and "| amortization gap |" in parked
    assert f"Commit `{record['git_commit']}`, device {record['device']}." in parked
    (tmp_path / "gprf.json").rename(tmp_path / "runs" / "measured" / "gprf.json")
    # run again with the same arguments at the same commit: every stage is read back, none measured again
    for stage in ("train", "agreement", "evaluate_run", "bdmc_run", "gaps_run", "ais_run", "gprf_run"):
        monkeypatch.setattr(pythae_check, stage, lambda *args, stage=stage, **kwargs: pytest.fail(f"{stage} measured again"))
    assert pythae_check.main(argv) == 0
    again = json.loads(out.read_text())
    assert again["summary"] == record["summary"] and again["training"] == record["training"]
    # another argument is another check: its stages are measured, not read
    with pytest.raises(pytest.fail.Exception, match="train measured again"):
        pythae_check.main([*argv, "--gap-subset", "3"])
