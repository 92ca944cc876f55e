import pytest
import torch

from gpvae.config import TrainConfig
from gpvae.models import IWAE, VAE, build_model
from gpvae.networks import build_networks


@pytest.mark.parametrize("network,shape,likelihood", [
    ("mlp", (1, 28, 28), "bernoulli"), ("conv", (1, 28, 28), "logistic"),
    ("conv", (3, 32, 32), "logistic"), ("conv", (3, 64, 64), "logistic")])
def test_networks_shapes_and_per_sample_log_likelihood(network, shape, likelihood):
    encoder, decoder = build_networks(network, shape, likelihood, latent_dim=4)
    x = torch.rand(2, *shape) if likelihood == "bernoulli" else torch.randint(0, 256, (2, *shape)).float()
    if likelihood == "bernoulli":
        x = x.round()
    mean, log_var = encoder(x)
    assert mean.shape == log_var.shape == (2, 4) and encoder.features(x).shape == (2, encoder.feature_dim)
    assert decoder.log_prob(x, torch.randn(5, 2, 4)).shape == (5, 2)
    assert decoder.mean_image(torch.randn(2, 4)).shape == (2, *shape)


@pytest.mark.parametrize("model", ["vae", "iwae"])
def test_every_parameter_gets_a_gradient(model):
    net = build_model(TrainConfig(model=model, latent_dim=3), (1, 28, 28), "bernoulli")
    net.loss(torch.rand(4, 1, 28, 28).round()).backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"


def test_iwae_with_one_sample_has_the_vae_objective_in_expectation():
    torch.manual_seed(0)
    vae = build_model(TrainConfig(model="vae", latent_dim=3), (1, 28, 28), "bernoulli")
    iwae = IWAE(vae.encoder, vae.decoder, iwae_k=1)
    x = torch.rand(8, 1, 28, 28).round()
    with torch.no_grad():
        vae_loss = torch.stack([vae.loss(x) for _ in range(400)]).mean()
        iwae_loss = torch.stack([iwae.loss(x) for _ in range(400)]).mean()
    assert abs(vae_loss - iwae_loss) < 0.5, (vae_loss, iwae_loss)
    assert isinstance(vae, VAE)
