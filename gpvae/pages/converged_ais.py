"""The converged chapter's likelihoods by annealed importance sampling (``book/converged.ipynb``): Table 7 in
two parts (AIS beside each model's own IS estimate; the approximation gap by AIS), the orderings of models
by both, the likelihood claim by AIS and the BDMC certificates. A quantity resting on an uncertified AIS is
not measurable (:func:`gpvae.validity.ais_premise`). No torch: JSON records only."""
from __future__ import annotations

import math

from matplotlib.figure import Figure
import pandas as pd

from .. import report, validity
from . import dataset_label, legend_below, listed, subplots
from .converged import difference_line, lost_between
from .protocol import images_text

# The quantities of Table 7 that rest on the AIS estimate, and so on its BDMC certificate.
AIS_PREMISED = (
    "AIS [nats]", "estimator gap [nats]", "approximation gap by AIS [nats]", "IS from q* − AIS [nats]")


def _reason(premise) -> str | None:
    """A premise cell of a frame: its reason, or None where it holds (a frame stores None as NaN)."""
    return premise if isinstance(premise, str) else None


def ais_frame(grids: dict) -> pd.DataFrame:
    """:func:`gpvae.report.load_ais` of each grid (``{profile: Grid}``), with its ``profile`` and whether the run
    is one of the grid's controls (``control``: reported beside the models, never counted among them)."""
    frames = []
    for profile, grid in grids.items():
        ais = report.load_ais(grid.layout.results_dir).assign(profile=profile)
        frames.append(ais.assign(control=ais["run"].isin(list(grid.controls()))) if not ais.empty else ais)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def ais_summary(ais: pd.DataFrame, labels: dict[str, dict]) -> pd.DataFrame:
    """Per profile, dataset and run (labelled by ``labels[profile]``): means over seeds [nats] of AIS, IS and
    their differences, seed counts, T, L, the widest BDMC width [nats], costs [s/image], and the AIS premise
    (:func:`gpvae.validity.ais_premise`; None: certified)."""
    ais = ais.assign(optimum_minus_ais=ais["is_from_optimum"] - ais["gap_ais"])  # one gap subset: the same images
    summary = ais.groupby(["profile", "dataset", "run"], sort=False).agg(
        ais=("ais", "mean"), ais_sd=("ais", "std"), is_=("is", "mean"), estimator_gap=("estimator_gap", "mean"),
        gap_sd=("estimator_gap", "std"), seeds=("seed", "count"), T=("steps", "max"), L=("leapfrog", "max"),
        width=("width", "max"), certified=("certified", "all"), ais_cost=("seconds_per_image", "median"),
        is_cost=("is_seconds_per_image", "median"), gap_images=("gap_n", "max"),
        approximation_gap=("approximation_gap", "mean"), gap_seeds=("approximation_gap", "count"),
        optimum_minus_ais=("optimum_minus_ais", "mean"), optimum_seeds=("optimum_minus_ais", "count"),
        model=("model", "first"), control=("control", "first"))
    summary["premise"] = [validity.ais_premise(w) for w in summary["width"]]
    summary["family_premise"] = [validity.gap_family_premise(m) for m in summary["model"]]
    summary.index = pd.MultiIndex.from_tuples([(p, dataset_label(d), labels[p].get(r, r)) for p, d, r in summary.index],
                                              names=["profile", "dataset", "model"])
    return summary


def ais_protocol(ais: pd.DataFrame) -> str:
    """The AIS records' protocol per profile and dataset: images (first N or seeded draw), T, L, chains,
    the widest BDMC width [nats], the IS estimate's K and the seeds."""
    parts = []
    for (profile, dataset), part in ais.groupby(["profile", "dataset"], sort=False):
        parts.append(f"{profile}, {dataset_label(dataset)}: {images_text(listed(part['n']), part['subset_seed'].iloc[0])}, "
                     f"T = {listed(part['steps'])}, L = {listed(part['leapfrog'])}, {listed(part['chains'])} chain(s), "
                     f"BDMC width up to {part['width'].max():.2f} nats, IS with K = {listed(part['eval_k'])}, "
                     f"seeds {listed(part['seed'])}")
    return "; ".join(parts)


def _premise_note(summary: pd.DataFrame) -> str:
    """The caption's note on the cells marked † (:func:`_cells`): per profile and dataset whose AIS premise
    fails, the reason once (the widest sandwich), instead of in every cell."""
    failed = summary.assign(reason=[_reason(p) for p in summary["premise"]]).dropna(subset=["reason"])
    notes = [f"{profile}, {dataset}: {validity.ais_premise(part['width'].max())}"
             for (profile, dataset), part in failed.groupby(level=[0, 1], sort=False)]
    return f" † {validity.NOT_MEASURABLE}, " + "; ".join(notes) + "." if notes else ""


