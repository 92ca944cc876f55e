"""What outlives a machine: a finished run's committed weights, an unfinished run's parked checkpoint,
and a fresh machine restored from them (run folders and measurement files dated so that Snakemake
neither retrains nor re-measures what the records hold)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..io import atomic_write, read_json, write_json
from ..run_folder import load_checkpoint, save_checkpoint
from ..layout import CHECKPOINT, MEASURED_FILES, METRICS, RESTORED_FILES, measurement_file
from . import steps
from .records import RECORD_ONLY_KEYS, records_of_other_settings
from .schema import MEASUREMENT_KEYS, PER_RUN_MEASUREMENTS, recorded_settings


def commit_weights(grid, dataset: str, run: str, seed: int) -> Path:
    """Write a finished run's best parameters (float32, no optimizer state) and the files its train and
    gaps jobs wrote to its weights folder, and drop its parked checkpoint. Returns the folder."""
    layout = grid.layout
    folder, target = layout.run_dir(dataset, run, seed), layout.weights_dir(dataset, run, seed)
    saved = load_checkpoint(folder)
    best = {k: v.float() if v.is_floating_point() else v for k, v in saved["best_model"].items()}
    slim = {k: saved[k] for k in ("config", "epoch", "best_epoch", "best_valid_elbo", "history", "fits", "stopped")
            if k in saved}
    save_checkpoint(target / CHECKPOINT, {**slim, "model": best, "best_model": best})
    for name in RESTORED_FILES:
        _copy(folder / name, target / name)
    drop_parked(grid, dataset, run, seed)
    return target


def commit_measured(grid, dataset: str, run: str, seed: int, name: str) -> Path | None:
    """Copy ``<name>.json``, a file of :data:`~gpvae.layout.RESTORED_FILES` measured after the run's record (the
    reference's gap decomposition of ``difficulty_large``), from a finished run's folder to its committed weights,
    so that a fresh machine restores it with them. Returns the copy; None where the grid commits no weights
    or the run has none committed."""
    layout, file = grid.layout, f"{name}.json"
    if file not in RESTORED_FILES:
        raise ValueError(f"{file} is not restored with a run's weights ({', '.join(RESTORED_FILES)})")
    target = layout.weights_dir(dataset, run, seed)
    if not grid.commit_weights or not (target / CHECKPOINT).exists():
        return None
    return _copy(layout.run_dir(dataset, run, seed) / file, target / file)


def _copy(source: Path, target: Path) -> Path | None:
    """An atomic copy of ``source``, where it exists."""
    if not source.exists():
        return None
    atomic_write(target, lambda partial: shutil.copy(source, partial))
    return target


def drop_parked(grid, dataset: str, run: str, seed: int) -> None:
    """Remove a run's parked checkpoint once the run has its record, finished or diverged: a fresh machine
    must not resume a run that is done. The folder goes with it (and a copy an interrupted park left)."""
    folder = grid.layout.parked_checkpoint(dataset, run, seed).parent
    if folder.exists():
        shutil.rmtree(folder)


def park(grid) -> list[Path]:
    """Copy the latest checkpoint of every started, unfinished run of the grid to its parked checkpoint,
    so that a fresh machine resumes it (:func:`unpark`). Returns the copies."""
    parked = []
    for dataset, run, seed in grid.cells():
        folder = grid.layout.run_dir(dataset, run, seed)
        if (folder / CHECKPOINT).exists() and not (folder / METRICS).exists():
            target = grid.layout.parked_checkpoint(dataset, run, seed)
            parked.append(atomic_write(target, lambda partial, source=folder / CHECKPOINT: shutil.copy(source, partial)))
    return parked


def unpark(grid, dataset: str, run: str, seed: int) -> bool:
    """Before a training job: put the run's parked checkpoint into its folder when the folder has none
    (:func:`gpvae.runs.steps.unpark`). Returns whether it did."""
    return steps.unpark(grid.layout.parked_checkpoint(dataset, run, seed), grid.layout.run_dir(dataset, run, seed))


def _warm_start_depth(grid, run: str) -> int:
    source = grid.runs[run].get("warm_start")
    return 0 if not source else 1 + _warm_start_depth(grid, source)


def restore(grid) -> list[Path]:
    """On a fresh machine, put every finished run with a record and committed weights, whose run folder has
    no checkpoint, back into its run folder (the weights' checkpoint and the files its train and gaps jobs
    wrote), dated before its record and after the run it warm-starts from, so that Snakemake neither
    retrains nor re-measures it and its later measurements read it. Returns the folders restored."""
    layout, done = grid.layout, []
    records = {cell: layout.record_path(*cell) for cell in grid.cells()}
    present = [cell for cell, path in records.items() if path.exists()]
    if not present:
        return done
    base = min(records[cell].stat().st_mtime for cell in present) - 10_000
    for dataset, run, seed in present:
        folder, weights = layout.run_dir(dataset, run, seed), layout.weights_dir(dataset, run, seed)
        if (folder / CHECKPOINT).exists() or not all((weights / f).exists() for f in (CHECKPOINT, *RESTORED_FILES[:2])):
            continue  # a run folder with a checkpoint is live (an interrupted job resumes from it): never overwritten
        folder.mkdir(parents=True, exist_ok=True)
        when = base + 10 * _warm_start_depth(grid, run)
        for name in (CHECKPOINT, *RESTORED_FILES):
            if _copy(weights / name, folder / name):
                stamp = when + (1 if name in MEASURED_FILES else 0)  # gaps after the training they measure
                os.utime(folder / name, (stamp, stamp))
        done.append(folder)
    for names in (("bdmc",), tuple(n for n in MEASUREMENT_KEYS if n != "bdmc")):  # certificates before the AIS they certify
        for dataset, run, seed in present:
            restore_measurements(grid, dataset, run, seed, names)
    return done


def restore_measurements(grid, dataset: str, run: str, seed: int,
                         names: tuple[str, ...] = tuple(MEASUREMENT_KEYS)) -> list[Path]:
    """Write back ``RUN_DIR/<name>.json`` of a finished run (its folder has ``metrics.json``) for every
    measurement ``name`` whose committed record holds the run at the grid's settings, dated after what it
    measured, so that Snakemake does not measure it again. Returns the files written."""
    folder = grid.layout.run_dir(dataset, run, seed)
    if not (folder / METRICS).exists():
        return []
    written = []
    for name in names:
        target = measurement_file(folder, name)
        path = grid.layout.committed_measurement_path(name, dataset, run, seed)
        if target.exists() or not path.exists():
            continue
        saved = read_json(path, "a committed record")
        measured = saved if name in PER_RUN_MEASUREMENTS else saved.get("runs", {}).get(run)
        if measured is None or recorded_settings(saved, name) != grid.measurement_settings(name, dataset):
            continue
        values = {k: v for k, v in measured.items() if k not in (*RECORD_ONLY_KEYS, name)}
        values["wall_seconds"] = measured.get("wall_seconds")
        write_json(target, {**values, "run_dir": str(folder)})
        inputs = [f for f in grid.measured_from(name, dataset, run, seed) if f.exists() and f != target]
        stamp = max(f.stat().st_mtime for f in inputs) + 1  # after what it measured, before the record
        os.utime(target, (stamp, stamp))
        written.append(target)
    return written


def date_settings(grid) -> list[Path]:
    """Write the settings file of every measurement and dataset of the grid whose settings differ from the
    file's, dated now, so that Snakemake (rerun-triggers mtime) measures again every run whose value
    predates a change of its settings. A file written for the first time is dated at the epoch (the values
    already on this machine are taken as measured with these settings; a committed record of other
    settings is never restored), unless a committed record of the measurement on that dataset holds other
    settings: then it is dated now, and what this machine has is measured again. Returns the files written."""
    written = []
    for name in MEASUREMENT_KEYS:
        datasets_of_other_settings = None  # read once per measurement, only if some file is new
        for dataset in grid.datasets:
            settings = grid.measurement_settings(name, dataset)
            path = grid.layout.settings_path(name, dataset)
            if settings is None or (path.exists() and json.loads(path.read_text()) == settings):
                continue
            first = not path.exists()
            write_json(path, settings, sort_keys=True)
            if first:
                if datasets_of_other_settings is None:
                    datasets_of_other_settings = {d for d, *_ in records_of_other_settings(grid, name)}
                if dataset not in datasets_of_other_settings:
                    os.utime(path, (0, 0))
            written.append(path)
    return written
