"""Training with Adam, validation-based model selection, per-epoch checkpoints and exact resume.

A run folder holds ``checkpoint.pt`` (written atomically after every epoch: parameters, optimizer,
RNG states, the best parameters so far and the history), ``metrics.json`` (the protocol's summary
for the best-validation parameters, with every option and its provenance) and ``per_example.json``.
Interrupting a run loses at most the current epoch; ``resume=True`` continues from the checkpoint
and ends exactly where an uninterrupted run ends (same seed, same device).

Schedule: ``epochs`` is the cap; with ``patience`` the run stops once its validation ELBO has not
improved for that many epochs; with ``lr_schedule="plateau"`` every optimizer's rates are multiplied
by ``lr_factor`` (not below ``min_lr``) once the validation ELBO has not improved for ``lr_patience``
epochs since the best epoch or the last drop; with ``lr_schedule="burda"`` the rate follows Burda, Grosse &
Salakhutdinov (2016): ``lr`` × 10^(−i/7) during the 3^i epochs of stage i = 0, …, 7 (:func:`burda_rate`).

Divergence (:class:`TrainingDiverged`, exit 3): a non-finite loss at any step; a gradient norm
beyond :data:`GRADIENT_EXPLOSION_FACTOR` times the run's first step's (SA-VAE's unrolled SVI steps can
overshoot on a steep likelihood and send it to 1e14); after an epoch a non-finite or exploding training
loss or validation ELBO — exploding meaning a mean negative ELBO or training loss per image above
:data:`DIVERGENCE_FACTOR` times the magnitude of the validation ELBO before training — or a failure the
model reads from its diagnostics (:meth:`~gpvae.models.base.LatentVariableModel.failure`: SA-VAE's SVI
lowering the validation ELBO); or, once training ends, a non-finite test estimate of the best
parameters (SA-VAE's test-time SVI can drive a log-variance below float32's range). Each writes
``diverged.json``. A diverged epoch is never checkpointed: the last checkpoint stays the last good one.
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import torch
from linear_operator.utils.errors import NanError, NotPSDError

from . import data as datasets
from .config import TrainConfig
from .evaluation import elbo, evaluate
from .io import RunFolderError, check_writable, write_json
from .measurements import TrainingDiverged, require_finite
from .models import LatentVariableModel
from .models.data_fit import FitsToData
from .progress import progress
from .provenance import provenance
from .run_folder import fit_to_data, load_checkpoint, prepare, save_checkpoint
from .layout import CHECKPOINT, DIVERGED, METRICS, PER_EXAMPLE

DIAGNOSTIC_IMAGES = 1000  # first training and validation images behind the per-epoch model diagnostics
DIVERGENCE_FACTOR = 10.0  # |loss| per image beyond 10x the untrained validation ELBO's magnitude: diverged
GRADIENT_EXPLOSION_FACTOR = 1e6  # a step's gradient norm beyond 1e6x the run's first step's: diverged
# Options that may change between an interrupted run and its resumption without changing the training.
RESUMABLE_CHANGES = {"epochs", "resume", "device", "out", "max_test", "subset_seed", "eval_k", "data_dir", "download"}


def _checkpoint(state: dict, config: TrainConfig, model, optimizers, generator, device: torch.device) -> dict:
    """Everything a resumed run needs: the training state, options, parameters, optimizers and RNGs."""
    return {**state, "config": config.to_dict(), "model": model.state_dict(),
            "optimizer": [o.state_dict() for o in optimizers], "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _check_resumable(saved: dict, config: TrainConfig, run_dir: Path) -> None:
    """Refuse to resume with changed options; an option newer than the checkpoint counts as its default."""
    defaults = TrainConfig().to_dict()
    changed = sorted(k for k, v in config.to_dict().items()
                     if k not in RESUMABLE_CHANGES and saved.get(k, defaults[k]) != v)
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {getattr(config, k)!r}" for k in changed)
        raise RunFolderError(f"cannot resume {run_dir} with different options ({diffs}); use another --out")


def _gradient_norm(model) -> float:
    """Euclidean norm of every parameter's gradient after a backward pass."""
    grads = [p.grad.detach() for p in model.parameters() if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads).item() if grads else 0.0


