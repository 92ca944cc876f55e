"""Summaries of the workflow's records (``results/workflow/<profile>/``) for the book: one row per
run, mean ± sd over seeds, paired differences on matched seeds, and the cells still missing."""
from __future__ import annotations

import json
import math
from pathlib import Path

from typing import TYPE_CHECKING

import pandas as pd

from . import verdicts
from .layout import measurement_file
from .runs.records import flat_record, gap_decomposition_mismatch
from .runs.schema import PER_RUN_MEASUREMENTS
from .validity import ais_premise, gap_family_premise

if TYPE_CHECKING:
    from .runs.grid import Grid

VALUES = ("test_ll", "test_elbo", "test_bpd", "approximation_gap", "amortization_gap", "wall_seconds",
          "train_seconds", "valid_elbo")
TEST_VALUES = ("test_ll", "test_elbo", "test_bpd")  # measured on the record's test images with its K
TEST_PROTOCOL = ("eval_k", "n_test", "subset_seed")  # K, and the images: how many, drawn with which seed (None: the first)


def load_records(results_dir: str | Path) -> list[dict]:
    """Every ``<dataset>/<run>_seed<s>.json`` record under ``results_dir``."""
    return [json.loads(p.read_text()) for p in sorted(Path(results_dir).glob("*/*_seed*.json"))]


def frame(records: list[dict]) -> pd.DataFrame:
    """One row per record: dataset, run, seed, model, :data:`VALUES` (NaN where absent) and the
    :data:`TEST_PROTOCOL` of its :data:`TEST_VALUES`."""
    columns = ["dataset", "run", "seed", "model", *VALUES, *TEST_PROTOCOL, "git_commit", "device"]
    rows = [{c: flat.get(c) for c in columns} for flat in map(flat_record, records)]
    return pd.DataFrame(rows, columns=columns).astype({v: float for v in VALUES})


def summarize(runs: pd.DataFrame, value: str) -> pd.DataFrame:
    """Mean, sample sd (NaN for one seed) and number of seeds of ``value`` per (dataset, run)."""
    grouped = runs.dropna(subset=[value]).groupby(["dataset", "run"])[value]
    return pd.DataFrame({"mean": grouped.mean(), "sd": grouped.std(ddof=1), "n": grouped.count()})


# The AIS records' values that rest on the AIS estimate, and so on its BDMC certificate (not the protocol's
# IS, IS from q* or ELBO(q*) beside them).
ANNEALED_VALUES = ("ais", "gap_ais", "approximation_gap", "estimator_gap")


def paired_differences(runs: pd.DataFrame, reference: str, value: str = "test_ll", grid=None) -> pd.DataFrame:
    """``reference`` minus every other run, seed by seed (only seeds both have): mean, sd, n per
    (dataset, run). Positive means the reference is higher. For a value of :data:`ANNEALED_VALUES` of AIS
    rows (with a ``certified`` column: whether the dataset and seed's BDMC certificate held), also
    ``uncertified``: how many of the matched seeds lack one (:func:`verdicts.paired` leaves such a
    difference not resolved). Given the ``grid`` the rows come from, also ``declared``: the seeds it declares
    for both runs (:func:`verdicts.paired` waits for all of them). Two rows for one dataset, seed and run are
    refused, not averaged; so is a pair of :data:`TEST_VALUES` measured under another :data:`TEST_PROTOCOL` (K
    or test images), whose difference would mix the models with the estimator or the images."""
    keys = ["dataset", "seed", "run"]
    repeated = runs[runs.duplicated(keys, keep=False)]
    if len(repeated):
        raise ValueError(f"paired_differences: more than one row for (dataset, seed, run) "
                         f"{sorted(set(map(tuple, repeated[keys].values.tolist())))}; select one profile or budget first")
    wide = runs.pivot(index=["dataset", "seed"], columns="run", values=value).astype(float)
    certified = (runs.pivot(index=["dataset", "seed"], columns="run", values="certified")
                 if "certified" in runs and value in ANNEALED_VALUES else None)
    protocol = runs.set_index(keys)[list(TEST_PROTOCOL)] if set(TEST_PROTOCOL) <= set(runs) else None
    rows = []
    for dataset, table in wide.groupby(level="dataset"):
        if reference not in table:
            continue
        for run in table.columns.drop(reference):
            diff = (table[reference] - table[run]).dropna()
            if value in TEST_VALUES and protocol is not None:
                _require_same_protocol(protocol, dataset, diff.index.get_level_values("seed"), reference, run)
            if len(diff):
                row = {"dataset": dataset, "run": run, "mean": diff.mean(),
                       "sd": diff.std(ddof=1) if len(diff) > 1 else math.nan, "n": len(diff)}
                if certified is not None:
                    held = certified.loc[diff.index, [reference, run]].eq(True).all(axis=1)
                    row["uncertified"] = int((~held).sum())
                if grid is not None and dataset in grid.datasets and {reference, run} <= set(grid.runs):
                    row["declared"] = len(set(grid.run_seeds(dataset, reference)) & set(grid.run_seeds(dataset, run)))
                rows.append(row)
    columns = (["dataset", "run", "mean", "sd", "n"] + (["uncertified"] if certified is not None else [])
               + (["declared"] if grid is not None else []))
    return pd.DataFrame(rows, columns=columns).set_index(["dataset", "run"])