def _cells(summary: pd.DataFrame, columns: dict[str, tuple[str, str | None]]) -> pd.DataFrame:
    """Table cells from summary columns: ``{title: (column, sd column or None)}``; a quantity of
    :data:`AIS_PREMISED` is not measurable († with the reason in the caption, :func:`_premise_note`) where the
    AIS premise fails."""
    table = pd.DataFrame(index=summary.index)
    for title, (column, sd) in columns.items():
        table[title] = [f"{validity.NOT_MEASURABLE} †" if title in AIS_PREMISED and _reason(premise) else
                        report.mean_sd(row[column], row[sd] if sd else math.nan)
                        for premise, (_, row) in zip(summary["premise"], summary.iterrows())]
    return table


def ais_table(summary: pd.DataFrame, ais: pd.DataFrame) -> pd.io.formats.style.Styler:
    """Table 7a: AIS and the protocol's IS on the AIS subset, their estimator gap, T, L, width and cost ratio."""
    table = _cells(summary, {"AIS [nats]": ("ais", "ais_sd"), "IS [nats]": ("is_", None),
                             "estimator gap [nats]": ("estimator_gap", "gap_sd")})
    table["seeds"] = summary["seeds"]
    table["T × L"] = [f"{t} × {l}" for t, l in zip(summary["T"], summary["L"])]
    table["BDMC width [nats]"] = [f"{w:.2f}" for w in summary["width"]]
    table["AIS / IS cost"] = [f"{a / i:.2f}×" for a, i in zip(summary["ais_cost"], summary["is_cost"])]
    return table.style.set_caption(
        "AIS from the prior against the protocol's importance-sampling estimate with the model's own proposal, on the "
        f"same test images; mean ± sd over seeds. Records: {ais_protocol(ais)}. An estimator gap (AIS − IS) needs AIS "
        f"certified (BDMC width at most {validity.AIS_CERTIFIED_WIDTH:g} nat); > 0: the model's own estimate understates "
        "its likelihood. Cost: median seconds per image of AIS over IS, one CPU thread." + _premise_note(summary))


def gap_table(summary: pd.DataFrame, ais: pd.DataFrame) -> pd.io.formats.style.Styler:
    """Table 7b: on each run's gap subset, the approximation gap by AIS and IS from q* − AIS [nats]; the
    approximation gap of a model whose proposal is richer than q*'s diagonal Gaussians is not measurable (‡)."""
    table = _cells(summary, {"approximation gap by AIS [nats]": ("approximation_gap", None),
                             "IS from q* − AIS [nats]": ("optimum_minus_ais", None)})
    richer = summary["family_premise"].map(_reason).notna().to_numpy()
    table.loc[richer, "approximation gap by AIS [nats]"] = f"{validity.NOT_MEASURABLE} ‡"
    table["gap images"] = [listed([n]) for n in summary["gap_images"]]
    table["seeds (gap, q*)"] = [f"{a}, {b}" for a, b in zip(summary["gap_seeds"], summary["optimum_seeds"])]
    images = "; ".join(f"{profile}, {dataset_label(dataset)}: {images_text(listed(part['gap_n']), part['gap_subset_seed'].iloc[0])}"
                       for (profile, dataset), part in ais.dropna(subset=["gap_n"]).groupby(["profile", "dataset"], sort=False))
    families = sorted({validity.PROPOSAL_FAMILY.get(m, m) for m in summary.loc[richer, "model"]})
    return table.style.set_caption(
        f"On each run's gap subset ({images or 'no AIS record on it yet'}): the approximation gap by AIS, AIS − ELBO(q*) (≥ 0 up to Monte Carlo error), and importance sampling from "
        "the per-image optimum q* with the protocol's K minus AIS (both stochastic lower bounds: > 0 says AIS at the "
        "certified T is looser on these images than q*'s estimate); mean over the seeds counted. Both need AIS "
        "certified; '–': a record without that column." + _premise_note(summary)
        + (f" ‡ {validity.NOT_MEASURABLE}: q* is sought among diagonal Gaussians, a smaller family than the proposal "
           f"({'; '.join(families)})." if families else ""))


