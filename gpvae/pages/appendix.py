"""The appendix chapter (``book/appendix_runs.ipynb``) as library code: every run of record one by one (the
workflow's CPU profile), the runs by hand converted into the record schema (``results/workflow/hand_*``),
the paper's likelihood claim at their one shared budget, their gap decompositions, per-example evaluations
and every benchmark record. A gap whose premise fails (:mod:`gpvae.validity`) is shown as not measurable
with its reason; captions state the protocol the records carry. No torch: JSON records only."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .. import report, validity
from ..layout import Layout, workflow_results
from ..runs import records as run_records
from . import dataset_label, listed
from .protocol import PROTOCOL_COLUMNS, gap_protocol, protocol_text, test_protocol

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

LISTED_PROFILE = "cpu"  # the workflow profile listed run by run
HAND_PREFIX = "hand_"  # profiles of the runs by hand, converted
SHARED_PROFILE = "hand_10k_10epochs"  # the runs by hand of every model at one budget
GAP_VALUES = {"log_px": "log p̂(x) [nats]", "elbo_opt": "ELBO(q*) [nats]", "elbo_model": "ELBO(q) [nats]"}
APPROXIMATION, AMORTIZATION = "approximation gap [nats]", "amortization gap [nats]"
VARIANCES = ("mean_function_variance", "variance_function_variance")
BENCH_VALUES = {"infer_ms": "inference [ms]", "infer_ratio_to_vae": "inference / VAE",
                "train_step_ms": "training step [ms]", "train_ratio_to_vae": "training step / VAE",
                "peak_mem_mb": "peak memory [MB]", "macs_ratio_to_vae": "MACs / VAE"}


def short_commit(commit: str | None) -> str:
    """The first 10 characters of a commit, with ``+dirty`` kept: ``"23f4d8a42f+dirty"``."""
    if not commit:
        return "–"
    return commit[:10] + ("+dirty" if commit.endswith("+dirty") else "")


def describe(record: dict) -> str:
    """A run record's model and the options that set it apart: ``"IWAE (K=5)"``, ``"HF (T=10)"``."""
    o = record["options"]
    if record["model"] == "gp":
        return (f"GP-RF ({o['kernel']}, M={o['inducing']}, {o['variance_link']}, objective {o['objective']}, "
                f"q(v) {o['variational']})")
    clip = f", gradients clipped at {o['svi_max_grad_norm']:g}" if o.get("svi_max_grad_norm") else ""
    return {"vae": "VAE", "iwae": f"IWAE (K={o.get('iwae_k')})",
            "savae": f"SA-VAE (T={o.get('svi_steps')}, lr {o.get('svi_lr')}{clip})",
            "hf": f"HF (T={o.get('householder_steps')})",
            "iaf": f"IAF ({o.get('iaf_steps')} steps, width {o.get('iaf_width')})",
            "vlae": f"VLAE ({o.get('laplace_iterations')} mode updates)",
            "rme": f"RME ({o.get('mixture_schedule', 'staged')}, {record.get('model_summary', {}).get('active_components')} "
                   f"of {o.get('mixture_components')} components)",
            }.get(record["model"], record["model"])


WITHHELD = (f"{validity.NOT_MEASURABLE}: both gaps where q* is sought among diagonal Gaussians, a smaller "
            "family than the model's proposal (" + ", ".join(sorted(
                model for model, family in validity.PROPOSAL_FAMILY.items() if family != validity.DIAGONAL_GAUSSIAN))
            + "); the approximation gap where the IS estimate falls more than "
            f"{validity.LOOSE_NATS:g} nat below ELBO(q*), which log p(x) never does.")


def gap_cells(model: str, approximation_gap: float | None, amortization_gap: float | None) -> dict[str, str]:
    """A record's approximation and amortization gap [nats] as table cells: ``"–"`` without a decomposition,
    not measurable (the caption says why: :data:`WITHHELD`) where q* is sought in a smaller family than the
    ``model``'s proposal (both gaps), or the IS estimate falls more than a nat below ELBO(q*)."""
    if approximation_gap is None:
        return {APPROXIMATION: "–", AMORTIZATION: "–"}
    family = validity.gap_family_premise(model)
    loose = validity.importance_estimate_premise(approximation_gap)
    return {APPROXIMATION: validity.shown(approximation_gap, family or loose, brief=True),
            AMORTIZATION: validity.shown(amortization_gap, family, brief=True)}


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 60