def _require_same_protocol(protocol: pd.DataFrame, dataset: str, seeds, reference: str, run: str) -> None:
    """Refuse a paired difference of two runs whose test values at one of ``seeds`` were measured under another
    :data:`TEST_PROTOCOL` (``protocol``: its columns per dataset, seed and run)."""
    for seed in seeds:
        pair = [tuple(None if pd.isna(v) else v for v in protocol.loc[(dataset, seed, name)]) for name in (reference, run)]
        if pair[0] != pair[1]:
            raise ValueError(f"paired_differences: {dataset} seed {seed}: {reference} and {run} were measured under "
                             f"another protocol ({', '.join(TEST_PROTOCOL)}: {pair[0]} against {pair[1]}); measure "
                             "both the same way first")


LOST_GROUND_NATS = 1.0


def lost_ground(records: list[dict], grid: Grid, margin: float = LOST_GROUND_NATS) -> list[dict]:
    """Warm-started runs whose best validation ELBO ended more than ``margin`` nats below that of the
    run they started from: their training made the model worse, so their scores measure a failed
    optimization, not the method. One dict per such run: dataset, run, seed, source, both ELBOs, and
    its restart (:func:`restarts`)."""
    best = {(r["dataset"], r["run"], r["seed"]): r.get("valid_elbo") for r in records}
    started = {(x["dataset"], x["run"], x["seed"]): x for x in restarts(records, grid)}
    lost = []
    for r in records:
        source = grid.runs.get(r["run"], {}).get("warm_start")
        before = best.get((r["dataset"], source, r["seed"]))
        after = r.get("valid_elbo")
        if source and before is not None and after is not None and after < before - margin:
            lost.append({"dataset": r["dataset"], "run": r["run"], "seed": r["seed"], "source": source,
                         "source_valid_elbo": before, "valid_elbo": after,
                         "restart": started.get((r["dataset"], r["run"], r["seed"]))})
    return lost


def restarts(records: list[dict], grid: Grid) -> list[dict]:
    """How each warm-started run began, from its and its source's training histories: the source's best
    validation ELBO [nats] and final learning rate, the run's first learning rate and its validation ELBO after
    one epoch, and the ``drop`` between the two ELBOs [nats] (> 0: the first epoch undid part of the source's
    training; the run's first rate falls back to its options', the source's final one to None where the
    history does not record it). Runs or sources without a history are left out."""
    by_key = {(r["dataset"], r["run"], r["seed"]): r for r in records}
    found = []
    for r in records:
        source = by_key.get((r["dataset"], grid.runs.get(r["run"], {}).get("warm_start"), r["seed"]))
        if not (source and r.get("history") and source.get("history")):
            continue
        first = r["history"][0]
        found.append({"dataset": r["dataset"], "run": r["run"], "seed": r["seed"], "source": source["run"],
                      "source_valid_elbo": source["valid_elbo"], "source_final_lr": source["history"][-1].get("lr"),
                      "lr": first.get("lr", r.get("options", {}).get("lr")), "first_valid_elbo": first["valid_elbo"],
                      "drop": source["valid_elbo"] - first["valid_elbo"]})
    return found


