"""Training with Adam, validation-based model selection, per-epoch checkpoints and exact resume.

A run folder holds ``checkpoint.pt`` (written atomically after every epoch: parameters, optimizer,
RNG states, the best parameters so far and the history), ``metrics.json`` (the protocol's summary
for the best-validation parameters, with every option and its provenance) and ``per_example.json``.
Interrupting a run loses at most the current epoch; ``resume=True`` continues from the checkpoint
and ends exactly where an uninterrupted run ends (same seed, same device).

Schedule: ``epochs`` is the cap; with ``patience`` the run stops once its validation ELBO has not
improved for that many epochs; with ``lr_schedule="plateau"`` every optimizer's rates are multiplied
by ``lr_factor`` (not below ``min_lr``) once the validation ELBO has not improved for ``lr_patience``
epochs since the best epoch or the last drop.

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
import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path

import torch
from linear_operator.utils.errors import NanError, NotPSDError

from . import data as datasets
from .config import ConfigError, TrainConfig
from .evaluation import (GAP_ELBO_SAMPLES, AISSettings, ais_log_likelihood, amortization_gaps, auroc, bdmc,
                         difficulty_scores, elbo, evaluate, log_likelihood, partial_spearman, posterior_difficulty,
                         roc_curve, spearman, test_subset)
from .models import LatentVariableModel, build_model
from .progress import progress
from .protocol import GAP_EVAL_K, GAP_SUBSET
from .provenance import parameter_digest, provenance, resolve_device

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
PER_EXAMPLE = "per_example.json"
DIVERGED = "diverged.json"  # written when training diverges: the message, options and provenance
INIT_IMAGES = 1000  # training images shown to data-dependent initializations (more if the model asks)
DIAGNOSTIC_IMAGES = 1000  # first training and validation images behind the per-epoch model diagnostics
DIVERGENCE_FACTOR = 10.0  # |loss| per image beyond 10x the untrained validation ELBO's magnitude: diverged
GRADIENT_EXPLOSION_FACTOR = 1e6  # a step's gradient norm beyond 1e6x the run's first step's: diverged
# Options that may change between an interrupted run and its resumption without changing the training.
RESUMABLE_CHANGES = {"epochs", "resume", "device", "out", "max_test", "eval_k", "data_dir", "download"}


class TrainingDiverged(RuntimeError):
    """The loss or the validation ELBO became non-finite or exploded (see the module's rule)."""


class RunFolderError(ConfigError):
    """The run folder conflicts with the request (an existing run without ``resume``, or other options)."""


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def _save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _checkpoint(state: dict, config: TrainConfig, model, optimizers, generator, device: torch.device) -> dict:
    """Everything a resumed run needs: the training state, options, parameters, optimizers and RNGs."""
    return {**state, "config": config.to_dict(), "model": model.state_dict(),
            "optimizer": [o.state_dict() for o in optimizers], "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def load_checkpoint(run_dir: str | Path) -> dict:
    """``RUN_DIR/checkpoint.pt``, or :class:`RunFolderError` naming the file when it is missing or unreadable."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        raise RunFolderError(f"no {CHECKPOINT} in {run_dir}: not a gpvae run folder")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, foreign or corrupt: torch raises many types
        raise RunFolderError(f"{path} cannot be read ({type(err).__name__}: {str(err)[:120]}); it is damaged or not a "
                             "gpvae checkpoint: retrain the run into a new --out") from None
    missing = [k for k in ("config", "model", "best_model", "epoch") if not isinstance(saved, dict) or k not in saved]
    if missing:
        raise RunFolderError(f"{path} is not a gpvae checkpoint (it lacks {missing})")
    return saved


def read_json(path: str | Path, hint: str) -> dict:
    """A JSON file the library wrote, or :class:`RunFolderError` naming it and ``hint`` (what to do)."""
    path = Path(path)
    if not path.exists():
        raise RunFolderError(f"{path} does not exist: {hint}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunFolderError(f"{path} is not valid JSON ({err}): it is damaged; {hint}") from None


def prepare(config: TrainConfig, fresh: bool = True) -> tuple[datasets.ImageData, LatentVariableModel, torch.device]:
    """Data (limited as the config says), a seeded model on its device, and the device. A ``fresh``
    model is also warm-started (``init_from``) and initialized from the first training images."""
    device = resolve_device(config.device)
    data = datasets.load(config.dataset, config.data_dir, config.download).limit(config.max_train, config.max_test)
    return data, new_model(config, data, fresh).to(device), device


def new_model(config: TrainConfig, data: datasets.ImageData, fresh: bool = True) -> LatentVariableModel:
    """The model of ``config`` for ``data``, seeded with ``config.seed``; a ``fresh`` one is also
    warm-started (``init_from``) and initialized from the first training images (on CPU)."""
    torch.manual_seed(config.seed)
    try:
        model = build_model(config, data.image_shape, data.likelihood, n_train=len(data.train))
    except ValueError as err:  # a model that cannot take this dataset's likelihood or shape
        raise ConfigError(f"--model {config.model} with --dataset {config.dataset}: {err}") from None
    _check_against_data(config, data, model)
    if fresh:
        if config.init_from:
            _warm_start(model, config.init_from)
        if model.initialization_images > len(data.train):
            raise ConfigError(f"--model {config.model} needs {model.initialization_images} training images to "
                              f"initialize (e.g. --inducing), the data has {len(data.train)}")
        n_init = max(INIT_IMAGES, model.initialization_images)
        first = data.training_batch(data.train[:n_init], torch.Generator().manual_seed(config.seed))
        model.initialize_from_data(first)
    _freeze(model, config.freeze)
    return model


def _check_against_data(config: TrainConfig, data: datasets.ImageData, model: LatentVariableModel) -> None:
    """Refuse, before any work, options that the data cannot honour (they would otherwise be cut silently):
    the model's (:meth:`~gpvae.models.LatentVariableModel.check_data`) and the test set's."""
    limited = f" (--max-train {config.max_train})" if config.max_train else ""
    model.check_data(len(data.train), f"{config.dataset}{limited}")
    if config.max_test is not None and config.max_test > len(data.test):
        raise ConfigError(f"--max-test {config.max_test} exceeds the {len(data.test)} test images of {config.dataset}")


def _freeze(model: LatentVariableModel, parts: str) -> None:
    """Reading R3: keep the warm-started ``encoder``, ``decoder`` or ``both`` fixed (no gradient)."""
    for part in {"none": (), "encoder": ("encoder",), "decoder": ("decoder",), "both": ("encoder", "decoder")}[parts]:
        for p in getattr(model, part).parameters():
            p.requires_grad_(False)


def _warm_start(model: LatentVariableModel, run_dir: str) -> None:
    """Copy the encoder and decoder of a trained run's best parameters into ``model``."""
    best = load_checkpoint(run_dir)["best_model"]
    try:
        for part in ("encoder", "decoder"):
            prefix = part + "."
            getattr(model, part).load_state_dict({k[len(prefix):]: v for k, v in best.items() if k.startswith(prefix)})
    except (RuntimeError, AttributeError) as err:
        raise RunFolderError(f"cannot warm start from {run_dir}: its networks differ ({err})") from None


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


def _fit_to_data(model: LatentVariableModel, images: torch.Tensor, config: TrainConfig, epochs_done: int,
                 final: bool = False) -> dict:
    """:meth:`fit_to_data` of the parameters after ``epochs_done`` epochs (or the best ones, ``final``),
    its intermediate results in the content-addressed folder ``$GPVAE_CACHE_DIR/fits`` (keyed by a digest
    of the parameters, images and settings they come from, so that runs reading the same trained model
    share them and nothing else can)."""
    model.eval()
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        record = model.fit_to_data(images, config.seed, datasets.cache_dir() / "fits")
    return {"after_epoch": epochs_done, "final": final, "seconds": time.perf_counter() - start, **record}


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


def _schedule(state: dict, config: TrainConfig, optimizers) -> None:
    """After an epoch: early stopping (``patience``) and the plateau learning-rate drop (``lr_patience``)."""
    stale = state["epoch"] - state["best_epoch"]
    if config.patience is not None and stale >= config.patience:
        state["stopped"] = "patience"
    if config.lr_schedule == "plateau" and state["epoch"] - max(state["best_epoch"], state["last_lr_drop"]) >= config.lr_patience:
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = max(group["lr"] * config.lr_factor, min(config.min_lr, group["lr"]))
        state["last_lr_drop"] = state["epoch"]


def _record_divergence(err: TrainingDiverged, kept: str, config: TrainConfig, epochs_done: int, origin: dict):
    """Write ``RUN_DIR/diverged.json`` (the message, options and provenance: a divergence is a result) and
    raise :class:`TrainingDiverged` saying what was kept."""
    run_dir = Path(config.run_dir)
    _write_json(run_dir / DIVERGED, {"diverged": str(err), "model": config.model, "dataset": config.dataset,
                                     "options": config.to_dict(), "seed": config.seed, "epochs_done": epochs_done,
                                     **origin})
    raise TrainingDiverged(f"{err}; {kept} and the divergence in {run_dir / DIVERGED}") from None


def _require_finite(result: dict, what: str) -> None:
    """A result with a non-finite mean has failed: :class:`TrainingDiverged` naming the values."""
    bad = {k: v for k, v in result.items() if isinstance(v, float) and not math.isfinite(v)}
    if bad:
        raise TrainingDiverged(f"{what} gave non-finite {bad}; no metrics were written")


def train(config: TrainConfig | None = None, **options) -> dict:
    """Train ``config`` (or ``TrainConfig(**options)``), evaluate its best-validation parameters, and
    return the metrics written to ``RUN_DIR/metrics.json``."""
    config = config or TrainConfig(**options)
    run_dir = Path(config.run_dir)
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
    fit_epochs = model.data_fit_epochs(config.epochs)
    fit_images = model.fit_images(data, config.seed).to(device) if fit_epochs or model.fits_after_training else None
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
            state["fits"].append(_fit_to_data(model, fit_images, config, epoch))
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
        _save_checkpoint(ckpt_path, _checkpoint(state, config, model, optimizers, generator, device))

    model.load_state_dict(state["best_model"])
    if model.fits_after_training and not any(f["final"] and f["run_epochs"] == state["epoch"] for f in state["fits"]):
        # the data fit on the parameters that are evaluated; checkpointed, so that evaluate and resume see it
        fit = _fit_to_data(model, fit_images, config, state["best_epoch"], final=True)
        state["fits"].append({**fit, "run_epochs": state["epoch"]})
        state["best_model"] = copy.deepcopy(model.state_dict())
        _save_checkpoint(ckpt_path, _checkpoint(state, config, model, optimizers, generator, device))
    result = evaluate(model, data.test, config.eval_k, config.batch_size, device, data.likelihood, config.seed)
    try:
        _require_finite(result, f"the evaluation of {run_dir}'s best parameters (epoch {state['best_epoch']})")
    except TrainingDiverged as err:  # a finished training whose model gives no finite estimate: a result too
        _record_divergence(err, f"the checkpoint of epoch {state['epoch']} is kept in {run_dir}", config,
                           state["epoch"], origin)
    per_example = result.pop("per_example")
    metrics = {"model": config.model, "dataset": config.dataset, "options": config.to_dict(),
               "seed": config.seed, "epochs_done": state["epoch"], "best_epoch": state["best_epoch"],
               "valid_elbo": state["best_valid_elbo"] if state["best_epoch"] else None,
               "stopped": state["stopped"] or ("cap" if state["epoch"] else None), **result,
               "train_seconds": sum(h["seconds"] for h in state["history"]),
               "data": data.description, "likelihood": data.likelihood,
               "n_parameters": sum(p.numel() for p in model.parameters()), "model_summary": model.summary(),
               **origin, "history": state["history"], "fits": state["fits"]}
    _write_json(run_dir / METRICS, metrics)
    _write_json(run_dir / PER_EXAMPLE, per_example)
    return metrics


def load_run(run_dir: str | Path, full_test: bool = False,
             **overrides) -> tuple[TrainConfig, datasets.ImageData, LatentVariableModel, torch.device]:
    """The config (with the ``overrides`` that are not None), data and best-validation model of a run
    folder; with ``full_test`` the whole test set, whatever ``max_test`` the run was evaluated on."""
    saved = load_checkpoint(run_dir)
    if saved["epoch"] and not math.isfinite(saved["best_valid_elbo"]):
        raise RunFolderError(f"{run_dir}: no epoch of its {saved['epoch']} has a finite validation ELBO, so it holds "
                             "no trained parameters to evaluate (the run diverged; retrain it with a lower --lr)")
    config = TrainConfig(**{**saved["config"], **{k: v for k, v in overrides.items() if v is not None}})
    if full_test:
        config = replace(config, max_test=None)
    data, model, device = prepare(config, fresh=False)
    model.load_state_dict(saved["best_model"])
    return config, data, model, device


def _subset(data: datasets.ImageData, size: int, subset_seed: int | None, what: str) -> torch.Tensor:
    """Test-image indices of a measurement (:func:`gpvae.evaluation.test_subset`), refused up front when
    the run's test set is smaller."""
    try:
        return test_subset(len(data.test), size, subset_seed)
    except ValueError as err:
        raise ConfigError(f"{what}: {err}") from None


def gaps_run(run_dir: str | Path, gap_subset: int = GAP_SUBSET, eval_k: int | None = None, data_dir: str | None = None,
             device: str | None = None, subset_seed: int | None = None) -> dict:
    """Gap decomposition (:func:`gpvae.evaluation.amortization_gaps`) of a run's best model on
    ``gap_subset`` test images (the first ones, or drawn with ``subset_seed``), with K = ``eval_k``
    (default :data:`gpvae.protocol.GAP_EVAL_K`); writes ``RUN_DIR/gaps.json`` with the images' ``indices``."""
    config, data, model, dev = load_run(run_dir, eval_k=eval_k or GAP_EVAL_K, data_dir=data_dir, device=device,
                                        full_test=True)
    indices = _subset(data, gap_subset, subset_seed, "--gap-subset")
    digest = parameter_digest(model)  # of the model as loaded, the one later readers load (read_gaps)
    torch.manual_seed(config.seed)
    result = amortization_gaps(model, data.test[indices], config.eval_k, config.batch_size, dev)
    result.update(indices=indices.tolist(), subset_seed=subset_seed, model=config.model, dataset=config.dataset,
                  model_sha256=digest, run_dir=str(run_dir), **provenance(dev))
    _write_json(Path(run_dir) / "gaps.json", result)
    return result


def read_gaps(run_dir: str | Path, model: LatentVariableModel) -> dict:
    """``RUN_DIR/gaps.json`` of ``model`` (the run's best model): its ``indices`` (the first ``n`` test images
    for files before subsets) and ``model_checked``, whether the file names the model's digest (files
    before digests do not; their consumers check them otherwise). Raises :class:`RunFolderError` when the
    file is missing, damaged or measured on another model."""
    command = f"python -m gpvae evaluate {run_dir} --gaps"
    gaps = read_json(Path(run_dir) / "gaps.json", f"run `{command}` first")
    recorded = gaps.get("model_sha256")
    if recorded is not None and recorded != parameter_digest(model):
        raise RunFolderError(f"{Path(run_dir) / 'gaps.json'} was measured on another model than the run's best one "
                             f"(digest {recorded[:12]}…): the run was trained on since; run `{command}` again")
    return {**gaps, "indices": gaps.get("indices", list(range(gaps["n"]))), "model_checked": recorded is not None}


GAP_SUBSET_SEED_OFFSET = 10_000  # the seed of the gap subset's own AIS chains is the run's seed + this


def _ais_on_gap_subset(model: LatentVariableModel, data: datasets.ImageData, gaps: dict, indices: torch.Tensor,
                       ais_values: torch.Tensor, settings: AISSettings, config: TrainConfig, dev: torch.device) -> dict:
    """AIS on the images of a gap decomposition (:func:`read_gaps`) and the approximation gap by AIS,
    AIS − ELBO(q*) per image [nats]: values of images in the AIS subset (``indices``, ``ais_values``) are
    reused, the others annealed with the same settings and the run's seed + :data:`GAP_SUBSET_SEED_OFFSET`
    (a stream of their own: with the AIS subset's seed their chains would start from the same draws as
    its first images', and their errors would be correlated)."""
    if len(gaps["elbo_opt"]["per_example"]) != len(gaps["indices"]):
        raise RunFolderError(f"gaps.json of {config.run_dir}: {len(gaps['indices'])} indices but "
                             f"{len(gaps['elbo_opt']['per_example'])} values of ELBO(q*): it is damaged; rerun --gaps")
    known = dict(zip(indices.tolist(), ais_values.tolist()))
    missing = [i for i in gaps["indices"] if i not in known]
    seconds, seed = 0.0, config.seed + GAP_SUBSET_SEED_OFFSET
    if missing:
        extra = ais_log_likelihood(model, data.test[torch.tensor(missing)], settings, config.batch_size, dev, seed)
        known.update(zip(missing, extra["per_example"].tolist()))
        seconds = extra["seconds"]
    values = torch.tensor([known[i] for i in gaps["indices"]], dtype=torch.float64)
    gap = values - torch.tensor(gaps["elbo_opt"]["per_example"], dtype=torch.float64)
    return {"n": len(values), "indices": gaps["indices"], "subset_seed": gaps.get("subset_seed"),
            "annealed": len(missing), "annealed_seed": seed if missing else None, "seconds": seconds, "model_checked": gaps["model_checked"],
            "mean": values.mean().item(), "per_example": [round(v, 4) for v in values.tolist()],
            "is": gaps["log_px"]["mean"], "is_eval_k": gaps.get("eval_k"), "elbo_opt": gaps["elbo_opt"]["mean"],
            "is_from_optimum": gaps.get("log_px_from_optimum", {}).get("mean"),
            "approximation_gap": {"mean": gap.mean().item(), "per_example": [round(v, 4) for v in gap.tolist()]}}


def k_curve_run(run_dir: str | Path, eval_ks: list[int], max_test: int, data_dir: str | None = None,
                device: str | None = None) -> dict:
    """log p̂(x) of a run's best model at each K of ``eval_ks`` on its first ``max_test`` test images: how
    far the protocol's K is from convergence. Writes and returns ``RUN_DIR/k_curve.json``: per K the mean
    and per-image values [nats] (seeded like the protocol), and the SHA-256 of the decoder's parameters.
    Two runs with one decoder digest define the same p(x), so their log p̂ differ only by the estimator."""
    config, data, model, dev = load_run(run_dir, max_test=max_test, data_dir=data_dir, device=device)
    started = time.perf_counter()
    curve = []
    for k in eval_ks:
        torch.manual_seed(config.seed)
        ll = log_likelihood(model, data.test, k, config.batch_size, dev)
        curve.append({"eval_k": k, "test_ll": ll.mean().item(), "per_example": [round(v, 4) for v in ll.tolist()]})
    result = {"curve": curve, "n_test": len(data.test), "decoder_sha256": parameter_digest(model.decoder),
              "seconds": time.perf_counter() - started, "model": config.model, "dataset": config.dataset,
              "run_dir": str(run_dir), **provenance(dev)}
    _write_json(Path(run_dir) / "k_curve.json", result)
    return result


def difficulty_run(run_dir: str | Path, reference_dir: str | Path, data_dir: str | None = None,
                   device: str | None = None) -> dict:
    """Does a run's posterior difficulty (the GP's predictive variances) rank the per-image amortization
    gap of ``reference_dir``'s encoder (its ``gaps.json``: ELBO(q*) − ELBO(encoder) on its gap subset)
    better than that reference's own encoder variance and negative ELBO (:data:`GAP_ELBO_SAMPLES` draws)?
    Writes and returns ``RUN_DIR/difficulty.json``: Spearman ρ of every score with the gap, the partial
    ρ of the run's scores given the reference's negative ELBO, and the per-image values."""
    config, data, model, dev = load_run(run_dir, full_test=True, data_dir=data_dir, device=device)
    *_, reference, _ = load_run(reference_dir, full_test=True, data_dir=data_dir, device=device)
    gaps = read_gaps(reference_dir, reference)
    gap = gaps["amortization_gap"]["per_example"]
    indices = torch.tensor(gaps["indices"])
    images = data.test[indices]
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    own = posterior_difficulty(model, images, config.batch_size, dev)
    baseline = difficulty_scores(reference, images, GAP_ELBO_SAMPLES, config.batch_size, dev)
    scores = {**own, **baseline}
    result = {"n": len(gap), "reference": str(reference_dir), "scores_of_reference": sorted(baseline),
              "spearman_with_gap": {k: spearman(v, gap) for k, v in scores.items()},
              "partial_spearman_given_negative_elbo": {k: partial_spearman(v, gap, baseline["negative_elbo"])
                                                       for k, v in own.items()},
              "per_image": {"gap": [round(v, 5) for v in gap], **{k: [float(f"{v:.5g}") for v in values]
                                                                   for k, values in scores.items()}},
              "seconds": time.perf_counter() - started, "model": config.model, "dataset": config.dataset,
              "run_dir": str(run_dir), **provenance(dev)}
    _write_json(Path(run_dir) / "difficulty.json", result)
    return result


def ood_run(run_dir: str | Path, sets: list[str], images: int, subset_seed: int | None, ood_seed: int,
            elbo_samples: int, data_dir: str | None = None, device: str | None = None) -> dict:
    """Do a run's difficulty scores (:func:`gpvae.evaluation.difficulty_scores`: the GP's predictive
    variances where the model has them, the encoder's variance, the negative ELBO from ``elbo_samples``
    draws) flag images of other datasets? ``images`` test images of the run's dataset (the first, or drawn
    with ``subset_seed``) against ``images`` of each of ``sets`` (:func:`gpvae.data.out_of_distribution`,
    seed ``ood_seed``). Writes and returns ``RUN_DIR/ood.json``: per set and score the AUROC of "higher
    means out of distribution" and ROC points."""
    config, data, model, dev = load_run(run_dir, full_test=True, data_dir=data_dir, device=device)
    inside = data.test[_subset(data, images, subset_seed, "ood images")]
    try:
        outside = {name: datasets.out_of_distribution(name, data, images, ood_seed, data_dir) for name in sets}
    except ValueError as err:
        raise ConfigError(f"ood of {run_dir}: {err}") from None
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    scores_in = difficulty_scores(model, inside, elbo_samples, config.batch_size, dev)
    auc, roc = {}, {}
    for name, x in outside.items():
        scores_out = difficulty_scores(model, x, elbo_samples, config.batch_size, dev)
        auc[name] = {k: auroc(scores_in[k], scores_out[k]) for k in scores_in}
        roc[name] = {k: roc_curve(scores_in[k], scores_out[k]) for k in scores_in}
    result = {"n": images, "subset_seed": subset_seed, "sets": list(sets), "ood_seed": ood_seed,
              "elbo_samples": elbo_samples, "auroc": auc, "roc": roc, "seconds": time.perf_counter() - started,
              "model": config.model, "dataset": config.dataset, "run_dir": str(run_dir), **provenance(dev)}
    _write_json(Path(run_dir) / "ood.json", result)
    return result


def ais_run(run_dir: str | Path, settings: AISSettings, subset: int, subset_seed: int | None = None,
            eval_k: int | None = None, data_dir: str | None = None, device: str | None = None,
            certificate: dict | None = None, gap_subset: bool = False) -> dict:
    """log p(x) of a run's decoder by AIS from the prior (:func:`gpvae.evaluation.ais_log_likelihood`) on
    ``subset`` test images (the first, or drawn with ``subset_seed``), beside the protocol's importance-
    sampling estimate with the run's own proposal (K = ``eval_k``, default the run's) on the same images:
    their difference is the estimator gap. With ``gap_subset``, also AIS on the images of the run's
    ``gaps.json`` and the approximation gap by AIS there (:func:`_ais_on_gap_subset`). Writes and returns
    ``RUN_DIR/ais.json`` (per-image values, indices, settings, acceptance, seconds, decoder digest,
    provenance, the ``certificate`` that fixed T when given, and ``gap_subset``)."""
    config, data, model, dev = load_run(run_dir, full_test=True, eval_k=eval_k, data_dir=data_dir, device=device)
    gaps = read_gaps(run_dir, model) if gap_subset else None
    indices = _subset(data, subset, subset_seed, "--ais-subset")
    images = data.test[indices]
    annealed = ais_log_likelihood(model, images, settings, config.batch_size, dev, config.seed)
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    sampled = log_likelihood(model, images, config.eval_k, config.batch_size, dev)
    is_seconds = time.perf_counter() - started
    ais_values = annealed.pop("per_example")
    annealed.pop("schedules", None)  # a pilot's step sizes per transition: T values per batch, not recorded
    result = {"n": len(indices), "indices": indices.tolist(), "subset_seed": subset_seed, **annealed,
              "per_example": [round(v, 4) for v in ais_values.tolist()],
              "is": {"eval_k": config.eval_k, "mean": sampled.mean().item(), "seconds": is_seconds,
                     "per_example": [round(v, 4) for v in sampled.tolist()]},
              "estimator_gap": (ais_values - sampled.double()).mean().item(),
              "decoder_sha256": parameter_digest(model.decoder), "model": config.model, "dataset": config.dataset,
              "run_dir": str(run_dir), **provenance(dev), **({"certificate": certificate} if certificate else {})}
    if gaps is not None:
        result["gap_subset"] = _ais_on_gap_subset(model, data, gaps, indices, ais_values, settings, config, dev)
        _require_finite(result["gap_subset"], f"AIS on the gap subset of {run_dir}")
    _require_finite(result, f"AIS of {run_dir}")
    _write_json(Path(run_dir) / "ais.json", result)
    return result


def bdmc_run(run_dir: str | Path, settings: list[AISSettings], images: int = 100,
             data_dir: str | None = None, device: str | None = None) -> dict:
    """The BDMC certificate of a run's decoder: for each AIS setting (T, L) of ``settings``
    (:func:`gpvae.ais.settings_grid`), forward and reverse AIS (:func:`gpvae.evaluation.bdmc`) on ``images``
    images simulated from the model (seeded with the run's seed); the protocol's setting is the one of fewest
    decoder passes whose mean sandwich width is at most the threshold the caller states
    (:func:`gpvae.workflow.certified_setting`). Writes and returns ``RUN_DIR/bdmc.json``."""
    config, _, model, dev = load_run(run_dir, data_dir=data_dir, device=device)
    sandwich = []
    for setting in settings:
        one = bdmc(model, images, setting, config.batch_size, dev, config.seed)
        lower, upper = one.pop("lower"), one.pop("upper")
        sandwich.append({**one, "decoder_passes": setting.decoder_passes,
                         "per_example": {"lower": [round(v, 4) for v in lower.tolist()],
                                         "upper": [round(v, 4) for v in upper.tolist()]}})
    result = {"images": images, "sandwich": sandwich, "decoder_sha256": parameter_digest(model.decoder),
              "model": config.model, "dataset": config.dataset, "run_dir": str(run_dir), **provenance(dev)}
    _require_finite({f"width_T{s['settings']['steps']}_L{s['settings']['leapfrog']}": s["width"] for s in sandwich},
                    f"BDMC of {run_dir}")
    _write_json(Path(run_dir) / "bdmc.json", result)
    return result


def evaluate_run(run_dir: str | Path, eval_k: int | None = None, max_test: int | None = None,
                 data_dir: str | None = None, device: str | None = None, per_example: bool = False) -> dict:
    """Re-evaluate a run's best model; writes and returns ``RUN_DIR/evaluation_K{K}_N{N}.json``. With
    ``per_example``, also writes ``per_example_K{K}_N{N}.json``: per test image the log-likelihood,
    the ELBO and, for models that define it (GP-RF), the posterior difficulty."""
    config, data, model, dev = load_run(run_dir, eval_k=eval_k, max_test=max_test, data_dir=data_dir, device=device)
    result = evaluate(model, data.test, config.eval_k, config.batch_size, dev, data.likelihood, config.seed)
    values = result.pop("per_example")
    result.update(model=config.model, dataset=config.dataset, run_dir=str(run_dir), model_summary=model.summary(),
                  **provenance(dev))
    stem = f"K{config.eval_k}_N{result['n_test']}"
    _write_json(Path(run_dir) / f"evaluation_{stem}.json", result)
    if per_example:
        if hasattr(model, "difficulty"):
            values.update(posterior_difficulty(model, data.test, config.batch_size, dev))
        _write_json(Path(run_dir) / f"per_example_{stem}.json", values)
    return result
