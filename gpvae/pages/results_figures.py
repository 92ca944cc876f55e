"""The figures of the chapter *Results* (``book/results.ipynb``), drawn from a :class:`ResultsPage`: one
panel per dataset, legends below the panels, axes in their units. No torch."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .. import report, verdicts
from ..plotting import MODEL_COLOURS, MODEL_MARKERS
from . import dataset_label, legend_below, subplots
from .results import SCORES, ResultsPage

PANEL_WIDTH = 4.2  # inches per dataset panel


def _placeholder(text: str) -> Figure:
    """A small figure that says why there is nothing to draw."""
    fig, ax = subplots(figsize=(PANEL_WIDTH, 1.2))
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.axis("off")
    return fig


def _panels(count: int, height: float, **options) -> tuple[Figure, list]:
    """A figure of ``count`` panels side by side, one per dataset."""
    fig, axes = subplots(1, count, figsize=(PANEL_WIDTH * count, height), squeeze=False, **options)
    return fig, list(axes[0])


def likelihood_cost(page: ResultsPage) -> Figure:
    """Test log p̂(x) [nats] (Fashion-MNIST: bits/dim) against inference time × the VAE's, one point per
    benchmarked model (± one sd over seeds), one panel per dataset; runs that lost ground are not drawn."""
    fig, axes = _panels(len(page.datasets), 3.6)
    for ax, dataset in zip(axes, page.datasets):
        value = "test_bpd" if dataset == "fashion_mnist" else "test_ll"
        bench, failed = page.benches.get(dataset, {}), page.lost_runs(dataset)
        if not bench:
            ax.text(0.5, 0.5, "no benchmark of record yet", ha="center", va="center", transform=ax.transAxes)
        stats = report.summarize(page.runs[page.runs["dataset"] == dataset], value).droplevel("dataset")
        for run, row in stats.reindex(page.ordered(stats.index)).iterrows():
            if run in bench and run not in failed:
                ax.errorbar(bench[run]["results"][0]["infer_ratio_to_vae"], row["mean"],
                            yerr=0 if np.isnan(row["sd"]) else row["sd"], fmt=MODEL_MARKERS[run], ms=7, capsize=3,
                            color=MODEL_COLOURS[run], label=page.labels[run])
        ax.set_xscale("log")
        ax.set_xlabel("inference time [× the VAE's] (log scale)")
        ax.set_ylabel("test bits/dim (axis inverted)" if value == "test_bpd" else "test log p̂(x) [nats]")
        if value == "test_bpd":
            ax.invert_yaxis()  # better is up in every panel
        lost = f" (not drawn: {', '.join(page.labels[r] for r in sorted(failed))}, lost ground)" if failed else ""
        ax.set_title(dataset_label(dataset) + lost, fontsize=10)
    fig.tight_layout()
    legend_below(fig, axes)
    return fig


def curves(page: ResultsPage) -> Figure:
    """Validation ELBO [nats] per epoch, one line per model and seed, one panel per dataset, each model with its
    marker; a warm-started run continues its source's curve, a marker at every one of its epochs (its few
    epochs would otherwise hide under the source's line)."""
    done = {(r["dataset"], r["run"], r["seed"]): r.get("epochs_done", 0) for r in page.records}
    fig, axes = _panels(len(page.datasets), 3.4)
    for ax, dataset in zip(axes, page.datasets):
        mine = [r for r in page.records if r["dataset"] == dataset and r.get("history")]
        values = [h["valid_elbo"] for r in mine for h in r["history"]]
        # from the 5th percentile: the first epochs would flatten the rest; their line leaves the frame, and
        # markers are drawn only clear of its lower edge (never cut in two by it)
        low, high = (np.percentile(values, 5), max(values)) if values else (-np.inf, np.inf)
        span = high - low if values else 0.0
        low, high = low - 0.05 * span, high + 0.05 * span
        for record in mine:
            source = page.grid.runs[record["run"]].get("warm_start")
            history = pd.DataFrame(record["history"])
            every = 1 if source else max(1, len(history) // 4)
            shown = [(i % every == 0) and value > low + 0.04 * span for i, value in enumerate(history["valid_elbo"])]
            ax.plot(done.get((dataset, source, record["seed"]), 0) + history["epoch"], history["valid_elbo"],
                    color=MODEL_COLOURS[record["run"]], alpha=0.8, lw=1.2, marker=MODEL_MARKERS[record["run"]],
                    ms=6 if source else 4, markevery=shown,
                    label=page.labels[record["run"]] if record["seed"] == min(page.grid.seeds) else None)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("validation ELBO [nats]")
        ax.set_title(dataset_label(dataset))
        if values:
            ax.set_ylim(low, high)
    fig.tight_layout()
    legend_below(fig, axes)
    return fig


def differences(page: ResultsPage) -> Figure:
    """GP-RF (R4) minus each model, test log p̂(x) [nats] on matched seeds (mean ± sd), one panel per
    dataset; runs that lost ground are not drawn."""
    differences = report.paired_differences(page.runs, "gp")
    compared = page.ordered(differences.index.get_level_values("run"))
    fig, axes = _panels(len(page.datasets), 0.9 + 0.32 * max(len(compared), 3), sharey=True)
    for ax, dataset in zip(axes, page.datasets):
        ax.set_title(dataset_label(dataset))
        ax.set_yticks(range(len(compared)), [page.labels[r] for r in compared])
        if dataset not in differences.index.get_level_values("dataset"):
            ax.text(0.5, 0.5, "no GP-RF record yet", ha="center", va="center", transform=ax.transAxes)
            continue
        failed = page.lost_runs(dataset)  # hundreds of nats off: would hide the rest
        rows = differences.loc[dataset].reindex(compared)
        rows.loc[rows.index.isin(failed)] = np.nan
        ax.errorbar(rows["mean"], range(len(compared)), xerr=rows["sd"].fillna(0), fmt="o", capsize=3, color="black")
        for y, (run, row) in enumerate(rows.iterrows()):
            if not np.isnan(row["n"]):
                ax.annotate(f"n={int(row['n'])}", (row["mean"], y), textcoords="offset points", xytext=(0, 5),
                            ha="center", fontsize=8)
            elif run in failed:
                ax.annotate("lost ground: not drawn", (0, y), textcoords="offset points", xytext=(4, -3), fontsize=8)
        ax.axvline(0, color="grey", lw=1, ls="--")
    axes[0].invert_yaxis()  # the VAE first
    fig.supxlabel("GP-RF (R4) − model, test log p̂(x) [nats], mean ± sd over matched seeds")
    fig.tight_layout()
    return fig


def k_curve(page: ResultsPage) -> Figure:
    """GP-RF (R4) − VAE, log p̂(x) [nats], against K (log scale), mean ± sd over seeds, one panel per
    dataset, the K of Table 1 marked."""
    if page.curves.empty:
        return _placeholder("no k_curve record yet")
    per_k, measured = page.per_k(), page.ordered_datasets(page.curves)
    fig, axes = _panels(len(measured), 3.4)
    for ax, dataset in zip(axes, measured):
        ks = [k for k in per_k if dataset in per_k[k].index]
        diff = pd.DataFrame({k: per_k[k].loc[dataset] for k in ks}).T
        ax.errorbar(ks, diff["mean"], yerr=diff["sd"].fillna(0), fmt="o-", capsize=3, color=MODEL_COLOURS["gp"])
        ax.axhline(0, color="grey", lw=1, ls="--")
        k = page.protocol_k(dataset)
        if k:
            ax.axvline(k, color="grey", lw=1, ls=":")
            ax.annotate("K of Table 1", (k, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                        textcoords="offset points", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("importance samples K (log scale)")
        ax.set_ylabel("GP-RF (R4) − VAE, log p̂(x) [nats]")
        ax.set_title(dataset_label(dataset))
    fig.tight_layout()
    return fig


def difficulty(page: ResultsPage) -> Figure:
    """Spearman ρ of each score with the VAE encoder's per-image amortization gap, mean ± sd over seeds
    (black) and single seeds (dots), one panel per dataset."""
    if page.difficulty.empty:
        return _placeholder("no difficulty record yet")
    measured, order = page.ordered_datasets(page.difficulty), list(SCORES)
    fig, axes = _panels(len(measured), 2.6, sharey=True)
    for ax, dataset in zip(axes, measured):
        rows = page.difficulty[page.difficulty["dataset"] == dataset]
        stats = pd.DataFrame({s: verdicts.spread(rows[rows["score"] == s]["spearman"]) for s in order}).T
        ax.errorbar(stats["mean"], range(len(order)), xerr=stats["sd"].fillna(0), fmt="o", capsize=3, color="black",
                    label="mean ± sd over seeds")
        ax.scatter(rows["spearman"], [order.index(s) for s in rows["score"]], s=12, color=MODEL_COLOURS["gp"],
                   alpha=0.6, label="one seed", zorder=3)
        ax.axvline(0, color="grey", lw=1, ls="--")
        ax.set_yticks(range(len(order)), [SCORES[s] for s in order])
        ax.set_title(dataset_label(dataset))
    axes[0].invert_yaxis()
    fig.supxlabel("Spearman ρ with the VAE encoder's per-image amortization gap (no unit)")
    fig.tight_layout()
    legend_below(fig, axes)
    return fig