def restarted_faster(restart: dict | None) -> bool:
    """Whether a warm start (a row of :func:`restarts`) began at a higher learning rate than its source ended
    with and lost validation ELBO in its first epoch: a restart, not a continuation."""
    return bool(restart and restart["lr"] and restart["source_final_lr"] and restart["lr"] > restart["source_final_lr"]
                and restart["drop"] > 0)


def _measurements(results_dir: str | Path, name: str) -> list[dict]:
    """The records of a workflow measurement (``<dataset>/<name>/seed<s>.json``)."""
    return [json.loads(p.read_text()) for p in sorted(Path(results_dir).glob(f"*/{name}/seed*.json"))]


def _finished(check: dict) -> list[tuple[str, dict]]:
    """The (run, result) pairs of a measurement record, without the runs whose training diverged."""
    return [(run, result) for run, result in check["runs"].items() if "diverged" not in result]


def _run_measurements(results_dir: str | Path, name: str) -> list[dict]:
    """The records of a per-run measurement (``<dataset>/<name>/<run>_seed<s>.json``) of runs that did not diverge."""
    records = (json.loads(p.read_text()) for p in sorted(Path(results_dir).glob(f"*/{name}/*_seed*.json")))
    return [r for r in records if "diverged" not in r]


K_CURVE_COLUMNS = ["dataset", "seed", "run", "eval_k", "test_ll", "n_test", "subset_seed", "decoder_sha256"]


def load_k_curves(results_dir: str | Path) -> pd.DataFrame:
    """One row per dataset, seed, run and K of the k_curve records: mean log p̂(x) [nats] on the
    record's test images (``n_test``, ``subset_seed``), and the digest of the run's decoder."""
    rows = [{"dataset": check["dataset"], "seed": check["seed"], "run": run, "eval_k": point["eval_k"],
             "test_ll": point["test_ll"], "n_test": result["n_test"], "subset_seed": result.get("subset_seed"),
             "decoder_sha256": result["decoder_sha256"]}
            for check in _measurements(results_dir, "k_curve") for run, result in _finished(check)
            for point in result["curve"]]
    return pd.DataFrame(rows, columns=K_CURVE_COLUMNS)


DIFFICULTY_COLUMNS = ["dataset", "seed", "run", "score", "spearman", "partial_spearman", "n"]


def load_difficulty(results_dir: str | Path) -> pd.DataFrame:
    """One row per dataset, seed, run and difficulty score of the difficulty records: its Spearman ρ with
    the reference encoder's per-image amortization gap, and (the run's own scores) the partial ρ given
    the reference's negative ELBO (NaN for the reference's scores)."""
    rows = [{"dataset": check["dataset"], "seed": check["seed"], "run": run, "score": score, "spearman": rho,
             "partial_spearman": result["partial_spearman_given_negative_elbo"].get(score, math.nan), "n": result["n"]}
            for check in _measurements(results_dir, "difficulty") for run, result in _finished(check)
            for score, rho in result["spearman_with_gap"].items()]
    return pd.DataFrame(rows, columns=DIFFICULTY_COLUMNS)


AIS_COLUMNS = ["dataset", "seed", "run", "model", "ais", "is", "estimator_gap", "eval_k", "steps", "leapfrog", "chains",
               "certified", "width", "n", "subset_seed", "gap_subset_seed", "seconds_per_image", "is_seconds_per_image",
               "decoder_sha256", "gap_n", "gap_ais", "elbo_opt", "is_from_optimum", "approximation_gap"]
GAP_SUBSET_COLUMNS = AIS_COLUMNS[-5:]


