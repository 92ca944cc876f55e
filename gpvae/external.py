"""Bring your own VAE: a trained PyTorch VAE written anywhere, behind gpvae's model interface, so that every
measurement accepts it — the protocol's importance sampling, AIS and its BDMC certificate, the gap
decomposition with q*, IS from q*, the difficulty scores, and GP-RF's error regression (R4) fitted post hoc.

The user gives an encoder ``x (B, C, H, W) -> (mean, log_var)``, each (B, d), a decoder ``z (N, d) ->``
the likelihood's parameters, the likelihood and the latent size d::

    model = gpvae.external.vae(encoder, decoder, likelihood="bernoulli", latent_dim=50, image_shape=(1, 28, 28))

``likelihood`` is ``"bernoulli"`` (the decoder gives logits (N, C, H, W); binary pixels), ``"logistic"``
(8-bit pixels 0..255; the decoder gives the mean and log-scale on [-1, 1] stacked as (N, 2C, H, W), as
:func:`gpvae.likelihoods.discretized_logistic_log_prob` reads them) or a callable
``log_prob(x, params) -> (N,)`` of the decoder's parameters for N images. The result is a
:class:`~gpvae.models.VAE` whose proposal is the encoder's Gaussian.

From the command line, ``python -m gpvae evaluate RUN_DIR --external my_vae.py:build --dataset mnist``
makes ``RUN_DIR`` an *external run folder*: ``external.json`` names the module, its function (which
returns the model, or the model and a :class:`~gpvae.data.ImageData`) and the options; every measurement
of a run folder then reads it (:func:`gpvae.run_folder.load_run`).

A VAE trained by pythae (the ``pythae`` extra) needs no networks of the user's: ``from_pythae(model)``.
"""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .likelihoods import bernoulli_log_prob, discretized_logistic_log_prob
from .models import VAE
from .networks import MIN_LOG_SCALE
from .options import ConfigError

EXTERNAL = "external.json"  # what makes a folder an external run folder
CHECK_IMAGES = 8  # images of the data that the checks of a model pass through it
PYTHAE_MODELS = ("VAE", "BetaVAE", "IWAE")  # pythae's models with a diagonal-Gaussian encoder and the N(0, I) prior
BCE_LOG_FLOOR = -100.0  # torch's binary cross-entropy clamps each log-probability here
STEEP_PROBABILITY = 1e-30  # below it the float32 derivative of log q (1/q) can overflow: its gradient is taken as 0


class ExternalEncoder(nn.Module):
    """A user's encoder as gpvae's :class:`~gpvae.networks.Encoder`: its features are its own outputs
    (mean, log-variance), so its head is the identity (GP-RF's error regression then regresses on them)."""

    def __init__(self, module: nn.Module, latent_dim: int):
        super().__init__()
        self.module = module
        self.latent_dim = latent_dim
        self.feature_dim = 2 * latent_dim
        self.head = nn.Identity()
        self.pixel_levels = False

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(mean, log-variance) side by side: (B, 2d)."""
        mean, log_var = self.module(x)
        return torch.cat([mean, log_var], -1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return (features, *features.chunk(2, dim=-1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode(x)[1:]


class ExternalDecoder(nn.Module):
    """A user's decoder as gpvae's :class:`~gpvae.networks.Decoder`: log p(x | z) for z of any batch shape."""

    def __init__(self, module: nn.Module, likelihood: str | Callable, image_shape: tuple[int, int, int]):
        super().__init__()
        self.module = module
        self.likelihood = likelihood if isinstance(likelihood, str) else "custom"
        self.custom_log_prob = None if isinstance(likelihood, str) else likelihood
        self.image_shape = tuple(image_shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's parameters for z (..., d): (..., C', H, W)."""
        params = self.module(z.reshape(-1, z.shape[-1]))
        return params.reshape(*z.shape[:-1], *params.shape[1:])

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) in nats: x (B, C, H, W), z (..., B, d) -> (..., B)."""
        params = self(z)
        if self.likelihood == "bernoulli":
            return bernoulli_log_prob(params, x)
        if self.likelihood == "logistic":
            mean, log_scale = params.chunk(2, dim=-3)
            return discretized_logistic_log_prob(mean, log_scale.clamp(min=MIN_LOG_SCALE), x)
        flat = params.reshape(-1, *params.shape[len(z.shape) - 1:])
        images = x.expand(*z.shape[:-2], *x.shape).reshape(-1, *x.shape[1:])
        return self.custom_log_prob(images, flat).reshape(z.shape[:-1])

    def sample(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x ~ p(x | z) for the Bernoulli likelihood (AIS's BDMC certificate simulates data)."""
        if self.likelihood != "bernoulli":
            raise ConfigError(f"simulating data (BDMC) needs the bernoulli likelihood; this model's is {self.likelihood}")
        logits = self(z)
        return (torch.rand(logits.shape, generator=generator).to(logits.device) < torch.sigmoid(logits)).to(logits.dtype)