def _run_epoch(model, optimizers, data, config, generator, device, epoch, state) -> tuple[float, float]:
    """One epoch of training steps: (mean training loss, largest gradient norm). Sets the run's reference
    ``state["initial_grad_norm"]`` at its first step with a gradient and stops on a gradient beyond
    :data:`GRADIENT_EXPLOSION_FACTOR` times it."""
    model.train()
    model.begin_epoch(epoch, config.epochs)
    order = torch.randperm(len(data.train), generator=generator)
    total, steps, largest = 0.0, 0, 0.0
    bar = progress(order.split(config.batch_size), desc=f"epoch {epoch + 1}/{config.epochs}", unit="step")
    for step, idx in enumerate(bar):
        x = data.training_batch(data.train[idx], generator).to(device)
        try:
            loss = model.loss(x)
        except (NotPSDError, NanError) as err:  # a GP covariance left the positive-definite cone: too large a step
            raise TrainingDiverged(f"{err} at epoch {epoch + 1}, step {step + 1} (lower --lr or --ngd-lr)") from None
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, step {step + 1}")
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = _gradient_norm(model)
        if not state["initial_grad_norm"]:  # the run's first step with a gradient is its reference
            state["initial_grad_norm"] = norm
        if not math.isfinite(norm) or norm > GRADIENT_EXPLOSION_FACTOR * state["initial_grad_norm"]:
            raise TrainingDiverged(f"gradient norm {norm:.4g} at epoch {epoch + 1}, step {step + 1}, beyond "
                                   f"{GRADIENT_EXPLOSION_FACTOR:g}x the run's first step's {state['initial_grad_norm']:.4g}")
        largest = max(largest, norm)
        for optimizer in optimizers:
            optimizer.step()
        total, steps = total + loss.item(), steps + 1
        bar.set_postfix(loss=f"{loss.item():.2f}")
    return total / max(steps, 1), largest


def _diagnostic_images(data: datasets.ImageData, config: TrainConfig, device: torch.device) -> tuple:
    """Fixed binarized training images and validation images for the per-epoch diagnostics."""
    train = data.training_batch(data.train[:DIAGNOSTIC_IMAGES], torch.Generator().manual_seed(config.seed))
    return train.to(device), data.valid[:DIAGNOSTIC_IMAGES].to(device)


def _diagnostics(model: LatentVariableModel, images: tuple, seed: int) -> dict:
    """The model's diagnostics, drawn from their own seeded stream so that training does not change."""
    model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model.diagnostics(*images)


def _check_divergence(train_loss: float, valid_elbo: float, state: dict, epoch: int) -> None:
    """Raise :class:`TrainingDiverged` by the module's rule (non-finite, or beyond :data:`DIVERGENCE_FACTOR`
    times the magnitude of the validation ELBO before training)."""
    reference = state["initial_valid_elbo"]
    if reference is None:  # a checkpoint older than this rule: its first epoch's validation ELBO
        reference = state["history"][0]["valid_elbo"] if state["history"] else valid_elbo
    bound = DIVERGENCE_FACTOR * max(abs(reference), 1.0)
    for name, value in (("training loss", train_loss), ("negative validation ELBO", -valid_elbo)):
        if not math.isfinite(value):
            raise TrainingDiverged(f"{name} {value} after epoch {epoch + 1}")
        if value > bound:
            raise TrainingDiverged(f"{name} {value:.4g} nats per image after epoch {epoch + 1}, beyond "
                                   f"{DIVERGENCE_FACTOR:g}x the untrained model's {abs(reference):.4g}")


BURDA_STAGES = 8  # stages i = 0..7 of 3^i epochs: 3,280 epochs in all