def _on_gap_subset(ais: dict, record: dict | None) -> dict:
    """:data:`GAP_SUBSET_COLUMNS` of an AIS record [nats]: AIS, ELBO(q*), IS from q* and the approximation
    gap by AIS (AIS − ELBO(q*)) on the run's gap subset. From the record's ``gap_subset`` when the run
    record's gap decomposition is the one it used (same images and ELBO(q*)); for AIS records before it,
    from the run record's gap means where its gap subset is the AIS subset (the same seeded draw and
    size) and the AIS record's IS estimate there is the record's (same K, same value: the same model);
    NaN otherwise."""
    block = ais.get("gap_subset")
    gaps = (record or {}).get("gaps", {})
    if block is not None:
        if not gaps or gap_decomposition_mismatch(block, gaps) is not None:
            return dict.fromkeys(GAP_SUBSET_COLUMNS, math.nan)  # the run's record was rewritten since
        optimum = block["is_from_optimum"]
        return {"gap_n": block["n"], "gap_ais": block["mean"], "elbo_opt": block["elbo_opt"],
                "is_from_optimum": math.nan if optimum is None else optimum,
                "approximation_gap": block["approximation_gap"]["mean"]}
    same_model = (gaps.get("subset_seed") is not None and ais["is"]["eval_k"] == gaps.get("eval_k")
                  and gap_decomposition_mismatch({"n": ais["n"], "subset_seed": ais["subset_seed"],
                                                     "is": ais["is"]["mean"]}, gaps) is None)
    if same_model:
        return {"gap_n": ais["n"], "gap_ais": ais["mean"], "elbo_opt": gaps["elbo_opt"],
                "is_from_optimum": gaps.get("log_px_from_optimum", math.nan),
                "approximation_gap": ais["mean"] - gaps["elbo_opt"]}
    return dict.fromkeys(GAP_SUBSET_COLUMNS, math.nan)


def load_ais(results_dir: str | Path) -> pd.DataFrame:
    """One row per AIS record (``<dataset>/ais/<run>_seed<s>.json``), with the run's model: AIS and the protocol's IS estimate
    on the same test subset [nats], their difference (the estimator gap), the setting (T, L, chains), its BDMC
    width and whether that certifies it (:func:`gpvae.validity.ais_premise`: the one rule every page applies),
    the images (n, and the seed of their draw; None: the first n), the seed of the run's gap subset, the cost
    of each estimator per image [s], and the approximation gap by AIS on the run's gap subset
    (:func:`_on_gap_subset`)."""
    records = {(r["dataset"], r["run"], r["seed"]): r for r in load_records(results_dir)}
    rows = []
    for r in _run_measurements(results_dir, "ais"):
        record = records.get((r["dataset"], r["run"], r["seed"]))
        rows.append({"dataset": r["dataset"], "seed": r["seed"], "run": r["run"], "model": r["model"], "ais": r["mean"],
                     "is": r["is"]["mean"], "estimator_gap": r["estimator_gap"], "eval_k": r["is"]["eval_k"],
                     "steps": r["settings"]["steps"], "leapfrog": r["settings"]["leapfrog"],
                     "chains": r["settings"].get("chains", 1), "certified": ais_premise(r["certificate"]["width"]) is None,
                     "width": r["certificate"]["width"], "n": r["n"], "subset_seed": r.get("subset_seed"),
                     "gap_subset_seed": (record or {}).get("gaps", {}).get("subset_seed"),
                     "seconds_per_image": r["seconds"] / r["n"], "is_seconds_per_image": r["is"]["seconds"] / r["n"],
                     "decoder_sha256": r["decoder_sha256"], **_on_gap_subset(r, record)})
    return pd.DataFrame(rows, columns=AIS_COLUMNS)


