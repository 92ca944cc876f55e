"""The runs of record as a declared grid, executed by Snakemake (``workflow/Snakefile``).

A *grid* (``workflow/config/<profile>.yaml``) names datasets, seeds, a budget and runs; each run is
a model with options named like :class:`gpvae.config.TrainConfig`'s fields, plus ``warm_start``
(the name of another run of the same dataset and seed whose trained networks it starts from) and
``control_for`` (the runs whose schedule a control run repeats with another objective). Optional
*measurements* of finished runs, per dataset and seed (a dataset may override their settings):
``k_curve`` (``runs``, ``eval_ks``, ``max_test``) evaluates those runs' log p̂(x) at several K on a test
subset (:func:`gpvae.training.k_curve_run`); ``difficulty`` (``runs``, ``reference``) ranks each run's
posterior-difficulty scores against the per-image amortization gap of the reference run's encoder
(:func:`gpvae.training.difficulty_run`); ``bdmc`` and ``ais`` certify and measure log p(x) by AIS
(:func:`gpvae.training.bdmc_run`, :func:`gpvae.training.ais_run`); ``frontier`` (``runs``, ``settings``,
``repeats``) fits each declared R4 setting to those VAE runs and measures its cost and accuracy
(:func:`gpvae.frontier.frontier_run`); ``ood`` (``runs``, ``images``, ``subset_seed``, ``sets``, ``ood_seed``,
``elbo_samples``) scores in- and out-of-distribution test images by every difficulty score
(:func:`gpvae.training.ood_run`). A run or a dataset may name its own ``seeds`` (of the grid's). This module
turns a (dataset, run, seed) cell into the training chapter's papermill parameters and a finished run
folder into a small committed record with its provenance; the Snakefile only wires files together.
"""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
from pathlib import Path

import yaml

from .config import ConfigError, TrainConfig

CHAPTER = "book/training.ipynb"
GRID_KEYS = ("profile", "budget", "device", "threads_per_job", "seeds", "runs_dir", "results_dir",
             "evaluation", "bench", "datasets", "runs")
RUN_ONLY_KEYS = ("warm_start", "control_for", "note", "seeds")
MEASUREMENT_KEYS = {"k_curve": ("runs", "eval_ks", "max_test"), "difficulty": ("runs", "reference"),
                    "bdmc": ("runs", "steps", "images", "max_width", "chains", "leapfrog"),
                    "ais": ("runs", "subset", "subset_seed", "chains", "certificate"),
                    "frontier": ("runs", "settings", "repeats"),
                    "ood": ("runs", "images", "subset_seed", "sets", "ood_seed", "elbo_samples")}
# Keys of a measurement that count images, chains, samples or repeats: positive integers.
POSITIVE_MEASUREMENT_KEYS = {"k_curve": ("max_test",), "bdmc": ("images", "chains"), "ais": ("subset", "chains"),
                             "frontier": ("repeats",), "ood": ("images", "elbo_samples")}
# A measurement may also name the ``seeds`` it measures (default: every seed its runs have).
MEASUREMENT_OPTIONAL_KEYS = ("seeds",)
# Measurements recorded run by run (``<dataset>/<name>/<run>_seed<s>.json``): each run's value stands alone,
# so a record need not wait for the other runs; the others compare runs and are recorded per dataset and seed.
PER_RUN_MEASUREMENTS = ("ais", "ood")
GROUPED_MEASUREMENTS = tuple(name for name in MEASUREMENT_KEYS if name not in PER_RUN_MEASUREMENTS)
# Columns of the tidy table of all runs (``results/workflow/<profile>/runs.csv``).
TABLE_COLUMNS = ("dataset", "run", "seed", "model", "test_ll", "test_elbo", "test_bpd", "eval_k", "n_test",
                 "epochs_done", "best_epoch", "valid_elbo", "approximation_gap", "amortization_gap", "gap_n",
                 "train_seconds", "wall_seconds", "device", "git_commit")


def load_grid(path: str | Path) -> dict:
    """Read and check a grid file (:func:`check_grid`). Its relative ``runs_dir`` and ``results_dir`` are
    the repository's, where Snakemake runs (the folder above the grid file that holds
    ``workflow/Snakefile``), so that a chapter or script run from elsewhere reads the same records."""
    path = Path(path)
    grid = check_grid(yaml.safe_load(path.read_text()), str(path))
    root = next((folder for folder in path.resolve().parents if (folder / "workflow" / "Snakefile").exists()), None)
    for key in ("runs_dir", "results_dir"):
        if root is not None and not Path(grid[key]).is_absolute():
            grid[key] = str(root / grid[key])
    return grid


