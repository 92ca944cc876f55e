"""The landing page: one line per claim of the abstract, decided on the strongest evidence the records
hold (the converged grid where it has the measurement, the 20-epoch grid beside it as the budget
column), one compact table of the converged models and one figure.

:class:`Evidence` gathers the records of the grids a claim draws on; :func:`summary_lines` decides each
claim through :mod:`gpvae.verdicts` and returns one short Markdown line per claim, naming budget, estimator
and seeds (:func:`likelihood_line`, :func:`speed_line`, :func:`difficulty_line`: every comparison behind
it). No torch: everything here reads JSON records.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from matplotlib.figure import Figure
import pandas as pd
from pandas.io.formats.style import Styler

from .. import report, verdicts
from ..plotting import MODEL_COLOURS, MODEL_LABELS
from ..protocol import NEIGHBOUR_CONTROL
from . import dataset_label, listed, restart_clause, seeds_text, subplots
from .difficulty import Design, ood_line
from .protocol import benchmark_text, gap_protocol, measurement_protocol, protocol_text, test_protocol

GP_RF = "gp"  # the reading that decides a claim: R4, the default of --model gp
GP_READINGS = ("gp", "gp_refit", "gp_refit_source_lr", "gp_paper", "gp_iw", "gp_iw_expected")
OWN_SCORE, KNN_SCORE = "mean_function_variance", "neighbour_distance"
DIFFICULTY_BASELINES = {"negative_elbo": "the VAE's −ELBO", "encoder_variance": "the VAE's encoder variance"}
KNN_LABEL = "the distance to the 10 nearest training images"


@dataclass
class Evidence:
    """The records of one grid a claim reads: ``grid`` (:class:`gpvae.runs.grid.Grid`), its run records,
    AIS rows (:func:`gpvae.report.load_ais`), difficulty rows and frontier records; ``name`` says the
    budget in words (``"converged"``, ``"20 epochs"``)."""

    name: str
    grid: object
    records: list[dict] = field(default_factory=list)
    ais: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=report.AIS_COLUMNS))
    difficulty: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=report.DIFFICULTY_COLUMNS))
    frontiers: dict[tuple[str, int], dict] = field(default_factory=dict)
    bench: dict[str, dict] = field(default_factory=dict)
    design: Design | None = None  # the difficulty claim's own design (difficulty_large), where declared
    ood: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=report.OOD_COLUMNS))

    @classmethod
    def load(cls, name: str, grid) -> "Evidence":
        """Every record of ``grid`` under its results folder (runs the grid no longer declares left out)."""
        root = grid.layout.results_dir
        records = [r for r in report.load_records(root) if r["run"] in grid.runs and r["dataset"] in grid.datasets]
        ais = report.load_ais(root)
        ais = ais[ais.run.isin(list(grid.runs)) & ais.dataset.isin(list(grid.datasets))]
        frontiers, bench = {}, {}
        for dataset in grid.datasets:
            for seed in grid.seeds:
                path = grid.layout.measurement_path("frontier", dataset, seed)
                if path.exists():
                    frontiers[(dataset, seed)] = json.loads(path.read_text())
            bench_path = grid.layout.dataset_record(dataset, "bench")
            if bench_path.exists():
                bench[dataset] = json.loads(bench_path.read_text())
        return cls(name, grid, records, ais, report.load_difficulty(root), frontiers, bench, Design.load(grid),
                   report.load_ood(root))

    def baselines(self) -> list[str]:
        """The runs a claim compares GP-RF with: the grid's models that are neither controls, side runs nor GP-RF."""
        aside = {*self.grid.controls(), *self.grid.side_runs()}
        return [run for run, spec in self.grid.runs.items() if spec["model"] != "gp" and run not in aside]

    def seeds(self, run: str) -> int:
        """How many seeds of ``run`` have an AIS row."""
        return int(self.ais[self.ais.run == run].seed.nunique())


def _against(evidence: Evidence, reading: str) -> pd.DataFrame:
    """``reading`` minus every baseline by AIS, seed-matched, over all datasets (rows: dataset, run)."""
    if reading not in set(evidence.ais.run):
        return pd.DataFrame(columns=["mean", "sd", "n", "uncertified"],
                            index=pd.MultiIndex.from_tuples([], names=["dataset", "run"]))
    differences = report.paired_differences(evidence.ais, reading, value="ais", grid=evidence.grid)
    return differences[differences.index.get_level_values("run").isin(evidence.baselines())]