def ais_costs(results_dir: str | Path, names: dict[str, str] | None = None) -> list[str]:
    """One sentence per ``<dataset>/ais_cost.json`` under ``results_dir``: AIS at the certified setting against
    the protocol's IS, seconds per image and their ratio, with the protocol of the measurement; datasets
    named by ``names`` where given."""
    names = names or {}
    sentences = []
    for path in sorted(Path(results_dir).glob("*/ais_cost.json")):
        cost = json.loads(path.read_text())
        sentences.append(
            f"AIS cost of record ({names.get(cost['dataset'], cost['dataset'])}, {cost['model']}): T = "
            f"{cost['settings']['steps']}, L = {cost['settings']['leapfrog']} {cost['ais_seconds_per_image']:.3f} s/image "
            f"against IS K = {cost['eval_k']} {cost['is_seconds_per_image']:.4f} s/image, {cost['ratio']:.1f}× "
            f"({cost['images']} images, median of {cost['repeats']} interleaved repeats, {cost['device']}, load average "
            f"{cost['load_average']})")
    return sentences


OOD_COLUMNS = ["dataset", "seed", "run", "ood", "score", "auroc", "n", "subset_seed", "ood_seed"]


def load_ood(results_dir: str | Path) -> pd.DataFrame:
    """One row per dataset, seed, run, out-of-distribution set and difficulty score of the ood records
    (``<dataset>/ood/<run>_seed<s>.json``): the AUROC of "a higher score means another dataset", with the images
    per dataset (``n``), the seed of the in-distribution draw (None: the first) and of the other datasets'."""
    rows = [{"dataset": r["dataset"], "seed": r["seed"], "run": r["run"], "ood": ood, "score": score, "auroc": value,
             "n": r["n"], "subset_seed": r.get("subset_seed"), "ood_seed": r.get("ood_seed")}
            for r in _run_measurements(results_dir, "ood") for ood, scores in r["auroc"].items()
            for score, value in scores.items()]
    return pd.DataFrame(rows, columns=OOD_COLUMNS)


PROPOSAL_CONTROL_COLUMNS = ["dataset", "seed", "run", *TEST_PROTOCOL, "own", "widened", "defensive", "scale",
                            "prior_weight"]


def load_proposal_controls(results_dir: str | Path) -> pd.DataFrame:
    """One row per proposal_control record (``<dataset>/proposal_control/<run>_seed<s>.json``): its
    :data:`TEST_PROTOCOL`, the mean log p̂(x) [nats] with the encoder's Gaussian (``own``), widened and
    mixed with the prior, and the widening and prior weight chosen on validation images."""
    rows = [{"dataset": r["dataset"], "seed": r["seed"], "run": r["run"], "eval_k": r["eval_k"], "n_test": r["n_test"],
             "subset_seed": r.get("subset_seed"), **r["test_ll"], **r["chosen"]}
            for r in _run_measurements(results_dir, "proposal_control")]
    return pd.DataFrame(rows, columns=PROPOSAL_CONTROL_COLUMNS)


BDMC_COLUMNS = ["dataset", "seed", "run", "steps", "leapfrog", "decoder_passes", "lower", "upper", "width", "seconds"]


def load_bdmc(results_dir: str | Path) -> pd.DataFrame:
    """One row per dataset, seed, run and AIS setting (T, L) of the BDMC records: the decoder passes per
    image (T × L × chains), the mean forward (lower) and reverse (upper) AIS estimates on the simulated
    images, their width [nats] and the seconds both took."""
    from .evaluation import AISSettings

    rows = [{"dataset": check["dataset"], "seed": check["seed"], "run": run, "steps": s["settings"]["steps"],
             "leapfrog": s["settings"]["leapfrog"],
             "decoder_passes": AISSettings(**s["settings"]).decoder_passes,
             "lower": s["lower_mean"], "upper": s["upper_mean"], "width": s["width"], "seconds": s["seconds"]}
            for check in _measurements(results_dir, "bdmc") for run, result in _finished(check)
            for s in result["sandwich"]]
    return pd.DataFrame(rows, columns=BDMC_COLUMNS)