def _is_integer(value) -> bool:
    """An int of YAML's, not a bool (YAML's true is an int to Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_grid(grid: dict, path: str = "grid") -> dict:
    """Check a grid: every key present, every run names a model and only :class:`TrainConfig` fields,
    every cell builds a valid configuration."""
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
    for name, keys in MEASUREMENT_KEYS.items():
        for dataset in grid["datasets"] if grid.get(name) is not None else []:
            spec = measurement(grid, name, dataset)
            if set(spec) - set(MEASUREMENT_OPTIONAL_KEYS) != set(keys):
                raise ConfigError(f"{path}: {name} of {dataset} needs exactly the keys {list(keys)} "
                                  f"(and optionally {list(MEASUREMENT_OPTIONAL_KEYS)})")
            seeds = spec.get("seeds", [])
            if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
                raise ConfigError(f"{path}: {name} of {dataset}: seeds takes a list of integers")
            unknown = set(measured_runs(spec)) - set(grid["runs"])
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
            if name == "ais":
                bdmc = measurement(grid, "bdmc", dataset)
                if bdmc is None or spec["certificate"] not in bdmc["runs"]:
                    raise ConfigError(f"{path}: ais of {dataset}: its certificate run {spec['certificate']!r} has no "
                                      "bdmc measurement on that dataset (add it to the grid's bdmc runs)")
    every = cells(grid)
    for dataset, run, seed in every:
        source = grid["runs"][run].get("warm_start")
        if source and (dataset, source, seed) not in every:
            raise ConfigError(f"{path}: {dataset}/{run}/seed {seed} warm-starts from {source!r}, which has no seed "
                              f"{seed} on {dataset} (the dataset's skip, or a seeds list, leaves it out)")
        try:
            chapter_parameters(grid, dataset, run, seed)
        except (ConfigError, TypeError, ValueError) as err:
            raise ConfigError(f"{path}: {dataset}/{run}/seed {seed}: {err}") from None
    certified = set(run_measurement_cells(grid, "bdmc")) if "bdmc" in grid else set()
    for dataset, run, seed in (run_measurement_cells(grid, "ais") if "ais" in grid else []):
        certificate = measurement(grid, "ais", dataset)["certificate"]
        if (dataset, certificate, seed) not in certified:
            raise ConfigError(f"{path}: ais of {dataset}/{run}/seed {seed}: its certificate run {certificate!r} has no "
                              f"bdmc measurement at seed {seed} (the bdmc's seeds leave it out), so no record of the "
                              "T it certifies would be committed")
    return grid


def seed_allowed(grid: dict, dataset: str, run: str, seed: int) -> bool:
    """Whether a run may have ``seed`` on a dataset: the dataset does not ``skip`` it, and neither the run's
    own ``seeds`` nor the dataset's ``seeds`` leave the seed out (a reading studied on one seed while the
    VAE has three)."""
    data_spec = grid["datasets"][dataset] or {}
    limits = [spec.get("seeds") for spec in (grid["runs"][run], data_spec)]
    return run not in data_spec.get("skip", []) and all(own is None or seed in own for own in limits)


def run_seeds(grid: dict, dataset: str, run: str) -> list[int]:
    """The grid's seeds that a run has on a dataset (:func:`seed_allowed`)."""
    return [seed for seed in grid["seeds"] if seed_allowed(grid, dataset, run, seed)]


def cells(grid: dict) -> list[tuple[str, str, int]]:
    """Every (dataset, run, seed) of the grid, each run with :func:`run_seeds`."""
    return [(dataset, run, seed) for dataset in grid["datasets"] for run in grid["runs"]
            for seed in run_seeds(grid, dataset, run)]


def controls(grid: dict) -> dict[str, list[str]]:
    """The grid's control runs, each with the runs it controls for: not models of the comparison."""
    return {run: spec["control_for"] for run, spec in grid["runs"].items() if spec.get("control_for")}


def run_dir(grid: dict, dataset: str, run: str, seed: int) -> Path:
    return Path(grid["runs_dir"]) / dataset / f"{run}_seed{seed}"


def weights_dir(grid: dict, dataset: str, run: str, seed: int) -> Path:
    """Where a finished run's weights are committed (grids with ``commit_weights``): a run folder that
    ``python -m gpvae evaluate`` reads, with its ``metrics.json``."""
    return Path(grid["results_dir"]) / dataset / "weights" / f"{run}_seed{seed}"


def parked_checkpoint(grid: dict, dataset: str, run: str, seed: int) -> Path:
    """Where an unfinished run's latest checkpoint is committed when work stops (:func:`park`)."""
    return Path(grid["results_dir"]) / dataset / "unfinished" / f"{run}_seed{seed}" / "checkpoint.pt"


def source_dir(grid: dict, dataset: str, run: str, seed: int) -> Path:
    """The folder a warm start reads: the run's folder, or its committed weights when that folder has no
    finished run (a fresh machine) and the weights exist."""
    folder = run_dir(grid, dataset, run, seed)
    committed = weights_dir(grid, dataset, run, seed)
    if not (folder / "metrics.json").exists() and (committed / "metrics.json").exists():
        return committed
    return folder


def commit_weights(grid: dict, dataset: str, run: str, seed: int) -> Path:
    """Write a finished run's best parameters (float32, no optimizer state) and its ``metrics.json`` to
    :func:`weights_dir`, and drop its parked checkpoint. Returns the folder."""
    import torch

    from .training import CHECKPOINT, load_checkpoint

    folder, target = run_dir(grid, dataset, run, seed), weights_dir(grid, dataset, run, seed)
    saved = load_checkpoint(folder)
    best = {k: v.float() if v.is_floating_point() else v for k, v in saved["best_model"].items()}
    slim = {k: saved[k] for k in ("config", "epoch", "best_epoch", "best_valid_elbo", "history", "fits", "stopped")
            if k in saved}
    target.mkdir(parents=True, exist_ok=True)
    partial = target / f"{CHECKPOINT}.partial"
    torch.save({**slim, "model": best, "best_model": best}, partial)
    partial.replace(target / CHECKPOINT)
    for name in RESTORED_FILES:  # what the train and gaps jobs wrote: a fresh machine restores them (restore)
        if (folder / name).exists():
            shutil.copy(folder / name, target / name)
    drop_parked(grid, dataset, run, seed)
    return target


def drop_parked(grid: dict, dataset: str, run: str, seed: int) -> None:
    """Remove a run's parked checkpoint (:func:`park`) once the run has its record, finished or diverged:
    a fresh machine must not resume a run that is done. The folder goes with it (and a copy an interrupted
    :func:`park` left half written)."""
    folder = parked_checkpoint(grid, dataset, run, seed).parent
    if folder.exists():
        shutil.rmtree(folder)


RESTORED_FILES = ("metrics.json", "training.ipynb", "benchmark.tsv", "gaps.json")


def _warm_start_depth(grid: dict, run: str) -> int:
    source = grid["runs"][run].get("warm_start")
    return 0 if not source else 1 + _warm_start_depth(grid, source)