def _differences_text(reading: str, differences: pd.DataFrame, several_datasets: bool) -> str:
    """``"GP-RF (R4) − IWAE −1.23 ± 0.25 (n = 3): fails; …"``: each seed-matched difference [nats], mean ± sd,
    with its outcome (:func:`gpvae.verdicts.paired`)."""
    parts = []
    for (dataset, run), row in differences.iterrows():
        where = f" on {dataset_label(dataset)}" if several_datasets else ""
        sd = "" if math.isnan(row["sd"]) else f" ± {row['sd']:.2f}"
        value = f"{row['mean']:+.2f}".replace("-", "−")
        outcome = verdicts.paired(row)
        parts.append(f"{MODEL_LABELS.get(reading, reading)} − {MODEL_LABELS.get(run, run)}{where} {value}{sd} "
                     f"({seeds_text(row)}): {outcome}" + (" (one decoder)" if outcome == verdicts.TIED else ""))
    return "; ".join(parts)


def _counts(decided: verdicts.Verdict) -> str:
    """``"ahead in 3, behind in 5, tied in 2 and not resolved in 10 of 20 model × dataset comparisons"``."""
    outcomes = list(decided.details.values())
    return (f"ahead in {outcomes.count(verdicts.HOLDS)}, behind in {outcomes.count(verdicts.FAILS)}, tied in "
            f"{outcomes.count(verdicts.TIED)} and not resolved in {outcomes.count(verdicts.NOT_RESOLVED)} of "
            f"{len(outcomes)} model × dataset comparisons")


def _decide(differences: pd.DataFrame) -> verdicts.Verdict:
    """Claim 1 over every (dataset, model) row of ``differences``."""
    return verdicts.likelihood(differences.set_axis([f"{run} on {dataset}" for dataset, run in differences.index]))


def headline(line: str) -> str:
    """The claim and its outcome, the bold opening of a claim's line (``**1. ... — fails.**``), without
    numbers: what README.md states of each claim (tests/test_readme.py holds it to the records)."""
    if not line.startswith("**") or "**" not in line[2:]:
        raise ValueError(f"a claim's line opens with its bold headline; got {line[:60]!r}")
    return line[:line.index("**", 2) + 2]


def criterion() -> str:
    """The rule every claim line applies, in one sentence (:mod:`gpvae.verdicts`)."""
    return (f"Every comparison is seed-matched and holds or fails when it lies beyond {verdicts.MARGIN_SDS:g} sds of "
            f"zero over at least {verdicts.MIN_SEEDS} seeds, else it is not resolved; a claim holds when each of its "
            "comparisons holds.")


def _lost_notes(evidence: Evidence) -> dict[str, str]:
    """Each reading of GP-RF but R4 → what its line says of lost ground (:func:`gpvae.report.lost_ground`):
    nothing, or that it ended below the VAE it started from, with the first epoch's fall and learning rate
    against the source's final one where its history records them (a restart, :func:`gpvae.report.restarts`)."""
    lost = report.lost_ground(evidence.records, evidence.grid)
    notes = {}
    for reading in GP_READINGS[1:]:
        mine = [x for x in lost if x["run"] == reading]
        restart = restart_clause(mine)
        notes[reading] = ("" if not mine else
                          f" (it lost ground against the VAE it started from; {restart})" if restart else
                          " (it lost ground against the VAE it started from: its training, not the method)")
    return notes


