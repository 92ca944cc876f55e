"""Bring your own VAE (gpvae.external): a VAE written in this file, not by gpvae, gets the same measurements
as the gpvae model with the same weights, draw for draw; wrong shapes, likelihoods and devices are refused."""
import json

import pytest
import torch
from torch import nn

from gpvae import external, report
from gpvae.ais import AISSettings, ais_log_likelihood
from gpvae.cli import main as cli_main
from gpvae.config import ConfigError, TrainConfig
from gpvae.evaluation import amortization_gaps, log_likelihood
from gpvae.models import build_model
from gpvae.refinement import Convergence

from .conftest import assert_all_close, data_dir, requires_data

D = 8


class MyEncoder(nn.Module):
    """A textbook MLP encoder: x (B, 1, 28, 28) -> (mean, log-variance)."""

    def __init__(self, latent_dim: int = D):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 200), nn.Tanh(), nn.Linear(200, 200), nn.Tanh(),
                                  nn.Linear(200, 2 * latent_dim))

    def forward(self, x):
        return self.body(x).chunk(2, dim=-1)


class MyDecoder(nn.Module):
    """A textbook MLP decoder: z (N, d) -> Bernoulli logits (N, 1, 28, 28)."""

    def __init__(self, latent_dim: int = D):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(latent_dim, 200), nn.Tanh(), nn.Linear(200, 200), nn.Tanh(),
                                  nn.Linear(200, 784))

    def forward(self, z):
        return self.body(z).view(-1, 1, 28, 28)


def twins():
    """gpvae's MLP VAE and the same weights in the classes above, wrapped by gpvae.external."""
    torch.manual_seed(0)
    ours = build_model(TrainConfig(model="vae", latent_dim=D), (1, 28, 28), "bernoulli")
    encoder, decoder = MyEncoder(), MyDecoder()
    trunk = ours.encoder.trunk
    for mine, theirs in ((encoder.body[1], trunk[1]), (encoder.body[3], trunk[3]), (encoder.body[5], ours.encoder.head)):
        mine.load_state_dict(theirs.state_dict())
    decoder.body.load_state_dict(ours.decoder.net.state_dict())
    return ours, external.vae(encoder, decoder, "bernoulli", D, (1, 28, 28))


def images(n=6, seed=1):
    return (torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) < 0.3).float()


def test_a_vae_written_elsewhere_gets_the_same_measurements_draw_for_draw():
    ours, theirs = twins()
    x = images()
    external.check(theirs, x, torch.device("cpu"))
    estimates = []
    for model in (ours, theirs):
        torch.manual_seed(3)
        estimates.append(log_likelihood(model, x, k=50, batch_size=6))
    assert_all_close(estimates[0], estimates[1], atol=1e-5, what="IS, K = 50")
    settings = AISSettings(steps=20, leapfrog=2)
    annealed = [ais_log_likelihood(m, x, settings, batch_size=6, seed=4)["per_example"] for m in (ours, theirs)]
    assert_all_close(annealed[0], annealed[1], atol=1e-4, what="AIS, T = 20")
    convergence = Convergence(window=5, tolerance=10.0, max_steps=20)
    gaps = []
    for model in (ours, theirs):
        torch.manual_seed(5)
        gaps.append(amortization_gaps(model, x, k=20, batch_size=6, convergence=convergence, elbo_samples=10))
    for key in ("log_px", "elbo_opt", "elbo_model", "amortization_gap"):
        assert_all_close(gaps[0][key]["per_example"], gaps[1][key]["per_example"], atol=1e-4, what=key)


class WrongEncoder(MyEncoder):
    def forward(self, x):
        return self.body(x)  # one tensor, not (mean, log_var)


class WrongDecoder(MyDecoder):
    def forward(self, z):
        return self.body(z)  # (N, 784), not (N, 1, 28, 28)


@pytest.mark.parametrize("networks, data, message", [
    ((WrongEncoder(), MyDecoder()), images(), r"encoder must return \(mean, log_var\), each \(6, 8\)"),
    ((MyEncoder(), WrongDecoder()), images(), r"decoder must return the bernoulli likelihood's parameters \(6, 1, 28, 28\)"),
    ((MyEncoder(), MyDecoder()), images() * 255, "bernoulli likelihood needs binary pixels"),
])
def test_a_model_the_measurements_would_misread_is_refused_by_name(networks, data, message):
    with pytest.raises(ConfigError, match=message):
        external.check(external.vae(*networks, "bernoulli", D, (1, 28, 28)), data, torch.device("cpu"))


def test_a_likelihood_or_device_that_does_not_fit_is_refused():
    with pytest.raises(ConfigError, match="logistic likelihood needs 8-bit pixel levels"):
        external.check(external.vae(MyEncoder(), MyDecoder(), "logistic", D, (1, 28, 28)), images(), torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"the data's images are \(1, 28, 28\), the model declares image_shape \(1, 32, 32\)"):
        external.check(external.vae(MyEncoder(), MyDecoder(), "bernoulli", D, (1, 32, 32)), images(), "cpu")
    with pytest.raises(ConfigError, match="likelihood 'gaussian'"):
        external.vae(MyEncoder(), MyDecoder(), "gaussian", D, (1, 28, 28))
    on_meta = external.vae(MyEncoder().to("meta"), MyDecoder().to("meta"), "bernoulli", D, (1, 28, 28))
    with pytest.raises(ConfigError, match=r"parameters are on meta, the measurements run on cpu"):
        external.check(on_meta, images(), torch.device("cpu"))