def restore(grid: dict) -> list[Path]:
    """On a fresh machine, put every finished run with a record and committed weights, whose run folder has
    no checkpoint, back into its run folder (the weights' checkpoint and the files its train and gaps jobs wrote), dated before its record
    and after the run it warm-starts from, so that Snakemake neither retrains nor re-measures it and its
    later measurements (k_curve, ais, ...) read it. Returns the folders restored."""
    done = []
    records = {cell: record_path(grid, *cell) for cell in cells(grid)}
    present = [cell for cell, path in records.items() if path.exists()]
    if not present:
        return done
    base = min(records[cell].stat().st_mtime for cell in present) - 10_000
    for dataset, run, seed in present:
        folder, weights = run_dir(grid, dataset, run, seed), weights_dir(grid, dataset, run, seed)
        if (folder / "checkpoint.pt").exists() or not all((weights / f).exists() for f in ("checkpoint.pt", *RESTORED_FILES[:2])):
            continue  # a run folder with a checkpoint is live (an interrupted job resumes from it): never overwritten
        folder.mkdir(parents=True, exist_ok=True)
        when = base + 10 * _warm_start_depth(grid, run)
        for name in ("checkpoint.pt", *RESTORED_FILES):
            if (weights / name).exists():
                shutil.copy(weights / name, folder / name)
                stamp = when + (1 if name == "gaps.json" else 0)  # gaps after the training it measures
                os.utime(folder / name, (stamp, stamp))
        done.append(folder)
    for names in (("bdmc",), tuple(n for n in MEASUREMENT_KEYS if n != "bdmc")):  # certificates before the AIS they certify
        for dataset, run, seed in present:
            restore_measurements(grid, dataset, run, seed, names)
    return done


RECORD_ONLY_KEYS = ("run", "seed", "profile", "budget", "wall_seconds", "command")  # what a record adds to a measurement


def restore_measurements(grid: dict, dataset: str, run: str, seed: int,
                         names: tuple[str, ...] = tuple(MEASUREMENT_KEYS)) -> list[Path]:
    """Write back ``RUN_DIR/<name>.json`` of a finished run (its folder has ``metrics.json``) for every
    measurement of ``names`` whose committed record holds it, measured with the grid's settings of it
    (:func:`measurement_settings`; a record of other settings is left to be measured again), and whose
    file is missing, dated one second after the newest file it was measured from (the run's training and
    gaps, the AIS certificate's ``bdmc.json``, a difficulty's reference run, the settings file), so that
    Snakemake does not measure it again (an AIS of 500 images, a BDMC certificate). The measuring job's
    wall time comes back with it, for a record rewritten from it (:func:`_measured`). Returns the files
    written."""
    from .training import read_json

    folder = run_dir(grid, dataset, run, seed)
    if not (folder / "metrics.json").exists():
        return []
    written = []
    for name in names:
        target = folder / f"{name}.json"
        path = committed_measurement_path(grid, name, dataset, run, seed)
        if target.exists() or not path.exists():
            continue
        saved = read_json(path, "a committed record")
        measured = saved if name in PER_RUN_MEASUREMENTS else saved.get("runs", {}).get(run)
        if measured is None or recorded_settings(saved, name) != measurement_settings(grid, name, dataset):
            continue
        values = {k: v for k, v in measured.items() if k not in (*RECORD_ONLY_KEYS, name)}
        values["wall_seconds"] = measured.get("wall_seconds")
        target.write_text(json.dumps({**values, "run_dir": str(folder)}, indent=1))
        inputs = [f for f in _measured_from(grid, name, dataset, run, seed) if f.exists() and f != target]
        stamp = max(f.stat().st_mtime for f in inputs) + 1  # after what it measured, before the record
        os.utime(target, (stamp, stamp))
        written.append(target)
    return written


def _measured_from(grid: dict, name: str, dataset: str, run: str, seed: int) -> list[Path]:
    """The files the Snakefile's rule for measurement ``name`` of one run reads: run-folder files and the
    measurement's settings file (:func:`settings_path`)."""
    folders = [run_dir(grid, dataset, run, seed)]
    spec = measurement(grid, name, dataset) or {}
    if name == "difficulty" and spec.get("reference"):
        folders.append(run_dir(grid, dataset, spec["reference"], seed))
    files = [folder / f for folder in folders for f in ("metrics.json", "gaps.json")]
    if name == "ais" and spec.get("certificate"):
        files.append(run_dir(grid, dataset, spec["certificate"], seed) / "bdmc.json")
    return [*files, settings_path(grid, name, dataset)]


def park(grid: dict) -> list[Path]:
    """Copy the latest checkpoint of every started, unfinished run of the grid to
    :func:`parked_checkpoint`, so that a fresh machine resumes it (:func:`unpark`). Returns the copies."""
    parked = []
    for dataset, run, seed in cells(grid):
        folder = run_dir(grid, dataset, run, seed)
        if (folder / "checkpoint.pt").exists() and not (folder / "metrics.json").exists():
            target = parked_checkpoint(grid, dataset, run, seed)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(folder / "checkpoint.pt", target.with_suffix(".partial"))
            target.with_suffix(".partial").replace(target)
            parked.append(target)
    return parked


def unpark(grid: dict, dataset: str, run: str, seed: int) -> bool:
    """Before a training job: put the run's parked checkpoint into its folder when the folder has none.
    Returns whether it did."""
    folder, parked = run_dir(grid, dataset, run, seed), parked_checkpoint(grid, dataset, run, seed)
    if parked.exists() and not (folder / "checkpoint.pt").exists():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(parked, folder / "checkpoint.pt")
        return True
    return False


def record_path(grid: dict, dataset: str, run: str, seed: int) -> Path:
    return Path(grid["results_dir"]) / dataset / f"{run}_seed{seed}.json"