def likelihood_line(strongest: Evidence, budget_column: Evidence | None = None,
                    screen: Evidence | None = None) -> str:
    """Claim 1 by AIS (certified by BDMC): GP-RF (R4) minus every baseline on ``strongest``'s records, with
    each other reading's outcome, ``budget_column``'s verdict beside it and, when given, the outcome of the
    importance-weighted ``screen`` (its readings against IWAE at the same k)."""
    differences = _against(strongest, GP_RF)
    decided = _decide(differences)
    datasets = sorted(set(differences.index.get_level_values("dataset")))
    line = (f"**1. Higher test log-likelihood than every baseline — {decided.outcome}.** {strongest.name.capitalize()} "
            f"{', '.join(map(dataset_label, datasets)) or '(no dataset)'}, log p(x) by AIS certified by BDMC [nats]: "
            f"{_differences_text(GP_RF, differences, len(datasets) > 1) or 'not measured'}.")
    others = [f"{MODEL_LABELS[reading]} {_decide(_against(strongest, reading)).outcome}{note}"
              for reading, note in _lost_notes(strongest).items() if reading in set(strongest.ais.run)]
    if others:
        line += " Other readings: " + "; ".join(others) + "."
    if budget_column is not None and len(budget_column.ais):
        small = _decide(_against(budget_column, GP_RF))
        line += f" At {budget_column.name}: {small.outcome}, GP-RF (R4) {_counts(small)}."
    if screen is not None and len(screen.ais):
        line += " " + screen_sentence(screen)
    return line


def screen_sentence(screen: Evidence, against: str = "iwae") -> str:
    """Does a reading trained with an importance-weighted bound beat IWAE at the same k, by AIS?"""
    parts = []
    for reading in ("gp_iw", "gp_iw_expected"):
        if reading not in set(screen.ais.run):
            continue
        rows = report.paired_differences(screen.ais, reading, value="ais", grid=screen.grid).xs(
            against, level="run", drop_level=False)
        parts.append(f"{_decide(rows).outcome} for {MODEL_LABELS[reading]} ({_differences_text(reading, rows, True)})")
    if not parts:
        return ""
    return (f"Trained with an importance-weighted bound, against IWAE at the same k ({screen.name}, by AIS): "
            + "; ".join(parts) + ".")


def _speed(strongest: Evidence, fallback: Evidence | None) -> tuple[verdicts.Verdict, str]:
    """Claim 2's verdict on the benchmark of record of ``strongest`` (its ``bench.json``), else ``fallback``'s
    — one benchmark for the claim — and where it was timed (:func:`benchmark_text`)."""
    for evidence in (e for e in (strongest, fallback) if e is not None):
        dataset = next((d for d, b in evidence.bench.items() if {"gp", "savae"} <= set(b)), None)
        if dataset:
            bench = evidence.bench[dataset]
            ratios = (bench[run]["results"][0]["infer_ratio_to_vae"] for run in ("gp", "savae"))
            return verdicts.speed(*ratios, reading=MODEL_LABELS.get(GP_RF, "GP-RF")), benchmark_text(evidence.grid.profile, dataset, bench)
    return verdicts.speed(None, None), "no benchmark of record"


def speed_line(strongest: Evidence, fallback: Evidence | None = None) -> str:
    """Claim 2: one pass of R4 against the VAE and SA-VAE, timed side by side in one process (:func:`_speed`),
    with the criterion and each part's outcome."""
    decided, where = _speed(strongest, fallback)
    return (f"**2. One pass at about the encoder's cost, much faster than SA-VAE — {decided.outcome}.** "
            f"{decided.measured} ({where}; criterion: {decided.criterion})"
            + (f": {decided.breakdown()}." if decided.details else "."))


def _deciding_design(evidence: Evidence, run: str, dataset: str) -> Design | None:
    """The claim's own difficulty design of ``dataset`` where it has every seed it declares for ``run``."""
    design = evidence.design
    return design if design is not None and design.dataset == dataset and design.complete(run) else None


def _outcomes_text(decided: verdicts.Verdict) -> str:
    """``"ahead of chance, the VAE's −ELBO; behind …"``: a verdict's comparisons grouped by outcome."""
    by_outcome = {}
    for name, outcome in decided.details.items():
        by_outcome.setdefault(outcome, []).append(name)
    return "; ".join(f"{ {verdicts.HOLDS: 'ahead of', verdicts.FAILS: 'behind'}.get(o, o + ' against')} " + ", ".join(names)
                     for o, names in by_outcome.items())


