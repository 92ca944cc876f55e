"""The Snakefile's job entry points (``python -m gpvae.runs COMMAND``): a grid's measurements of one run
or dataset, its benchmarks, parking, and the record paths of one dataset and seed."""
from __future__ import annotations

import argparse
import json
import os

from ..ais import AISSettings
from ..bench import ais_cost, bench
from ..config import ConfigError, TrainConfig
from ..frontier import frontier_run
from ..io import read_json, write_json
from ..layout import measurement_file
from ..measurements import ais_run, ood_run
from .grid import Grid
from .persistence import park
from .schema import GROUPED_MEASUREMENTS, PER_RUN_MEASUREMENTS

AIS_COST_IMAGES, AIS_COST_REPEATS = 100, 3  # one batch of test images (as the AIS jobs run them), interleaved repeats
BENCH_SKIPPED = ("epochs", "out", "max_train", "max_test", "eval_k", "resume", "init_from", "freeze", "lr")


def certified_setting(bdmc_result: dict, max_width: float) -> dict:
    """The protocol's AIS setting from a ``bdmc.json``: of the settings (T, L) measured, the one of fewest
    decoder passes per image (T × L × chains) whose mean sandwich width is at most ``max_width`` nats, else
    the one of most passes (``certified`` False; with one L, the largest T), with the width reached."""
    def passes(entry: dict) -> int:
        return AISSettings(**entry["settings"]).decoder_passes

    sandwich = sorted(bdmc_result["sandwich"], key=lambda s: (passes(s), s["width"]))
    chosen = next((s for s in sandwich if s["width"] <= max_width),
                  min(sandwich, key=lambda s: (-passes(s), s["width"])))
    return {"steps": chosen["settings"]["steps"], "leapfrog": chosen["settings"]["leapfrog"],
            "decoder_passes": passes(chosen), "width": chosen["width"], "max_width": max_width,
            "certified": chosen["width"] <= max_width}


def certified_ais(grid: Grid, dataset: str, seed: int) -> tuple[dict, AISSettings]:
    """The certificate of the dataset and seed's AIS (:func:`certified_setting` on its certificate run's
    ``bdmc.json``) and the AIS settings it fixes."""
    spec, bdmc_spec = grid.measurement("ais", dataset), grid.measurement("bdmc", dataset)
    folder = grid.layout.run_dir(dataset, spec["certificate"], seed)
    bdmc = read_json(measurement_file(folder, "bdmc"), "run the grid's bdmc job first")
    if "diverged" in bdmc:
        raise ConfigError(f"{dataset} seed {seed}: the AIS certificate run {spec['certificate']!r} diverged "
                          f"({bdmc['diverged']}), so no BDMC certificate fixes T for this dataset and seed; "
                          "name a run that trained as the grid's ais certificate")
    certificate = certified_setting(bdmc, bdmc_spec["max_width"])
    return certificate, AISSettings(steps=certificate["steps"], chains=spec["chains"], leapfrog=certificate["leapfrog"])


def ais_measurement(grid: Grid, dataset: str, run: str, seed: int) -> dict:
    """The grid's AIS of one run: T and L certified by the BDMC of the measurement's ``certificate`` run of
    the same dataset and seed, the seeded test subset, the protocol's K for the importance-sampling
    estimate beside it. Writes ``RUN_DIR/ais.json``."""
    spec = grid.measurement("ais", dataset)
    certificate, settings = certified_ais(grid, dataset, seed)
    return ais_run(grid.layout.run_dir(dataset, run, seed), settings, spec["subset"], spec["subset_seed"],
                   grid.evaluation(dataset)["eval_k"], device=grid.device,
                   certificate={**certificate, "run": spec["certificate"]}, gap_subset=True)


def ais_cost_measurement(grid: Grid, dataset: str) -> dict:
    """AIS at the certified setting against the protocol's IS, seconds per image on the certificate run of
    the first seed (:func:`gpvae.bench.ais_cost`); the job holds every core."""
    seed = grid.seeds[0]
    certificate, settings = certified_ais(grid, dataset, seed)
    folder = grid.layout.run_dir(dataset, grid.measurement("ais", dataset)["certificate"], seed)
    return {**ais_cost(folder, settings, AIS_COST_IMAGES, grid.evaluation(dataset)["eval_k"], AIS_COST_REPEATS,
                       device=grid.device), "certificate": certificate, "dataset": dataset}


def ood_measurement(grid: Grid, dataset: str, run: str, seed: int) -> dict:
    """The grid's out-of-distribution measurement of one run (:func:`gpvae.measurements.ood_run`)."""
    spec = grid.measurement("ood", dataset)
    return ood_run(grid.layout.run_dir(dataset, run, seed), spec["sets"], spec["images"], spec["subset_seed"],
                   spec["ood_seed"], spec["elbo_samples"], device=grid.device)