DATASET_ONLY_KEYS = ("skip", "seeds", "evaluation", "overrides", *MEASUREMENT_KEYS)


def evaluation(grid: dict, dataset: str) -> dict:
    """The grid's evaluation settings with the dataset's own ``evaluation`` overrides."""
    return {**grid["evaluation"], **(grid["datasets"][dataset] or {}).get("evaluation", {})}


def subset_seed_option(grid: dict, dataset: str) -> str:
    """``--subset-seed S`` when the grid's evaluation draws its gap subset at random (``subset_seed``), else
    nothing: the first ``gap_subset`` test images, as the grids before seeded subsets declared."""
    seed = evaluation(grid, dataset).get("subset_seed")
    return f"--subset-seed {seed}" if seed is not None else ""


def measurement(grid: dict, name: str, dataset: str) -> dict | None:
    """The grid's measurement ``name`` (a key of :data:`MEASUREMENT_KEYS`) with the dataset's own
    overrides and without the runs the dataset skips, or None when the grid has none."""
    if grid.get(name) is None:
        return None
    spec = {**grid[name], **(grid["datasets"][dataset] or {}).get(name, {})}
    skipped = (grid["datasets"][dataset] or {}).get("skip", [])
    return {**spec, "runs": [run for run in spec.get("runs", []) if run not in skipped]}


def measurement_settings(grid: dict, name: str, dataset: str) -> dict | None:
    """What a value of measurement ``name`` on ``dataset`` depends on: its spec (:func:`measurement`)
    without the runs and seeds it covers (adding a run does not change the others' values)."""
    spec = measurement(grid, name, dataset)
    return None if spec is None else recorded_settings({name: spec}, name)


def recorded_settings(record: dict, name: str) -> dict:
    """The settings (:func:`measurement_settings`) a committed record of measurement ``name`` was made
    with: the values of the keys the measurement takes now (:data:`MEASUREMENT_KEYS`; None where the
    record predates a key). A key it no longer takes is not a setting of it (ais's L, which the BDMC
    certificate now fixes and the record's ``settings`` state)."""
    spec = record.get(name) or {}
    return {k: spec.get(k) for k in MEASUREMENT_KEYS[name] if k != "runs"}


def settings_path(grid: dict, name: str, dataset: str) -> Path:
    """``RUNS_DIR/<dataset>/<name>.settings.json``: the file whose date is that of the measurement's
    settings on this machine (:func:`date_settings`); every job of the measurement reads it."""
    return Path(grid["runs_dir"]) / dataset / f"{name}.settings.json"


def date_settings(grid: dict) -> list[Path]:
    """Write :func:`settings_path` of every measurement and dataset of the grid whose settings
    (:func:`measurement_settings`) differ from the file's, dated now, so that Snakemake (rerun-triggers
    mtime) measures again every run whose value predates a change of its settings. A file written for the
    first time is dated at the epoch (the values already on this machine are taken as measured with these
    settings; a committed record of other settings is never restored, :func:`restore_measurements`),
    unless a committed record of the measurement on that dataset holds other settings
    (:func:`records_of_other_settings`): then it is dated now, and what this machine has is measured again.
    Returns the files written."""
    written = []
    for name in MEASUREMENT_KEYS:
        datasets_of_other_settings = None  # read once per measurement, only if some file is new
        for dataset in grid["datasets"]:
            settings = measurement_settings(grid, name, dataset)
            path = settings_path(grid, name, dataset)
            if settings is None or (path.exists() and json.loads(path.read_text()) == settings):
                continue
            first = not path.exists()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(settings, indent=1, sort_keys=True))
            if first:
                if datasets_of_other_settings is None:
                    datasets_of_other_settings = {d for d, *_ in records_of_other_settings(grid, name)}
                if dataset not in datasets_of_other_settings:
                    os.utime(path, (0, 0))
            written.append(path)
    return written


def records_of_other_settings(grid: dict, name: str) -> list[tuple[str, Path, list[str], int]]:
    """The committed records of measurement ``name`` measured with other settings than the grid's
    (:func:`measurement_settings`): (dataset, path, the runs it holds, seed) each."""
    from .training import read_json

    per_run = name in PER_RUN_MEASUREMENTS
    cells = run_measurement_cells(grid, name) if per_run else [
        (dataset, None, seed) for dataset, seed in measurement_cells(grid, name)]
    found = []
    for dataset, run, seed in cells:
        path = committed_measurement_path(grid, name, dataset, run, seed)
        if not path.exists():
            continue
        saved = read_json(path, "a committed record")
        if recorded_settings(saved, name) != measurement_settings(grid, name, dataset):
            found.append((dataset, path, [run] if per_run else list(saved.get("runs", {})), seed))
    return found


def stale_records(grid: dict) -> list[Path]:
    """Committed measurement records of other settings than the grid's (:func:`records_of_other_settings`)
    whose run-folder file this machine lacks (a fresh machine): Snakemake would keep them as they are.
    Where the file is present, :func:`date_settings` has it measured again."""
    return [path for name in MEASUREMENT_KEYS for dataset, path, runs, seed in records_of_other_settings(grid, name)
            if not all((run_dir(grid, dataset, r, seed) / f"{name}.json").exists() for r in runs)]


def measured_runs(spec: dict) -> list[str]:
    """Every run a measurement reads: its ``runs`` (each writes ``RUN_DIR/<name>.json``), its ``reference``
    (difficulty) and its ``certificate`` (ais: the run whose ``bdmc.json`` fixes T)."""
    return [*spec["runs"], *[spec[key] for key in ("reference", "certificate") if key in spec]]


def bdmc_settings(spec: dict) -> list:
    """The AIS settings (T, L) a ``bdmc`` measurement certifies: every T of ``steps`` with the one L of
    ``leapfrog``, or with the L at the same place of a ``leapfrog`` list (:func:`gpvae.ais.settings_grid`)."""
    from .evaluation import settings_grid

    return settings_grid(spec["steps"], spec["leapfrog"], chains=spec["chains"])


