"""A finished run folder as a small committed record with its provenance, the records of measurements,
and the tidy table of all runs. Imports without torch: readers of records need none."""
from __future__ import annotations

import csv
import math
from io import StringIO
from pathlib import Path

from ..io import read_json, write_text
from ..options import ConfigError
from ..layout import GAPS, METRICS, measurement_benchmark, measurement_file
from .schema import MEASUREMENT_KEYS, PER_RUN_MEASUREMENTS, recorded_settings

# Columns of the tidy table of all runs (``results/workflow/<profile>/runs.csv``).
TABLE_COLUMNS = ("dataset", "run", "seed", "model", "test_ll", "test_elbo", "test_bpd", "eval_k", "n_test",
                 "subset_seed", "epochs_done", "best_epoch", "valid_elbo", "approximation_gap", "amortization_gap",
                 "gap_n", "gap_subset_seed",
                 "train_seconds", "wall_seconds", "device", "git_commit")
RECORD_TOLERANCE = 1e-4  # nats: a run folder's test log p̂ beyond this from its committed record's is another model
FLOAT32_ULPS = 4  # ... or beyond this many float32 steps at the value's size (−1804 nats: one step is 1.2e-4)
RECORD_ONLY_KEYS = ("run", "seed", "profile", "budget", "wall_seconds", "command")  # what a record adds to a measurement


def wall_seconds(benchmark_tsv: Path) -> tuple[float | None, float | None]:
    """Wall seconds and peak resident memory (MB) from a Snakemake ``benchmark:`` file."""
    if not benchmark_tsv.exists():
        return None, None
    with benchmark_tsv.open() as handle:
        row = next(csv.DictReader(handle, delimiter="\t"))
    as_float = lambda v: float(v) if v not in (None, "", "-", "NA") else None
    return as_float(row.get("s")), as_float(row.get("max_rss"))


def record(grid, dataset: str, run: str, seed: int, command: str) -> dict:
    """The committed record of one finished cell of ``grid`` (a :class:`~gpvae.runs.grid.Grid`): the
    protocol's numbers, the gap decomposition, the per-epoch history, the data fits, and provenance
    (commit, exact options, device, wall time, budget); for a run that diverged, its ``diverged`` message
    in place of the numbers."""
    folder = grid.layout.run_dir(dataset, run, seed)
    metrics = read_json(folder / METRICS, "run the grid's train job first")
    head = {"dataset": dataset, "run": run, "seed": seed, "profile": grid.profile, "budget": grid.budget,
            "note": grid.runs[run].get("note")}
    if "diverged" in metrics:
        kept = ("model", "diverged", "epochs_done", "options", "git_commit", "torch_version", "gpytorch_version", "device")
        return {**head, **{k: metrics[k] for k in kept if k in metrics}, "command": command}
    gaps = read_json(folder / GAPS, "run the grid's gaps job first")
    wall, rss = wall_seconds(measurement_benchmark(folder))
    keys = ("model", "test_ll", "test_elbo", "test_bpd", "test_elbo_bpd", "eval_k", "n_test", "subset_seed", "epochs_done",
            "best_epoch", "valid_elbo", "stopped", "train_seconds", "n_parameters", "data", "likelihood", "model_summary",
            "git_commit", "torch_version", "gpytorch_version", "device")
    finite = {k: metrics[k] for k in keys if k in metrics}
    if finite["valid_elbo"] is None or not math.isfinite(finite["valid_elbo"]):  # a post-hoc fit has no epoch
        finite["valid_elbo"] = None
    return {**head, **finite, "options": metrics["options"],
            "gaps": {k: gaps[k]["mean"] for k in ("log_px", "elbo_opt", "elbo_model", "approximation_gap",
                                                   "amortization_gap", "log_px_from_optimum") if gaps.get(k)}
                    | {"n": gaps["n"], "eval_k": gaps["eval_k"], "subset_seed": gaps.get("subset_seed"),
                       "q_star_converged": all(batch["converged"] for batch in gaps["svi"]["batches"])},
            "history": metrics["history"], "fits": metrics.get("fits", []),
            "wall_seconds": wall, "max_rss_mb": rss, "command": command,
            "notebook": str(folder / "training.ipynb")}


