"""Where every file of a run and of the runs of record lives: run folders, committed records,
measurements, weights, parked checkpoints and settings. Nothing else in the library builds these paths."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent  # the checkout: its workflow/, results/ and runs/
RESULTS = REPOSITORY / "results"  # the results of record: each workflow profile's in RESULTS/workflow/<profile>/
GRID_FILES = REPOSITORY / "workflow" / "config"  # the grid files of record, <profile>.yaml
BOOK_RUNS = REPOSITORY / "runs" / "book"  # where chapters train their runs unless told otherwise

# Measurements recorded run by run (``<dataset>/<name>/<run>_seed<s>.json``): each run's value stands alone,
# so a record need not wait for the other runs; the others compare runs and are recorded per dataset and seed.
PER_RUN_MEASUREMENTS = ("ais", "ood", "proposal_control")
# Files of a run folder (``--out``).
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
PER_EXAMPLE = "per_example.json"
DIVERGED = "diverged.json"  # written when training diverges: the message, options and provenance
GAPS = "gaps.json"
DIFFICULTY_GAPS = "difficulty_large_gaps"  # a reference's gap decomposition on difficulty_large's own images
# What the train and gaps jobs write, committed beside a finished run's weights (a fresh machine restores them):
# the training's files, then what was measured of the trained model.
MEASURED_FILES = (GAPS, f"{DIFFICULTY_GAPS}.json")
RESTORED_FILES = (METRICS, "training.ipynb", "benchmark.tsv", *MEASURED_FILES)


def workflow_results(results_root: str | Path | None = None) -> Path:
    """The folder of every workflow profile's records under a results folder laid out as the repository's
    ``results/`` (None: the repository's own)."""
    return Path(results_root or RESULTS) / "workflow"


def measurement_file(run_dir: str | Path, name: str) -> Path:
    """``RUN_DIR/<name>.json``: what measurement ``name`` (``gaps``, ``ais``, ``k_curve``, ...) wrote."""
    return Path(run_dir) / f"{name}.json"


def measurement_benchmark(run_dir: str | Path, name: str | None = None) -> Path:
    """The Snakemake benchmark of a run's training job (``name`` None) or of its measurement ``name``."""
    return Path(run_dir) / ("benchmark.tsv" if name is None else f"{name}_benchmark.tsv")


@dataclass(frozen=True)
class Layout:
    """The folders of one grid: ``runs_dir`` (run folders, this machine's) and ``results_dir`` (committed)."""

    runs_dir: Path
    results_dir: Path

    def run_dir(self, dataset: str, run: str, seed: int) -> Path:
        return Path(self.runs_dir) / dataset / f"{run}_seed{seed}"

    def record_path(self, dataset: str, run: str, seed: int) -> Path:
        """A finished cell's committed record (:func:`gpvae.runs.records.record`)."""
        return Path(self.results_dir) / dataset / f"{run}_seed{seed}.json"

    def table_path(self) -> Path:
        """The tidy table of every record (:func:`gpvae.runs.records.write_table`)."""
        return Path(self.results_dir) / "runs.csv"

    def dataset_record(self, dataset: str, name: str) -> Path:
        """A dataset's own record: ``bench`` or ``ais_cost``."""
        return Path(self.results_dir) / dataset / f"{name}.json"

    def weights_dir(self, dataset: str, run: str, seed: int) -> Path:
        """Where a finished run's weights are committed: a run folder that ``python -m gpvae evaluate`` reads."""
        return Path(self.results_dir) / dataset / "weights" / f"{run}_seed{seed}"

    def parked_checkpoint(self, dataset: str, run: str, seed: int) -> Path:
        """Where an unfinished run's latest checkpoint is committed when work stops."""
        return Path(self.results_dir) / dataset / "unfinished" / f"{run}_seed{seed}" / CHECKPOINT

    def parked_runs(self) -> list[str]:
        """``<run>_seed<s>`` of every parked checkpoint."""
        return sorted(p.parent.name for p in Path(self.results_dir).glob(f"*/unfinished/*/{CHECKPOINT}"))

    def source_dir(self, dataset: str, run: str, seed: int) -> Path:
        """The folder a warm start reads: the run's folder, or its committed weights when that folder has no
        finished run (a fresh machine) and the weights exist."""
        folder, committed = self.run_dir(dataset, run, seed), self.weights_dir(dataset, run, seed)
        if not (folder / METRICS).exists() and (committed / METRICS).exists():
            return committed
        return folder

    def measurement_path(self, name: str, dataset: str, seed: int) -> Path:
        """A grouped measurement's committed record (one folder down, so that records and measurements
        never mix: :func:`gpvae.report.load_records` reads the top level only)."""
        return Path(self.results_dir) / dataset / name / f"seed{seed}.json"

    def run_measurement_path(self, name: str, dataset: str, run: str, seed: int) -> Path:
        """The committed record of a per-run measurement (:data:`PER_RUN_MEASUREMENTS`) of one run."""
        return Path(self.results_dir) / dataset / name / f"{run}_seed{seed}.json"

    def committed_measurement_path(self, name: str, dataset: str, run: str | None, seed: int) -> Path:
        """The committed record holding measurement ``name`` of a run: its own for a per-run measurement,
        else its dataset and seed's."""
        if name in PER_RUN_MEASUREMENTS:
            return self.run_measurement_path(name, dataset, run, seed)
        return self.measurement_path(name, dataset, seed)

    def settings_path(self, name: str, dataset: str) -> Path:
        """``RUNS_DIR/<dataset>/<name>.settings.json``: dated with the measurement's settings on this machine."""
        return Path(self.runs_dir) / dataset / f"{name}.settings.json"

    def log_path(self, dataset: str, name: str) -> Path:
        """The log of a dataset's own job (``bench``, ``ais_cost``)."""
        return Path(self.runs_dir) / dataset / f"{name}.log"