def vae(encoder: nn.Module, decoder: nn.Module, likelihood: str | Callable, latent_dim: int,
        image_shape: tuple[int, int, int]) -> VAE:
    """The user's networks as a gpvae :class:`~gpvae.models.VAE` (the proposal is the encoder's Gaussian)."""
    if isinstance(likelihood, str) and likelihood not in ("bernoulli", "logistic"):
        raise ConfigError(f"likelihood {likelihood!r}: give 'bernoulli', 'logistic' or a callable log_prob(x, params)")
    if not isinstance(latent_dim, int) or latent_dim < 1:
        raise ConfigError(f"latent_dim {latent_dim!r}: a positive integer")
    return VAE(ExternalEncoder(encoder, latent_dim), ExternalDecoder(decoder, likelihood, image_shape))


class PythaeEncoder(nn.Module):
    """A pythae encoder (a ``ModelOutput`` with ``embedding`` and ``log_covariance``, each (B, d)) as
    ``x (B, C, H, W) -> (mean, log_var)``."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.encoder(x)
        return out.embedding, out.log_covariance


def bce_log(p: torch.Tensor, complement: bool = False) -> torch.Tensor:
    """log p (with ``complement``: log(1 − p), by ``log1p(-p)`` as torch computes it) for probabilities p (any
    shape), floored at :data:`BCE_LOG_FLOOR` as torch's binary cross-entropy floors it, with a gradient that
    is finite everywhere: zero where the probability is below :data:`STEEP_PROBABILITY` (0 for a saturated
    sigmoid), where a clamp after the log would propagate 0 × inf = NaN to z and stall HMC and SVI."""
    q = 1 - p if complement else p
    steep = q < STEEP_PROBABILITY
    safe = torch.where(steep, torch.full_like(p, 0.5), p)
    log = (-safe).log1p() if complement else safe.log()
    return torch.where(steep, (-p.detach()).log1p().clamp(min=BCE_LOG_FLOOR) if complement
                       else p.detach().log().clamp(min=BCE_LOG_FLOOR), log)


class PythaeDecoder(nn.Module):
    """A pythae decoder (``reconstruction``: Bernoulli probabilities p) as ``z (N, d) -> logits (N, C, H, W)``:
    log p − log(1 − p), each log by :func:`bce_log` (floored as pythae's binary cross-entropy floors it), so
    that the Bernoulli log-probability of these logits is pythae's own (its loss and ``get_nll``)."""

    def __init__(self, decoder: nn.Module, image_shape: tuple[int, int, int]):
        super().__init__()
        self.decoder = decoder
        self.image_shape = image_shape

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        p = self.decoder(z).reconstruction
        logits = bce_log(p) - bce_log(p, complement=True)
        fits = logits[0].numel() == math.prod(self.image_shape)  # else check() names the decoder's shape
        return logits.reshape(len(z), *self.image_shape) if fits else logits


def from_pythae(model: nn.Module, image_shape: tuple[int, int, int] | None = None) -> VAE:
    """A trained pythae VAE (``pythae.models.VAE``, ``BetaVAE`` or ``IWAE``, ``reconstruction_loss="bce"``:
    binary pixels) as a gpvae :class:`~gpvae.models.VAE`, for every measurement: the proposal is its
    encoder's Gaussian, the likelihood its decoder's Bernoulli probabilities. ``image_shape`` (C, H, W)
    defaults to the model's ``input_dim``. pythae itself is not imported."""
    config = model.model_config
    if getattr(model, "model_name", None) not in PYTHAE_MODELS:
        raise ConfigError(f"from_pythae reads pythae's {', '.join(PYTHAE_MODELS)} (a diagonal-Gaussian encoder, the "
                          f"N(0, I) prior); this model is {getattr(model, 'model_name', type(model).__name__)}")
    if config.reconstruction_loss != "bce":
        raise ConfigError(f"from_pythae reads a Bernoulli decoder (reconstruction_loss='bce', binary pixels); this "
                          f"model's reconstruction_loss is {config.reconstruction_loss!r}")
    shape = tuple(image_shape or config.input_dim or ())
    if len(shape) != 3:
        raise ConfigError(f"the model's input_dim is {config.input_dim}: give image_shape=(C, H, W)")
    return vae(PythaeEncoder(model.encoder), PythaeDecoder(model.decoder, shape), "bernoulli", config.latent_dim, shape)


def check(model: VAE, x: torch.Tensor, device: torch.device) -> None:
    """Refuse, naming the problem, a model that the measurements would misread: an encoder or decoder of the
    wrong output shape, a likelihood that does not fit the data ``x`` (B, C, H, W) (Bernoulli on 8-bit
    pixels, the logistic on values that are not 0..255), a non-finite log p(x | z), or a model whose
    parameters are on another device than ``device``."""
    device = torch.empty(0, device=device).device  # "cuda" as the parameters name it: "cuda:0"
    places = {p.device for p in model.parameters()}
    if places and places != {device}:
        raise ConfigError(f"the model's parameters are on {', '.join(sorted(map(str, places)))}, the measurements run "
                          f"on {device}: move it (model.to({str(device)!r})) or pass --device")
    x = x[:CHECK_IMAGES].to(device)
    likelihood, d = model.decoder.likelihood, model.latent_dim
    if tuple(x.shape[1:]) != model.decoder.image_shape:
        raise ConfigError(f"the data's images are {tuple(x.shape[1:])}, the model declares image_shape "
                          f"{model.decoder.image_shape}")
    binary = bool(((x == 0) | (x == 1)).all())
    if likelihood == "bernoulli" and not binary:
        raise ConfigError(f"the bernoulli likelihood needs binary pixels; the data's run from {x.min().item():g} to "
                          f"{x.max().item():g} (8-bit pixels take likelihood 'logistic')")
    levels = bool(((x >= 0) & (x <= 255) & (x == x.round())).all())
    if likelihood == "logistic" and (binary or not levels):
        raise ConfigError("the logistic likelihood needs 8-bit pixel levels 0..255; the data's are "
                          + ("binary (take likelihood 'bernoulli')" if binary else "not integers in 0..255"))
    with torch.no_grad():
        out = model.encoder.module(x)
        if not (isinstance(out, (tuple, list)) and len(out) == 2
                and all(torch.is_tensor(t) and t.shape == (len(x), d) for t in out)):
            shapes = [tuple(t.shape) for t in out] if isinstance(out, (tuple, list)) else type(out).__name__
            raise ConfigError(f"the encoder must return (mean, log_var), each ({len(x)}, {d}) for {len(x)} images; "
                              f"it returned {shapes}")
        z = torch.zeros(len(x), d, device=device)
        params = model.decoder.module(z)
        channels, *side = model.decoder.image_shape
        wanted = {"bernoulli": (len(x), channels, *side), "logistic": (len(x), 2 * channels, *side)}.get(likelihood)
        if not torch.is_tensor(params) or (wanted is not None and tuple(params.shape) != wanted):
            raise ConfigError(f"the decoder must return the {likelihood} likelihood's parameters {wanted} for "
                              f"z ({len(x)}, {d}); it returned {tuple(params.shape) if torch.is_tensor(params) else params}")
        log_px_z = model.log_likelihood(x, z.unsqueeze(0))
        if log_px_z.shape != (1, len(x)) or not torch.isfinite(log_px_z).all():
            raise ConfigError(f"log p(x | z) must be finite, one value per image; got shape {tuple(log_px_z.shape)}, "
                              f"values {log_px_z.flatten()[:4].tolist()}")


def load_builder(spec: str) -> Callable:
    """The function ``FILE.py:FUNCTION`` (or ``package.module:FUNCTION``) names."""
    source, _, name = spec.rpartition(":")
    if not source or not name:
        raise ConfigError(f"--external {spec!r}: give MODULE_FILE.py:FUNCTION or package.module:FUNCTION")
    if source.endswith(".py"):
        path = Path(source).resolve()
        if not path.is_file():
            raise ConfigError(f"--external {spec!r}: no file {path}")
        module_name = f"gpvae_external_{path.stem}"
        loader = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[module_name] = module
        loader.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(source)
        except ImportError as err:
            raise ConfigError(f"--external {spec!r}: cannot import {source} ({err})") from None
    builder = getattr(module, name, None)
    if not callable(builder):
        raise ConfigError(f"--external {spec!r}: {source} has no function {name}")
    return builder


def spec_source(spec: str) -> str:
    """``spec`` with a module file's path made absolute, so that an external run folder reads it from anywhere."""
    source, _, name = spec.rpartition(":")
    return f"{Path(source).resolve()}:{name}" if source.endswith(".py") else spec


def build(spec: str, data) -> tuple[VAE, object]:
    """Call the builder ``spec`` names: a model (measured on ``data``) or ``(model, its data)``."""
    built = load_builder(spec)()
    model, data = built if isinstance(built, tuple) else (built, data)
    if not isinstance(model, VAE) or not isinstance(model.encoder, ExternalEncoder):
        raise ConfigError(f"--external {spec!r} returned {type(model).__name__}; return gpvae.external.vae(...) "
                          "(optionally with an ImageData)")
    return model, data