def flat_record(record: dict) -> dict:
    """``record`` with its gap decomposition lifted to the top: ``approximation_gap``,
    ``amortization_gap`` [nats], ``gap_n`` (test images it was computed on) and ``gap_subset_seed`` (the seed
    that drew them; None: the first ``gap_n``). ``subset_seed`` is that of the test log-likelihood's images."""
    gaps = record.get("gaps", {})  # none for a run that diverged
    return {**record, "approximation_gap": gaps.get("approximation_gap"), "amortization_gap": gaps.get("amortization_gap"),
            "gap_n": gaps.get("n"), "gap_subset_seed": gaps.get("subset_seed")}


def table_rows(records: list[dict]) -> list[dict]:
    """One flat row per record, in :data:`TABLE_COLUMNS` order."""
    rows = [{c: flat.get(c) for c in TABLE_COLUMNS} for flat in map(flat_record, records)]
    return sorted(rows, key=lambda row: (row["dataset"], row["run"], row["seed"]))


def write_table(records: list[dict], path: str | Path) -> None:
    """The tidy table of ``records`` as CSV, written atomically."""
    text = StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=TABLE_COLUMNS)
    writer.writeheader()
    writer.writerows(table_rows(records))
    write_text(path, text.getvalue())


def same_recorded_value(ours: float, theirs: float) -> bool:
    """Whether a value measured again [nats] is its committed record's: within :data:`RECORD_TOLERANCE`,
    or within :data:`FLOAT32_ULPS` float32 steps of it (a mean over images of float32 values carries that
    rounding: Fashion-MNIST's log-likelihoods are ~1,800 nats)."""
    return abs(ours - theirs) <= max(RECORD_TOLERANCE, FLOAT32_ULPS * 2.0 ** -23 * max(abs(ours), abs(theirs)))


def gap_decomposition_mismatch(used: dict, recorded: dict) -> str | None:
    """How a gap decomposition a measurement used (``n``, ``subset_seed``, mean ``is`` and ``elbo_opt``
    [nats]) differs from a run record's ``gaps`` block (``n``, ``subset_seed``, ``log_px``, ``elbo_opt``),
    or None when it is the record's: the same seeded images and the same values within
    :func:`same_recorded_value` (a value either side lacks is not compared)."""
    if (used["n"], used.get("subset_seed")) != (recorded.get("n"), recorded.get("subset_seed")):
        return (f"gap decomposition covers {used['n']} images (subset seed {used.get('subset_seed')}), the committed record's "
                f"{recorded.get('n')} (subset seed {recorded.get('subset_seed')})")
    for what, ours, theirs in [("log_px", used.get("is"), recorded.get("log_px")),
                               ("elbo_opt", used.get("elbo_opt"), recorded.get("elbo_opt"))]:
        if ours is not None and theirs is not None and not same_recorded_value(ours, theirs):
            return f"gap subset's {what} {ours:.4f} is not the committed record's {theirs:.4f}"
    return None


def check_recorded_model(grid, dataset: str, run: str, seed: int, measured: dict | None = None) -> None:
    """Refuse to record a measurement of a run folder whose model is not the one of the run's committed
    record (a run retrained to be measured, on another machine or by other code): the measurement would
    sit beside the record's numbers as if of one model. Compares the folder's test log p̂ and the gap
    decomposition the measurement used (``measured["gap_subset"]`` when it has one, else the folder's
    ``gaps.json``) with the record's; a gap decomposition of other images is named as such. Raises
    :class:`ConfigError` naming both values."""
    committed = grid.layout.record_path(dataset, run, seed)
    if not committed.exists():
        return
    folder = grid.layout.run_dir(dataset, run, seed)
    saved = read_json(committed, "restore it with git checkout")
    recorded_gaps = saved.get("gaps", {})
    rewrite = f"({committed}): the run was retrained into another model; rewrite its record first ({grid.command} {committed})"
    ours, theirs = read_json(folder / METRICS, "run the grid's train job first").get("test_ll"), saved.get("test_ll")
    if ours is not None and theirs is not None and not same_recorded_value(ours, theirs):
        raise ConfigError(f"{folder}: its model's test log p̂ {ours:.4f} is not the committed record's {theirs:.4f} "
                          + rewrite)
    used = (measured or {}).get("gap_subset")
    gaps = read_json(folder / GAPS, "run the grid's gaps job first") if (folder / GAPS).exists() else {}
    if used is None and "diverged" not in gaps and gaps:  # a diverged run's gaps.json says so and holds no decomposition
        used = {"n": gaps["n"], "subset_seed": gaps.get("subset_seed"), "is": gaps["log_px"]["mean"],
                "elbo_opt": gaps["elbo_opt"]["mean"]}
    mismatch = gap_decomposition_mismatch(used, recorded_gaps) if used is not None and recorded_gaps else None
    if mismatch is not None:
        raise ConfigError(f"{folder}: its {mismatch} " + (f"({committed}): rerun the grid's gaps job"
                                                          if "covers" in mismatch else rewrite))


