"""A grid of runs of record (``workflow/config/<profile>.yaml``), checked when it is made.

A grid names datasets, seeds, a budget and runs; each run is a model with options named like
:class:`gpvae.config.TrainConfig`'s fields, plus ``warm_start`` (another run of the same dataset and seed
whose trained networks it starts from), ``control_for`` (the runs whose schedule a control repeats with
another objective) and ``seeds`` (of the grid's). Optional *measurements* of finished runs, per dataset and
seed (a dataset may override their settings; keys in :data:`~gpvae.runs.schema.MEASUREMENT_KEYS`):
``k_curve`` (log p̂(x) at several K), ``difficulty`` (posterior-difficulty scores against the per-image
amortization gap of a reference run on its gap subset; ``difficulty_large`` on a draw of its own), ``bdmc`` and ``ais`` (log p(x) by AIS, certified), ``frontier``
(R4's accuracy-cost frontier), ``ood`` (difficulty scores against other datasets) and ``proposal_control``
(the encoder's Gaussian widened and mixed with the prior: the control of an importance-sampling gain); their
runners are in :mod:`gpvae.measurements`.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml

from ..ais import settings_grid
from ..config import ConfigError, TrainConfig
from ..layout import DIFFICULTY_GAPS, GAPS, GRID_FILES, METRICS, RESULTS, Layout, measurement_file
from .schema import (DATASET_ONLY_KEYS, DIFFICULTY_SCORES, EVALUATION_KEYS, EVALUATION_OPTIONAL_KEYS,
                     GRID_KEYS, MEASUREMENT_KEYS, MEASUREMENT_OPTIONAL_KEYS, POSITIVE_MEASUREMENT_KEYS, RUN_ONLY_KEYS,
                     recorded_settings)

CHAPTER = "book/training.ipynb"  # the chapter every training of record executes (papermill)


def _is_integer(value) -> bool:
    """An int of YAML's, not a bool (YAML's true is an int to Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def measured_runs(spec: dict) -> list[str]:
    """Every run a measurement reads: its ``runs`` (each writes ``RUN_DIR/<name>.json``), its ``reference``
    (difficulty) and its ``certificate`` (ais: the run whose ``bdmc.json`` fixes T)."""
    return [*spec["runs"], *[spec[key] for key in ("reference", "certificate") if key in spec]]


def bdmc_settings(spec: dict) -> list:
    """The AIS settings (T, L) a ``bdmc`` measurement certifies: every T of ``steps`` with the one L of
    ``leapfrog``, or with the L at the same place of a ``leapfrog`` list (:func:`gpvae.ais.settings_grid`)."""
    return settings_grid(spec["steps"], spec["leapfrog"], chains=spec["chains"])