def _difficulty(evidence: Evidence, run: str, dataset: str) -> tuple[verdicts.Verdict, pd.Series, dict, int]:
    """Claim 3 on ``evidence``'s difficulty rows of ``run`` on ``dataset``: the verdict, the GP's per-seed ρ,
    each control's per-seed ρ and the images per seed. The nearest-neighbour control is the difficulty record's
    own (the mean distance to the training images the errors were observed on, every seed it measured), else
    the frontier's ``knn10`` setting (the same score, on the seeds the frontier measured)."""
    rows = evidence.difficulty[(evidence.difficulty.run == run) & (evidence.difficulty.dataset == dataset)]
    own = rows[rows.score == OWN_SCORE].set_index("seed")["spearman"]
    controls = {label: rows[rows.score == score].set_index("seed")["spearman"]
                for score, label in DIFFICULTY_BASELINES.items()}
    recorded = rows[rows.score == NEIGHBOUR_CONTROL].set_index("seed")["spearman"]
    controls[KNN_LABEL] = recorded if len(recorded) else pd.Series(
        {seed: settings["knn10"]["spearman"][KNN_SCORE] for (where, seed), frontier in evidence.frontiers.items()
         if where == dataset
         for settings in [next(iter(frontier["runs"].values()))["settings"]] if "knn10" in settings}, dtype=float)
    return verdicts.ahead_of_baselines(own, controls), own, controls, int(rows["n"].max()) if len(rows) else 0


def difficulty_line(strongest: Evidence, budget_column: Evidence | None = None, run: str = GP_RF,
                    dataset: str = "mnist") -> str:
    """Claim 3: the Spearman ρ of GP-RF's mean-function variance with the per-image amortization gap against
    chance, the VAE's −ELBO and encoder variance on the same images and a nearest-neighbour average. Decided on
    the claim's own design (:class:`~gpvae.pages.difficulty.Design`) once it has every seed of ``run``, the gap
    subset's verdict beside it; until then on ``strongest``'s difficulty records (a control without a value on
    two seeds leaves it not resolved: the frontier's ``knn10`` setting stands in for a record without the
    control), with ``budget_column``'s verdict beside it."""
    design = _deciding_design(strongest, run, dataset)
    if design is not None:
        decided = design.decide(run)
        line = (f"**3. The GP's variance measures posterior difficulty — {decided.outcome}.** "
                f"{strongest.name.capitalize()} {dataset_label(dataset)}, Spearman ρ of GP-RF (R4)'s variance with the "
                f"per-image amortization gap, {design.protocol(run)}: {decided.measured}.")
        subset, subset_own, _, subset_images = _difficulty(strongest, run, dataset)
        line += f" On the {subset_images:,}-image gap subset: {subset.outcome}." if len(subset_own) else ""
        ood = ood_line(strongest.ood, run, dataset=dataset)
        return line + (f" {ood}" if ood else "")
    decided, own, controls, images = _difficulty(strongest, run, dataset)
    if own.empty:
        return (f"**3. The GP's variance measures posterior difficulty — {verdicts.NOT_RESOLVED}.** "
                f"({strongest.name}: no difficulty record of GP-RF (R4)).")

    def mean(values: pd.Series) -> str:
        return f"{values.mean():.3f} (n = {len(values)})".replace("-", "−") if len(values) else "not measured"

    def lead(name: str) -> str:  # GP-RF's ρ minus the control's in its better orientation, seed-matched
        difference = verdicts.spread(decided.differences[name])
        if not difference["n"]:
            return ""
        sd = "" if difference["n"] < 2 else f" ± {difference['sd']:.3f}"
        reversed_ = " (its sign reversed, the better orientation)" if name in decided.reversed_baselines else ""
        side = "ahead" if difference["mean"] >= 0 else "behind"
        return f"{reversed_}, GP-RF {side} by {abs(difference['mean']):.3f}{sd}"

    against = "; ".join(f"{name} {mean(values)}{lead(name)}: {decided.details[name]}"
                        for name, values in controls.items())
    line = (f"**3. The GP's variance measures posterior difficulty — {decided.outcome}.** {strongest.name.capitalize()} "
            f"{dataset_label(dataset)}, Spearman ρ with the per-image amortization gap, {images:,} test images per seed: "
            f"GP-RF (R4) {mean(own)}, above chance: {decided.details['chance']}; against {against}.")
    pending = strongest.design
    if pending is not None and pending.dataset == dataset:
        line += (f" The claim's own design ({pending.spec['images']:,} images per seed, decided by a hierarchical "
                 f"bootstrap): {len(pending.seeds(run))} of {len(pending.declared.get(run, []))} seeds measured.")
    if budget_column is not None:
        small, small_own, _, small_images = _difficulty(budget_column, run, dataset)
        if len(small_own):
            line += (f" At {budget_column.name} ({small_images:,} images per seed, no nearest-neighbour control): "
                     f"{small.outcome}.")
    return line