def measured(grid, name: str, dataset: str, run: str, seed: int) -> dict:
    """A run's ``RUN_DIR/<name>.json`` without its folder, with the measuring job's wall time (from its
    Snakemake benchmark, or the one a restored measurement brought back; the run's model checked against
    its committed record, :func:`check_recorded_model`)."""
    folder = grid.layout.run_dir(dataset, run, seed)
    result = read_json(measurement_file(folder, name), f"run the grid's {name} job first")
    check_recorded_model(grid, dataset, run, seed, result)
    reference = grid.measurement(name, dataset).get("reference")
    if reference:  # difficulty reads the reference's gap decomposition: its model is checked too
        check_recorded_model(grid, dataset, reference, seed)
    result.pop("run_dir")
    restored = "wall_seconds" in result  # a fresh measurement's file has none: its job's benchmark does
    wall = result.pop("wall_seconds") if restored else wall_seconds(measurement_benchmark(folder, name))[0]
    return {**result, "wall_seconds": wall}


def run_measurement_record(grid, name: str, dataset: str, run: str, seed: int, command: str) -> dict:
    """The committed record of one run's per-run measurement: its ``RUN_DIR/<name>.json`` (values and
    provenance), the settings and the job's wall time; refused for a cell the measurement does not measure."""
    if (dataset, run, seed) not in grid.run_measurement_cells(name):
        raise ConfigError(f"{name} of {dataset}/{run}/seed {seed}: not a cell of the grid's {name} measurement "
                          f"(its runs: {(grid.measurement(name, dataset) or {}).get('runs', [])}); no record is written")
    return {"dataset": dataset, "run": run, "seed": seed, "profile": grid.profile, "budget": grid.budget,
            name: grid.measurement(name, dataset), **measured(grid, name, dataset, run, seed), "command": command}


def measurement_record(grid, name: str, dataset: str, seed: int, command: str) -> dict:
    """The committed record of a measurement of one dataset and seed: the settings and, per measured run,
    its ``RUN_DIR/<name>.json`` (values and provenance) and the job's wall time."""
    if (dataset, seed) not in grid.measurement_cells(name):
        raise ConfigError(f"{name} of {dataset} at seed {seed}: no run of the grid is measured there "
                          f"(cells: {grid.measurement_cells(name)}); an empty record is not written")
    runs = {run: measured(grid, name, dataset, run, seed) for run in grid.measured_at(name, dataset, seed)}
    return {"dataset": dataset, "seed": seed, "profile": grid.profile, "budget": grid.budget,
            name: grid.measurement(name, dataset), "runs": runs, "command": command}


def records_of_other_settings(grid, name: str) -> list[tuple[str, Path, list[str], int]]:
    """The committed records of measurement ``name`` measured with other settings than the grid's:
    (dataset, path, the runs it holds, seed) each."""
    per_run = name in PER_RUN_MEASUREMENTS
    cells = grid.run_measurement_cells(name) if per_run else [
        (dataset, None, seed) for dataset, seed in grid.measurement_cells(name)]
    found = []
    for dataset, run, seed in cells:
        path = grid.layout.committed_measurement_path(name, dataset, run, seed)
        if not path.exists():
            continue
        saved = read_json(path, "a committed record")
        if recorded_settings(saved, name) != grid.measurement_settings(name, dataset):
            found.append((dataset, path, [run] if per_run else list(saved.get("runs", {})), seed))
    return found


def stale_records(grid) -> list[Path]:
    """Committed measurement records of other settings than the grid's whose run-folder file this machine
    lacks (a fresh machine): Snakemake would keep them as they are. Where the file is present,
    :func:`gpvae.runs.persistence.date_settings` has it measured again."""
    return [path for name in MEASUREMENT_KEYS for dataset, path, runs, seed in records_of_other_settings(grid, name)
            if not all(measurement_file(grid.layout.run_dir(dataset, r, seed), name).exists() for r in runs)]
