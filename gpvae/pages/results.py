"""The chapter *Results* (``book/results.ipynb``) as library code: Tables 1–5 of a grid's records, their
figures and the sentences that decide the likelihood, control, speed and difficulty claims. A number whose
premise fails (:mod:`gpvae.validity`) is shown as not measurable with its reason, and every caption states
the protocol the records carry (:func:`protocol_text`), not the one the grid file intends. No torch."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from .. import report, validity, verdicts
from ..plotting import run_labels
from . import dataset_label
from .protocol import gap_protocol, images_text, measurement_protocol, protocol_text, test_protocol

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

    from ..runs.grid import Grid

OMNIGLOT_DRAWINGS, OMNIGLOT_CHARACTERS = 20, 659  # per character; characters of Omniglot's evaluation set
NOTE_MARKS = "†‡§¶‖#"
SCORES = {"mean_function_variance": "GP variance, mean function",
          "variance_function_variance": "GP variance, log-variance function",
          "encoder_variance": "VAE encoder variance", "negative_elbo": "VAE negative ELBO"}
OWN_SCORE, BASELINE_SCORES = "mean_function_variance", ("encoder_variance", "negative_elbo")
# Why a value of Table 2 is withheld, by kind (the reason of each cell names its own numbers)
WITHHELD = {"family": "their proposal is richer than the diagonal Gaussians q* is sought among, so neither gap is "
                      "the decomposition of their own family",
            "certificate": f"their AIS has no BDMC certificate of at most {validity.AIS_CERTIFIED_WIDTH:g} nat",
            "ais_short": "their AIS falls below ELBO(q*) by more than its certificate's width",
            "is_loose": f"the protocol's IS estimate falls below ELBO(q*) by more than {validity.LOOSE_NATS:g} nat, "
                        "which log p(x) never does"}


# ---- the page ----------------------------------------------------------------------------------
@dataclass
class ResultsPage:
    """A grid and its records: ``records`` (run records), ``ais``, ``curves`` and ``difficulty`` (the frames
    of :func:`gpvae.report.load_ais`, ``load_k_curves`` and ``load_difficulty``) and ``benches`` (dataset →
    its ``bench.json``). Each method returns one table (a captioned ``Styler``), figure or Markdown text."""

    grid: Grid
    records: list[dict]
    ais: pd.DataFrame
    curves: pd.DataFrame
    difficulty: pd.DataFrame
    benches: dict[str, dict]
    runs: pd.DataFrame = field(init=False)
    labels: dict[str, str] = field(init=False)
    order: list[str] = field(init=False)
    lost: list[dict] = field(init=False)

    def __post_init__(self):
        self.runs = report.frame(self.records)
        self.labels = run_labels(self.grid)
        self.order = [run for run in self.labels if run in self.grid.runs]
        self.lost = report.lost_ground(self.records, self.grid)

    @classmethod
    def load(cls, grid: Grid) -> ResultsPage:
        """Every record of ``grid``'s ``results_dir`` (:attr:`Grid.layout`)."""
        root, datasets = grid.layout.results_dir, list(grid.datasets)
        benches = {d: json.loads(path.read_text()) for d in datasets
                   if (path := grid.layout.dataset_record(d, "bench")).exists()}
        ais = report.load_ais(root)
        return cls(grid, report.load_records(root), ais[ais["dataset"].isin(datasets)], report.load_k_curves(root),
                   report.load_difficulty(root), benches)

    # ---- helpers ----
    @property
    def datasets(self) -> list[str]:
        return list(self.grid.datasets)

    def ordered(self, runs) -> list[str]:
        return [run for run in self.order if run in set(runs)]

    def lost_runs(self, dataset: str) -> set[str]:
        return {x["run"] for x in self.lost if x["dataset"] == dataset}

    def protocol_k(self, dataset: str) -> int | None:
        """The K of the dataset's records' test log-likelihoods (the most common one)."""
        ks = test_protocol(self.records).query("dataset == @dataset")["eval_k"]
        return int(ks.mode().iloc[0]) if len(ks) else None

    # ---- what has run ----
    def what_has_run(self) -> tuple[str, Styler | None]:
        """The grid's budget and what its records cover (count, job-hours, devices, commits), and a table of
        the seeds not yet recorded per run and dataset (None when every cell has its record)."""
        runs, declared = self.runs, self.grid.cells()
        text = (f"{self.grid.budget}\n\n{len(self.records)} of {len(declared)} declared runs have a record; their jobs took "
                f"{runs['wall_seconds'].sum() / 3600:.1f} job-hours of wall time ({self.grid.threads_per_job} thread(s) "
                f"per job) on: {', '.join(sorted(set(runs['device'].dropna())))}; trained at commit(s) "
                f"{', '.join(sorted({c[:10] for c in runs['git_commit'].dropna()}))}.")
        absent = report.missing(self.grid, self.records)
        if not absent:
            return text, None
        pending = pd.DataFrame(absent, columns=["dataset", "run", "seed"])
        pending = pending.groupby(["dataset", "run"])["seed"].apply(lambda s: ", ".join(map(str, s))).unstack(0).fillna("")
        return text, pending.style.set_caption(
            "Runs not yet recorded: the seeds still to run per model and dataset; `make results` resumes the grid "
            "where it stopped.")

    # ---- Table 1 ----
    def _notes(self) -> dict[str, tuple[str, str]]:
        """Run → (mark, note) for the grid's runs with a note."""
        noted = [run for run in self.order if self.grid.runs[run].get("note")]
        return {run: (NOTE_MARKS[i] if i < len(NOTE_MARKS) else f"({i + 1})", self.grid.runs[run]["note"])
                for i, run in enumerate(noted)}

    def _overrides_text(self) -> str:
        """The options a dataset sets for a run, as its records carry them."""
        texts = []
        for dataset, spec in self.grid.datasets.items():
            for run, options in (spec.get("overrides") or {}).items():
                mine = [r["options"] for r in self.records if (r["dataset"], r["run"]) == (dataset, run) and "options" in r]
                held = {key: sorted({str(o[key]) for o in mine if key in o}) for key in options}
                if any(held.values()):
                    texts.append(f"On {dataset_label(dataset)}, {self.labels[run]} with " + ", ".join(
                        f"{key} = {' or '.join(values)}" for key, values in held.items() if values) + ".")
        return " ".join(texts)

    def likelihood_table(self) -> Styler:
        """Table 1: test log p̂(x) [nats] (Fashion-MNIST: bits/dim), mean ± sd over seeds (n) per model and
        dataset, the best model of each dataset in bold (a control never is)."""
        notes = self._notes()
        columns, best = {}, {}
        for dataset in self.datasets:
            value = "test_bpd" if dataset == "fashion_mnist" else "test_ll"
            name = f"{dataset_label(dataset)} [{'bits/dim' if value == 'test_bpd' else 'nats'}]"
            stats = report.summarize(self.runs[self.runs["dataset"] == dataset], value)
            if stats.empty:
                columns[name] = pd.Series(dtype=object)
                continue
            stats = stats.droplevel("dataset")
            digits = 3 if value == "test_bpd" else 2
            columns[name] = pd.Series({run: f"{report.mean_sd(row['mean'], row['sd'], digits)} ({int(row['n'])})"
                                       for run, row in stats.iterrows()})
            contenders = report.models_only(stats, self.grid)["mean"]
            if len(contenders):
                best[name] = contenders.idxmin() if value == "test_bpd" else contenders.idxmax()
        table = pd.DataFrame(columns).reindex(self.order).fillna("not run")
        names = {run: self.labels[run] + notes.get(run, ("",))[0] for run in table.index}
        bold = lambda col: ["font-weight: bold" if run == best.get(col.name) else "" for run in col.index]
        caption = ("Table 1. Test log-likelihood, mean ± sd over seeds (n). "
                   + protocol_text(test_protocol(self.records), self.datasets) + ". "
                   + " ".join(f"{mark} {note}." for mark, note in notes.values()) + " " + self._overrides_text())
        return table.style.apply(bold).format_index(lambda run: names[run]).set_caption(caption.strip())

    def likelihood_notes(self) -> str:
        """Markdown under Table 1: Omniglot-28's first test images (not a random sample), the runs that
        diverged or scored a non-finite value (left out of the means), and warm starts that lost ground."""
        paragraphs = []
        omniglot = test_protocol(self.records).query("dataset == 'omniglot' and subset_seed.isna()")
        if len(omniglot):  # the evaluation set is stored by character, alphabet by alphabet
            n = int(omniglot["n"].max())
            paragraphs.append(
                f"**Omniglot-28's test images are not a random sample.** The evaluation set is stored character by "
                f"character, alphabet by alphabet ({OMNIGLOT_DRAWINGS} drawings per character), so its first {n:,} images "
                f"are the drawings of its first {math.ceil(n / OMNIGLOT_DRAWINGS)} of {OMNIGLOT_CHARACTERS} characters: "
                "every model is scored on the same images, but the absolute values describe those few alphabets, not "
                "the whole evaluation set.")
        diverged = [r for r in self.records if "diverged" in r]
        if diverged:
            paragraphs.append("**Runs that diverged**, left out of the means above (their n counts the other seeds): "
                              + "; ".join(f"{self.labels[r['run']]} on {dataset_label(r['dataset'])}, seed {r['seed']}: "
                                          f"{r['diverged'].split('; ')[0]}" for r in diverged) + ".")
        finished = self.runs[~self.runs.set_index(["dataset", "run", "seed"]).index.isin(
            [(r["dataset"], r["run"], r["seed"]) for r in diverged])]
        nonfinite = finished[~np.isfinite(finished["test_ll"])]
        if len(nonfinite):
            paragraphs.append(
                "**Non-finite test log-likelihoods**, left out of the means above (their n counts only finite seeds): "
                + "; ".join(f"{self.labels[r.run]} on {dataset_label(r.dataset)}, seed {r.seed} (best validation ELBO "
                            f"{r.valid_elbo:.1f} nats)" for r in nonfinite.itertuples()) + ".")
        if self.lost:
            paragraphs.append(
                f"**Warm starts that lost ground.** These runs ended with a best validation ELBO more than "
                f"{report.LOST_GROUND_NATS:.0f} nat below that of the run they started from: their training made the "
                "model worse, so their entries above measure a failed optimization at this budget and these settings, "
                "not the method: " + "; ".join(
                    f"{self.labels[x['run']]} on {dataset_label(x['dataset'])}, seed {x['seed']}: "
                    f"{x['source_valid_elbo']:.1f} → {x['valid_elbo']:.1f} nats" for x in self.lost) + ".")
        return "\n\n".join(paragraphs)

    # ---- Table 1 by AIS ----
    def _ais_reason(self, dataset: str, run: str) -> str | None:
        """Why the AIS of a run's seeds cannot enter a difference (its widest certificate), or None."""
        rows = self.ais[(self.ais["dataset"] == dataset) & (self.ais["run"] == run)]
        return validity.ais_premise(float(rows["width"].max(skipna=False))) if len(rows) else None

    def ais_table(self) -> Styler | None:
        """Table 1 by AIS: per dataset and model, AIS from the prior and the protocol's IS on the same images
        [nats], mean ± sd over seeds, and their difference, the estimator gap; AIS and the estimator gap are not
        measurable without a certificate (the caption says which); the best model by certified AIS in bold. None
        without an AIS record."""
        if self.ais.empty:
            return None
        rows, best, withheld = {}, set(), {}
        for dataset in self.ordered_datasets(self.ais):
            part = self.ais[self.ais["dataset"] == dataset]
            stats = {v: report.summarize(part, v).droplevel("dataset") for v in ("ais", "is", "estimator_gap")}
            for run in self.ordered(stats["ais"].index):
                reason = self._ais_reason(dataset, run)
                cell = lambda v: report.mean_sd(stats[v].loc[run, "mean"], stats[v].loc[run, "sd"])
                if reason:
                    withheld.setdefault(reason, []).append(f"{dataset_label(dataset)} {self.labels[run]}")
                rows[(dataset_label(dataset), self.labels[run])] = {
                    "AIS [nats]": validity.NOT_MEASURABLE if reason else cell("ais"), "IS, same images [nats]": cell("is"),
                    "estimator gap, AIS − IS [nats]": validity.NOT_MEASURABLE if reason else cell("estimator_gap"),
                    "seeds": int(stats["ais"].loc[run, "n"])}
            contenders = report.models_only(stats["ais"], self.grid)["mean"]
            if len(contenders) and not self._ais_reason(dataset, contenders.idxmax()):
                best.add((dataset_label(dataset), self.labels[contenders.idxmax()]))
        table = pd.DataFrame(rows).T.rename_axis(["dataset", "model"])
        bold = lambda col: ["font-weight: bold" if col.name == "AIS [nats]" and key in best else "" for key in col.index]
        return table.style.apply(bold).set_caption(
            "Table 1 by AIS, mean ± sd over seeds. AIS from the prior, one chain per image, beside the protocol's IS "
            "on the same images: " + protocol_text(measurement_protocol(self.grid, "ais"), self.datasets)
            + ". Bold: the best model by certified AIS." + "".join(
                f" Not measurable, {reason}: {', '.join(where)}." for reason, where in withheld.items()))

    def ordered_datasets(self, frame: pd.DataFrame) -> list[str]:
        return [d for d in self.datasets if d in set(frame["dataset"])]

    def ais_notes(self) -> str:
        """Markdown under Table 1 by AIS: Spearman ρ of the models' AIS and IS orders, the cost of AIS, the
        likelihood claim by AIS per dataset, and the AIS records still missing."""
        missing = report.missing_measurements(self.grid, "ais", self.ais)
        paragraphs = []
        if self.ais.empty:
            paragraphs.append("No AIS record of this profile yet: the workflow's `ais` jobs write them after each "
                              "dataset and seed's `bdmc` certificate.")
        else:
            ranks = []
            for dataset in self.ordered_datasets(self.ais):
                part = self.ais[self.ais["dataset"] == dataset]
                means = {v: report.models_only(report.summarize(part, v).droplevel("dataset"), self.grid)["mean"]
                         for v in ("ais", "is")}
                uncertified = part[~part["certified"].astype(bool)]
                if len(uncertified):  # an uncertified AIS orders nothing
                    ranks.append(f"{dataset_label(dataset)} {validity.NOT_MEASURABLE} ({validity.ais_premise(float(uncertified['width'].max()))})")
                elif len(means["ais"]) >= 3:
                    rho = spearmanr(means["ais"], means["is"].loc[means["ais"].index]).statistic
                    ranks.append(f"{dataset_label(dataset)} ρ = {rho:.2f} over {len(means['ais'])} models")
            costs = report.ais_costs(self.grid.layout.results_dir, {d: dataset_label(d) for d in self.datasets})
            paragraphs += [
                "**Do the two estimates order the models alike?** Spearman ρ between the models' mean AIS and mean IS "
                "on the same images: " + ("; ".join(ranks) or "fewer than three models measured") + ".",
                "**What AIS costs.** " + ("; ".join(costs) + "." if costs else
                                          "no cost record yet (the workflow's `ais_cost` rule, run alone)."),
                self._by_ais_lines()]
        if missing:
            paragraphs.append(f"AIS not measured yet: {missing} (the CPU grid commits no weights, so its `ais` jobs "
                              "retrain each run first; a measurement of a model other than its record's is refused).")
        return "\n\n".join(paragraphs)

    def _by_ais_lines(self) -> str:
        differences = report.paired_differences(self.ais, "gp", value="ais", grid=self.grid)
        lines = []
        for dataset in self.ordered_datasets(differences.reset_index()):
            rows = report.models_only(differences.loc[dataset], self.grid)
            if (rows["uncertified"] == rows["n"]).all():  # no seed of any comparison certified
                width = self.ais[self.ais["dataset"] == dataset]["width"].max(skipna=False)
                lines.append(f"- **{dataset_label(dataset)}**: {validity.ais_premise(float(width))}; no verdict by AIS.")
                continue
            parts = [f"{self.labels[run]} {report.mean_sd(row['mean'], row['sd'])} (n={int(row['n'])}, "
                     f"{verdicts.paired(row)}" + (", AIS without a BDMC certificate)" if row["uncertified"] else ")")
                     for run, row in rows.reindex(self.ordered(rows.index)).iterrows()]
            lines.append(f"- **{dataset_label(dataset)}**, by AIS: the claim **{verdicts.likelihood(rows).outcome}**. "
                         "GP-RF (R4) − model [nats]: " + "; ".join(parts) + ".")
        return "\n".join(lines) or "- no GP-RF AIS record yet."

    # ---- Table 2 ----
    def _gap_cells(self) -> dict[tuple[str, str], dict[str, tuple[str, str | None]]]:
        """(dataset, run) → Table 2's column → (cell text, kind of :data:`WITHHELD` or None when shown)."""
        by_is, amortization = (report.summarize(self.runs, v) for v in ("approximation_gap", "amortization_gap"))
        by_ais = report.summarize(self.ais, "approximation_gap")
        cells = {}
        for (dataset, run), approx in by_is.iterrows():
            family = validity.gap_family_premise(self.grid.runs[run]["model"])
            loose = validity.importance_estimate_premise(approx["mean"])
            row = {"approximation gap by AIS [nats]": ("not measured", None)}
            if (dataset, run) in by_ais.index:
                annealed = self.ais[(self.ais["dataset"] == dataset) & (self.ais["run"] == run)].dropna(
                    subset=["approximation_gap"])
                certificate = validity.ais_premise(float(annealed["width"].max(skipna=False)))
                short = annealed[annealed["approximation_gap"] < -annealed["width"]]
                short = (f"AIS {-short['approximation_gap'].min():.2f} nats below ELBO(q*) on seed(s) "
                         f"{', '.join(map(str, short['seed']))}, beyond its certificate's width" if len(short) else None)
                stats = by_ais.loc[(dataset, run)]
                row["approximation gap by AIS [nats]"] = (
                (validity.shown(None, family, brief=True), "family") if family else
                (validity.shown(None, certificate, brief=True), "certificate") if certificate else
                (validity.shown(None, short, brief=True), "ais_short") if short else
                (f"{report.mean_sd(stats['mean'], stats['sd'])} ({int(stats['n'])})", None))
            row["approximation gap by IS [nats]"] = (
                (validity.shown(None, family, brief=True), "family") if family else
                (validity.shown(None, loose, brief=True), "is_loose") if loose else
                (report.mean_sd(approx["mean"], approx["sd"]), None))
            amort = amortization.loc[(dataset, run)]
            row["amortization gap [nats]"] = ((validity.shown(None, family, brief=True), "family") if family else
                                             (report.mean_sd(amort["mean"], amort["sd"]), None))
            row["seeds"] = (str(int(approx["n"])), None)
            cells[(dataset, run)] = row
        return cells

    def gap_table(self) -> Styler | None:
        """Table 2: per dataset and model, the approximation gap by AIS and by IS and the amortization gap
        [nats], mean ± sd over seeds; a value whose premise fails is not measurable, with the reason. None
        without a gap decomposition."""
        cells = self._gap_cells()
        if not cells:
            return None
        keys = [(d, r) for d in self.datasets for r in self.order if (d, r) in cells]
        table = pd.DataFrame({(dataset_label(d), self.labels[r]): {c: text for c, (text, _) in cells[(d, r)].items()}
                              for d, r in keys}).T.rename_axis(["dataset", "model"])
        return table.style.set_caption(
            "Table 2. Gap decomposition, mean ± sd over seeds: " + protocol_text(gap_protocol(self.records), self.datasets)
            + ". q* by SVI (Adam) from each proposal's moments, the best diagonal Gaussian per image. Approximation "
            "gap by AIS: AIS from the prior (the T and L of Table 1 by AIS) minus ELBO(q*) on the same images, seeds "
            "measured in brackets; by IS: the protocol's estimate minus ELBO(q*).")

    def withheld_text(self) -> str:
        """One Markdown sentence: how many of Table 2's values are withheld as not measurable, and why."""
        cells = self._gap_cells()
        withheld = [(kind, column, dataset, run) for (dataset, run), row in cells.items()
                    for column, (_, kind) in row.items() if kind]
        if not withheld:
            return "Every value of Table 2 rests on its premises: none is withheld."
        total = sum(1 for row in cells.values() for column in row if column != "seeds")
        parts = []
        for kind, reason in WITHHELD.items():
            mine = [w for w in withheld if w[0] == kind]
            if mine:
                who = sorted({self.labels[run] for *_, run in mine}, key=list(self.labels.values()).index)
                where = sorted({dataset_label(d) for *_, d, _ in mine})
                parts.append(f"{len(mine)} because {reason} ({', '.join(who)}; {', '.join(where)})")
        return (f"**Values withheld.** Table 2 shows {len(withheld)} of its {total} values as not measurable, each "
                "with its reason: " + "; ".join(parts) + ".")

    # ---- Table 3 ----
    def cost_table(self) -> Styler | None:
        """Table 3: per dataset and model, inference [ms per 100 images] and a training step [ms] beside the
        VAE's (benchmarks of record), and the mean wall time of the training jobs [min]. None without one."""
        rows = []
        for dataset, bench in self.benches.items():
            for run, measured in bench.items():
                row = measured["results"][0]
                wall = self.runs[(self.runs["dataset"] == dataset) & (self.runs["run"] == run)]["wall_seconds"].mean()
                rows.append({"dataset": dataset_label(dataset), "model": self.labels[run],
                             "inference [ms / 100 images]": row["infer_ms"], "inference × VAE": row["infer_ratio_to_vae"],
                             "training step [ms]": row["train_step_ms"], "training step × VAE": row["train_ratio_to_vae"],
                             "job wall time [min]": wall / 60})
        if not rows:
            return None
        any_bench = next(iter(next(iter(self.benches.values())).values()))
        return pd.DataFrame(rows).set_index(["dataset", "model"]).style.format(precision=2).set_caption(
            f"Table 3. Cost beside the VAE. Inference: the model's proposal r(z | x) built, one draw per image and its "
            f"exact log-density (SA-VAE's refinement steps, with their gradients in the variational parameters, and "
            f"GP-RF's GP included), on a batch of "
            f"{any_bench['batch_size']} test images; training step: forward, backward and update on a batch of as many training images; × VAE: the "
            "model's median time over the VAE's, both timed interleaved in one process (gpvae.bench; the VAE is timed "
            "again beside each model, so a ratio need not be the quotient of the two medians shown). Device: "
            f"{any_bench['device']}, median of {any_bench['repeats']} repeats, commit "
            + ", ".join(sorted({f"{dataset_label(d)} {next(iter(b.values()))['git_commit'][:10]}"
                                for d, b in self.benches.items()})) + ". "
            f"Job wall time: {self.grid.threads_per_job} thread(s) per job, mean over seeds.")

    # ---- figures ----
    # ---- Table 4: the K curve ----
    def per_k(self) -> dict[int, pd.DataFrame]:
        """K → GP-RF (R4) minus its VAE on matched seeds (mean, sd, n per dataset). Refuses curves of two
        runs whose decoders differ (they would not share one p(x))."""
        digests = self.curves.groupby(["dataset", "seed"])["decoder_sha256"].nunique()
        if (digests > 1).any():
            raise ValueError(f"GP-RF (R4) and its VAE with different decoders: {digests[digests > 1].index.tolist()}")
        return {k: report.paired_differences(self.curves[self.curves["eval_k"] == k], "gp").xs("vae", level="run")
                for k in sorted(self.curves["eval_k"].unique())}

    def k_curve_table(self) -> Styler | None:
        """Table 4: log p̂(x) [nats] of the VAE and of GP-RF (R4), and their difference, per dataset and K,
        mean ± sd over seeds. None without a k_curve record."""
        if self.curves.empty:
            return None
        rows = {}
        means = self.curves.groupby(["dataset", "run", "eval_k"])["test_ll"].agg(["mean", "std"])
        for (dataset, run, k), row in means.iterrows():
            rows.setdefault((dataset, k), {})[self.labels[run]] = report.mean_sd(row["mean"], row["std"])
        for k, diff in self.per_k().items():
            for dataset, row in diff.iterrows():
                rows[(dataset, k)]["GP-RF (R4) − VAE"] = report.mean_sd(row["mean"], row["sd"])
        keys = sorted(rows, key=lambda key: (self.datasets.index(key[0]), key[1]))
        table = pd.DataFrame({(dataset_label(d), int(k)): rows[(d, k)] for d, k in keys}).T.rename_axis(["dataset", "K"])
        protocol_k = "; ".join(f"{dataset_label(d)} {self.protocol_k(d)}" for d in self.ordered_datasets(self.curves))
        return table.style.set_caption(
            "Table 4. log p̂(x) [nats] of the VAE and of GP-RF (R4), which shares its decoder, against the number of "
            "importance samples K, mean ± sd over seeds: " + protocol_text(measurement_protocol(self.grid, "k_curve"),
                                                                         self.datasets)
            + f". The K of Table 1: {protocol_k}. Decoder digests equal for every dataset and seed: one p(x) per row.")

    # ---- Table 5: difficulty ----
    def difficulty_table(self) -> Styler | None:
        """Table 5: Spearman ρ of each difficulty score with the per-image amortization gap of the VAE's
        encoder (and the partial ρ of the GP's scores given the negative ELBO), mean ± sd over seeds (n), per
        dataset. None without a difficulty record."""
        if self.difficulty.empty:
            return None
        measured, cells = self.ordered_datasets(self.difficulty), {}
        for score in SCORES:
            for dataset in measured:
                rows = self.difficulty[(self.difficulty["dataset"] == dataset) & (self.difficulty["score"] == score)]
                for column, name in (("spearman", SCORES[score]),
                                     ("partial_spearman", f"{SCORES[score]}, given the VAE's negative ELBO (partial ρ)")):
                    if rows[column].notna().any():
                        rho = verdicts.spread(rows[column])
                        cells.setdefault(name, {})[dataset_label(dataset)] = \
                            f"{report.mean_sd(rho['mean'], rho['sd'])} ({int(rho['n'])})"
        reference = {d: (self.grid.measurement("difficulty", d) or {}).get("reference") for d in measured}
        subsets = gap_protocol([r for r in self.records if r["run"] == reference.get(r["dataset"])])
        return pd.DataFrame(cells).T.reindex(columns=[dataset_label(d) for d in measured]).style.set_caption(
            "Table 5. Spearman ρ of each difficulty score with the per-image amortization gap of the VAE's encoder, "
            "mean ± sd over seeds (n), on the gap subset of Table 2: " + "; ".join(
                f"{dataset_label(d)}: " + images_text(self.difficulty.query("dataset == @d")["n"].iloc[0],
                                                      subsets.query("dataset == @d")["subset_seed"].dropna().min())
                for d in measured) + ".")

    # ---- the claims ----