def certified_setting(bdmc_result: dict, max_width: float) -> dict:
    """The protocol's AIS setting from a ``bdmc.json``: of the settings (T, L) measured, the one of fewest
    decoder passes per image (T × L × chains) whose mean sandwich width is at most ``max_width`` nats, else
    the one of most passes (``certified`` False; with one L, the largest T), with the width reached."""
    from .evaluation import AISSettings

    def passes(entry: dict) -> int:
        return AISSettings(**entry["settings"]).decoder_passes

    sandwich = sorted(bdmc_result["sandwich"], key=lambda s: (passes(s), s["width"]))
    chosen = next((s for s in sandwich if s["width"] <= max_width),
                  min(sandwich, key=lambda s: (-passes(s), s["width"])))
    return {"steps": chosen["settings"]["steps"], "leapfrog": chosen["settings"]["leapfrog"],
            "decoder_passes": passes(chosen), "width": chosen["width"], "max_width": max_width,
            "certified": chosen["width"] <= max_width}


def _certified_ais(grid: dict, dataset: str, seed: int) -> tuple[dict, object]:
    """The certificate of the dataset and seed's AIS (:func:`certified_setting` on its certificate run's
    ``bdmc.json``) and the AIS settings it fixes."""
    from .evaluation import AISSettings
    from .training import read_json

    spec, bdmc_spec = measurement(grid, "ais", dataset), measurement(grid, "bdmc", dataset)
    folder = run_dir(grid, dataset, spec["certificate"], seed)
    bdmc = read_json(folder / "bdmc.json", "run the grid's bdmc job first")
    if "diverged" in bdmc:
        raise ConfigError(f"{dataset} seed {seed}: the AIS certificate run {spec['certificate']!r} diverged "
                          f"({bdmc['diverged']}), so no BDMC certificate fixes T for this dataset and seed; "
                          "name a run that trained as the grid's ais certificate")
    certificate = certified_setting(bdmc, bdmc_spec["max_width"])
    return certificate, AISSettings(steps=certificate["steps"], chains=spec["chains"], leapfrog=certificate["leapfrog"])


def ais_measurement(grid: dict, dataset: str, run: str, seed: int) -> dict:
    """The grid's AIS of one run (the Snakefile's ``ais`` job): T and L certified by the BDMC of the
    measurement's ``certificate`` run of the same dataset and seed, the seeded test subset, the
    protocol's K for the importance-sampling estimate beside it. Writes ``RUN_DIR/ais.json``."""
    from .training import ais_run

    spec = measurement(grid, "ais", dataset)
    certificate, settings = _certified_ais(grid, dataset, seed)
    return ais_run(run_dir(grid, dataset, run, seed), settings, spec["subset"], spec["subset_seed"],
                   evaluation(grid, dataset)["eval_k"], device=grid["device"],
                   certificate={**certificate, "run": spec["certificate"]}, gap_subset=True)


AIS_COST_IMAGES, AIS_COST_REPEATS = 100, 3  # one batch of test images (as the AIS jobs run them), interleaved repeats


def ais_cost_measurement(grid: dict, dataset: str) -> dict:
    """AIS at the certified setting against the protocol's IS, seconds per image on the certificate run of
    the first seed (:func:`gpvae.bench.ais_cost`): the Snakefile's ``ais_cost`` job, which holds every core."""
    from .bench import ais_cost

    seed = grid["seeds"][0]
    certificate, settings = _certified_ais(grid, dataset, seed)
    folder = run_dir(grid, dataset, measurement(grid, "ais", dataset)["certificate"], seed)
    return {**ais_cost(folder, settings, AIS_COST_IMAGES, evaluation(grid, dataset)["eval_k"], AIS_COST_REPEATS,
                       device=grid["device"]), "certificate": certificate, "dataset": dataset}


def ood_measurement(grid: dict, dataset: str, run: str, seed: int) -> dict:
    """The grid's out-of-distribution measurement of one run (the Snakefile's ``ood`` job,
    :func:`gpvae.training.ood_run`). Writes ``RUN_DIR/ood.json``."""
    from .training import ood_run

    spec = measurement(grid, "ood", dataset)
    return ood_run(run_dir(grid, dataset, run, seed), spec["sets"], spec["images"], spec["subset_seed"],
                   spec["ood_seed"], spec["elbo_samples"], device=grid["device"])


def frontier_measurement(grid: dict, dataset: str, run: str, seed: int) -> dict:
    """The grid's accuracy–cost frontier of R4 on one VAE run (the Snakefile's ``frontier`` job,
    :func:`gpvae.frontier.frontier_run`). Writes ``RUN_DIR/frontier.json``."""
    from .frontier import frontier_run

    spec = measurement(grid, "frontier", dataset)
    return frontier_run(run_dir(grid, dataset, run, seed), spec["settings"], spec["repeats"], device=grid["device"])


def measured_at(grid: dict, name: str, dataset: str, seed: int) -> list[str]:
    """The runs of a grouped measurement at ``seed``: its cells of that dataset and seed
    (:func:`run_measurement_cells`: a run's seeds and the measurement's own)."""
    return [run for d, run, s in run_measurement_cells(grid, name) if (d, s) == (dataset, seed)]


def measurement_cells(grid: dict, name: str) -> list[tuple[str, int]]:
    """The (dataset, seed) pairs of a grouped measurement: those with at least one of its runs measured
    (:func:`run_measurement_cells`); the record holds the runs present (:func:`measured_at`)."""
    pairs = {(dataset, seed) for dataset, _, seed in run_measurement_cells(grid, name)}
    return [(dataset, seed) for dataset in grid["datasets"] for seed in sorted(s for d, s in pairs if d == dataset)]