class Grid:
    """A checked grid: typed accessors for its keys, its cells, measurements and chapter parameters.
    ``Grid(spec)`` checks ``spec`` (a dict as the YAML file holds it) and raises :class:`ConfigError`
    naming the first problem; :meth:`load` reads a file."""

    def __init__(self, spec: dict, source: str = "grid"):
        self.spec = copy.deepcopy(spec)
        self.source = source
        self._check()

    @classmethod
    def load(cls, path: str | Path) -> Grid:
        """Read and check a grid file. Its relative ``runs_dir`` and ``results_dir`` are the repository's
        (the folder above the grid file that holds ``workflow/Snakefile``), so that a chapter or script run
        from elsewhere reads the same records."""
        path = Path(path)
        spec = yaml.safe_load(path.read_text())
        root = next((folder for folder in path.resolve().parents if (folder / "workflow" / "Snakefile").exists()), None)
        for key in ("runs_dir", "results_dir"):
            if root is not None and isinstance(spec, dict) and key in spec and not Path(spec[key]).is_absolute():
                spec[key] = str(root / spec[key])
        return cls(spec, str(path))

    @classmethod
    def of(cls, profile: str, results_root: str | Path | None = None) -> Grid:
        """The grid of record ``workflow/config/<profile>.yaml``. Given ``results_root`` (a folder laid out as
        the repository's ``results/``, e.g. a copy elsewhere), its records are read from the place its
        ``results_dir`` names under ``results/``, moved to ``results_root``."""
        path = GRID_FILES / f"{profile}.yaml"
        if not path.exists():
            raise ConfigError(f"no grid of record named {profile!r}: choose one of "
                              f"{', '.join(sorted(p.stem for p in GRID_FILES.glob('*.yaml')))}")
        grid = cls.load(path)
        if results_root is None:
            return grid
        if not grid.layout.results_dir.is_relative_to(RESULTS):
            raise ConfigError(f"{path}: results_dir {grid.layout.results_dir} is not under {RESULTS}: it cannot move")
        return grid.replace(results_dir=str(Path(results_root) / grid.layout.results_dir.relative_to(RESULTS)))

    @classmethod
    def from_argument(cls, text: str) -> Grid:
        """A grid given on the command line: a YAML file's path, or the grid itself as JSON (the Snakefile's)."""
        return cls(json.loads(text)) if text.lstrip().startswith("{") else cls.load(text)

    def replace(self, **changes) -> Grid:
        """A new checked grid with top-level keys replaced (e.g. ``results_dir``)."""
        return Grid({**self.spec, **changes}, self.source)

    def to_json(self) -> str:
        return json.dumps(self.spec)

    # ---- typed keys -------------------------------------------------------------------------------
    @property
    def profile(self) -> str:
        return self.spec["profile"]

    @property
    def budget(self) -> str:
        return self.spec["budget"]

    @property
    def device(self) -> str:
        return self.spec["device"]

    @property
    def threads_per_job(self) -> int:
        return self.spec["threads_per_job"]

    @property
    def gpus_per_job(self) -> int:
        return self.spec.get("gpus_per_job", 0)

    @property
    def seeds(self) -> list[int]:
        return self.spec["seeds"]

    @property
    def runs(self) -> dict[str, dict]:
        """Run name -> its spec (``model``, options, ``warm_start``, ``control_for``, ``note``, ``seeds``)."""
        return self.spec["runs"]

    @property
    def datasets(self) -> dict[str, dict]:
        """Dataset name -> its spec (options, ``skip``, ``seeds``, ``evaluation``, ``overrides``, measurements)."""
        return {name: spec or {} for name, spec in self.spec["datasets"].items()}

    @property
    def commit_weights(self) -> bool:
        """Whether a finished run's weights are committed (and unfinished runs parked)."""
        return bool(self.spec.get("commit_weights"))

    @property
    def bench_repeats(self) -> int:
        return self.spec["bench"]["repeats"]

    @property
    def layout(self) -> Layout:
        return Layout(Path(self.spec["runs_dir"]), Path(self.spec["results_dir"]))

    @property
    def command(self) -> str:
        """The command that runs this grid's workflow."""
        return f"snakemake --profile workflow/profiles/{self.profile}"

    # ---- cells ------------------------------------------------------------------------------------
    def seed_allowed(self, dataset: str, run: str, seed: int) -> bool:
        """Whether a run may have ``seed`` on a dataset: the dataset does not ``skip`` it, and neither the
        run's own ``seeds`` nor the dataset's leave the seed out."""
        data_spec = self.datasets[dataset]
        limits = [spec.get("seeds") for spec in (self.runs[run], data_spec)]
        return run not in data_spec.get("skip", []) and all(own is None or seed in own for own in limits)

    def run_seeds(self, dataset: str, run: str) -> list[int]:
        """The grid's seeds that a run has on a dataset (:meth:`seed_allowed`)."""
        return [seed for seed in self.seeds if self.seed_allowed(dataset, run, seed)]

    def cells(self) -> list[tuple[str, str, int]]:
        """Every (dataset, run, seed) of the grid, each run with :meth:`run_seeds`."""
        return [(dataset, run, seed) for dataset in self.datasets for run in self.runs
                for seed in self.run_seeds(dataset, run)]

    def controls(self) -> dict[str, list[str]]:
        """The grid's control runs, each with the runs it controls for: not models of the comparison."""
        return {run: spec["control_for"] for run, spec in self.runs.items() if spec.get("control_for")}

    def side_runs(self) -> list[str]:
        """Runs with ``compared: false``: measured beside the models (e.g. a budget-sensitivity point on a
        declared seed), never compared with GP-RF by a claim, so free of the claims' seed rule."""
        return [run for run, spec in self.runs.items() if spec.get("compared") is False]

    # ---- evaluation and measurements --------------------------------------------------------------
    def evaluation(self, dataset: str) -> dict:
        """The grid's evaluation settings with the dataset's own ``evaluation`` overrides."""
        return {**self.spec["evaluation"], **self.datasets[dataset].get("evaluation", {})}

    def subset_seed_option(self, dataset: str) -> str:
        """``--subset-seed S`` when the evaluation draws its gap subset at random, else nothing (the first
        ``gap_subset`` test images)."""
        seed = self.evaluation(dataset).get("subset_seed")
        return f"--subset-seed {seed}" if seed is not None else ""

    def measurement(self, name: str, dataset: str) -> dict | None:
        """Measurement ``name`` with the dataset's own overrides and without the runs the dataset skips,
        or None when the grid has none."""
        if self.spec.get(name) is None:
            return None
        data_spec = self.datasets[dataset]
        spec = {**self.spec[name], **data_spec.get(name, {})}
        return {**spec, "runs": [run for run in spec.get("runs", []) if run not in data_spec.get("skip", [])]}

    def measurement_settings(self, name: str, dataset: str) -> dict | None:
        """What a value of measurement ``name`` on ``dataset`` depends on: its spec without the runs and
        seeds it covers (adding a run does not change the others' values)."""
        spec = self.measurement(name, dataset)
        return None if spec is None else recorded_settings({name: spec}, name)

    def run_measurement_cells(self, name: str) -> list[tuple[str, str, int]]:
        """The (dataset, run, seed) cells a measurement measures: its runs' cells, at the measurement's own
        ``seeds`` when it names them, with its ``certificate`` or ``reference`` run present at the same seed."""
        present = self.cells()
        result = []
        for dataset in self.datasets:
            spec = self.measurement(name, dataset)
            if not spec:
                continue
            others = [spec[k] for k in ("reference", "certificate") if k in spec]
            result += [(dataset, run, seed) for run in spec["runs"]
                       for seed in sorted(s for d, r, s in present if (d, r) == (dataset, run))
                       if seed in spec.get("seeds", [seed]) and all((dataset, o, seed) in present for o in others)]
        return result

    def measurement_cells(self, name: str) -> list[tuple[str, int]]:
        """The (dataset, seed) pairs of a grouped measurement with at least one of its runs measured."""
        pairs = {(dataset, seed) for dataset, _, seed in self.run_measurement_cells(name)}
        return [(dataset, seed) for dataset in self.datasets for seed in sorted(s for d, s in pairs if d == dataset)]

    def measured_at(self, name: str, dataset: str, seed: int) -> list[str]:
        """The runs of a grouped measurement at a dataset and seed."""
        return [run for d, run, s in self.run_measurement_cells(name) if (d, s) == (dataset, seed)]

    def measured_from(self, name: str, dataset: str, run: str, seed: int) -> list[Path]:
        """The files the Snakefile's rule for measurement ``name`` of one run reads: run-folder files and
        the measurement's settings file."""
        layout = self.layout
        folders = [layout.run_dir(dataset, run, seed)]
        spec = self.measurement(name, dataset) or {}
        if name in ("difficulty", "difficulty_large") and spec.get("reference"):
            folders.append(layout.run_dir(dataset, spec["reference"], seed))
        files = [folder / f for folder in folders for f in (METRICS, GAPS)]
        if name == "difficulty_large":
            files.append(measurement_file(layout.run_dir(dataset, spec["reference"], seed), DIFFICULTY_GAPS))
        if name == "ais" and spec.get("certificate"):
            files.append(measurement_file(layout.run_dir(dataset, spec["certificate"], seed), "bdmc"))
        return [*files, layout.settings_path(name, dataset)]

    # ---- a cell's training ------------------------------------------------------------------------
    def chapter_parameters(self, dataset: str, run: str, seed: int) -> dict:
        """The training chapter's papermill parameters for one cell; raises :class:`ConfigError` for an
        invalid combination (checked by building its :class:`TrainConfig`). Precedence: the dataset's
        options (``epochs``, ``max_train``, ...) < the run's < the dataset's ``overrides`` of that run."""
        data_spec = self.datasets[dataset]
        data = {k: v for k, v in data_spec.items() if k not in DATASET_ONLY_KEYS}
        spec = {**data, **self.runs[run], **data_spec.get("overrides", {}).get(run, {})}
        warm_start = spec.pop("warm_start", None)
        for key in ("note", "control_for", "seeds", "compared"):
            spec.pop(key, None)
        settings = self.evaluation(dataset)
        params = {"model": spec.pop("model"), "dataset": dataset, "epochs": spec.pop("epochs", None),
                  "max_train": spec.pop("max_train", None), "max_test": settings["max_test"],
                  "eval_k": settings["eval_k"], "seed": seed, "device": self.device,
                  "out": str(self.layout.run_dir(dataset, run, seed))}
        if warm_start:
            spec["init_from"] = str(self.layout.source_dir(dataset, warm_start, seed))
        if settings.get("test_subset_seed") is not None and settings["max_test"] is not None:
            spec["subset_seed"] = settings["test_subset_seed"]  # the max_test images drawn, not the first ones
        params["options"] = spec
        TrainConfig(**{k: v for k, v in params.items() if k != "options"}, **spec)
        return params

    # ---- checks -----------------------------------------------------------------------------------
    def _check(self) -> None:
        """Every key present, every run names a model and only :class:`TrainConfig` fields, every
        measurement its keys, every cell builds a valid configuration."""
        grid, path = self.spec, self.source
        if not isinstance(grid, dict):
            raise ConfigError(f"{path}: a grid is a mapping of keys, got {type(grid).__name__}")
        missing = [k for k in GRID_KEYS if k not in grid]
        if missing:
            raise ConfigError(f"{path}: missing keys {missing}")
        seeds = grid["seeds"]  # a list, or one seed / a YAML list from the command line (--config seeds=0)
        seeds = yaml.safe_load(seeds) if isinstance(seeds, str) else seeds
        grid["seeds"] = [int(s) for s in (seeds if isinstance(seeds, list) else [seeds])]
        for name, spec in grid["runs"].items():
            unknown = set(spec) - set(TrainConfig.__dataclass_fields__) - set(RUN_ONLY_KEYS)
            if unknown or "model" not in spec:
                raise ConfigError(f"{path}: run {name!r} needs `model` and TrainConfig options only (unknown: {sorted(unknown)})")
            if spec.get("warm_start") and spec["warm_start"] not in grid["runs"]:
                raise ConfigError(f"{path}: run {name!r} warm-starts from unknown run {spec['warm_start']!r}")
            if not isinstance(spec.get("compared", True), bool):
                raise ConfigError(f"{path}: run {name!r}: compared takes true or false, got {spec['compared']!r}")
            if not isinstance(spec.get("control_for", []), list):
                raise ConfigError(f"{path}: run {name!r}: control_for takes a list of runs")
            unknown = set(spec.get("control_for", [])) - set(grid["runs"])
            if unknown:
                raise ConfigError(f"{path}: run {name!r} is a control for unknown runs {sorted(unknown)}")
        for kind, specs in (("run", grid["runs"]), ("dataset", grid["datasets"])):  # a run's or a dataset's own seeds
            for name, spec in specs.items():
                seeds = (spec or {}).get("seeds", [])
                if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
                    raise ConfigError(f"{path}: {kind} {name!r}: seeds takes a list of integers (default: the grid's seeds)")
        if "seed_rule" in grid:
            raise ConfigError(f"{path}: seed_rule is no longer read: give every run that a claim compares with GP-RF "
                              "GP-RF's seeds (the grid's seeds, or a run's own seeds)")
        for dataset in self.datasets:
            self._check_evaluation(dataset)
        for name in MEASUREMENT_KEYS:
            for dataset in self.datasets if grid.get(name) is not None else []:
                self._check_measurement(name, dataset)
        every = self.cells()
        for dataset, run, seed in every:
            source = self.runs[run].get("warm_start")
            if source and (dataset, source, seed) not in every:
                raise ConfigError(f"{path}: {dataset}/{run}/seed {seed} warm-starts from {source!r}, which has no seed "
                                  f"{seed} on {dataset} (the dataset's skip, or a seeds list, leaves it out)")
            try:
                self.chapter_parameters(dataset, run, seed)
            except (ConfigError, TypeError, ValueError) as err:
                raise ConfigError(f"{path}: {dataset}/{run}/seed {seed}: {err}") from None
        certified = set(self.run_measurement_cells("bdmc")) if "bdmc" in grid else set()
        for dataset, run, seed in (self.run_measurement_cells("ais") if "ais" in grid else []):
            certificate = self.measurement("ais", dataset)["certificate"]
            if (dataset, certificate, seed) not in certified:
                raise ConfigError(f"{path}: ais of {dataset}/{run}/seed {seed}: its certificate run {certificate!r} has "
                                  f"no bdmc measurement at seed {seed} (the bdmc's seeds leave it out), so no record of "
                                  "the T it certifies would be committed")

    def _check_evaluation(self, dataset: str) -> None:
        """The evaluation of ``dataset`` names :data:`EVALUATION_KEYS` and optionally its subset seeds, nothing else."""
        settings = self.evaluation(dataset)
        missing = [k for k in EVALUATION_KEYS if k not in settings]
        unknown = sorted(set(settings) - set(EVALUATION_KEYS) - set(EVALUATION_OPTIONAL_KEYS))
        if missing or unknown:
            raise ConfigError(f"{self.source}: evaluation of {dataset} needs the keys {list(EVALUATION_KEYS)} and "
                              f"optionally {list(EVALUATION_OPTIONAL_KEYS)} (missing: {missing}, unknown: {unknown})")
        if settings.get("test_subset_seed") is not None and settings["max_test"] is None:
            raise ConfigError(f"{self.source}: evaluation of {dataset}: test_subset_seed draws the max_test test images; "
                              "with max_test null every test image is evaluated (leave test_subset_seed out)")
        for key in EVALUATION_OPTIONAL_KEYS:
            if not (settings.get(key) is None or _is_integer(settings[key]) and settings[key] >= 0):
                raise ConfigError(f"{self.source}: evaluation of {dataset}: {key} takes a seed (an integer at least 0) "
                                  f"or null (the first images), got {settings[key]!r}")

    def _check_measurement(self, name: str, dataset: str) -> None:
        path, keys, spec = self.source, MEASUREMENT_KEYS[name], self.measurement(name, dataset)
        if set(spec) - set(MEASUREMENT_OPTIONAL_KEYS) != set(keys):
            raise ConfigError(f"{path}: {name} of {dataset} needs exactly the keys {list(keys)} "
                              f"(and optionally {list(MEASUREMENT_OPTIONAL_KEYS)})")
        seeds = spec.get("seeds", [])
        if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
            raise ConfigError(f"{path}: {name} of {dataset}: seeds takes a list of integers")
        unknown = set(measured_runs(spec)) - set(self.runs)
        if unknown:
            raise ConfigError(f"{path}: {name} names unknown runs {sorted(unknown)}")
        for key in POSITIVE_MEASUREMENT_KEYS.get(name, ()):
            if not _is_integer(spec[key]) or spec[key] < 1:
                raise ConfigError(f"{path}: {name} of {dataset}: {key} takes a positive integer, got {spec[key]!r}")
        for key, optional in (("subset_seed", True), ("ood_seed", False)):  # subset_seed null: the first images
            value = spec.get(key, 0)
            if not (optional and value is None) and not _is_integer(value):
                raise ConfigError(f"{path}: {name} of {dataset}: {key} takes an integer"
                                  + (" or null (the first images)" if optional else "") + f", got {value!r}")
        if name == "bdmc":
            try:
                bdmc_settings(spec)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"{path}: bdmc of {dataset}: {err}") from None
            if not isinstance(spec["max_width"], (int, float)) or not spec["max_width"] > 0:
                raise ConfigError(f"{path}: bdmc of {dataset}: max_width takes a positive number of nats, "
                                  f"got {spec['max_width']!r}")
        if name == "difficulty_large":
            if not _is_integer(spec["subset_seed"]):
                raise ConfigError(f"{path}: difficulty_large of {dataset}: subset_seed takes an integer (the design draws "
                                  f"its images at random), got {spec['subset_seed']!r}")
            combination = spec["combination"]
            if not (isinstance(combination, list) and len(combination) == 2
                    and all(isinstance(c, str) and c in DIFFICULTY_SCORES for c in combination)
                    and combination[0] != combination[1]):
                raise ConfigError(f"{path}: difficulty_large of {dataset}: combination takes two different scores of "
                                  f"{list(DIFFICULTY_SCORES)} (their ranks are averaged), got {combination!r}")
        if name == "ais":
            bdmc = self.measurement("bdmc", dataset)
            if bdmc is None or spec["certificate"] not in bdmc["runs"]:
                raise ConfigError(f"{path}: ais of {dataset}: its certificate run {spec['certificate']!r} has no "
                                  "bdmc measurement on that dataset (add it to the grid's bdmc runs)")


def papermill_yaml(parameters: dict) -> str:
    """``parameters`` as one line of YAML for ``papermill -y``: YAML, not JSON, because YAML 1.1 reads
    JSON's ``1e-05`` as a string."""
    return yaml.safe_dump(parameters, default_flow_style=True, width=float("inf")).strip()