def burda_rate(lr: float, epoch: int) -> float:
    """The learning rate of (0-based) ``epoch`` under Burda et al.'s schedule: ``lr`` × 10^(−i/7) in stage i,
    which spans 3^i epochs (the last stage's rate after the 3,280th epoch)."""
    stage, end = 0, 1
    while epoch >= end and stage < BURDA_STAGES - 1:
        stage += 1
        end += 3 ** stage
    return lr * 10 ** (-stage / 7)


def _schedule(state: dict, config: TrainConfig, optimizers) -> None:
    """After an epoch: early stopping (``patience``), the plateau learning-rate drop (``lr_patience``), or the
    rate of the next epoch under Burda et al.'s schedule."""
    stale = state["epoch"] - state["best_epoch"]
    if config.patience is not None and stale >= config.patience:
        state["stopped"] = "patience"
    if config.lr_schedule == "plateau" and state["epoch"] - max(state["best_epoch"], state["last_lr_drop"]) >= config.lr_patience:
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = max(group["lr"] * config.lr_factor, min(config.min_lr, group["lr"]))
        state["last_lr_drop"] = state["epoch"]
    if config.lr_schedule == "burda":  # state["epoch"] epochs done: the next is that 0-based epoch; every rate
        step = burda_rate(1.0, state["epoch"]) / burda_rate(1.0, state["epoch"] - 1)  # keeps its ratio to --lr
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] *= step


def _record_divergence(err: TrainingDiverged, kept: str, config: TrainConfig, epochs_done: int, origin: dict):
    """Write ``RUN_DIR/diverged.json`` (the message, options and provenance: a divergence is a result) and
    raise :class:`TrainingDiverged` saying what was kept."""
    run_dir = Path(config.run_dir)
    write_json(run_dir / DIVERGED, {"diverged": str(err), "model": config.model, "dataset": config.dataset,
                                     "options": config.to_dict(), "seed": config.seed, "epochs_done": epochs_done,
                                     **origin})
    raise TrainingDiverged(f"{err}; {kept} and the divergence in {run_dir / DIVERGED}") from None


