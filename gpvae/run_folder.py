"""A run folder (``--out``): its checkpoint, written atomically, and the model it holds, built for its
data with every assumption about a warm-start source checked."""
from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import torch

from . import data as datasets
from . import external
from .config import ConfigError, TrainConfig
from .io import RunFolderError, atomic_write, check_writable, read_json, write_json
from .models import LatentVariableModel, build_model
from .models.data_fit import FitsToData
from .provenance import resolve_device
from .layout import CHECKPOINT

INIT_IMAGES = 1000  # training images shown to data-dependent initializations (more if the model asks)
# Options a warm-start source must share with the run it starts: the data its networks saw (the dataset fixes
# the binarization and the likelihood) and the latent space; the networks' shapes are checked as they load.
WARM_START_AGREES_ON = ("dataset", "latent_dim")


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """``torch.save(state)`` to ``path``, atomically."""
    return atomic_write(path, lambda partial: torch.save(state, partial))


def fit_to_data(model: LatentVariableModel, images: torch.Tensor, config: TrainConfig, epochs_done: int,
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


def prepare(config: TrainConfig, fresh: bool = True) -> tuple[datasets.ImageData, LatentVariableModel, torch.device]:
    """Data (limited as the config says), a seeded model on its device, and the device. A ``fresh``
    model is also warm-started (``init_from``) and initialized from the first training images."""
    device = resolve_device(config.device)
    data = datasets.load(config.dataset, config.data_dir, config.download).limit(config.max_train, config.max_test,
                                                                                  config.subset_seed)
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
            _warm_start(model, config)
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
    if isinstance(model, FitsToData):
        model.check_data(data, f"{config.dataset}{limited}")
    if config.max_test is not None and config.max_test > len(data.test):
        raise ConfigError(f"--max-test {config.max_test} exceeds the {len(data.test)} test images of {config.dataset}")


def _freeze(model: LatentVariableModel, parts: str) -> None:
    """Reading R3: keep the warm-started ``encoder``, ``decoder`` or ``both`` fixed (no gradient)."""
    for part in {"none": (), "encoder": ("encoder",), "decoder": ("decoder",), "both": ("encoder", "decoder")}[parts]:
        for p in getattr(model, part).parameters():
            p.requires_grad_(False)


def require_agreement(source: dict, config: TrainConfig, keys: tuple[str, ...], what: str) -> None:
    """Refuse a source run (its saved options ``source``) that differs from ``config`` in any of ``keys``
    (an option newer than the source counts as its default), naming each difference."""
    defaults = TrainConfig().to_dict()
    differ = [f"{key} {source.get(key, defaults[key])!r} (this run: {getattr(config, key)!r})"
              for key in keys if source.get(key, defaults[key]) != getattr(config, key)]
    if differ:
        raise RunFolderError(f"{what}: it was trained with " + ", ".join(differ))


def _warm_start(model: LatentVariableModel, config: TrainConfig) -> None:
    """Copy the encoder and decoder of ``config.init_from``'s best parameters into ``model``, refusing a
    source that differs in any of :data:`WARM_START_AGREES_ON` or in its networks' shapes."""
    run_dir = config.init_from
    saved = load_checkpoint(run_dir)
    require_agreement(saved["config"], config, WARM_START_AGREES_ON, f"cannot warm start from {run_dir}")
    best = saved["best_model"]
    try:
        for part in ("encoder", "decoder"):
            prefix = part + "."
            getattr(model, part).load_state_dict({k[len(prefix):]: v for k, v in best.items() if k.startswith(prefix)})
    except (RuntimeError, AttributeError) as err:
        raise RunFolderError(f"cannot warm start from {run_dir}: its networks differ ({err})") from None


def make_external_run(run_dir: str | Path, spec: str, dataset: str, data_dir: str | None = None,
                      device: str = "auto", seed: int = 0, eval_k: int | None = None, download: bool = False) -> Path:
    """Make ``run_dir`` an external run folder for the user's model that ``spec`` (``FILE.py:FUNCTION``)
    builds (:mod:`gpvae.external`), after building and checking it on ``dataset``'s data: ``external.json``
    holds what :func:`load_run` needs. Refused before anything is written when the folder holds a gpvae run."""
    folder = check_writable(run_dir, "run folder", folder=True)
    if (folder / CHECKPOINT).exists():
        raise RunFolderError(f"{folder} holds a gpvae run (its {CHECKPOINT}); choose another folder for --external")
    options = {"spec": external.spec_source(spec), "dataset": dataset, "data_dir": data_dir, "device": device,
               "seed": seed, "download": download, **({"eval_k": eval_k} if eval_k else {})}
    load_external(options, folder)  # builds and checks the model: nothing is written for a model refused
    write_json(folder / external.EXTERNAL, options)
    return folder


def load_external(options: dict, run_dir: str | Path, full_test: bool = True,
                  **overrides) -> tuple[TrainConfig, datasets.ImageData, LatentVariableModel, torch.device]:
    """The config, data, model and device of an external run folder's ``options`` (its ``external.json``)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    device = resolve_device(given.get("device", options["device"]))
    data = datasets.load(options["dataset"], given.get("data_dir", options["data_dir"]), options["download"])
    model, data = external.build(options["spec"], data)
    model = model.to(device).eval()
    external.check(model, data.test, device)
    max_test = given.get("max_test")
    if not full_test and max_test is not None and max_test > len(data.test):
        raise ConfigError(f"--max-test {max_test} exceeds the {len(data.test)} test images of {options['dataset']}")
    config = TrainConfig(model="vae", dataset=options["dataset"], latent_dim=model.latent_dim, seed=options["seed"],
                         device=str(device), data_dir=given.get("data_dir", options["data_dir"]), out=str(run_dir),
                         eval_k=given.get("eval_k", options.get("eval_k", TrainConfig().eval_k)),
                         max_test=None if full_test else max_test,
                         subset_seed=None if full_test or max_test is None else given.get("subset_seed"))
    return config, data.limit(None, config.max_test, config.subset_seed), model, device


def load_run(run_dir: str | Path, full_test: bool = False,
             **overrides) -> tuple[TrainConfig, datasets.ImageData, LatentVariableModel, torch.device]:
    """The config (with the ``overrides`` that are not None), data and best-validation model of a run
    folder; with ``full_test`` the whole test set, whatever ``max_test`` the run was evaluated on. An
    external run folder (:func:`make_external_run`) gives the user's model, built and checked again."""
    if (Path(run_dir) / external.EXTERNAL).exists():
        return load_external(read_json(Path(run_dir) / external.EXTERNAL, "make it again with --external"), run_dir, full_test,
                             **overrides)
    saved = load_checkpoint(run_dir)
    if saved["epoch"] and not math.isfinite(saved["best_valid_elbo"]):
        raise RunFolderError(f"{run_dir}: no epoch of its {saved['epoch']} has a finite validation ELBO, so it holds "
                             "no trained parameters to evaluate (the run diverged; retrain it with a lower --lr)")
    config = TrainConfig(**{**saved["config"], **{k: v for k, v in overrides.items() if v is not None}})
    if full_test:
        config = replace(config, max_test=None, subset_seed=None)
    data, model, device = prepare(config, fresh=False)
    try:
        model.load_state_dict(saved["best_model"])
    except RuntimeError as err:
        raise RunFolderError(f"{run_dir}: its parameters do not fit the model its options build (--model "
                             f"{config.model}, --dataset {config.dataset}): {str(err)[:200]}") from None
    return config, data, model, device
