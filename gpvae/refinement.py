"""Stochastic variational inference on a diagonal Gaussian, as its own object (the specification (book/specification.md) §4, §5).

:class:`GaussianRefinement` takes an objective (a per-example function of the Gaussian's mean and
log-variance, (B, d) each, to *maximize*) and a starting point, and returns the parameters after T
gradient-ascent steps (plain SGD with momentum, or Adam). With ``differentiable=True`` the steps are
unrolled in the autograd graph (``create_graph``), so gradients reach the starting point — SA-VAE
trains its encoder that way. Any model with a Gaussian encoder uses it; so does the per-instance
optimum q* of the gap decomposition (:func:`optimal_gaussian`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .objectives import gaussian_elbo

Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
UPDATES = ("sgd", "adam")
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8


@dataclass
class GaussianRefinement:
    """T gradient-ascent steps on (mean, log-variance) of a diagonal Gaussian.

    ``lr`` is the step size, ``momentum`` the heavy-ball coefficient of ``update="sgd"`` (Adam uses
    its usual betas). ``differentiable`` keeps the graph through the steps. ``max_grad_norm`` clips,
    per example, the gradient of the mean and that of the log-variance (each a (d,) vector) to that
    Euclidean norm before the step, as SA-VAE's ``svi_max_grad_norm`` does; None: no clipping.
    """

    steps: int
    lr: float
    momentum: float = 0.0
    update: str = "sgd"
    differentiable: bool = False
    max_grad_norm: float | None = None

    def __post_init__(self):
        if self.update not in UPDATES:
            raise ValueError(f"unknown update {self.update!r}; choose one of {UPDATES}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be positive or None, not {self.max_grad_norm!r}")

    def clipped(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """``grads`` (each (B, d)) with every row's norm clipped to ``max_grad_norm`` (unchanged if None)."""
        if self.max_grad_norm is None:
            return list(grads)
        return [g * (self.max_grad_norm / g.norm(dim=-1, keepdim=True).clamp_min(self.max_grad_norm)) for g in grads]

    def __call__(self, objective: Objective, mean: torch.Tensor, log_var: torch.Tensor, trace: list | None = None,
                 until: Callable[[list], bool] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Refined (mean, log_var), (B, d) each, after ``steps`` steps or as soon as ``until(trace)``
        holds. ``trace``, if given, receives the per-example objective (B,) before each step."""
        trace = [] if trace is None and until is not None else trace
        params = [p if self.differentiable and p.requires_grad else p.detach().requires_grad_(True)
                  for p in (mean, log_var)]
        first = [torch.zeros_like(p) for p in params]
        second = [torch.zeros_like(p) for p in params]
        with torch.enable_grad():
            for step in range(1, self.steps + 1):
                value = objective(*params)
                grads = torch.autograd.grad(value.sum(), params, create_graph=self.differentiable)
                if trace is not None:
                    trace.append(value.detach().cpu())
                    if until is not None and until(trace):
                        break
                grads = self.clipped(grads)
                if self.update == "sgd":
                    first = [self.momentum * v + g for v, g in zip(first, grads)]
                    moves = first
                else:
                    first = [ADAM_BETAS[0] * m + (1 - ADAM_BETAS[0]) * g for m, g in zip(first, grads)]
                    second = [ADAM_BETAS[1] * v + (1 - ADAM_BETAS[1]) * g * g for v, g in zip(second, grads)]
                    moves = [(m / (1 - ADAM_BETAS[0] ** step)) / ((v / (1 - ADAM_BETAS[1] ** step)).sqrt() + ADAM_EPS)
                             for m, v in zip(first, second)]
                params = [p + self.lr * move for p, move in zip(params, moves)]
                if not self.differentiable:
                    params = [p.detach().requires_grad_(True) for p in params]
        if not self.differentiable:
            params = [p.detach() for p in params]
        return params[0], params[1]


@dataclass
class Convergence:
    """SVI is converged when the objective averaged over the examples and over the last ``window``
    steps exceeds its average over the ``window`` steps before by less than ``tolerance`` nats, or
    after ``max_steps`` steps (then it is recorded as not converged). Averaging over examples keeps
    the criterion above the Monte Carlo noise of single-example estimates."""

    window: int = 200
    tolerance: float = 0.01
    max_steps: int = 5_000

    def __call__(self, trace: list) -> bool:
        w = self.window
        if len(trace) < 2 * w or len(trace) % w:
            return False
        improvement = torch.stack(trace[-w:]).mean(0) - torch.stack(trace[-2 * w:-w]).mean(0)
        return bool(improvement.mean() < self.tolerance)


ORACLE = dict(lr=1e-2, update="adam", n_samples=10)  # q* search: Adam on a 10-sample ELBO estimate


def optimal_gaussian(model, x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor,
                     convergence: Convergence = Convergence(), lr: float = ORACLE["lr"],
                     n_samples: int = ORACLE["n_samples"]) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """q* = argmax ELBO over diagonal Gaussians, per example, by SVI from (mean, log_var) run to
    ``convergence``, then ``window`` more steps at a tenth of the step size to settle the stochastic
    iterate. Returns (mean, log_var, record) with the steps taken, whether the criterion was met
    before ``max_steps``, and the objective trace every ``window`` steps."""
    trace: list[torch.Tensor] = []
    objective = lambda m, v: gaussian_elbo(model, x, m, v, n_samples)  # noqa: E731
    refine = GaussianRefinement(steps=convergence.max_steps, lr=lr, update=ORACLE["update"])
    mean, log_var = refine(objective, mean, log_var, trace, convergence)
    converged = len(trace) < convergence.max_steps
    settle = GaussianRefinement(steps=convergence.window, lr=lr / 10, update=ORACLE["update"])
    mean, log_var = settle(objective, mean, log_var, trace)
    record = {"steps": len(trace), "converged": converged,
              "criterion": f"mean ELBO over the last {convergence.window} steps exceeds the previous "
                           f"{convergence.window} by < {convergence.tolerance} nats (mean over examples); then "
                           f"{convergence.window} steps at lr/10",
              "lr": lr, "update": ORACLE["update"], "samples_per_step": n_samples,
              "mean_elbo_every_window": [t.mean().item() for t in trace[::convergence.window]]}
    return mean, log_var, record