def missing_measurements(grid: Grid, name: str, rows: pd.DataFrame) -> str:
    """The grid's cells of measurement ``name`` without a record among ``rows`` (columns ``dataset``,
    ``seed``, and ``run`` for a per-run measurement), as text: ``"mnist seeds 0, 1"``, or for a per-run
    one ``"mnist 28 of 30 runs × seeds"``; empty when none is missing."""
    if name in PER_RUN_MEASUREMENTS:
        present = set(zip(rows["dataset"], rows["run"], rows["seed"]))
        declared = grid.run_measurement_cells(name)
        counts = {d: [sum(c[0] == d for c in declared), sum(c[0] == d and c not in present for c in declared)]
                  for d, _, _ in declared}
        return "; ".join(f"{d} {absent} of {total} runs × seeds" for d, (total, absent) in counts.items() if absent)
    present = set(zip(rows["dataset"], rows["seed"]))
    absent = [cell for cell in grid.measurement_cells(name) if cell not in present]
    by_dataset = {d: [str(s) for dd, s in absent if dd == d] for d, _ in absent}
    return "; ".join(f"{d} seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}" for d, seeds in by_dataset.items())


def models_only(table: pd.DataFrame, grid: Grid) -> pd.DataFrame:
    """``table`` without the rows of the grid's control and side runs (index level ``run``, or a plain index
    of runs): either is reported beside the models, never counted among them."""
    runs = table.index.get_level_values("run") if "run" in (table.index.names or []) else table.index
    return table[~runs.isin([*grid.controls(), *getattr(grid, "side_runs", list)()])]


def missing(grid: Grid, records: list[dict]) -> list[tuple[str, str, int]]:
    """The grid's (dataset, run, seed) cells without a record."""
    present = {(r["dataset"], r["run"], r["seed"]) for r in records}
    return [cell for cell in grid.cells() if cell not in present]


def mean_sd(mean: float, sd: float, digits: int = 2) -> str:
    """``"-93.17 ± 0.06"``, or the mean alone when there is no spread (one seed)."""
    if mean is None or math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" + ("" if sd is None or math.isnan(sd) else f" ± {sd:.{digits}f}")


def spread(values: dict[int, float]) -> dict:
    """:func:`gpvae.verdicts.spread` of ``{seed: value}`` as plain Python numbers (the book glues them as
    text; sd None for one value), with the ``seeds`` and their ``values``."""
    seeds = sorted(int(s) for s in values)
    numbers = [float(values[s]) for s in seeds]
    stats = verdicts.spread(numbers)
    return {"mean": float(stats["mean"]), "sd": float(stats["sd"]) if len(numbers) > 1 else None,
            "n": len(numbers), "seeds": seeds, "values": numbers}


def cell_text(cell: dict | None, digits: int = 2) -> str:
    """:func:`mean_sd` of a :func:`spread` cell; "–" when the quantity was not measured."""
    return mean_sd(cell["mean"], cell["sd"], digits) if cell else "–"


def per_seed(cell: dict | None) -> dict[int, float]:
    """``{seed: value}`` of a :func:`spread` cell (e.g. one entry of a :func:`readings_table` row); empty
    when the quantity was not measured."""
    return dict(zip(cell["seeds"], cell["values"])) if isinstance(cell, dict) and "values" in cell else {}


# The difficulty scores a readings row shows, by label: the run's own (the kNN control's neighbour distance,
# else the GP's predictive variance of the mean function; the control's GP variances are constant) and the
# VAE's own two, the baselines.
OWN_SCORES = ("neighbour_distance", "mean_function_variance")
BASELINE_SCORES = {"encoder": "encoder_variance", "elbo": "negative_elbo"}


def own_score(scores) -> str | None:
    """The run's own difficulty score among ``scores`` (names): the first of :data:`OWN_SCORES` present."""
    return next((name for name in OWN_SCORES if name in set(scores)), None)


def keeps_decoder(record: dict) -> bool:
    """Whether a run record's decoder is its warm start's, untrained: a post-hoc fit (no epochs) or a decoder
    kept frozen. Then its amortization gap shares q* with its source's and ``1 − gap / source's gap`` is the
    share of the source's gap its proposal closes, whatever the proposal's family."""
    return record.get("epochs_done") == 0 or record.get("options", {}).get("freeze") in ("decoder", "both")


