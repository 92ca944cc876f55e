"""The sentences of the chapter *Results* (``book/results.ipynb``) that decide the abstract's claims on a
grid's records (:class:`~gpvae.pages.results.ResultsPage`): the likelihood claim with its controls, the
speed and difficulty claims, and R4's lead against more samples of its VAE's own proposal. Markdown; no
torch."""
from __future__ import annotations

import pandas as pd

from .. import report, verdicts
from ..plotting import MODEL_LABELS
from . import dataset_label
from .protocol import benchmark_text
from .results import BASELINE_SCORES, OWN_SCORE, SCORES, ResultsPage

AHEAD = {verdicts.HOLDS: "ahead of the control", verdicts.FAILS: "behind the control",
         verdicts.NOT_RESOLVED: "not resolved", verdicts.TIED: "tied with the control"}
AGAINST_MORE = {verdicts.HOLDS: "more samples of the VAE's own proposal beat the correction",
                verdicts.FAILS: "the correction beats that many more samples",
                verdicts.NOT_RESOLVED: "not resolved", verdicts.TIED: "tied with that many more samples"}
BEATS = {verdicts.HOLDS: "ahead", verdicts.FAILS: "behind", verdicts.NOT_RESOLVED: "not resolved"}
TRACKS = {verdicts.HOLDS: "tracks", verdicts.FAILS: "runs against", verdicts.NOT_RESOLVED: "does not resolvably track"}


def k_curve(page: ResultsPage) -> str:
    """Markdown, one line per dataset: R4's lead over its VAE at the K of Table 1 and at the largest K,
    and the VAE with that many more samples against R4 (the paired criterion); and what is missing."""
    lines = []
    per_k = page.per_k() if not page.curves.empty else {}
    for dataset in page.ordered_datasets(page.curves):
        mine = page.curves[page.curves["dataset"] == dataset]
        k, largest = page.protocol_k(dataset), int(mine["eval_k"].max())
        if k not in per_k or dataset not in per_k[k].index:
            lines.append(f"- **{dataset_label(dataset)}**: no k_curve point at the K of Table 1 ({k}).")
            continue
        at_k, at_largest = per_k[k].loc[dataset], per_k[largest].loc[dataset]
        wide = mine.pivot_table(index="seed", columns=["run", "eval_k"], values="test_ll")
        more = verdicts.spread(wide[("vae", largest)] - wide[("gp", k)])
        share = f"; {at_largest['mean'] / at_k['mean']:.0%} of the lead left" if at_k["mean"] > 0 else ""
        lines.append(
            f"- **{dataset_label(dataset)}**: GP-RF (R4) − VAE is {report.mean_sd(at_k['mean'], at_k['sd'])} nats at "
            f"the K of Table 1, {k}, and {report.mean_sd(at_largest['mean'], at_largest['sd'])} at K = {largest} "
            f"(n = {int(at_largest['n'])}{share}). The VAE with {largest // k}× the samples minus R4 at K = {k}: "
            f"{report.mean_sd(more['mean'], more['sd'])} nats ({AGAINST_MORE[verdicts.paired(more)]}).")
    pending = report.missing_measurements(page.grid, "k_curve", page.curves)
    if pending:
        lines.append(f"\nNot measured yet: {pending} (`make results` resumes; a fresh clone refits R4 first).")
    return "\n".join(lines)


def difficulty(page: ResultsPage) -> str:
    """Markdown, one line per dataset: whether the GP's variance tracks the gap and beats each VAE score
    (:func:`gpvae.verdicts.ahead_of_baselines`), and the claim's outcome; and what is missing."""
    lines = []
    for dataset in page.datasets:
        rows = page.difficulty[page.difficulty["dataset"] == dataset]
        if rows.empty:
            lines.append(f"- **{dataset_label(dataset)}**: no difficulty record yet: not measurable.")
            continue
        wide = rows.pivot_table(index="seed", columns="score", values="spearman")
        decided = verdicts.ahead_of_baselines(wide[OWN_SCORE], {b: wide[b] for b in BASELINE_SCORES})
        own, partial = verdicts.spread(wide[OWN_SCORE]), verdicts.spread(rows[rows["score"] == OWN_SCORE]["partial_spearman"])
        against = "; ".join(
            f"against the {SCORES[b]}{' reversed' if b in decided.reversed_baselines else ''}: "
            f"{BEATS[decided.details[b]]} (ρ(GP) − ρ = "
            f"{report.mean_sd(*verdicts.spread(decided.differences[b])[['mean', 'sd']])})" for b in BASELINE_SCORES)
        lines.append(
            f"- **{dataset_label(dataset)}**: the GP's variance {TRACKS[decided.details['chance']]} the gap (ρ = "
            f"{report.mean_sd(own['mean'], own['sd'])}, n = {int(own['n'])}); {against}; partial ρ given the "
            f"negative ELBO {report.mean_sd(partial['mean'], partial['sd'])}. The claim **{decided.outcome}**.")
    pending = report.missing_measurements(page.grid, "difficulty", page.difficulty)
    return "\n".join(lines) + (f"\n\nNot measured yet: {pending}." if pending else "")