def _decisive(differences: pd.DataFrame, outcome: str) -> pd.DataFrame:
    """The row of ``differences`` that carries a claim's ``outcome``: the widest margin behind for a claim that
    fails (a tie where none is behind), the narrowest ahead for one that holds, else the first comparison left
    open; the first row where no row matches."""
    outcomes = pd.Series([verdicts.paired(row) for _, row in differences.iterrows()], index=differences.index)
    rows = differences[outcomes == outcome]
    if rows.empty and outcome == verdicts.FAILS:  # a claim of "higher" fails on a tie too (verdicts.combined)
        rows = differences[outcomes == verdicts.TIED]
    if rows.empty:
        return differences.iloc[:1]
    return rows.loc[[rows["mean"].idxmin()]] if outcome in (verdicts.FAILS, verdicts.HOLDS) else rows.iloc[:1]


def summary_lines(strongest: Evidence, budget_column: Evidence | None = None, screen: Evidence | None = None,
                  run: str = GP_RF, dataset: str = "mnist") -> list[str]:
    """The landing page's verdicts, one short Markdown line per claim: outcome, the comparison that decides it
    with its budget, estimator and seeds, and the outcome at ``budget_column``'s budget (and, for claim 1, of
    the importance-weighted ``screen``). :func:`likelihood_line`, :func:`speed_line` and
    :func:`difficulty_line` give every comparison behind them."""
    differences = _against(strongest, run)
    decided = _decide(differences)
    on_dataset = differences[differences.index.get_level_values("dataset") == dataset]
    decisive = _differences_text(run, _decisive(on_dataset, decided.outcome), False)
    first = (f"{headline(likelihood_line(strongest))} {strongest.name.capitalize()} {dataset_label(dataset)}, AIS "
             f"certified by BDMC [nats]: {decisive or 'not measured'}")
    if budget_column is not None and len(budget_column.ais):
        first += f"; at {budget_column.name}: {_decide(_against(budget_column, run)).outcome}"
    if screen is not None and len(screen.ais):
        outcomes = {_decide(report.paired_differences(screen.ais, reading, value="ais", grid=screen.grid).xs(
            "iwae", level="run", drop_level=False)).outcome for reading in ("gp_iw", "gp_iw_expected")
            if reading in set(screen.ais.run)}
        first += f"; trained with an importance-weighted bound, against IWAE ({screen.name}): {' / '.join(sorted(outcomes))}"
    speed, where = _speed(strongest, budget_column)
    third_head = headline(difficulty_line(strongest, run=run, dataset=dataset))
    design = _deciding_design(strongest, run, dataset)
    third, own, _, images = _difficulty(strongest, run, dataset)
    if design is not None:
        decided = design.decide(run)
        third_text = (f"{third_head} {strongest.name.capitalize()} {dataset_label(dataset)}, {design.brief(run)}: ρ of "
                      f"the GP's variance with the per-image gap {decided.differences['chance']['estimate']:.3f} "
                      f"(hierarchical bootstrap); {_outcomes_text(decided)}")
    elif len(own):
        third_text = (f"{third_head} {strongest.name.capitalize()} {dataset_label(dataset)}, {images:,} test images per "
                      f"seed: ρ of the GP's variance with the per-image gap {own.mean():.3f} (n = {len(own)}); "
                      + _outcomes_text(third))
        pending = strongest.design
        if pending is not None and pending.dataset == dataset:
            third_text += (f" (provisional: the claim's own design of {pending.spec['images']:,} images per seed has "
                           f"{len(pending.seeds(run))} of {len(pending.declared.get(run, []))} seeds)")
    else:
        third_text = third_head
    return [first + ".", f"{headline(speed_line(strongest, budget_column))} {speed.measured}; criterion: "
                         f"{speed.criterion} ({where}).",
            third_text + "."]