def readings_table(results_dir: str | Path, dataset: str, reference: str = "vae") -> dict[str, dict]:
    """The readings study's table of one dataset from a profile's records: per run, over its seeds, the
    :func:`spread` of ``test_ll``, ``test_elbo``, ``amortization_gap`` and ``fraction_closed`` (1 − its gap /
    the ``reference``'s gap of the same seed, for a run that keeps the reference's decoder (:func:`keeps_decoder`)
    or whose own gap is measurable (:func:`gpvae.validity.gap_family_premise`)); ``spearman_gp|encoder|elbo`` with the reference encoder's
    per-image gap (difficulty records; the reference's row holds its baselines); ``auroc_<set>_gp|encoder|elbo``
    (ood records); ``infer_ratio_to_vae`` (``bench.json``). A run whose every seed diverged has ``diverged``."""
    records = [r for r in load_records(results_dir) if r["dataset"] == dataset]
    gap_of = {(r["run"], r["seed"]): r["gaps"]["amortization_gap"] for r in records if "gaps" in r}
    difficulty = load_difficulty(results_dir).query("dataset == @dataset")
    ood = load_ood(results_dir).query("dataset == @dataset")
    bench_path = Path(results_dir) / dataset / "bench.json"
    bench = json.loads(bench_path.read_text()) if bench_path.exists() else {}
    table = {}
    for run in dict.fromkeys(r["run"] for r in records):
        mine = [r for r in records if r["run"] == run]
        done = [r for r in mine if "diverged" not in r]
        if not done:
            table[run] = {"run": run, "seeds": [r["seed"] for r in mine], "diverged": mine[0]["diverged"]}
            continue
        row = {"run": run, "seeds": [r["seed"] for r in done]}
        for key in ("test_ll", "test_elbo"):
            row[key] = spread({r["seed"]: r[key] for r in done})
        if any((run, r["seed"]) in gap_of for r in done):  # a converted run by hand may have no decomposition
            row["amortization_gap"] = spread({r["seed"]: gap_of[run, r["seed"]] for r in done if (run, r["seed"]) in gap_of})
        closed = {r["seed"]: 1 - gap_of[run, r["seed"]] / gap_of[reference, r["seed"]] for r in done
                  if (run, r["seed"]) in gap_of and (reference, r["seed"]) in gap_of
                  and (keeps_decoder(r) or gap_family_premise(r["model"]) is None)}
        if closed:
            row["fraction_closed"] = spread(closed)
        ranked = difficulty[difficulty["run"] == run] if run != reference else \
            difficulty[difficulty["score"].isin(BASELINE_SCORES.values())].drop_duplicates(["seed", "score"])
        flagged_by = ood[ood["run"] == run]
        scores = {"gp": own_score([*ranked["score"], *flagged_by["score"]]), **BASELINE_SCORES}
        for label, score in scores.items():
            chosen = ranked[ranked["score"] == score]
            if len(chosen):
                row[f"spearman_{label}"] = spread(dict(zip(chosen["seed"], chosen["spearman"])))
            for name in flagged_by["ood"].unique():
                flagged = flagged_by[(flagged_by["ood"] == name) & (flagged_by["score"] == score)]
                if len(flagged):
                    row[f"auroc_{name}_{label}"] = spread(dict(zip(flagged["seed"], flagged["auroc"])))
        if run in bench:
            row["infer_ratio_to_vae"] = bench[run]["results"][0]["infer_ratio_to_vae"]
        table[run] = row
    return table