def measurement_path(grid: dict, name: str, dataset: str, seed: int) -> Path:
    """A measurement's committed record (one folder down, so that :func:`gpvae.report.load_records` skips it)."""
    return Path(grid["results_dir"]) / dataset / name / f"seed{seed}.json"


def run_measurement_path(grid: dict, name: str, dataset: str, run: str, seed: int) -> Path:
    """The committed record of a per-run measurement (:data:`PER_RUN_MEASUREMENTS`) of one run."""
    return Path(grid["results_dir"]) / dataset / name / f"{run}_seed{seed}.json"


def committed_measurement_path(grid: dict, name: str, dataset: str, run: str | None, seed: int) -> Path:
    """The committed record holding measurement ``name`` of a run: its own record for a per-run measurement
    (:func:`run_measurement_path`), else its dataset and seed's (:func:`measurement_path`)."""
    if name in PER_RUN_MEASUREMENTS:
        return run_measurement_path(grid, name, dataset, run, seed)
    return measurement_path(grid, name, dataset, seed)


def run_measurement_cells(grid: dict, name: str) -> list[tuple[str, str, int]]:
    """The (dataset, run, seed) cells a measurement measures: its runs' cells of the grid (:func:`cells`),
    at the measurement's own ``seeds`` when it names them, with its
    ``certificate`` or ``reference`` run present at the same seed."""
    present = cells(grid)
    result = []
    for dataset in grid["datasets"]:
        spec = measurement(grid, name, dataset)
        if not spec:
            continue
        others = [spec[k] for k in ("reference", "certificate") if k in spec]
        result += [(dataset, run, seed) for run in spec["runs"]
                   for seed in sorted(s for d, r, s in present if (d, r) == (dataset, run))
                   if seed in spec.get("seeds", [seed]) and all((dataset, o, seed) in present for o in others)]
    return result


def run_measurement_record(grid: dict, name: str, dataset: str, run: str, seed: int, command: str) -> dict:
    """The committed record of one run's per-run measurement: its ``RUN_DIR/<name>.json`` (values and
    provenance), the settings and the job's wall time; refused for a cell the measurement does not measure."""
    if (dataset, run, seed) not in run_measurement_cells(grid, name):
        raise ConfigError(f"{name} of {dataset}/{run}/seed {seed}: not a cell of the grid's {name} measurement "
                          f"(its runs: {(measurement(grid, name, dataset) or {}).get('runs', [])}); no record is written")
    return {"dataset": dataset, "run": run, "seed": seed, "profile": grid["profile"], "budget": grid["budget"],
            name: measurement(grid, name, dataset), **_measured(grid, name, dataset, run, seed), "command": command}


RECORD_TOLERANCE = 1e-4  # nats: a run folder's test log p̂ beyond this from its committed record's is another model
FLOAT32_ULPS = 4  # ... or beyond this many float32 steps at the value's size (−1804 nats: one step is 1.2e-4)


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


def check_recorded_model(grid: dict, dataset: str, run: str, seed: int, measured: dict | None = None) -> None:
    """Refuse to record a measurement of a run folder whose model is not the one of the run's committed
    record (a run retrained to be measured, on another machine or by other code): the measurement would
    sit beside the record's numbers as if of one model. Compares the folder's test log p̂ and the gap
    decomposition the measurement used (``measured["gap_subset"]`` when it has one, else the folder's
    ``gaps.json``) with the record's; a gap decomposition of other images is named as such. Raises
    :class:`ConfigError` naming both values."""
    from .training import read_json

    committed = record_path(grid, dataset, run, seed)
    if not committed.exists():
        return
    folder = run_dir(grid, dataset, run, seed)
    record = read_json(committed, "restore it with git checkout")
    recorded_gaps = record.get("gaps", {})
    rewrite = (f"({committed}): the run was retrained into another model; rewrite its record first "
               f"(snakemake --profile workflow/profiles/{grid['profile']} {committed})")
    ours, theirs = read_json(folder / "metrics.json", "run the grid's train job first").get("test_ll"), record.get("test_ll")
    if ours is not None and theirs is not None and not same_recorded_value(ours, theirs):
        raise ConfigError(f"{folder}: its model's test log p̂ {ours:.4f} is not the committed record's {theirs:.4f} "
                          + rewrite)
    used = (measured or {}).get("gap_subset")
    gaps = read_json(folder / "gaps.json", "run the grid's gaps job first") if (folder / "gaps.json").exists() else {}
    if used is None and "diverged" not in gaps and gaps:  # a diverged run's gaps.json says so and holds no decomposition
        used = {"n": gaps["n"], "subset_seed": gaps.get("subset_seed"), "is": gaps["log_px"]["mean"],
                "elbo_opt": gaps["elbo_opt"]["mean"]}
    mismatch = gap_decomposition_mismatch(used, recorded_gaps) if used is not None and recorded_gaps else None
    if mismatch is not None:
        raise ConfigError(f"{folder}: its {mismatch} " + (f"({committed}): rerun the grid's gaps job"
                                                          if "covers" in mismatch else rewrite))


def _measured(grid: dict, name: str, dataset: str, run: str, seed: int) -> dict:
    """A run's ``RUN_DIR/<name>.json`` without its folder, with the measuring job's wall time (from its
    Snakemake benchmark, or the one a restored measurement brought back; the run's model checked against
    its committed record, :func:`check_recorded_model`)."""
    from .training import read_json

    folder = run_dir(grid, dataset, run, seed)
    result = read_json(folder / f"{name}.json", f"run the grid's {name} job first")
    check_recorded_model(grid, dataset, run, seed, result)
    reference = measurement(grid, name, dataset).get("reference")
    if reference:  # difficulty reads the reference's gap decomposition: its model is checked too
        check_recorded_model(grid, dataset, reference, seed)
    result.pop("run_dir")
    restored = "wall_seconds" in result  # a fresh measurement's file has none: its job's benchmark does
    wall = result.pop("wall_seconds") if restored else _wall_seconds(folder / f"{name}_benchmark.tsv")[0]
    return {**result, "wall_seconds": wall}


