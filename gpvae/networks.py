"""Encoder and decoder networks shared by every model (same trunk, same decoder: the specification (book/specification.md) §5).

* ``mlp`` — the IWAE paper's one-stochastic-layer network for 28x28 binary images: two tanh hidden
  layers of 200 units each side. The encoder trunk ψ(x) is the last hidden layer (200 features).
* ``conv`` — a DCGAN-style pair (strided convolutions / transposed convolutions, no batch norm so
  every example is encoded independently) for 28x28, 32x32 and 64x64 images.

The decoder turns z into the parameters of ``likelihood`` (``bernoulli`` logits, or the mean and
log-scale of the discretized logistic) and answers log p(x | z).
"""
from __future__ import annotations

import torch
from torch import nn

from .likelihoods import LOGISTIC_BINS, bernoulli_log_prob, discretized_logistic_log_prob, to_logistic_scale

NETWORKS = ("mlp", "conv")
MLP_HIDDEN = 200
CONV_FEATURES = 256
CONV_CHANNELS = (32, 64, 128, 256)
MIN_LOG_SCALE = -7.0


class Encoder(nn.Module):
    """q(z | x) = N(μ(x), diag exp ℓ(x)) from a trunk ψ(x) ∈ R^p and one linear head h(x) = Wψ(x) + b ∈ R^{2d}.
    With ``pixel_levels``, x holds 8-bit levels 0..255 and the trunk sees them on [-1, 1]."""

    def __init__(self, trunk: nn.Module, feature_dim: int, latent_dim: int, pixel_levels: bool = False):
        super().__init__()
        self.trunk = trunk
        self.feature_dim = feature_dim
        self.latent_dim = latent_dim
        self.pixel_levels = pixel_levels
        self.head = nn.Linear(feature_dim, 2 * latent_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """ψ(x): (B, C, H, W) -> (B, p)."""
        return self.trunk(to_logistic_scale(x) if self.pixel_levels else x)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ψ(x), mean, log-variance): (B, p), (B, d), (B, d) — for models that also read the features."""
        features = self.features(x)
        mean, log_var = self.head(features).chunk(2, dim=-1)
        return features, mean, log_var

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance), each (B, d)."""
        return self.encode(x)[1:]


class Decoder(nn.Module):
    """p(x | z): a network from z (..., d) to likelihood parameters of images ``image_shape``."""

    def __init__(self, net: nn.Module, likelihood: str, image_shape: tuple[int, int, int]):
        super().__init__()
        self.net = net
        self.likelihood = likelihood
        self.image_shape = tuple(image_shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Likelihood parameters (..., C', H, W), C' = C (logits) or 2C (mean, log-scale)."""
        out = self.net(z.reshape(-1, z.shape[-1]))
        return out.reshape(*z.shape[:-1], -1, *self.image_shape[1:])

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) in nats: x (B, C, H, W), z (..., B, d) -> (..., B)."""
        params = self(z)
        if self.likelihood == "bernoulli":
            return bernoulli_log_prob(params, x)
        mean, log_scale = params.chunk(2, dim=-3)
        return discretized_logistic_log_prob(torch.tanh(mean), log_scale.clamp(min=MIN_LOG_SCALE), x)

    def sample(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x ~ p(x | z): binary pixels, or 8-bit levels 0..255 (the logistic drawn, then binned as the
        likelihood bins it): (..., C, H, W), from ``generator`` (CPU) when given."""
        params = self(z)
        uniform = torch.rand(params.shape if self.likelihood == "bernoulli" else params.chunk(2, dim=-3)[0].shape,
                             generator=generator).to(params.device)
        if self.likelihood == "bernoulli":
            return (uniform < torch.sigmoid(params)).to(params.dtype)
        mean, log_scale = params.chunk(2, dim=-3)
        u = uniform.clamp(1e-6, 1 - 1e-6)
        y = torch.tanh(mean) + log_scale.clamp(min=MIN_LOG_SCALE).exp() * (u.log() - (-u).log1p())
        return torch.round((y + 1.0) * 127.5).clamp(0, LOGISTIC_BINS - 1)

    def mean_image(self, z: torch.Tensor) -> torch.Tensor:
        """Expected image in data units ([0, 1] probabilities or 0..255 levels): (..., C, H, W)."""
        params = self(z)
        if self.likelihood == "bernoulli":
            return torch.sigmoid(params)
        return (torch.tanh(params.chunk(2, dim=-3)[0]) + 1) * 127.5


def _conv_geometry(side: int) -> tuple[int, int]:
    """(number of stride-2 layers, final feature-map side) for square images of ``side`` pixels."""
    downs = {28: 2, 32: 3, 64: 4}
    if side not in downs:
        raise ValueError(f"conv networks take 28, 32 or 64 pixel images, not {side}")
    return downs[side], side >> downs[side]


def build_networks(network: str, image_shape: tuple[int, int, int], likelihood: str,
                   latent_dim: int) -> tuple[Encoder, Decoder]:
    """The encoder/decoder pair ``network`` (one of :data:`NETWORKS`) for images of ``image_shape``."""
    channels, side, _ = image_shape
    out_channels = channels if likelihood == "bernoulli" else 2 * channels
    levels = likelihood == "logistic"  # 8-bit data: the encoder reads it on [-1, 1], as the likelihood does
    if network == "mlp":
        n_in = channels * side * side
        trunk = nn.Sequential(nn.Flatten(), nn.Linear(n_in, MLP_HIDDEN), nn.Tanh(),
                              nn.Linear(MLP_HIDDEN, MLP_HIDDEN), nn.Tanh())
        net = nn.Sequential(nn.Linear(latent_dim, MLP_HIDDEN), nn.Tanh(), nn.Linear(MLP_HIDDEN, MLP_HIDDEN),
                            nn.Tanh(), nn.Linear(MLP_HIDDEN, out_channels * side * side))
        return Encoder(trunk, MLP_HIDDEN, latent_dim, levels), Decoder(net, likelihood, image_shape)
    if network != "conv":
        raise ValueError(f"unknown network {network!r}; choose one of {', '.join(NETWORKS)}")
    n_down, final = _conv_geometry(side)
    widths = CONV_CHANNELS[:n_down]
    layers, c_in = [], channels
    for width in widths:
        layers += [nn.Conv2d(c_in, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        c_in = width
    flat = widths[-1] * final * final
    trunk = nn.Sequential(*layers, nn.Flatten(), nn.Linear(flat, CONV_FEATURES), nn.LeakyReLU(0.2))
    up: list[nn.Module] = [nn.Linear(latent_dim, flat), nn.LeakyReLU(0.2), nn.Unflatten(1, (widths[-1], final, final))]
    for width_in, width_out in zip(widths[::-1], widths[::-1][1:]):
        up += [nn.ConvTranspose2d(width_in, width_out, 4, 2, 1), nn.LeakyReLU(0.2)]
    up += [nn.ConvTranspose2d(widths[0], out_channels, 4, 2, 1)]
    return Encoder(trunk, CONV_FEATURES, latent_dim, levels), Decoder(nn.Sequential(*up), likelihood, image_shape)