def test_a_callable_likelihood_is_the_named_one_when_it_computes_the_same():
    ours, theirs = twins()
    bernoulli = lambda x, logits: -nn.functional.binary_cross_entropy_with_logits(  # noqa: E731
        logits, x, reduction="none").flatten(1).sum(-1)
    custom = external.vae(theirs.encoder.module, theirs.decoder.module, bernoulli, D, (1, 28, 28))
    x, z = images(), torch.randn(3, 6, D)
    assert_all_close(custom.log_likelihood(x, z), ours.log_likelihood(x, z), atol=1e-4, what="log p(x | z)")


BUILDER = '''
import torch
from torch import nn

import gpvae.external


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.Tanh(), nn.Linear(64, 8))

    def forward(self, x):
        return self.body(x).chunk(2, dim=-1)


def build():
    torch.manual_seed(0)
    decoder = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 784), nn.Unflatten(1, (1, 28, 28)))
    return gpvae.external.vae(Encoder(), decoder, "bernoulli", 4, (1, 28, 28))


def build_8bit():
    decoder = nn.Sequential(nn.Linear(4, 2 * 784), nn.Unflatten(1, (2, 28, 28)))
    return gpvae.external.vae(Encoder(), decoder, "logistic", 4, (1, 28, 28))
'''


@requires_data
def test_the_command_line_measures_a_module_s_vae_and_refuses_a_wrong_one(tmp_path, capsys):
    (tmp_path / "my_vae.py").write_text(BUILDER)
    folder = tmp_path / "mine"
    common = ["--data-dir", str(data_dir()), "--device", "cpu", "--max-test", "20", "--eval-k", "10"]
    assert cli_main(["evaluate", str(folder), "--external", f"{tmp_path / 'my_vae.py'}:build", *common]) == 0
    assert json.loads((folder / "external.json").read_text())["spec"] == f"{tmp_path / 'my_vae.py'}:build"
    evaluation = json.loads((folder / "evaluation_K10_N20.json").read_text())
    assert evaluation["n_test"] == 20 and evaluation["test_ll"] < 0
    # a later measurement reads the folder alone, like any run folder
    assert cli_main(["evaluate", str(folder), "--ais-steps", "5", "--ais-subset", "4", *common]) == 0
    assert json.loads((folder / "ais.json").read_text())["n"] == 4
    assert cli_main(["evaluate", str(folder), "--gprf", "--error-images", "100", "--error-inducing", "16",
                     *common]) == 0
    gprf = json.loads((folder / "gprf.json").read_text())
    assert gprf["n_test"] == 20 and set(gprf["test_ll"]) == {"vae", "gprf"} and len(gprf["gain_per_example"]) == 20
    summary = report.measurement_summary(folder).set_index("quantity")["nats"]
    assert {"log p̂(x), importance sampling", "log p(x), AIS from the prior", "GP-RF (R4) log p̂(x) − the VAE's"} <= set(
        summary.index)
    assert summary["estimator gap, AIS − IS"] == "not measurable"  # no BDMC certificate measured
    capsys.readouterr()
    wrong = tmp_path / "wrong"
    assert cli_main(["evaluate", str(wrong), "--external", "nowhere.py:build", *common]) == 2
    assert "no file" in capsys.readouterr().err
    assert cli_main(["evaluate", str(wrong), "--external", f"{tmp_path / 'my_vae.py'}:missing", *common]) == 2
    assert "has no function missing" in capsys.readouterr().err
    assert cli_main(["evaluate", str(wrong), "--external", f"{tmp_path / 'my_vae.py'}:build_8bit", *common]) == 2
    assert "logistic likelihood needs 8-bit pixel levels 0..255; the data's are binary" in capsys.readouterr().err
    assert not (wrong / "external.json").exists()  # refused: nothing written


def test_a_saturated_sigmoid_decoder_keeps_pythae_s_log_likelihood_and_finite_gradients():
    """pythae's decoders end in a sigmoid whose float32 output reaches exactly 0 and 1: the logits read from
    it give torch's binary cross-entropy (floored at -100 nats a pixel) as the log-likelihood, and a finite
    gradient in z wherever it saturates (where clamping after the log gives NaN: 0 × inf)."""
    from types import SimpleNamespace

    import torch.nn.functional as F

    from gpvae.external import PythaeDecoder

    class Saturating(torch.nn.Module):
        def forward(self, z):
            return SimpleNamespace(reconstruction=torch.sigmoid(z.repeat(1, 2) * torch.tensor([1.0, 80.0, -80.0, 120.0])))

    decoder = PythaeDecoder(Saturating(), (1, 2, 2))
    z = torch.tensor([[0.3, 1.0], [-0.5, -2.0]], requires_grad=True)
    x = torch.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 1.0, 0.0]]).reshape(2, 1, 2, 2)
    logits = decoder(z)
    log_px_z = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
    p = Saturating()(z).reconstruction.reshape(2, 1, 2, 2)
    pythae_log_px_z = -F.binary_cross_entropy(p, x, reduction="none").sum((1, 2, 3))
    assert (p == 1).any() and (p == 0).any()
    assert torch.allclose(log_px_z, pythae_log_px_z, atol=1e-4)
    (gradient,) = torch.autograd.grad(log_px_z.sum(), z)
    assert torch.isfinite(gradient).all()
