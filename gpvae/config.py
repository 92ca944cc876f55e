"""One set of option names for the CLI, the papermill parameters and the Python API.

:class:`TrainConfig` is composed of the trainer's options (:class:`TrainerOptions`) and every model's
option group, declared next to its model (:class:`~gpvae.gp.options.GPRFOptions`,
:class:`~gpvae.models.savae.SAVAEOptions`, ...). Each field is a ``--kebab-case`` CLI option, a
papermill parameter of the training chapter and a keyword of :func:`gpvae.training.train`.
"""
from __future__ import annotations

import os
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

from .data import DATASETS
from .gp.options import GPRFOptions
from .models import MODELS
from .models.flows import HFOptions, IAFOptions
from .models.rme import RMEOptions
from .models.savae import SAVAEOptions
from .models.vae import IWAEOptions
from .models.vlae import VLAEOptions
from .networks import NETWORKS
from .options import ConfigError, OptionGroup, validate
from .options import option as _opt
from .protocol import EVAL_K
from .layout import BOOK_RUNS, REPOSITORY

DEVICES = ("auto", "cpu", "cuda")
FREEZE = ("none", "encoder", "decoder", "both")
LR_SCHEDULES = ("constant", "plateau", "burda")


@dataclass
class TrainerOptions(OptionGroup):
    """What is trained on which data, and how: the options every model shares."""

    title = "run and trainer"
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
    lr_schedule: str = _opt("constant", "learning rate: constant, plateau (multiplied by --lr-factor once the "
                            "validation ELBO has not improved for --lr-patience epochs, down to --min-lr), or burda "
                            "(Burda et al. 2016: --lr x 10^(-i/7) over 3^i epochs in stage i = 0..7, 3,280 in all)",
                            choices=LR_SCHEDULES)
    lr_patience: int = _opt(10, "plateau schedule: epochs without a better validation ELBO before the rate drops",
                            minimum=1)
    lr_factor: float = _opt(0.5, "plateau schedule: factor applied to the learning rate at each drop", minimum=0.0)
    min_lr: float = _opt(1e-5, "plateau schedule: the learning rate never drops below this", minimum=0.0)
    init_from: str | None = _opt(None, "warm start encoder and decoder from this trained run folder")
    freeze: str = _opt("none", "parts of the warm-started networks kept fixed during training (needs init_from)",
                       choices=FREEZE)
    seed: int = _opt(0, "seed of parameters, minibatch order, binarization and sampling", minimum=0)
    device: str = _opt("auto", "auto = cuda when available", choices=DEVICES)
    data_dir: str | None = _opt(None, "dataset folder (default: $GPVAE_DATA_DIR or ~/.cache/gpvae/data)")
    download: bool = _opt(False, "let torchvision download missing data")
    out: str | None = _opt(None, "run folder (default: runs/MODEL_DATASET_seedSEED)")
    max_train: int | None = _opt(None, "use only the first N training images", minimum=1)
    max_test: int | None = _opt(None, "evaluate only N test images: the first N, or drawn with --subset-seed",
                                minimum=1)
    subset_seed: int | None = _opt(None, "draw the --max-test test images at random with this seed (default: the "
                                   "first N)", minimum=0)
    eval_k: int = _opt(EVAL_K, "importance samples K of the test log-likelihood", minimum=1)
    resume: bool = _opt(False, "continue the run in --out from its last checkpoint")

    def check(self) -> None:
        if self.freeze != "none" and not self.init_from:
            raise ConfigError(f"freeze = {self.freeze!r} needs init_from (a trained run to keep parts of)")
        if not 0.0 < self.lr_factor < 1.0:
            raise ConfigError(f"lr_factor = {self.lr_factor!r} must lie strictly between 0 and 1")
        if self.subset_seed is not None and self.max_test is None:
            raise ConfigError(f"subset_seed = {self.subset_seed} draws the max_test test images; without max_test "
                              "every test image is evaluated (give max_test, or leave subset_seed out)")


# The option groups of a run, in the order ``train --help`` lists them: the trainer's, then each model's.
OPTION_GROUPS = (TrainerOptions, IWAEOptions, SAVAEOptions, HFOptions, IAFOptions, VLAEOptions, RMEOptions, GPRFOptions)


@dataclass
class TrainConfig(*reversed(OPTION_GROUPS)):  # a dataclass lists the fields of its last base first
    """Everything that determines a training run (and so its metrics): the trainer's options and every
    model's, one flat namespace. The trainer's group and the trained model's are checked
    (:meth:`OptionGroup.check`); the model reads its own (``Options.values``); the other models' options are
    carried but unused."""

    title = ""

    def __post_init__(self):
        validate(self)
        self.check()

    def check(self) -> None:
        TrainerOptions.check(self)
        MODELS[self.model].Options.check(self)

    @property
    def run_dir(self) -> str:
        return self.out or f"runs/{self.model}_{self.dataset}_seed{self.seed}"

    def to_dict(self) -> dict:
        return asdict(self)


def option_specs():
    """(group title, name, default, type, help, choices, minimum) of every :class:`TrainConfig` field, group
    by group in :data:`OPTION_GROUPS` order, for the CLI."""
    for group in OPTION_GROUPS:
        for f in fields(group):
            default = f.default if f.default is not MISSING else None
            yield group.title, f.name, default, f.type, f.metadata["help"], f.metadata["choices"], f.metadata["minimum"]


def chapter_parameters(chapter: str) -> set[str]:
    """The names assigned in the cell tagged ``parameters`` of ``book/<chapter>.ipynb``."""
    import ast
    import json

    path = REPOSITORY / "book" / f"{chapter}.ipynb"
    cells = [c for c in json.loads(path.read_text())["cells"] if "parameters" in c["metadata"].get("tags", [])]
    return {t.id for cell in cells for s in ast.parse("".join(cell["source"])).body if isinstance(s, ast.Assign)
            for t in s.targets if isinstance(t, ast.Name)}


def chapter_runs(runs_dir: str | None) -> Path:
    """The folder a chapter trains its runs in: its ``runs_dir`` parameter, or ``<repository>/runs/book``."""
    return Path(runs_dir) if runs_dir else BOOK_RUNS


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