def train(config: TrainConfig | None = None, **options) -> dict:
    """Train ``config`` (or ``TrainConfig(**options)``), evaluate its best-validation parameters, and
    return the metrics written to ``RUN_DIR/metrics.json``."""
    config = config or TrainConfig(**options)
    run_dir = check_writable(config.run_dir, "--out", folder=True)
    ckpt_path = run_dir / CHECKPOINT
    if ckpt_path.exists() and not config.resume:
        raise RunFolderError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
    data, model, device = prepare(config, fresh=not ckpt_path.exists())  # a resumed run needs no warm-start source
    origin = provenance(device)
    optimizers = model.optimizers(config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    state = {"epoch": 0, "best_valid_elbo": -float("inf"), "best_epoch": 0, "history": [], "fits": [],
             "best_model": copy.deepcopy(model.state_dict()), "initial_valid_elbo": None, "initial_grad_norm": None,
             "last_lr_drop": 0, "stopped": None}
    if ckpt_path.exists():
        saved = load_checkpoint(run_dir)
        if "optimizer" not in saved:
            raise RunFolderError(f"{ckpt_path} holds the committed weights of a finished run (no optimizer state): "
                                 "it can be evaluated, not trained further; train into a new --out")
        _check_resumable(saved["config"], config, run_dir)
        model.load_state_dict(saved["model"])
        saved_optimizers = saved["optimizer"] if isinstance(saved["optimizer"], list) else [saved["optimizer"]]
        for optimizer, optimizer_state in zip(optimizers, saved_optimizers):
            optimizer.load_state_dict(optimizer_state)
        generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        if saved.get("cuda_rng") is not None and device.type == "cuda":
            torch.cuda.set_rng_state(saved["cuda_rng"], device)
        state = {k: saved.get(k, default) for k, default in state.items()}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / DIVERGED).unlink(missing_ok=True)  # a divergence of an earlier attempt is not this one's
    fitting = model if isinstance(model, FitsToData) else None  # a part fitted to data between gradient steps
    fit_epochs = fitting.data_fit_epochs(config.epochs) if fitting else []
    fit_images = (fitting.fit_images(data, config.seed).to(device)
                  if fitting and (fit_epochs or fitting.fits_after_training) else None)
    diagnostic_images = _diagnostic_images(data, config, device)

    if state["epoch"] < config.epochs and state["initial_valid_elbo"] is None and not state["history"]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            state["initial_valid_elbo"] = elbo(model, data.valid, config.batch_size, device).mean().item()
    for epoch in range(state["epoch"], config.epochs):
        if state["stopped"]:
            break
        start = time.perf_counter()
        if epoch in fit_epochs:
            state["fits"].append(fit_to_data(model, fit_images, config, epoch))
        try:
            train_loss, largest_grad_norm = _run_epoch(model, optimizers, data, config, generator, device, epoch, state)
            seconds = time.perf_counter() - start
            valid_elbo = elbo(model, data.valid, config.batch_size, device).mean().item()
            _check_divergence(train_loss, valid_elbo, state, epoch)
            diagnostics = _diagnostics(model, diagnostic_images, config.seed + epoch)
            failure = model.failure(diagnostics)
            if failure:
                raise TrainingDiverged(f"{failure} (after epoch {epoch + 1})")
        except TrainingDiverged as err:
            kept = (f"the checkpoint of epoch {state['epoch']} (the last good one) is kept in {run_dir}"
                    if state["epoch"] else "no epoch completed, so nothing was saved")
            _record_divergence(err, kept, config, state["epoch"], origin)
        if valid_elbo > state["best_valid_elbo"]:
            state.update(best_valid_elbo=valid_elbo, best_epoch=epoch + 1,
                         best_model=copy.deepcopy(model.state_dict()))
        state["history"].append({"epoch": epoch + 1, "train_loss": train_loss, "valid_elbo": valid_elbo,
                                 "lr": optimizers[0].param_groups[0]["lr"], "seconds": seconds,
                                 "largest_grad_norm": largest_grad_norm, **diagnostics})
        state["epoch"] = epoch + 1
        _schedule(state, config, optimizers)
        save_checkpoint(ckpt_path, _checkpoint(state, config, model, optimizers, generator, device))

    model.load_state_dict(state["best_model"])
    if fitting and fitting.fits_after_training and not any(f["final"] and f["run_epochs"] == state["epoch"] for f in state["fits"]):
        # the data fit on the parameters that are evaluated; checkpointed, so that evaluate and resume see it
        fit = fit_to_data(model, fit_images, config, state["best_epoch"], final=True)
        state["fits"].append({**fit, "run_epochs": state["epoch"]})
        state["best_model"] = copy.deepcopy(model.state_dict())
        save_checkpoint(ckpt_path, _checkpoint(state, config, model, optimizers, generator, device))
    result = evaluate(model, data.test, config.eval_k, config.batch_size, device, data.likelihood, config.seed)
    try:
        require_finite(result, f"the evaluation of {run_dir}'s best parameters (epoch {state['best_epoch']})")
    except TrainingDiverged as err:  # a finished training whose model gives no finite estimate: a result too
        _record_divergence(err, f"the checkpoint of epoch {state['epoch']} is kept in {run_dir}", config,
                           state["epoch"], origin)
    per_example = result.pop("per_example")
    metrics = {"model": config.model, "dataset": config.dataset, "options": config.to_dict(),
               "seed": config.seed, "epochs_done": state["epoch"], "best_epoch": state["best_epoch"],
               "valid_elbo": state["best_valid_elbo"] if state["best_epoch"] else None,
               "stopped": state["stopped"] or ("cap" if state["epoch"] else None), **result, "subset_seed": data.test_seed,
               "train_seconds": sum(h["seconds"] for h in state["history"]),
               "data": data.description, "likelihood": data.likelihood,
               "n_parameters": sum(p.numel() for p in model.parameters()), "model_summary": model.summary(),
               **origin, "history": state["history"], "fits": state["fits"]}
    write_json(run_dir / METRICS, metrics)
    write_json(run_dir / PER_EXAMPLE, per_example)
    return metrics