def difficulty_table(evidence: Evidence, run: str = GP_RF, dataset: str = "mnist") -> Styler | None:
    """The numbers behind :func:`difficulty_line`'s reading of the gap subset (the reading that decides the claim
    until its own design has every seed), one row per score: its Spearman ρ with the per-image amortization gap
    per seed and mean ± sd, then GP-RF's lead over it (in the control's better orientation) with its verdict.
    None without a difficulty record of ``run``."""
    decided, own, controls, images = _difficulty(evidence, run, dataset)
    if own.empty:
        return None
    recorded = ((evidence.difficulty.run == run) & (evidence.difficulty.score == NEIGHBOUR_CONTROL)).any()
    neighbours = ("the neighbour distance: each difficulty record's own" if recorded else
                  "the nearest-neighbour average: the frontier's 10-nearest-neighbour setting, on its seeds only")
    seeds = sorted(set(own.index).union(*(set(values.index) for values in controls.values())))
    rows = []
    own_name = f"{MODEL_LABELS.get(run, run)}: its GP's variance"
    for name, values in {own_name: own, **controls}.items():
        reversed_ = name in decided.reversed_baselines
        row = {"score": name + (" (enters reversed)" if reversed_ else ""),
               **{f"seed {s}": f"{values[s]:.3f}" if s in values.index else "–" for s in seeds},
               "mean ± sd": report.mean_sd(values.mean(), values.std(ddof=1), digits=3) if len(values) else "–"}
        compared = "chance" if name == own_name else name  # the GP's own row: its lead over chance (ρ = 0)
        if compared in decided.differences:
            lead = verdicts.spread(decided.differences[compared])
            row["GP-RF ahead by"] = report.mean_sd(lead["mean"], lead["sd"], digits=3) if lead["n"] else "–"
            row["verdict"] = decided.details[compared]
        rows.append(row)
    return pd.DataFrame(rows).fillna("").style.hide(axis="index").set_caption(
        f"{evidence.name.capitalize()}, {dataset_label(dataset)}: Spearman ρ of each score with the per-image "
        f"amortization gap of the VAE, {images:,} test images per seed ({neighbours}); the GP's own row: its lead over chance (ρ = 0). A control whose mean ρ is negative enters reversed. Verdict: {decided.criterion}; "
        f"the claim: {decided.outcome}.")


COLLAPSED = 0.01  # a kernel amplitude below this share of its value after the first epoch has collapsed


def shared_decoders(ais: pd.DataFrame, order) -> dict[str, str]:
    """Run → the run before it in ``order`` (a grid's runs) whose decoder it carries, parameter for parameter
    (``decoder_sha256`` of the AIS rows, :func:`gpvae.report.load_ais`), measured with the same AIS setting on
    the same images, at every dataset and seed where the run has a row."""
    owners = {}
    same = ["decoder_sha256", "n", "subset_seed", "steps", "leapfrog", "chains"]
    runs = [run for run in order if run in set(ais.run)]
    for i, run in enumerate(runs):
        mine = ais[ais.run == run].set_index(["dataset", "seed"])[same]
        if mine.decoder_sha256.isna().any():
            continue
        for owner in runs[:i]:
            theirs = ais[ais.run == owner].set_index(["dataset", "seed"])[same]
            if mine.index.isin(theirs.index).all() and mine.equals(theirs.loc[mine.index]):
                owners[run] = owner
                break
    return owners


def _reading_notes(evidence: Evidence) -> dict[str, str]:
    """Run → what makes its row no test of the method: it lost ground against the run it started from, or its
    GP's kernel amplitude collapsed (below :data:`COLLAPSED` of its first value on every seed), or it keeps
    another model's decoder on every seed (:func:`shared_decoders`), so that AIS, which never calls a proposal,
    is that model's by construction."""
    notes = {run: f"keeps the {MODEL_LABELS.get(owner, owner)}'s decoder: AIS equal by construction"
             for run, owner in shared_decoders(evidence.ais, evidence.grid.runs).items()}
    notes |= {x["run"]: ("lost ground after a restart at a higher learning rate" if report.restarted_faster(x["restart"])
                        else "lost ground: its training, not the method")
             for x in report.lost_ground(evidence.records, evidence.grid)}
    for run in {r["run"] for r in evidence.records}:
        amplitudes = [[h["kernel_outputscale"] for h in r.get("history", []) if "kernel_outputscale" in h]
                      for r in evidence.records if r["run"] == run]
        if amplitudes and all(a and a[-1] < COLLAPSED * a[0] for a in amplitudes):
            notes.setdefault(run, "amplitude collapsed: the VAE again")
    return notes


