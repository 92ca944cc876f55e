"""Annealed importance sampling from the prior, and its bidirectional Monte Carlo certificate.

AIS (Neal 2001; for decoders Wu et al. 2017) estimates log p(x) without looking at any proposal: C
chains per image start at z ~ p(z) and follow the geometric path π_β(z) ∝ p(z) p(x | z)^β through the
temperatures 0 = β_0 < … < β_T = 1, each step adding (β_t − β_{t−1}) log p(x | z) to the chain's log
weight (accumulated in float64) and then moving z by one Hamiltonian Monte Carlo transition that leaves
π_{β_t} invariant (``leapfrog`` steps; the step size, shared by the batch's chains, adapted towards
``target_accept`` on their mean acceptance probability, or frozen from a pilot run: :data:`ADAPT`).
log p̂(x) = log-mean-exp of the C log weights: a stochastic lower bound, E[log p̂(x)] ≤ log p(x).

BDMC (Grosse et al. 2015) brackets the true value on data simulated from the model, (z, x) ~ p(z) p(x | z):
z is then an exact sample of p(z | x), so AIS run backwards from it (β from 1 to 0) estimates 1/p(x) and
gives a stochastic *upper* bound. The forward–reverse width bounds the forward estimator's error on such
data; the protocol's T is the smallest of a declared grid whose mean width is small enough.

Shapes: images x (B, ...), latents z (C, B, d), log weights (C, B); values per image in nats.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace

import torch

from .models.base import LatentVariableModel, frozen, standard_normal_log_prob
from .progress import progress

SIGMOID_RADIUS = 4.0  # the sigmoid schedule's span: β ∝ σ(t) for t evenly spaced on [−4, 4] (Grosse et al.)
STEP_JITTER = 0.5  # every transition's step size is drawn uniformly within ±50 % of the adapted one
MAX_ROWS = 4000  # chains × images evaluated in one decoder call: bounds memory
# Simulated data draw from a stream of their own: with the stream of the AIS chains (seeded with the same
# seed) the first chain of every image started at the very latent its image was drawn from, an exact
# posterior sample, and forward AIS on simulated data overestimated log p(x) (measured: +0.9 nats at
# T = 250 on the converged MNIST VAE, +30 on single chains of a linear-Gaussian model).
SIMULATION_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class AISSettings:
    """The estimator's settings, recorded beside every value it produces."""

    steps: int = 1000  # temperatures T
    chains: int = 1  # independent chains C per image (the protocol averages over images; C buys per-image precision)
    leapfrog: int = 5  # leapfrog steps L per HMC transition
    step_size: float = 0.05  # initial leapfrog step size of every chain
    target_accept: float = 0.65  # acceptance rate the per-chain step size is adapted towards
    adapt_rate: float = 0.05  # log step size moves by adapt_rate × (acceptance probability − target)
    schedule: str = "sigmoid"  # "sigmoid" or "linear" in β
    adapt: str = "batch"  # "batch" (Wu et al.), "image" or "pilot" (frozen from a pilot run): see ADAPT

    def __post_init__(self):
        if self.steps < 1 or self.chains < 1 or self.leapfrog < 1 or self.step_size <= 0:
            raise ValueError(f"AIS needs steps, chains, leapfrog ≥ 1 and a positive step size: {self}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"AIS schedule {self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        if self.adapt not in ADAPT:
            raise ValueError(f"AIS step-size adaptation {self.adapt!r} is not one of {', '.join(ADAPT)}")
        if self.adapt == "image" and self.chains < 2:
            raise ValueError("AIS step-size adaptation 'image' with one chain adapts every chain on its own past "
                             "acceptance: use 'batch' or 'pilot', or several chains")

    @property
    def decoder_passes(self) -> int:
        """Decoder passes (forward and backward) per image: T transitions of L leapfrog steps, C chains
        (and as many again for a pilot run)."""
        return self.steps * self.leapfrog * self.chains * (2 if self.adapt == "pilot" else 1)


def settings_grid(steps: list[int], leapfrog: int | list[int], **common) -> list[AISSettings]:
    """The (T, L) settings of a BDMC certificate: every T of ``steps`` with one L (an int, or a list of
    one), or with the L at the same place of ``leapfrog`` (a list as long as ``steps``); ``common`` sets
    the other fields."""
    leapfrogs = list(leapfrog) if isinstance(leapfrog, (list, tuple)) else [leapfrog]
    if len(leapfrogs) == 1:
        leapfrogs *= len(steps)
    if len(leapfrogs) != len(steps):
        raise ValueError(f"AIS leapfrog steps {list(leapfrogs)} must be one L or one per T of {list(steps)}")
    return [AISSettings(steps=int(t), leapfrog=int(l), **common) for t, l in zip(steps, leapfrogs)]


def temperatures(steps: int, schedule: str = "sigmoid") -> torch.Tensor:
    """β_0 = 0 < … < β_T = 1, (T + 1,) float64."""
    if schedule == "linear":
        return torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    s = torch.sigmoid(torch.linspace(-SIGMOID_RADIUS, SIGMOID_RADIUS, steps + 1, dtype=torch.float64))
    return (s - s[0]) / (s[-1] - s[0])


SCHEDULES = ("sigmoid", "linear")
# How the leapfrog step size follows the acceptance rate. "batch" (Wu et al.): one step size shared by the
# batch's chains, adapted on their mean acceptance as they anneal; "image": one per image, on its chains'
# mean. Either makes a transition depend on the states before it (weakly, through the batch's mean), so the
# estimate is unbiased only in the limit. "pilot": a pilot run of the batch's images on a stream of its own
# (seed + PILOT_SEED_OFFSET) adapts the shared step size; the run itself then follows the pilot's step-size
# schedule, frozen, so that its kernels do not depend on its own states and E[p̂(x)] = p(x) exactly, at
# twice the decoder passes. BDMC's reverse runs follow the forward pilot's schedule of the same images,
# temperature by temperature (:func:`reverse_schedule`): a pilot from the exact posterior sample would make
# the reverse kernels depend on the reverse run's own starting state.
ADAPT = ("batch", "image", "pilot")
PILOT_SEED_OFFSET = 2_000_003


def log_likelihood_and_grad(model: LatentVariableModel, x: torch.Tensor, z: torch.Tensor):
    """log p(x | z) (C, B) and its gradient in z (C, B, d): one decoder pass forward and back."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        log_lik = model.log_likelihood(x, z)
        (grad,) = torch.autograd.grad(log_lik.sum(), z)
    return log_lik.detach(), grad


def _energy(z: torch.Tensor, log_lik: torch.Tensor, beta: float) -> torch.Tensor:
    """U(z) = −log p(z) − β log p(x | z) (C, B)."""
    return -standard_normal_log_prob(z) - beta * log_lik


def hmc_transition(model: LatentVariableModel, x: torch.Tensor, z: torch.Tensor, log_lik: torch.Tensor,
                   grad_log_lik: torch.Tensor, beta: float, step_size: torch.Tensor, leapfrog: int):
    """One HMC transition leaving π_β invariant, every chain with its own step size (C, B), from z with
    its log p(x | z) and gradient (what the previous transition returned: the gradient of U at any β
    follows from them, so a transition costs ``leapfrog`` decoder passes, not one more).

    Returns the new z (C, B, d), the acceptance probabilities (C, B), and log p(x | z) and its gradient
    at the new z."""
    # a random step size (jitter), drawn independently of z, breaks the periodic trajectories HMC with a
    # fixed εL has on near-Gaussian posteriors (they return close to their start)
    jitter = 1.0 + STEP_JITTER * (2 * torch.rand(step_size.shape, device=z.device) - 1)
    eps = (step_size * jitter).unsqueeze(-1).to(z.dtype)
    momentum = torch.randn_like(z)
    z_new, p = z, momentum - 0.5 * eps * (z - beta * grad_log_lik)  # ∇U = z − β ∇log p(x | z)
    for step in range(leapfrog):
        z_new = z_new + eps * p
        log_lik_new, grad_new = log_likelihood_and_grad(model, x, z_new)
        p = p - (eps if step < leapfrog - 1 else 0.5 * eps) * (z_new - beta * grad_new)
    log_accept = ((_energy(z, log_lik, beta) + 0.5 * momentum.pow(2).sum(-1))
                  - (_energy(z_new, log_lik_new, beta) + 0.5 * p.pow(2).sum(-1)))
    accept_prob = log_accept.clamp(max=0.0).exp().nan_to_num(0.0)
    accepted = torch.rand_like(accept_prob) < accept_prob
    keep = accepted.unsqueeze(-1)
    return (torch.where(keep, z_new, z), accept_prob, torch.where(accepted, log_lik_new, log_lik),
            torch.where(keep, grad_new, grad_log_lik))


def anneal(model: LatentVariableModel, x: torch.Tensor, z: torch.Tensor, betas: torch.Tensor,
           settings: AISSettings, step_sizes: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Run chains started at ``z`` (C, B, d), an exact sample of π_{β_0}, along ``betas`` (forward:
    0 → 1; reverse: 1 → 0), the step size adapted as ``settings.adapt`` says, or with ``step_sizes`` (T,)
    the step size of every transition, fixed. Returns the log weights Σ_t (β_t − β_{t−1}) log p(x | z_{t−1})
    (C, B) in float64 and the mean acceptance probability, the final median step size and the step size
    of each transition, ``step_sizes`` (T,) (the batch's shared one; with "image", the first image's)."""
    log_w = torch.zeros(z.shape[:-1], dtype=torch.float64, device=z.device)
    step_size = torch.full(z.shape[:-1], settings.step_size, device=z.device)
    log_lik, grad_log_lik = log_likelihood_and_grad(model, x, z)
    acceptance = torch.zeros((), dtype=torch.float64, device=z.device)
    used = []
    for t in range(1, len(betas)):
        if step_sizes is not None:
            step_size = torch.full(z.shape[:-1], step_sizes[t - 1].item(), device=z.device)
        used.append(step_size.reshape(-1)[0])
        log_w += (betas[t] - betas[t - 1]).item() * log_lik.double()
        z, accept_prob, log_lik, grad_log_lik = hmc_transition(model, x, z, log_lik, grad_log_lik, betas[t].item(),
                                                              step_size, settings.leapfrog)
        if step_sizes is None:
            shared = accept_prob.mean(0, keepdim=True) if settings.adapt == "image" else accept_prob.mean()
            step_size = step_size * torch.exp(settings.adapt_rate * (shared - settings.target_accept))
        acceptance += accept_prob.double().mean()
    return log_w, {"acceptance": (acceptance / (len(betas) - 1)).item(),
                   "step_size_median": step_size.median().item(), "step_sizes": torch.stack(used).cpu()}


def _pilot_step_sizes(model: LatentVariableModel, x: torch.Tensor, z_start, betas: torch.Tensor,
                      settings: AISSettings, seed: int) -> torch.Tensor | None:
    """With ``settings.adapt == "pilot"``, the step-size schedule (T,) of a batch-adapted pilot run on
    ``x`` from ``z_start()`` on a stream seeded with ``seed`` + :data:`PILOT_SEED_OFFSET`, leaving the
    caller's random stream as it was; else None (the run adapts as it goes)."""
    if settings.adapt != "pilot":
        return None
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed + PILOT_SEED_OFFSET)
        _, record = anneal(model, x, z_start(), betas, replace(settings, adapt="batch"))
    return record["step_sizes"]


def reverse_schedule(forward: torch.Tensor) -> torch.Tensor:
    """The step sizes (T,) of a reverse run along β_T → β_0 from a forward run's (T,) along β_0 → β_T: the
    reverse transition at β_t takes the forward one's at β_t, and the last (at β_0, which the forward run
    never transitions at) the forward one's at β_1."""
    return torch.cat([forward[:-1].flip(0), forward[:1]])


def _dtype(model: LatentVariableModel) -> torch.dtype:
    return next(model.parameters()).dtype


def _log_mean_exp(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/C) Σ_c exp log_w[c]: (C, B) -> (B,)."""
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


def _image_batches(n: int, settings: AISSettings, batch_size: int) -> list[slice]:
    per_batch = max(1, min(batch_size, MAX_ROWS // settings.chains))
    return [slice(start, start + per_batch) for start in range(0, n, per_batch)]


def ais_log_likelihood(model: LatentVariableModel, x: torch.Tensor, settings: AISSettings = AISSettings(),
                       batch_size: int = 100, device: torch.device | str = "cpu", seed: int = 0) -> dict:
    """AIS from the prior: log p̂(x) per image of ``x`` (N, ...) [nats], never calling the model's proposal.

    Returns ``per_example`` (N,) float64 on CPU, ``mean``, ``acceptance`` (mean over batches),
    ``seconds``, the settings and, with ``adapt="pilot"``, ``schedules``: each image batch's frozen
    step sizes (T,)."""
    model.eval()
    device = torch.device(device)
    betas = temperatures(settings.steps, settings.schedule)
    torch.manual_seed(seed)
    values, acceptance, schedules, started = [], [], [], time.perf_counter()
    with frozen(model):
        for number, part in enumerate(progress(_image_batches(len(x), settings, batch_size),
                                               desc=f"AIS, T={settings.steps}", unit="batch")):
            xb = x[part].to(device)

            def prior_draw():
                return torch.randn(settings.chains, len(xb), model.latent_dim, device=device, dtype=_dtype(model))

            schedule = _pilot_step_sizes(model, xb, prior_draw, betas, settings, seed + number)
            log_w, record = anneal(model, xb, prior_draw(), betas, settings, schedule)
            values.append(_log_mean_exp(log_w).cpu())
            acceptance.append(record["acceptance"])
            schedules.append(schedule)
    per_example = torch.cat(values)
    return {"per_example": per_example, "mean": per_example.mean().item(),
            "acceptance": sum(acceptance) / len(acceptance), "seconds": time.perf_counter() - started,
            "settings": asdict(settings), **({"schedules": schedules} if settings.adapt == "pilot" else {})}


def simulate(model: LatentVariableModel, n: int, seed: int = 0, device: torch.device | str = "cpu"):
    """(z, x): n draws z ~ p(z) (n, d) and x ~ p(x | z) (n, ...), from a generator of their own seeded
    with ``seed`` + :data:`SIMULATION_SEED_OFFSET`."""
    generator = torch.Generator().manual_seed(seed + SIMULATION_SEED_OFFSET)
    z = torch.randn(n, model.latent_dim, generator=generator, dtype=_dtype(model)).to(device)
    with torch.no_grad():
        x = model.sample_observation(z, generator)
    return z, x


def bdmc(model: LatentVariableModel, n: int, settings: AISSettings = AISSettings(), batch_size: int = 100,
         device: torch.device | str = "cpu", seed: int = 0) -> dict:
    """The BDMC sandwich on ``n`` images simulated from the model: per image the forward AIS estimate
    (stochastic lower bound) and the reverse one from the exact posterior sample (stochastic upper
    bound), and their mean ``width`` [nats]. With ``adapt="pilot"`` the reverse runs follow the forward
    pilots' schedules (:func:`reverse_schedule`)."""
    model.eval()
    device = torch.device(device)
    z_true, x = simulate(model, n, seed, device)
    forward = ais_log_likelihood(model, x, settings, batch_size, device, seed)
    betas = temperatures(settings.steps, settings.schedule).flip(0)
    torch.manual_seed(seed + 1)
    upper, acceptance, started = [], [], time.perf_counter()
    with frozen(model):
        for number, part in enumerate(progress(_image_batches(n, settings, batch_size), desc="reverse AIS",
                                               unit="batch")):
            xb = x[part]

            def posterior_draw():
                return z_true[part].expand(settings.chains, -1, -1).contiguous()

            schedule = reverse_schedule(forward["schedules"][number]) if settings.adapt == "pilot" else None
            log_w, record = anneal(model, xb, posterior_draw(), betas, settings, schedule)
            upper.append(-_log_mean_exp(log_w).cpu())
            acceptance.append(record["acceptance"])
    upper = torch.cat(upper)
    lower = forward["per_example"]
    return {"n": n, "lower": lower, "upper": upper, "width": (upper - lower).mean().item(),
            "lower_mean": lower.mean().item(), "upper_mean": upper.mean().item(),
            "acceptance_forward": forward["acceptance"], "acceptance_reverse": sum(acceptance) / len(acceptance),
            "seconds": forward["seconds"] + time.perf_counter() - started, "settings": asdict(settings)}
