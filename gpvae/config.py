"""One set of option names for the CLI, the papermill parameters and the Python API.

:class:`TrainConfig` is the single source: each field is a ``--kebab-case`` CLI option, a
papermill parameter of the training chapter and a keyword of :func:`gpvae.training.train`.
"""
from __future__ import annotations

import os
from dataclasses import MISSING, asdict, dataclass, fields

from .data import DATASETS
from .gp.options import PRESETS, GPRFOptions
from .models import MODELS
from .models.savae import SVI_LR, SVI_MOMENTUM, SVI_STEPS
from .models.flows import HOUSEHOLDER_STEPS, IAF_STEPS, IAF_WIDTH
from .models.rme import MIXTURE_COMPONENTS, SCHEDULES
from .models.vlae import LAPLACE_ITERATIONS
from .networks import NETWORKS
from .options import ConfigError, validate
from .options import option as _opt
from .protocol import EVAL_K

DEVICES = ("auto", "cpu", "cuda")
FREEZE = ("none", "encoder", "decoder", "both")
LR_SCHEDULES = ("constant", "plateau")


@dataclass
class TrainConfig(GPRFOptions):
    """Everything that determines a training run (and so its metrics). GP-RF's switches are declared
    with the model (:class:`gpvae.gp.options.GPRFOptions`) and inherited here."""

    model: str = _opt("vae", "inference model", choices=tuple(MODELS))
    dataset: str = _opt("mnist", "dataset", choices=DATASETS)
    network: str = _opt("auto", "encoder/decoder pair; auto = mlp for binary 28x28 data, conv otherwise",
                        choices=("auto",) + NETWORKS)
    latent_dim: int = _opt(50, "latent dimension d", minimum=1)
    epochs: int = _opt(10, "training epochs (total, including resumed ones)", minimum=0)
    batch_size: int = _opt(100, "minibatch size for training and evaluation", minimum=1)
    lr: float = _opt(1e-3, "Adam learning rate", minimum=0.0)
    patience: int | None = _opt(None, "early stopping: stop once the validation ELBO has not improved for this many "
                                "epochs (None: train all --epochs, which is then the cap)", minimum=1)
    lr_schedule: str = _opt("constant", "learning rate: constant, or plateau (multiplied by --lr-factor once the "
                            "validation ELBO has not improved for --lr-patience epochs, down to --min-lr)",
                            choices=LR_SCHEDULES)
    lr_patience: int = _opt(10, "plateau schedule: epochs without a better validation ELBO before the rate drops",
                            minimum=1)
    lr_factor: float = _opt(0.5, "plateau schedule: factor applied to the learning rate at each drop", minimum=0.0)
    min_lr: float = _opt(1e-5, "plateau schedule: the learning rate never drops below this", minimum=0.0)
    iwae_k: int = _opt(5, "importance samples in the IWAE training bound (model iwae)", minimum=1)
    svi_steps: int = _opt(SVI_STEPS, "SA-VAE: SVI steps T from the encoder's output (training and test)", minimum=0)
    svi_lr: float = _opt(SVI_LR, "SA-VAE: SVI step size", minimum=0.0)
    svi_momentum: float = _opt(SVI_MOMENTUM, "SA-VAE: SVI momentum", minimum=0.0)
    svi_max_grad_norm: float | None = _opt(None, "SA-VAE: clip each image's SVI gradient (of the mean, and of the "
                                           "log-variance) to this Euclidean norm before a step, as SA-VAE's code does "
                                           "(None: no clipping)", minimum=0.0)
    householder_steps: int = _opt(HOUSEHOLDER_STEPS, "HF: Householder reflections T", minimum=1)
    iaf_steps: int = _opt(IAF_STEPS, "IAF: autoregressive flow steps", minimum=1)
    iaf_width: int = _opt(IAF_WIDTH, "IAF: hidden units of each MADE step (and of the encoder's context)", minimum=1)
    laplace_iterations: int = _opt(LAPLACE_ITERATIONS, "VLAE: posterior-mode updates before the Laplace Gaussian",
                                   minimum=0)
    mixture_components: int = _opt(MIXTURE_COMPONENTS, "RME: mixture components", minimum=1)
    mixture_schedule: str = _opt("recursive", "RME: fit every component to its partial mixture at every step, "
                                 "or grow one component per training stage", choices=SCHEDULES)
    init_from: str | None = _opt(None, "warm start encoder and decoder from this trained run folder")
    freeze: str = _opt("none", "parts of the warm-started networks kept fixed during training (needs init_from)",
                       choices=FREEZE)
    gp_preset: str = _opt("none", "named GP-RF configuration; its values replace the GP-RF options left at their "
                          "defaults, an option given another value wins (on the command line, one given at its "
                          "default where the preset differs is refused) (paper: the paper's wording read literally, "
                          "reading R1)",
                          choices=("none", *PRESETS))
    seed: int = _opt(0, "seed of parameters, minibatch order, binarization and sampling", minimum=0)
    device: str = _opt("auto", "auto = cuda when available", choices=DEVICES)
    data_dir: str | None = _opt(None, "dataset folder (default: $GPVAE_DATA_DIR or ~/.cache/gpvae/data)")
    download: bool = _opt(False, "let torchvision download missing data")
    out: str | None = _opt(None, "run folder (default: runs/MODEL_DATASET_seedSEED)")
    max_train: int | None = _opt(None, "use only the first N training images", minimum=1)
    max_test: int | None = _opt(None, "evaluate only the first N test images", minimum=1)
    eval_k: int = _opt(EVAL_K, "importance samples K of the test log-likelihood", minimum=1)
    resume: bool = _opt(False, "continue the run in --out from its last checkpoint")

    def __post_init__(self):
        validate(self)
        if self.gp_preset != "none":
            defaults = GPRFOptions()
            for name, value in PRESETS[self.gp_preset].items():
                if getattr(self, name) == getattr(defaults, name):
                    setattr(self, name, value)
        if self.error_model == "knn" and self.error_images is not None and self.error_neighbours > self.error_images:
            raise ConfigError(f"error_neighbours = {self.error_neighbours} exceeds error_images = {self.error_images}: "
                              "the nearest-neighbour control averages at most the observed errors")
        if self.freeze != "none" and not self.init_from:
            raise ConfigError(f"freeze = {self.freeze!r} needs init_from (a trained run to keep parts of)")
        if not 0.0 < self.lr_factor < 1.0:
            raise ConfigError(f"lr_factor = {self.lr_factor!r} must lie strictly between 0 and 1")
        if self.svi_max_grad_norm is not None and self.svi_max_grad_norm <= 0:
            raise ConfigError(f"svi_max_grad_norm = {self.svi_max_grad_norm!r} must be positive (or None: no clipping)")
        if self.variational == "natural" and self.gp_fit != "elbo":
            raise ConfigError("variational = 'natural' concerns gp_fit = 'elbo' only")
        defaults = {f.name: f.default for f in fields(self)}
        changed = [k for k in ("objective", "iw_k") if getattr(self, k) != defaults[k]]
        if self.model == "gp" and self.gp_fit != "elbo" and changed:
            raise ConfigError(f"{', '.join(f'{k} = {getattr(self, k)!r}' for k in changed)}: concern gp_fit = 'elbo' "
                              "only (gp_fit 'errors' is fitted to observed errors, not trained in a bound)")
        if "iw_k" in changed and not self.objective.startswith("iw"):
            raise ConfigError(f"iw_k = {self.iw_k} concerns objective 'iw' or 'iw_expected' only, not {self.objective!r}")

    @property
    def run_dir(self) -> str:
        return self.out or f"runs/{self.model}_{self.dataset}_seed{self.seed}"

    def to_dict(self) -> dict:
        return asdict(self)


