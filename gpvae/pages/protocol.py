"""What a page says of how its numbers were measured, read from the records that carry them: K, how many
test images and which (the first N, or a seeded random subset), AIS's T, L and certificate, and the seeds.
A caption states this, never what a grid file intends. No torch."""
from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import pandas as pd

from .. import validity
from . import dataset_label, listed

if TYPE_CHECKING:
    from ..runs.grid import Grid

PROTOCOL_COLUMNS = ["dataset", "seed", "run", "eval_k", "n", "subset_seed", "whole"]
AIS_PROTOCOL_COLUMNS = [*PROTOCOL_COLUMNS, "steps", "leapfrog", "width"]


def test_protocol(records: list[dict]) -> pd.DataFrame:
    """:data:`PROTOCOL_COLUMNS` of each record's test log-likelihood: its K, its number of test images and
    their subset seed (NaN: the first ``n`` test images), and ``whole``: the run was asked for every test image
    (its ``max_test`` option None). Diverged records carry none and are left out."""
    rows = [{"dataset": r["dataset"], "seed": r["seed"], "run": r["run"], "eval_k": r["eval_k"], "n": r["n_test"],
             "subset_seed": r.get("subset_seed"), "whole": "max_test" in r.get("options", {})
             and r["options"]["max_test"] is None} for r in records if "n_test" in r]
    return pd.DataFrame(rows, columns=PROTOCOL_COLUMNS)


def gap_protocol(records: list[dict]) -> pd.DataFrame:
    """:data:`PROTOCOL_COLUMNS` of each record's gap decomposition (its ``gaps`` block)."""
    rows = [{"dataset": r["dataset"], "seed": r["seed"], "run": r["run"], "eval_k": r["gaps"].get("eval_k"),
             "n": r["gaps"]["n"], "subset_seed": r["gaps"].get("subset_seed")} for r in records if "n" in r.get("gaps", {})]
    return pd.DataFrame(rows, columns=PROTOCOL_COLUMNS)


def measurement_protocol(grid: Grid, name: str) -> pd.DataFrame:
    """The protocol of the committed records of measurement ``ais`` (:data:`AIS_PROTOCOL_COLUMNS`: IS K, test
    images and subset seed, AIS T and L and the BDMC width [nats] of its certificate) or ``k_curve``
    (:data:`PROTOCOL_COLUMNS`, K NaN: each record covers several)."""
    layout, rows = grid.layout, []
    if name == "ais":
        for dataset, run, seed in grid.run_measurement_cells(name):
            path = layout.run_measurement_path(name, dataset, run, seed)
            r = json.loads(path.read_text()) if path.exists() else {"diverged": "no record"}
            if "diverged" not in r:
                rows.append({"dataset": dataset, "seed": seed, "run": run, "eval_k": r["is"]["eval_k"], "n": r["n"],
                             "subset_seed": r.get("subset_seed"), "steps": r["settings"]["steps"],
                             "leapfrog": r["settings"]["leapfrog"], "width": r["certificate"]["width"]})
        return pd.DataFrame(rows, columns=AIS_PROTOCOL_COLUMNS)
    for dataset, seed in grid.measurement_cells(name):
        path = layout.measurement_path(name, dataset, seed)
        check = json.loads(path.read_text()) if path.exists() else {"runs": {}}
        rows += [{"dataset": dataset, "seed": seed, "run": run, "eval_k": math.nan, "n": result["n_test"],
                  "subset_seed": check.get("subset_seed")}
                 for run, result in check["runs"].items() if "diverged" not in result]
    return pd.DataFrame(rows, columns=PROTOCOL_COLUMNS)


def images_text(n: int, subset_seed, whole: bool = False) -> str:
    """``"the first 2,000 test images"``, ``"500 test images drawn at random (subset seed 2026)"``, or with
    ``whole`` ``"all 10,000 test images"``."""
    count = n if isinstance(n, str) else f"{int(n):,}"  # several counts, already listed
    if whole is True:
        return f"all {count} test images"
    if subset_seed is None or pd.isna(subset_seed):
        return f"the first {count} test images"
    return f"{count} test images drawn at random (subset seed {int(subset_seed)})"


def benchmark_text(grid_name: str, dataset: str, bench: dict) -> str:
    """Where a speed ratio was timed: the benchmark of record of grid ``grid_name`` on ``dataset`` (a ``bench.json``:
    {run: measurement}), its batch, repeats, device and the load average at the time where recorded."""
    measured = bench.get("vae") or next(iter(bench.values()))
    load = measured.get("load_average")
    return (f"benchmark of record, {grid_name} grid, {dataset_label(dataset)}, batch {measured['batch_size']}, "
            f"{measured['repeats']} interleaved repeats, {measured['device']}"
            + (f", load average {load[0]:.1f}" if load else ""))


def records_images(records: list[dict]) -> str:
    """The test images of the log-likelihoods of run ``records``: :func:`images_text` of their counts, "all"
    when every record was asked for the whole test set."""
    done = [r for r in records if "n_test" in r]
    whole = bool(done) and all("max_test" in r.get("options", {}) and r["options"]["max_test"] is None for r in done)
    return images_text(listed(r["n_test"] for r in done), None, whole)


def _seeds_text(seeds) -> str:
    seeds = sorted({int(s) for s in seeds})
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def protocol_text(protocol: pd.DataFrame, datasets=None) -> str:
    """What a protocol frame (:func:`test_protocol`, :func:`gap_protocol`, :func:`measurement_protocol`) says,
    per dataset (in the order of ``datasets``, else sorted): each distinct K, image count and subset with its
    seeds, and for AIS its T, L and certificate (the widest BDMC sandwich of the group)."""
    datasets = [d for d in (datasets or sorted(set(protocol["dataset"]))) if d in set(protocol["dataset"])]
    keys = [c for c in ("eval_k", "n", "subset_seed", "whole", "steps", "leapfrog") if c in protocol]
    parts = []
    for dataset in datasets:
        rows = protocol[protocol["dataset"] == dataset]
        groups = []
        for values, group in rows.groupby(keys, dropna=False, sort=True):
            setting = dict(zip(keys, values))
            text = images_text(setting["n"], setting["subset_seed"], setting.get("whole", False))
            if not pd.isna(setting["eval_k"]):
                text = f"K = {int(setting['eval_k'])} on {text}"
            if "steps" in setting:
                reason = validity.ais_premise(float(group["width"].max(skipna=False)))  # a missing width: uncertified
                text += (f", AIS T = {int(setting['steps'])}, L = {int(setting['leapfrog'])}, "
                         + (reason or f"certified (BDMC sandwich at most {group['width'].max():.2f} nat wide)"))
            groups.append(f"{text} ({_seeds_text(group['seed'])})")
        parts.append(f"{dataset_label(dataset)}: " + "; ".join(groups))
    return ". ".join(parts)
