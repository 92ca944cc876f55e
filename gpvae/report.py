"""Summaries of the workflow's records (``results/workflow/<profile>/``) for the book: one row per
run, mean ± sd over seeds, paired differences on matched seeds, and the cells still missing."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from . import workflow as wf

VALUES = ("test_ll", "test_elbo", "test_bpd", "approximation_gap", "amortization_gap", "wall_seconds",
          "train_seconds", "valid_elbo")


def load_records(results_dir: str | Path) -> list[dict]:
    """Every ``<dataset>/<run>_seed<s>.json`` record under ``results_dir``."""
    return [json.loads(p.read_text()) for p in sorted(Path(results_dir).glob("*/*_seed*.json"))]


def frame(records: list[dict]) -> pd.DataFrame:
    """One row per record: dataset, run, seed, model and :data:`VALUES` (NaN where absent)."""
    columns = ["dataset", "run", "seed", "model", *VALUES, "git_commit", "device"]
    rows = [{c: flat.get(c) for c in columns} for flat in map(wf.flat_record, records)]
    return pd.DataFrame(rows, columns=columns).astype({v: float for v in VALUES})


def summarize(runs: pd.DataFrame, value: str) -> pd.DataFrame:
    """Mean, sample sd (NaN for one seed) and number of seeds of ``value`` per (dataset, run)."""
    grouped = runs.dropna(subset=[value]).groupby(["dataset", "run"])[value]
    return pd.DataFrame({"mean": grouped.mean(), "sd": grouped.std(ddof=1), "n": grouped.count()})


def paired_differences(runs: pd.DataFrame, reference: str, value: str = "test_ll") -> pd.DataFrame:
    """``reference`` minus every other run, seed by seed (only seeds both have): mean, sd, n per
    (dataset, run). Positive means the reference is higher."""
    wide = runs.pivot_table(index=["dataset", "seed"], columns="run", values=value)
    rows = []
    for dataset, table in wide.groupby(level="dataset"):
        if reference not in table:
            continue
        for run in table.columns.drop(reference):
            diff = (table[reference] - table[run]).dropna()
            if len(diff):
                rows.append({"dataset": dataset, "run": run, "mean": diff.mean(),
                             "sd": diff.std(ddof=1) if len(diff) > 1 else math.nan, "n": len(diff)})
    return pd.DataFrame(rows, columns=["dataset", "run", "mean", "sd", "n"]).set_index(["dataset", "run"])


LOST_GROUND_NATS = 1.0


def lost_ground(records: list[dict], grid: dict, margin: float = LOST_GROUND_NATS) -> list[dict]:
    """Warm-started runs whose best validation ELBO ended more than ``margin`` nats below that of the
    run they started from: their training made the model worse, so their scores measure a failed
    optimization, not the method. One dict per such run: dataset, run, seed, source, both ELBOs."""
    best = {(r["dataset"], r["run"], r["seed"]): r.get("valid_elbo") for r in records}
    lost = []
    for r in records:
        source = grid["runs"].get(r["run"], {}).get("warm_start")
        before = best.get((r["dataset"], source, r["seed"]))
        after = r.get("valid_elbo")
        if source and before is not None and after is not None and after < before - margin:
            lost.append({"dataset": r["dataset"], "run": r["run"], "seed": r["seed"], "source": source,
                         "source_valid_elbo": before, "valid_elbo": after})
    return lost


def _measurements(results_dir: str | Path, name: str) -> list[dict]:
    """The records of a workflow measurement (``<dataset>/<name>/seed<s>.json``)."""
    return [json.loads(p.read_text()) for p in sorted(Path(results_dir).glob(f"*/{name}/seed*.json"))]


K_CURVE_COLUMNS = ["dataset", "seed", "run", "eval_k", "test_ll", "decoder_sha256"]


def load_k_curves(results_dir: str | Path) -> pd.DataFrame:
    """One row per dataset, seed, run and K of the k_curve records: mean log p̂(x) [nats] on the
    record's test subset, and the digest of the run's decoder."""
    rows = [{"dataset": check["dataset"], "seed": check["seed"], "run": run, "eval_k": point["eval_k"],
             "test_ll": point["test_ll"], "decoder_sha256": result["decoder_sha256"]}
            for check in _measurements(results_dir, "k_curve") for run, result in check["runs"].items()
            for point in result["curve"]]
    return pd.DataFrame(rows, columns=K_CURVE_COLUMNS)


DIFFICULTY_COLUMNS = ["dataset", "seed", "run", "score", "spearman", "partial_spearman", "n"]


def load_difficulty(results_dir: str | Path) -> pd.DataFrame:
    """One row per dataset, seed, run and difficulty score of the difficulty records: its Spearman ρ with
    the reference encoder's per-image amortization gap, and (the run's own scores) the partial ρ given
    the reference's negative ELBO (NaN for the reference's scores)."""
    rows = [{"dataset": check["dataset"], "seed": check["seed"], "run": run, "score": score, "spearman": rho,
             "partial_spearman": result["partial_spearman_given_negative_elbo"].get(score, math.nan), "n": result["n"]}
            for check in _measurements(results_dir, "difficulty") for run, result in check["runs"].items()
            for score, rho in result["spearman_with_gap"].items()]
    return pd.DataFrame(rows, columns=DIFFICULTY_COLUMNS)


AIS_COLUMNS = ["dataset", "seed", "run", "ais", "is", "estimator_gap", "eval_k", "steps", "certified", "width", "n",
               "seconds_per_image", "is_seconds_per_image", "decoder_sha256"]


def load_ais(results_dir: str | Path) -> pd.DataFrame:
    """One row per AIS record (``<dataset>/ais/<run>_seed<s>.json``): AIS and the protocol's IS estimate
    on the same test subset [nats], their difference (the estimator gap), the certified T and its BDMC
    width, and the cost of each estimator per image [s]."""
    rows = [{"dataset": r["dataset"], "seed": r["seed"], "run": r["run"], "ais": r["mean"], "is": r["is"]["mean"],
             "estimator_gap": r["estimator_gap"], "eval_k": r["is"]["eval_k"], "steps": r["settings"]["steps"],
             "certified": r["certificate"]["certified"], "width": r["certificate"]["width"], "n": r["n"],
             "seconds_per_image": r["seconds"] / r["n"], "is_seconds_per_image": r["is"]["seconds"] / r["n"],
             "decoder_sha256": r["decoder_sha256"]}
            for r in (json.loads(p.read_text()) for p in sorted(Path(results_dir).glob("*/ais/*_seed*.json")))]
    return pd.DataFrame(rows, columns=AIS_COLUMNS)


BDMC_COLUMNS = ["dataset", "seed", "run", "steps", "lower", "upper", "width", "seconds"]


def load_bdmc(results_dir: str | Path) -> pd.DataFrame:
    """One row per dataset, seed, run and T of the BDMC records: the mean forward (lower) and reverse
    (upper) AIS estimates on the simulated images, their width [nats] and the seconds both took."""
    rows = [{"dataset": check["dataset"], "seed": check["seed"], "run": run, "steps": s["settings"]["steps"],
             "lower": s["lower_mean"], "upper": s["upper_mean"], "width": s["width"], "seconds": s["seconds"]}
            for check in _measurements(results_dir, "bdmc") for run, result in check["runs"].items()
            for s in result["sandwich"]]
    return pd.DataFrame(rows, columns=BDMC_COLUMNS)


def missing_measurements(grid: dict, name: str, rows: pd.DataFrame) -> str:
    """The grid's cells of measurement ``name`` without a record among ``rows`` (columns ``dataset``,
    ``seed``), as text: ``"mnist seeds 0, 1"``; empty when none is missing."""
    present = set(zip(rows["dataset"], rows["seed"]))
    absent = [cell for cell in wf.measurement_cells(grid, name) if cell not in present]
    by_dataset = {d: [str(s) for dd, s in absent if dd == d] for d, _ in absent}
    return "; ".join(f"{d} seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}" for d, seeds in by_dataset.items())


def models_only(table: pd.DataFrame, grid: dict) -> pd.DataFrame:
    """``table`` without the rows of the grid's control runs (index level ``run``, or a plain index
    of runs): a control is reported beside the models, never counted among them."""
    runs = table.index.get_level_values("run") if "run" in (table.index.names or []) else table.index
    return table[~runs.isin(list(wf.controls(grid)))]


def missing(grid: dict, records: list[dict]) -> list[tuple[str, str, int]]:
    """The grid's (dataset, run, seed) cells without a record."""
    present = {(r["dataset"], r["run"], r["seed"]) for r in records}
    return [cell for cell in wf.cells(grid) if cell not in present]


def mean_sd(mean: float, sd: float, digits: int = 2) -> str:
    """``"-93.17 ± 0.06"``, or the mean alone when there is no spread (one seed)."""
    if mean is None or math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" + ("" if sd is None or math.isnan(sd) else f" ± {sd:.{digits}f}")