def option_specs():
    """(name, default, type, help, choices, minimum) of every :class:`TrainConfig` field, for the CLI."""
    for f in fields(TrainConfig):
        default = f.default if f.default is not MISSING else None
        yield f.name, default, f.type, f.metadata["help"], f.metadata["choices"], f.metadata["minimum"]


def chapter_parameters(chapter: str) -> set[str]:
    """The names assigned in the cell tagged ``parameters`` of ``book/<chapter>.ipynb``."""
    import ast
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "book" / f"{chapter}.ipynb"
    cells = [c for c in json.loads(path.read_text())["cells"] if "parameters" in c["metadata"].get("tags", [])]
    return {t.id for cell in cells for s in ast.parse("".join(cell["source"])).body if isinstance(s, ast.Assign)
            for t in s.targets if isinstance(t, ast.Name)}


def chapter_scale(namespace: dict, smoke: dict, full: dict) -> str:
    """A chapter's scale: ``smoke`` with ``GPVAE_SMOKE=1`` (the book build and CI), else ``full`` (the
    same names); each of its names that is ``None`` in ``namespace`` (the chapter's ``globals()``, after
    its parameters) takes that scale's value, a value given by papermill stays. Returns the scale's name."""
    if set(smoke) != set(full):
        raise ValueError(f"the two scales name different values: {sorted(set(smoke) ^ set(full))}")
    scale = "smoke" if os.environ.get("GPVAE_SMOKE", "0") == "1" else "full"
    for name, value in (smoke if scale == "smoke" else full).items():
        if namespace.get(name) is None:
            namespace[name] = value
    return scale


def check_chapter_parameters(namespace: dict, chapter: str) -> None:
    """Refuse names that papermill injected into ``book/<chapter>.ipynb`` but its parameters cell does not
    declare (a misspelled ``-p epoch 1`` would otherwise only warn and leave the default in force). Call it
    first thing after the parameters, with the chapter's ``globals()``: then every other public,
    non-callable name in it is an injected one."""
    declared = chapter_parameters(chapter)
    unknown = sorted(name for name in namespace if name not in declared and not name.startswith("_")
                     and name not in ("In", "Out") and not callable(namespace[name]))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown}; the parameters of {chapter} are {', '.join(sorted(declared))}")