def ais_orderings(summary: pd.DataFrame) -> str:
    """Per profile and dataset with several models (controls left out, as everywhere models are counted): the
    best decoder by AIS, the Spearman ρ of the IS and AIS orderings, and IS from q* − AIS over models; not
    measurable where a model's AIS is not certified."""
    lines = []
    for (profile, dataset), part in summary[~summary["control"].astype(bool)].groupby(level=[0, 1], sort=False):
        if len(part) < 2:
            continue
        broken = next((p for p in map(_reason, part["premise"]) if p), None)
        if broken:
            lines.append(f"- {profile}, {dataset}: best decoder by AIS {validity.shown(None, broken)}.")
            continue
        values = part["ais"]
        best = [index[2] for index, v in values.items() if abs(v - values.max()) < 1e-9]
        rho = pd.Series(values.values).rank().corr(pd.Series(part["is_"].values).rank())
        lines.append(f"- {profile}, {dataset}: best decoder by AIS {' = '.join(best)}"
                     f"{' (one decoder, one value)' if len(best) > 1 else ''}; Spearman ρ of the IS and AIS orderings "
                     f"{'undefined (tied)' if rho != rho else f'{rho:.2f}'} ({len(part)} models).")
        looser = part["optimum_minus_ais"].dropna()
        if len(looser):
            lines.append(f"  IS from q* − AIS on the gap images: median over models {looser.median():+.2f} nats (from "
                         f"{looser.min():+.2f} to {looser.max():+.2f}; {(looser > 0).sum()} of {len(looser)} models above AIS).")
    return "\n".join(lines)


def ais_verdicts(ais: pd.DataFrame, grids: dict, labels: dict[str, dict]) -> str:
    """The likelihood claim by AIS, per profile and dataset: GP-RF (R4) minus every model, and each model
    against the control of its extra epochs, seed-matched (:func:`gpvae.verdicts.paired`)."""
    lines = []
    for profile, part in (ais.groupby("profile", sort=False) if not ais.empty else []):
        named, grid = labels[profile], grids[profile]
        lost = report.lost_ground(report.load_records(grid.layout.results_dir), grid)

        for (dataset, run), row in report.paired_differences(part, "gp", value="ais", grid=grid).iterrows():
            lines.append(difference_line(f"{profile}, {dataset_label(dataset)}: GP-RF (R4) − {named.get(run, run)}", row,
                                         "by AIS", lost_between(lost, dataset, ("gp", run), named)))
        for control, compared in grid.controls().items():
            for run in compared:
                for (dataset, other), row in report.paired_differences(part, run, value="ais", grid=grid).iterrows():
                    if other == control:
                        lines.append(difference_line(f"{profile}, {dataset_label(dataset)}: {named.get(run, run)} − "
                                                     f"{named.get(control, control)}", row, "by AIS",
                                                     lost_between(lost, dataset, (run, control), named)))
    return "\n".join(lines) if lines else "- no pair of AIS records with GP-RF (R4) yet."


def bdmc_figure(bdmc: pd.DataFrame, max_width: float = validity.AIS_CERTIFIED_WIDTH) -> Figure:
    """Mean ± sd over seeds of the BDMC sandwich width [nats] against decoder passes per image (T × L),
    one line per dataset, profile and L; the criterion dashed; the legend below the axes. The width axis is
    logarithmic (symmetric-logarithmic, linear within 0.1 nat of zero, when a width is not positive), so that
    the 0.5-nat criterion stays visible beside 100-nat sandwiches."""
    fig, ax = subplots(figsize=(5.4, 3.6))
    if bdmc.empty:
        ax.text(0.5, 0.5, "no BDMC record yet", ha="center", va="center", transform=ax.transAxes)
    for (profile, dataset, leapfrog), part in bdmc.groupby(["profile", "dataset", "leapfrog"], sort=False):
        stats = part.groupby("decoder_passes")["width"].agg(["mean", "std"]).reset_index()
        ax.errorbar(stats["decoder_passes"], stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3,
                    label=f"{dataset_label(dataset)}, {profile}, L = {leapfrog}")
    ax.axhline(max_width, color="0.5", ls="--", lw=1, label=f"criterion: {max_width:g} nat")
    ax.set_xscale("log")
    if not bdmc.empty:  # a width at or below zero (Monte Carlo error) keeps a symmetric log scale
        ax.set_yscale("log") if (bdmc["width"] > 0).all() else ax.set_yscale("symlog", linthresh=0.1)
    ax.margins(0.08)  # error bars and markers clear of the frame on both scales
    ax.set_xlabel("decoder passes per image (T × L)")
    ax.set_ylabel("BDMC sandwich width [nats]")
    ax.set_title("How tight AIS is on data simulated from the VAE", fontsize=10)
    legend_below(fig, [ax], columns=2)
    fig.tight_layout()
    return fig