def frontier_measurement(grid: Grid, dataset: str, run: str, seed: int) -> dict:
    """The grid's accuracy–cost frontier of R4 on one VAE run (:func:`gpvae.frontier.frontier_run`)."""
    spec = grid.measurement("frontier", dataset)
    return frontier_run(grid.layout.run_dir(dataset, run, seed), spec["settings"], spec["repeats"], device=grid.device)


def bench_grid(grid: Grid, dataset: str, data_dir: str | None = None) -> dict:
    """Inference and training-step cost of every architecture among the runs of ``dataset`` beside the VAE,
    in one process (:func:`gpvae.bench.bench`): ``{run: report}``. Warm starts, freezing and the learning
    rate are schedules, not architectures, so they are left out, and a run whose model and options repeat
    another's (a control such as ``vae_extra``) is not timed again: of those, the run named after its model
    (``vae``) is timed, else the first."""
    reports, timed = {}, set()
    runs = list(dict.fromkeys(r for d, r, _ in grid.cells() if d == dataset))
    for run in sorted(runs, key=lambda r: r != grid.runs[r]["model"]):  # stable: the grid's order otherwise
        params = grid.chapter_parameters(dataset, run, grid.seeds[0])
        options = {k: v for k, v in params["options"].items() if k not in BENCH_SKIPPED}
        architecture = json.dumps([params["model"], options], sort_keys=True)
        if architecture in timed:
            continue
        timed.add(architecture)
        config = TrainConfig(model=params["model"], dataset=dataset, device=grid.device, data_dir=data_dir, **options)
        reports[run] = bench([config.model], config, grid.bench_repeats)
    return reports


def targets(grid: Grid, dataset: str, seed: int) -> list:
    """Every record path of one dataset and seed: runs, grouped and per-run measurements."""
    layout = grid.layout
    return ([layout.record_path(d, r, s) for d, r, s in grid.cells() if d == dataset and s == seed]
            + [layout.measurement_path(name, d, s) for name in GROUPED_MEASUREMENTS
               for d, s in grid.measurement_cells(name) if d == dataset and s == seed]
            + [layout.run_measurement_path(name, d, r, s) for name in PER_RUN_MEASUREMENTS
               for d, r, s in grid.run_measurement_cells(name) if d == dataset and s == seed])


def main(argv: list[str] | None = None) -> int:
    """``python -m gpvae.runs bench|ais_cost GRID_JSON DATASET OUT``: the benchmark jobs;
    ``python -m gpvae.runs ais|frontier|ood GRID_JSON DATASET RUN SEED``: the AIS, frontier and
    out-of-distribution jobs; ``park GRID``; ``targets GRID.yaml DATASET SEED``: the record paths of one dataset and seed, relative to the working
    folder (``make results`` gives them priority, so that one dataset completes first)."""
    parser = argparse.ArgumentParser(prog="python -m gpvae.runs")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("bench", "ais_cost"):
        one = commands.add_parser(name)
        one.add_argument("grid", help="the grid as JSON")
        one.add_argument("dataset")
        one.add_argument("out")
    one = commands.add_parser("park", help="commit the latest checkpoint of every unfinished run of the grid")
    one.add_argument("grid", help="grid file (YAML), or the grid as JSON")
    for name in ("ais", "frontier", "ood"):
        one = commands.add_parser(name)
        one.add_argument("grid", help="the grid as JSON")
        one.add_argument("dataset")
        one.add_argument("run")
        one.add_argument("seed", type=int)
    targets_parser = commands.add_parser("targets")
    targets_parser.add_argument("grid", help="grid file (YAML)")
    targets_parser.add_argument("dataset")
    targets_parser.add_argument("seed", type=int)
    args = parser.parse_args(argv)
    grid = Grid.from_argument(args.grid)
    if args.command == "bench":
        write_json(args.out, bench_grid(grid, args.dataset))
    elif args.command == "ais_cost":
        write_json(args.out, {**ais_cost_measurement(grid, args.dataset), "command": f"{grid.command} {args.out}"})
    elif args.command in ("ais", "frontier", "ood"):
        job = {"ais": ais_measurement, "frontier": frontier_measurement, "ood": ood_measurement}[args.command]
        job(grid, args.dataset, args.run, args.seed)
    elif args.command == "park":
        print("\n".join(f"parked {path}" for path in park(grid)) or "nothing to park")
    else:
        print(" ".join(os.path.relpath(path) for path in targets(grid, args.dataset, args.seed)))
    return 0