def converged_table(evidence: Evidence) -> pd.DataFrame:
    """The converged models by AIS beside their own IS on the same images [nats], mean ± sd over seeds,
    with the seeds measured, the epochs trained after any warm start (mean) and a note where a row is no test
    of the method (:func:`_reading_notes`); controls left out."""
    controls, notes = set(evidence.grid.controls()), _reading_notes(evidence)
    epochs = pd.DataFrame([{"run": r["run"], "epochs": r.get("epochs_done")} for r in evidence.records
                           if "diverged" not in r]).groupby("run")["epochs"].mean() if evidence.records else pd.Series()
    rows = []
    for run in evidence.grid.runs:
        part = evidence.ais[evidence.ais.run == run]
        if run in controls or part.empty:
            continue
        ais, is_ = verdicts.spread(part.set_index("seed")["ais"]), verdicts.spread(part.set_index("seed")["is"])
        rows.append({"model": MODEL_LABELS.get(run, run), "log p(x) by AIS": report.mean_sd(ais["mean"], ais["sd"]),
                     "own IS, same images": report.mean_sd(is_["mean"], is_["sd"]), "seeds": int(ais["n"]),
                     "epochs trained": "post hoc" if not epochs.get(run) else f"{epochs[run]:.0f}",
                     "note": notes.get(run, "")})
    return pd.DataFrame(rows, columns=["model", "log p(x) by AIS", "own IS, same images", "seeds", "epochs trained",
                                       "note"])


def table_caption(evidence: Evidence) -> str:
    """What :func:`converged_table` rests on, read from its AIS records (:mod:`gpvae.pages.protocol`)."""
    if evidence.ais.empty:
        return "No AIS record yet."
    return (f"{evidence.name.capitalize()} [nats], mean ± sd over seeds: AIS from the prior beside the model's own IS, "
            + protocol_text(measurement_protocol(evidence.grid, "ais")) + ". Warm-started runs count the epochs after "
            "their start.")


def converged_figure(evidence: Evidence) -> Figure:
    """log p(x) by AIS per model, one dot per seed and a bar at the mean; controls left out."""
    controls = set(evidence.grid.controls())
    runs = [r for r in evidence.grid.runs if r not in controls and r in set(evidence.ais.run)]
    fig, ax = subplots(figsize=(6.4, 0.45 * max(len(runs), 2) + 1.0))
    for y, run in enumerate(runs):
        values = evidence.ais[evidence.ais.run == run]["ais"]
        ax.scatter(values, [y] * len(values), color=MODEL_COLOURS.get(run, "k"), zorder=3, s=22)
        ax.plot([values.mean()] * 2, [y - 0.3, y + 0.3], color="k", lw=1.5)
    ax.set_yticks(range(len(runs)), [MODEL_LABELS.get(r, r) for r in runs])
    ax.invert_yaxis()
    ax.set_xlabel("test log p(x) by AIS [nats per image; higher is better]")
    datasets = ", ".join(map(dataset_label, sorted(set(evidence.ais.dataset))))
    ax.set_title(f"{datasets}, {evidence.name}: one dot per seed, bar at the mean", fontsize=10)
    fig.tight_layout()
    return fig


def protocol_statement(records: list[dict], budget: str) -> str:
    """How the test log-likelihoods and gaps of ``records`` were measured, per dataset, read from the records
    (:mod:`gpvae.pages.protocol`)."""
    tests, gaps = test_protocol(records), gap_protocol(records)
    if tests.empty:
        return f"{budget}: no record."
    text = f"{budget}: log p̂(x) with " + protocol_text(tests)
    return text + (f"; gap decompositions with {protocol_text(gaps)}." if len(gaps) else ".")