def measurement_record(grid: dict, name: str, dataset: str, seed: int, command: str) -> dict:
    """The committed record of a measurement of one dataset and seed: the settings and, per measured run,
    its ``RUN_DIR/<name>.json`` (values and provenance) and the job's wall time."""
    spec = measurement(grid, name, dataset)
    if (dataset, seed) not in measurement_cells(grid, name):
        raise ConfigError(f"{name} of {dataset} at seed {seed}: no run of the grid is measured there "
                          f"(cells: {measurement_cells(grid, name)}); an empty record is not written")
    runs = {run: _measured(grid, name, dataset, run, seed) for run in measured_at(grid, name, dataset, seed)}
    return {"dataset": dataset, "seed": seed, "profile": grid["profile"], "budget": grid["budget"], name: spec,
            "runs": runs, "command": command}


def chapter_parameters(grid: dict, dataset: str, run: str, seed: int) -> dict:
    """The training chapter's papermill parameters for one cell; raises :class:`ConfigError` for an
    invalid combination (checked by building its :class:`TrainConfig`). Precedence: the dataset's
    options (``epochs``, ``max_train``, ...) < the run's < the dataset's ``overrides`` of that run."""
    data_spec = grid["datasets"][dataset] or {}
    data = {k: v for k, v in data_spec.items() if k not in DATASET_ONLY_KEYS}
    spec = {**data, **grid["runs"][run], **data_spec.get("overrides", {}).get(run, {})}
    warm_start = spec.pop("warm_start", None)
    for key in ("note", "control_for", "seeds"):
        spec.pop(key, None)
    settings = evaluation(grid, dataset)
    params = {"model": spec.pop("model"), "dataset": dataset, "epochs": spec.pop("epochs", None),
              "max_train": spec.pop("max_train", None), "max_test": settings["max_test"],
              "eval_k": settings["eval_k"], "seed": seed, "device": grid["device"],
              "out": str(run_dir(grid, dataset, run, seed))}
    if warm_start:
        spec["init_from"] = str(source_dir(grid, dataset, warm_start, seed))
    params["options"] = spec
    TrainConfig(**{**{k: v for k, v in params.items() if k != "options"},
                   **spec})
    return params


def papermill_yaml(parameters: dict) -> str:
    """``parameters`` as one line of YAML for ``papermill -y``: YAML, not JSON, because YAML 1.1 reads
    JSON's ``1e-05`` as a string."""
    return yaml.safe_dump(parameters, default_flow_style=True, width=float("inf")).strip()


def _wall_seconds(benchmark_tsv: Path) -> tuple[float | None, float | None]:
    """Wall seconds and peak resident memory (MB) from a Snakemake ``benchmark:`` file."""
    if not benchmark_tsv.exists():
        return None, None
    with benchmark_tsv.open() as handle:
        row = next(csv.DictReader(handle, delimiter="\t"))
    as_float = lambda v: float(v) if v not in (None, "", "-", "NA") else None
    return as_float(row.get("s")), as_float(row.get("max_rss"))


def diverged(folder: str | Path, output: str | Path | None = None) -> bool:
    """Whether the run in ``folder`` diverged. After a failed training job (no ``output``): when the
    training wrote ``diverged.json``, make it the run's ``metrics.json`` (a divergence is a result). For a
    later job of a diverged run: write ``output`` saying so. Returns whether the run diverged."""
    from .training import DIVERGED, METRICS, _write_json, read_json

    folder = Path(folder)
    if output is None:
        if not (folder / DIVERGED).exists():
            return False
        _write_json(folder / METRICS, read_json(folder / DIVERGED, "a training's divergence"))
        return True
    metrics = read_json(folder / METRICS, "run the grid's train job first")
    if "diverged" not in metrics:
        return False
    _write_json(Path(output), {"diverged": metrics["diverged"], "run_dir": str(folder)})
    return True