def likelihood(page: ResultsPage) -> str:
    """Markdown, one line per dataset: GP-RF (R4) minus each model on matched seeds by the protocol's IS,
    the claim's outcome (:func:`gpvae.verdicts.likelihood`), and its outcome by AIS where measured."""
    differences = report.paired_differences(page.runs, "gp", grid=page.grid)
    by_ais = report.paired_differences(page.ais, "gp", value="ais", grid=page.grid)
    lines = []
    for dataset in page.datasets:
        if dataset not in differences.index.get_level_values("dataset"):
            lines.append(f"- **{dataset_label(dataset)}**: no GP-RF record yet: not measurable.")
            continue
        rows = report.models_only(differences.loc[dataset], page.grid)
        decided = verdicts.likelihood(rows)
        counted = pd.Series(decided.details)
        parts = [f"{page.labels[run]} {report.mean_sd(row['mean'], row['sd'])} (n={int(row['n'])})"
                 for run, row in rows.reindex(page.ordered(rows.index)).iterrows()]
        failed = sorted(page.labels[run] for run in page.lost_runs(dataset))
        line = (f"- **{dataset_label(dataset)}**: holds against {sum(counted == verdicts.HOLDS)}, fails against "
                f"{sum(counted == verdicts.FAILS)}, not resolved against {sum(counted == verdicts.NOT_RESOLVED)} of "
                f"{len(counted)} models: the claim **{decided.outcome}**. GP-RF − model [nats]: " + "; ".join(parts) + "."
                + (f" Against {', '.join(failed)} the comparison is with a warm start that lost ground (below "
                   "Table 1), not with the method." if failed else ""))
        if dataset in by_ais.index.get_level_values("dataset"):
            annealed = verdicts.likelihood(report.models_only(by_ais.loc[dataset], page.grid))
            line += (f" **By AIS** the claim **{annealed.outcome}** ({annealed.measured}; AIS measured for "
                     f"{int((page.ais['dataset'] == dataset).sum())} runs × seeds, Table 1 by AIS).")
        else:
            line += " Not yet measured by AIS."
        lines.append(line)
    return "\n".join(lines)


def control(page: ResultsPage) -> str:
    """Markdown: what each control repeats, then per control and dataset each model it controls for and
    GP-RF (R4) minus the control on matched seeds, with the paired criterion's outcome."""
    texts, lines = [], []
    for control, compared in page.grid.controls().items():
        spec, source = page.grid.runs[control], page.labels[page.grid.runs[control]["warm_start"]]
        texts.append(
            f"*The control.* {' and '.join(page.labels[r] for r in compared)} start from the trained {source} and "
            f"train {spec['epochs']} epochs more; {page.labels[control]} trains the same {spec['epochs']} epochs "
            f"with the {source}'s own objective. What is left of their lead over the control is their objective's, "
            "not the extra epochs' (criterion as above). GP-RF (R4) is fitted to the VAE before those epochs: its "
            "row weighs a correction of the encoder against more training.")
        for dataset in page.datasets:
            parts = []
            for run in [*compared, "gp"]:
                against = report.paired_differences(page.runs[page.runs["dataset"] == dataset], run, grid=page.grid)
                if (dataset, control) in against.index:
                    row = against.loc[(dataset, control)]
                    parts.append(f"{page.labels[run]} {report.mean_sd(row['mean'], row['sd'])} (n={int(row['n'])}, "
                                 f"{AHEAD[verdicts.paired(row)]})")
            if parts:
                lines.append(f"- **{dataset_label(dataset)}**, minus {page.labels[control]} [nats]: "
                             + "; ".join(parts) + ".")
    if not texts:
        return ""
    return "\n\n".join(texts) + "\n\n" + ("\n".join(lines) or "- no control record yet: not measurable.")


def speed(page: ResultsPage) -> str:
    """Markdown, one line per benchmarked dataset: the speed claim (:func:`gpvae.verdicts.speed`) from
    GP-RF's and SA-VAE's inference times relative to the VAE's."""
    lines = []
    for dataset in page.datasets:
        bench = page.benches.get(dataset)
        if bench is None:
            continue
        ratio = {run: measured["results"][0]["infer_ratio_to_vae"] for run, measured in bench.items()}
        decided = verdicts.speed(ratio.get("gp"), ratio.get("savae"), reading=MODEL_LABELS.get("gp", "GP-RF"))
        lines.append(f"- **{dataset_label(dataset)}**: " + decided.sentence()
                     + (" By part: " + decided.breakdown() + "." if decided.details else "")
                     + f" ({benchmark_text(page.grid.profile, dataset, bench)}.)")
    return "\n".join(lines) or "- no benchmark of record yet: not measurable."


def claims(page: ResultsPage) -> str:
    """The chapter's closing Markdown: the likelihood (with the control), speed and difficulty verdicts."""
    return ("**1. Likelihood.**\n\n" + likelihood(page) + "\n\n" + control(page)
            + "\n\n**2. Speed.**\n\n" + speed(page)
            + "\n\n**3. Difficulty** (Table 5, criteria above it).\n\n" + difficulty(page))