def measurement_summary(run_dir: str | Path) -> pd.DataFrame:
    """What the measurements of one run folder (any, an external one included) found, one row each with
    its protocol and what it means: the protocol's IS log p̂(x), AIS with its BDMC sandwich, the gap
    decomposition, and GP-RF fitted post hoc. A number whose premise fails is shown as not measurable, with
    the reason: an estimator or approximation gap needs AIS certified by a BDMC sandwich of the same decoder
    at the same setting, and AIS on the images of the folder's own gap decomposition. Columns ``quantity``,
    ``nats``, ``protocol``, ``meaning``; measurements not made (or diverged) are left out."""
    folder, rows = Path(run_dir), []

    def add(quantity, nats, protocol, meaning):
        rows.append({"quantity": quantity, "nats": nats, "protocol": protocol, "meaning": meaning})

    def read(name: str) -> dict | None:
        path = measurement_file(folder, name)
        found = json.loads(path.read_text()) if path.exists() else None
        return None if found is None or "diverged" in found else found

    evaluations = sorted(folder.glob("evaluation_K*_N*.json"), key=lambda p: p.stat().st_mtime)
    if evaluations:
        e = json.loads(evaluations[-1].read_text())
        add("log p̂(x), importance sampling", f"{e['test_ll']:.2f}", f"K = {e['eval_k']}, {e['n_test']} test images",
            "a lower bound in expectation, with the encoder's Gaussian as the proposal")
        add("ELBO", f"{e['test_elbo']:.2f}", f"{e['n_test']} test images", "what training maximizes")
    bdmc, ais, gaps, gprf = (read(name) for name in ("bdmc", "ais", "gaps", "gprf"))
    for s in bdmc["sandwich"] if bdmc else []:
        add(f"BDMC sandwich width, T = {s['settings']['steps']}, L = {s['settings']['leapfrog']}", f"{s['width']:.2f}",
            f"{bdmc['images']} images simulated from the model", "how far AIS at this setting can be from log p(x)")
    same_decoder = bool(bdmc and ais and bdmc.get("decoder_sha256") == ais.get("decoder_sha256"))
    width = next((s["width"] for s in bdmc["sandwich"] if s["settings"] == ais["settings"]), None) if same_decoder else None
    premise = ais_premise(width)
    certified = premise is None
    uncertified = f"needs AIS certified by a BDMC sandwich of the same decoder at the same setting: {premise}"
    if ais:
        add("log p(x), AIS from the prior", f"{ais['mean']:.2f}" if certified else "not measurable",
            f"T = {ais['settings']['steps']}, {ais['n']} test images, "
            + (f"certified (sandwich {width:.2f} nat)" if certified else "not certified"),
            "ranks decoders: it never calls the encoder")
        if certified:
            add("estimator gap, AIS − IS", f"{ais['estimator_gap']:+.2f}", f"the same {ais['n']} images",
                "what the encoder's proposal leaves to importance sampling")
        else:
            add("estimator gap, AIS − IS", "not measurable", f"the same {ais['n']} images", uncertified)
    family = gap_family_premise(gaps["model"]) if gaps and "model" in gaps else None
    if gaps and family:
        for quantity in ("amortization gap", "approximation gap"):
            add(quantity, "not measurable", f"{gaps['n']} test images", family)
    elif gaps:
        add("amortization gap", f"{gaps['amortization_gap']['mean']:.2f}", f"{gaps['n']} test images, q* by SVI",
            "ELBO(q*) − ELBO(encoder): what one forward pass costs")
        on_gaps = (ais or {}).get("gap_subset")
        recorded = {"n": gaps["n"], "subset_seed": gaps.get("subset_seed"), "log_px": gaps.get("log_px", {}).get("mean"),
                    "elbo_opt": gaps.get("elbo_opt", {}).get("mean")}
        mismatch = gap_decomposition_mismatch(on_gaps, recorded) if on_gaps else None
        if on_gaps and certified and mismatch is None:
            add("approximation gap", f"{on_gaps['approximation_gap']['mean']:.2f}", f"AIS on the {on_gaps['n']} gap images",
                "log p(x) − ELBO(q*): what a diagonal Gaussian cannot reach")
        else:
            reason = ("needs AIS on the gap images (--ais-gap-subset)" if not on_gaps else
                      f"AIS used another gap decomposition: {mismatch}" if mismatch else uncertified)
            add("approximation gap", "not measurable", f"{gaps['n']} test images", reason)
    if gprf:
        r = gprf
        add("GP-RF (R4) log p̂(x) − the VAE's", f"{r['gain']:+.2f}",
            f"K = {r['eval_k']}, {r['n_test']} test images, {r['options']['error_images']} observed errors",
            "the same decoder: a gain is the proposal's, not the model's")
    return pd.DataFrame(rows, columns=["quantity", "nats", "protocol", "meaning"])