def record(grid: dict, dataset: str, run: str, seed: int, command: str) -> dict:
    """The committed record of one finished cell: the protocol's numbers, the gap decomposition,
    the per-epoch history (validation ELBO and the model's diagnostics), the data fits, and provenance
    (commit, exact options, device, wall time, budget); for a run that diverged, its ``diverged`` message
    in place of the numbers."""
    from .training import read_json

    folder = run_dir(grid, dataset, run, seed)
    metrics = read_json(folder / "metrics.json", "run the grid's train job first")
    head = {"dataset": dataset, "run": run, "seed": seed, "profile": grid["profile"], "budget": grid["budget"],
            "note": grid["runs"][run].get("note")}
    if "diverged" in metrics:
        kept = ("model", "diverged", "epochs_done", "options", "git_commit", "torch_version", "gpytorch_version", "device")
        return {**head, **{k: metrics[k] for k in kept if k in metrics}, "command": command}
    gaps = read_json(folder / "gaps.json", "run the grid's gaps job first")
    wall, rss = _wall_seconds(folder / "benchmark.tsv")
    keys = ("model", "test_ll", "test_elbo", "test_bpd", "test_elbo_bpd", "eval_k", "n_test", "epochs_done",
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
    ``amortization_gap`` [nats] and ``gap_n`` (test images it was computed on)."""
    gaps = record.get("gaps", {})  # none for a run that diverged
    return {**record, "approximation_gap": gaps.get("approximation_gap"), "amortization_gap": gaps.get("amortization_gap"),
            "gap_n": gaps.get("n")}


def table_rows(records: list[dict]) -> list[dict]:
    """One flat row per record, in :data:`TABLE_COLUMNS` order."""
    rows = [{c: flat.get(c) for c in TABLE_COLUMNS} for flat in map(flat_record, records)]
    return sorted(rows, key=lambda row: (row["dataset"], row["run"], row["seed"]))


def write_table(records: list[dict], path: str | Path) -> None:
    with Path(path).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        writer.writerows(table_rows(records))


BENCH_SKIPPED = ("epochs", "out", "max_train", "max_test", "eval_k", "resume", "init_from", "freeze", "lr")


def bench_grid(grid: dict, dataset: str, data_dir: str | None = None) -> dict:
    """Inference and training-step cost of every architecture among the runs of ``dataset`` beside
    the VAE, in one process (:func:`gpvae.bench.bench`): ``{run: report}``. Warm starts, freezing and
    the learning rate are training schedules, not architectures, so they are left out, and a run whose
    model and options repeat another's (a control such as ``vae_extra``) is not timed again: of those, the
    run named after its model (``vae``) is timed, else the first."""
    from .bench import bench

    reports, timed = {}, set()
    runs = list(dict.fromkeys(r for d, r, _ in cells(grid) if d == dataset))
    for run in sorted(runs, key=lambda r: r != grid["runs"][r]["model"]):  # stable: the grid's order otherwise
        params = chapter_parameters(grid, dataset, run, grid["seeds"][0])
        options = {k: v for k, v in params["options"].items() if k not in BENCH_SKIPPED}
        architecture = json.dumps([params["model"], options], sort_keys=True)
        if architecture in timed:
            continue
        timed.add(architecture)
        config = TrainConfig(model=params["model"], dataset=dataset, device=grid["device"], data_dir=data_dir,
                             **options)
        reports[run] = bench([config.model], config, grid["bench"]["repeats"])
    return reports


def _grid_argument(text: str) -> dict:
    """A grid given on the command line: a YAML file's path, or the grid itself as JSON (from the Snakefile)."""
    return check_grid(json.loads(text)) if text.lstrip().startswith("{") else load_grid(text)


def main(argv: list[str] | None = None) -> int:
    """``python -m gpvae.workflow bench|ais_cost GRID_JSON DATASET OUT``: the Snakefile's benchmark jobs;
    ``python -m gpvae.workflow ais|frontier|ood GRID_JSON DATASET RUN SEED``: the Snakefile's AIS,
    frontier and out-of-distribution jobs;
    ``python -m gpvae.workflow targets GRID.yaml DATASET SEED``: the record paths of one dataset and
    seed, relative to the working folder (``make results`` gives them priority from the repository, so that
    one dataset completes first)."""
    import argparse

    from .training import _write_json

    parser = argparse.ArgumentParser(prog="python -m gpvae.workflow")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("bench", "ais_cost"):
        one = commands.add_parser(name)
        one.add_argument("grid", help="the grid as JSON")
        one.add_argument("dataset")
        one.add_argument("out")
    for name, what in (("park", "commit the latest checkpoint of every unfinished run of the grid"),
                       ("unpark", "restore one run's parked checkpoint into its folder")):
        one = commands.add_parser(name, help=what)
        one.add_argument("grid", help="grid file (YAML), or the grid as JSON")
        if name == "unpark":
            one.add_argument("dataset")
            one.add_argument("run")
            one.add_argument("seed", type=int)
    for name in ("ais", "frontier", "ood"):
        one = commands.add_parser(name)
        one.add_argument("grid", help="the grid as JSON")
        one.add_argument("dataset")
        one.add_argument("run")
        one.add_argument("seed", type=int)
    one = commands.add_parser("diverged", help="after a failed training job, record its divergence (exit 0) or "
                                                "fail (exit 1); with OUTPUT, write it for a later job of a diverged run")
    one.add_argument("run_dir")
    one.add_argument("output", nargs="?")
    targets_parser = commands.add_parser("targets")
    targets_parser.add_argument("grid", help="grid file (YAML)")
    targets_parser.add_argument("dataset")
    targets_parser.add_argument("seed", type=int)
    args = parser.parse_args(argv)
    if args.command == "bench":
        _write_json(Path(args.out), bench_grid(check_grid(json.loads(args.grid)), args.dataset))
    elif args.command == "ais_cost":
        grid = check_grid(json.loads(args.grid))
        _write_json(Path(args.out), {**ais_cost_measurement(grid, args.dataset),
                                     "command": f"snakemake --profile workflow/profiles/{grid['profile']} {args.out}"})
    elif args.command == "ais":
        ais_measurement(check_grid(json.loads(args.grid)), args.dataset, args.run, args.seed)
    elif args.command == "frontier":
        frontier_measurement(check_grid(json.loads(args.grid)), args.dataset, args.run, args.seed)
    elif args.command == "ood":
        ood_measurement(check_grid(json.loads(args.grid)), args.dataset, args.run, args.seed)
    elif args.command == "diverged":
        return 0 if diverged(args.run_dir, args.output) else 1
    elif args.command == "park":
        print("\n".join(f"parked {path}" for path in park(_grid_argument(args.grid))) or "nothing to park")
    elif args.command == "unpark":
        if unpark(_grid_argument(args.grid), args.dataset, args.run, args.seed):
            print(f"restored the parked checkpoint of {args.dataset}/{args.run}/seed {args.seed}")
    else:
        grid = load_grid(args.grid)
        paths = ([record_path(grid, d, r, s) for d, r, s in cells(grid) if d == args.dataset and s == args.seed]
                 + [measurement_path(grid, name, d, s) for name in GROUPED_MEASUREMENTS
                    for d, s in measurement_cells(grid, name) if d == args.dataset and s == args.seed]
                 + [run_measurement_path(grid, name, d, r, s) for name in PER_RUN_MEASUREMENTS
                    for d, r, s in run_measurement_cells(grid, name) if d == args.dataset and s == args.seed])
        print(" ".join(os.path.relpath(path) for path in paths))  # Snakemake's targets, from where it runs
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