def _minutes_text(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds / 60:.1f}"


@dataclass
class AppendixPage:
    """The records under ``root`` (a results folder): ``listing`` (the :data:`LISTED_PROFILE` run records),
    ``hand`` (profile → its run records, runs by hand), ``per_example`` (their per-example evaluations) and
    ``benches`` (``results/…/bench.json`` → its reports). Each method returns Markdown text, or Markdown and
    captioned tables (``Styler``); with nothing recorded, the text says so and no table comes."""

    root: Path
    listing: list[dict]
    hand: dict[str, list[dict]]
    per_example: list[dict]
    benches: dict[str, dict]

    @classmethod
    def load(cls, results_dir: str | Path | None = None) -> AppendixPage:
        """Every profile's records under ``results_dir/workflow`` (None: the repository's ``results``)."""
        root = workflow_results(results_dir).parent
        folders = sorted(p for p in workflow_results(root).glob("*") if p.is_dir())
        layouts = {folder.name: Layout(folder, folder) for folder in folders}  # results side only: no run folder is read
        listing = report.load_records(layouts[LISTED_PROFILE].results_dir) if LISTED_PROFILE in layouts else []
        hand = {name: found for name, layout in layouts.items()
                if name.startswith(HAND_PREFIX) and (found := report.load_records(layout.results_dir))}
        per_example = [json.loads(path.read_text()) for name, found in hand.items() for r in found
                       if (path := layouts[name].run_measurement_path("evaluation", r["dataset"], r["run"], r["seed"])).exists()]
        benches = {f"results/{path.relative_to(root)}": json.loads(path.read_text())
                   for layout in layouts.values() for dataset in sorted(p.name for p in layout.results_dir.iterdir() if p.is_dir())
                   if (path := layout.dataset_record(dataset, "bench")).exists()}
        return cls(root, listing, hand, per_example, benches)

    @property
    def hand_runs(self) -> list[dict]:
        return [r for found in self.hand.values() for r in found]

    def summary(self) -> str:
        """One Markdown sentence: how many records of each kind this page lists."""
        runs = self.hand_runs
        return (f"{len(self.listing)} records of the workflow's `{LISTED_PROFILE}` profile; {len(runs)} runs by hand in "
                f"{len(self.hand)} profiles, {sum('gaps' in r for r in runs)} with a gap decomposition, "
                f"{len(self.per_example)} per-example evaluations; {len(self.benches)} benchmark records under "
                "`results/workflow/`.")

    def workflow_listing(self) -> tuple[str, list[Styler]]:
        """The :data:`LISTED_PROFILE` records, one row per dataset × run × seed, in two tables: the protocol's
        numbers and gaps [nats], and the training's provenance (model, epochs, best validation ELBO [nats], train
        and wall time [min], commit; the devices in the caption)."""
        where = f"`results/workflow/{LISTED_PROFILE}/`"
        if not self.listing:
            return f"No workflow records yet under {where}.", []
        records = {(r["dataset"], r["run"], r["seed"]): r for r in self.listing}
        rows = run_records.table_rows(self.listing)
        index = pd.MultiIndex.from_tuples([(row["dataset"], row["run"], row["seed"]) for row in rows],
                                          names=["dataset", "run", "seed"])
        numbers = pd.DataFrame([{
            "test log p̂(x) [nats]": row["test_ll"], "test ELBO [nats]": row["test_elbo"], "test bits/dim": row["test_bpd"],
            **gap_cells(row["model"], row["approximation_gap"], row["amortization_gap"])} for row in rows], index=index)
        provenance = pd.DataFrame([{
            "model": describe(records[key]) if "options" in records[key] else row["model"],
            "epochs (best)": f"{row['epochs_done']} ({row['best_epoch']})", "best valid ELBO [nats]": row["valid_elbo"],
            "train / wall time [min]": f"{_minutes_text(row['train_seconds'])} / {_minutes_text(row['wall_seconds'])}",
            "commit": short_commit(row["git_commit"])} for key, row in zip(index, rows)], index=index)
        text = (f"{len(rows)} records; each whole record (options, per-epoch history, command) is "
                f"`results/workflow/{LISTED_PROFILE}/<dataset>/<run>_seed<s>.json`, every column of both tables in "
                f"`results/workflow/{LISTED_PROFILE}/runs.csv`.")
        return text, [
            numbers.style.format({"test bits/dim": "{:.3f}"}, precision=2, na_rep="–").set_caption(
                "Every workflow run: the protocol's numbers. Test log-likelihood: "
                + protocol_text(test_protocol(self.listing)) + ". Gap decomposition: "
                + protocol_text(gap_protocol(self.listing)) + ". " + WITHHELD),
            provenance.style.format(precision=1, na_rep="–").set_caption(
                "Every workflow run: its training and provenance (the training loop's time and its job's wall time), "
                f"on {listed(row['device'] for row in rows)}.")]

    def hand_profiles(self) -> tuple[str, list[Styler]]:
        """One table per profile of runs by hand: model, epochs (best), test log p̂(x) and ELBO [nats], training
        time [min], device and commit; the caption gives the profile's budget and its records' protocol."""
        if not self.hand:
            return f"No runs by hand under `results/workflow/{HAND_PREFIX}*`.", []
        tables = []
        for profile, found in self.hand.items():
            table = pd.DataFrame([{
                "run": r["run"], "model": describe(r), "epochs (best)": f"{r['epochs_done']} ({r['best_epoch']})",
                "test log p̂(x) [nats]": r["test_ll"], "test ELBO [nats]": r["test_elbo"],
                "train time [min]": _minutes(r["train_seconds"]), "device": r["device"],
                "commit": short_commit(r["git_commit"])} for r in found]).sort_values("run").set_index("run")
            tables.append(table.style.format(precision=2).set_caption(
                f"Profile {profile}. {found[0]['budget']} The records' test log-likelihood: "
                f"{protocol_text(test_protocol(found))}."))
        return (f"{len(self.hand_runs)} runs in {len(self.hand)} profiles; each whole record is "
                f"`results/workflow/{HAND_PREFIX}<budget>/<dataset>/<run>_seed<s>.json`."), tables

    def shared_budget_claim(self) -> tuple[str, list[Styler]]:
        """The best GP-RF variant of :data:`SHARED_PROFILE` minus every other model's test log p̂(x) [nats]
        (positive: the paper's claim holds against that model), smallest difference first."""
        shared = self.hand.get(SHARED_PROFILE, [])
        gp_runs = [r for r in shared if r["model"] == "gp"]
        if not gp_runs or len(shared) == len(gp_runs):
            return f"No runs of GP-RF and the baselines at the shared budget (`{SHARED_PROFILE}`) yet.", []
        best = max(gp_runs, key=lambda r: r["test_ll"])
        claim = pd.DataFrame([{"model": describe(r), "run": r["run"], "test log p̂(x) [nats]": r["test_ll"],
                               "GP-RF − model [nats]": best["test_ll"] - r["test_ll"], "commit": short_commit(r["git_commit"])}
                              for r in shared if r["model"] != "gp"]).sort_values("GP-RF − model [nats]")
        text = (f"Best GP-RF variant: {describe(best)}, test log p̂(x) {best['test_ll']:.2f} nats "
                f"(run {best['run']}, commit {short_commit(best['git_commit'])}).")
        return text, [claim.style.format(precision=2).hide(axis="index").set_caption(
            f"The best GP-RF variant minus each other model at one shared budget ({SHARED_PROFILE}): "
            f"{protocol_text(test_protocol(shared))}; one seed per model.")]

    def gap_decompositions(self) -> tuple[str, list[Styler]]:
        """The gap decompositions of runs by hand: log p̂(x), ELBO(q*), ELBO(q) and both gaps [nats] (a gap whose
        premise fails not measurable, :func:`gap_cells`) and the commit it was measured at, one row per profile/run;
        how many met q*'s convergence criterion in the caption."""
        decomposed = [r for r in self.hand_runs if "gaps" in r]
        if not decomposed:
            return "No gap decompositions of runs by hand.", []
        rows = {f"{r['profile']}/{r['run']}": {
            **{label: r["gaps"].get(key) for key, label in GAP_VALUES.items()},
            **gap_cells(r["model"], r["gaps"].get("approximation_gap"), r["gaps"].get("amortization_gap")),
            "measured at": short_commit(r.get("converted_from", {}).get("gaps", {}).get("measured_at", r["git_commit"]))}
            for r in decomposed}
        table = pd.DataFrame(rows).T.rename_axis("profile/run")
        converged = [r["gaps"].get("q_star_converged") for r in decomposed]
        return f"{len(decomposed)} runs by hand with a gap decomposition.", [
            table.style.format(precision=2, na_rep="–").set_caption(
                "Gap decompositions of runs by hand (means over the subset): " + protocol_text(gap_protocol(decomposed))
                + f". q* by SVI, the best diagonal Gaussian per image; its convergence criterion met in "
                f"{sum(c is True for c in converged)} of the {sum(c is not None for c in converged)} decompositions that "
                f"record it ({len(converged)} in all). " + WITHHELD)]

    def evaluations(self) -> tuple[str, list[Styler]]:
        """The per-example evaluations: the model's hyperparameters (its ``model_summary``) and, per test image,
        min / median / max of GP-RF's predictive variances [latent units²]."""
        if not self.per_example:
            return "No per-example evaluations of record.", []
        rows, protocol = {}, []
        for e in self.per_example:
            setting = e["evaluation"]
            protocol.append({"dataset": e["dataset"], "seed": e["seed"], "run": e["run"], "eval_k": setting["eval_k"],
                             "n": setting["n_test"], "subset_seed": setting.get("subset_seed"), "whole": False})
            ranges = {f"{key}: min / median / max": "{:.3g} / {:.3g} / {:.3g}".format(
                *pd.Series(e["per_image"][key]).quantile([0, 0.5, 1])) for key in VARIANCES if key in e["per_image"]}
            summary = {key: f"{value:.3g}" if isinstance(value, float) else value
                       for key, value in e.get("model_summary", {}).items()}
            rows[f"{e['profile']}/{e['run']}"] = {**summary, **ranges, "commit": short_commit(e["git_commit"])}
        table = pd.DataFrame(rows).rename_axis("quantity")  # one column per evaluation: few of them, many quantities
        return f"{len(self.per_example)} per-example evaluations.", [table.style.format(na_rep="–").set_caption(
            "Per-example evaluations (`python -m gpvae evaluate RUN --per-example`): "
            + protocol_text(pd.DataFrame(protocol, columns=PROTOCOL_COLUMNS))
            + ". Kernel amplitude [output units²], lengthscale median [latent units].")]

    def benchmarks(self) -> tuple[str, list[Styler]]:
        """One table per benchmark record (``bench.json``): per report and model, the median inference and
        training-step times [ms], their ratios to the VAE timed in the same process, peak memory [MB] and the
        commit; batch, repeats, threads and device in the caption."""
        if not self.benches:
            return "No benchmarks of record yet under `results/workflow/`.", []
        tables = []
        for where, reports in self.benches.items():
            rows = pd.DataFrame([{"report": name, "model": row["model"],
                                  **{label: row.get(key) for key, label in BENCH_VALUES.items()}}
                                 for name, b in reports.items() for row in b["results"]]).set_index(["report", "model"])
            rows = rows.dropna(axis=1, how="all")
            first = next(iter(reports.values()))
            setting = lambda key: listed(b.get(key) for b in reports.values())
            tables.append(rows.style.format(precision=3, na_rep="–").set_caption(
                f"{where}: {dataset_label(first['dataset'])}, batch {setting('batch_size')}, {setting('repeats')} "
                f"interleaved repeats, {setting('threads')} thread(s), on {setting('device')}, commit "
                f"{listed(short_commit(b['git_commit']) for b in reports.values())}; times are medians, ratios to the VAE "
                "timed in the same process, peak memory of a training step."))
        return f"{len(self.benches)} benchmark records.", tables
