"""The converged chapter (``book/converged.ipynb``): Table 6 (MNIST at convergence beside the 20-epoch grid
and the literature), the validation curves, the verdicts' quantities at both budgets, and R1 and SA-VAE at
convergence; the likelihoods by AIS (Table 7, the BDMC certificates) are :mod:`gpvae.pages.converged_ais`.
Every caption states the protocol its records carry. No torch: JSON records only."""
from __future__ import annotations

import math
import textwrap

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
import numpy as np
import pandas as pd

from .. import report, validity, verdicts
from ..plotting import MODEL_COLOURS
from . import dataset_label, legend_below, listed, rate, restart_clause, seeds_text, subplots
from .protocol import images_text, records_images

# Burda, Grosse & Salakhutdinov (2016), Table 1, MNIST, one stochastic layer (784-200-200-50), 3,280 epochs, K = 5000
LITERATURE = {"vae": -86.76, "iwae": -85.54, "vae_burda": -86.76, "iwae_burda": -85.54}  # the last two on their schedule


def progress(grid, records: list[dict], labels: dict[str, str]) -> str:
    """What has run: records, job-hours of wall time, runs under way (parked checkpoints) and not started, each
    run named by ``labels`` with its seeds."""
    parked = grid.layout.parked_runs()
    hours = sum(r.get("wall_seconds") or 0 for r in records) / 3600
    waiting = [f"{r}_seed{s}" for d, r, s in report.missing(grid, records) if f"{r}_seed{s}" not in parked]
    return (f"{grid.budget}\n\n{len(records)} of the grid's {len(grid.cells())} runs × seeds have a record "
            f"({hours:.1f} job-hours of wall time); under way (checkpoint committed): {_by_run(parked, labels)}; "
            f"not started: {_by_run(waiting, labels)}.")


def _by_run(names: list[str], labels: dict[str, str]) -> str:
    """``["iwae_seed0", "iwae_seed2", "vae_seed1"]`` → ``"IWAE (seeds 0, 2), VAE (seed 1)"``, runs in first-seen order."""
    seeds: dict[str, list[str]] = {}
    for name in names:
        run, seed = name.rsplit("_seed", 1)
        seeds.setdefault(run, []).append(seed)
    return "; ".join(f"{labels.get(run, run)} (seed{'s' * (len(s) > 1)} {', '.join(s)})"
                     for run, s in seeds.items()) or "none"


def _stopped(record: dict) -> str:
    if "diverged" in record:
        return "diverged"
    return "post-hoc fit" if not record.get("epochs_done") else record.get("stopped") or "-"


def table6(records: list[dict], small_records: list[dict], k_curves: pd.DataFrame, labels: dict,
           order: list[str], small_labels: dict | None = None) -> pd.io.formats.style.Styler:
    """Table 6: one row per converged MNIST record (runs in ``order``): test log p̂ and ELBO [nats], epochs and
    stopping rule, training time [h] (over every resumed job), log p̂ at the k_curve's K and the 20-epoch grid's
    mean ± sd (the literature: :func:`literature_lines`). The 20-epoch value is shown only for a run its grid names alike
    (``small_labels``, the 20-epoch grid's :func:`gpvae.plotting.run_labels`; None: ``labels``): a control of
    another schedule under the same name is another run."""
    mnist = sorted((r for r in records if r["dataset"] == "mnist"), key=lambda r: (order.index(r["run"]), r["seed"]))
    small = report.frame([r for r in small_records if r["dataset"] == "mnist"])
    large_ks = sorted(k_curves["eval_k"].unique())
    large = k_curves.set_index(["dataset", "run", "seed", "eval_k"])["test_ll"]
    column = f"K = {listed(large_ks)} [nats]"
    rows = {}
    for r in mnist:
        same_run = (small_labels if small_labels is not None else labels).get(r["run"]) == labels.get(r["run"])
        stats = report.summarize(small[small.run == r["run"]], "test_ll") if same_run else small.iloc[0:0]
        first_seed = r is next(x for x in mnist if x["run"] == r["run"])  # a run's references once, not per seed
        fitted = r.get("epochs_done") == 0 and r.get("wall_seconds")  # a post-hoc fit: no epochs, its job's time
        rows[(labels.get(r["run"], r["run"]), r["seed"])] = {
            "test log p̂(x) [nats]": r.get("test_ll", np.nan), "test ELBO [nats]": r.get("test_elbo", np.nan),
            "epochs (best); stopped by": f"{r.get('epochs_done', '-')} ({r.get('best_epoch', '-')}); {_stopped(r)}",
            "training time [h]": (r["wall_seconds"] if fitted else r.get("train_seconds") or 0) / 3600,
            column: next((large.get(("mnist", r["run"], r["seed"], k), np.nan) for k in large_ks), np.nan),
            "20 epochs (CPU grid)": (report.mean_sd(stats.iloc[0]["mean"], stats.iloc[0]["sd"]) + f" ({int(stats.iloc[0]['n'])})"
                                     if len(stats) and first_seed else "" if len(stats) else "-")}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    if rows:
        frame.index.names = ["model", "seed"]
    curve_runs = sorted(k_curves["run"].unique())
    caption = (f"Converged MNIST runs, one row per seed recorded (seeds {listed(r['seed'] for r in mnist)}). Protocol "
               f"of the records: parameters of the best-validation epoch; K = {listed(r.get('eval_k') for r in mnist)} "
               f"importance samples of the model's own proposal on {records_images(mnist)}"
               + (f"; {column.split(' [')[0]} for {', '.join(labels.get(r, r) for r in curve_runs)} (seed "
                  f"{listed(k_curves['seed'])}, k_curve records)" if len(k_curves) else "")
               + f". 20-epoch grid: mean ± sd (seeds) of K = {listed(r.get('eval_k') for r in small_records if r['dataset'] == 'mnist')} "
               f"on {records_images([r for r in small_records if r['dataset'] == 'mnist'])}, on a model's first row. "
               "Training time: the epochs' time over every resumed job (for R5 without its "
               "error fits); for a post-hoc fit (no epochs) its whole job's wall time, the test evaluation included."
               if rows else "No converged record yet: `make converged` trains the profile (hours; resumable).")
    numbers = ["test log p̂(x) [nats]", "test ELBO [nats]", "training time [h]", column]
    return frame.style.format("{:.2f}", subset=[c for c in numbers if c in frame], na_rep="-").set_caption(caption)


def literature_lines(records: list[dict], k_curves: pd.DataFrame, labels: dict) -> str:
    """Each of :data:`LITERATURE`'s models here (mean over seeds) against the IWAE paper (their schedule, 3,280
    epochs, K = 5000 on the full test set), in nats."""
    lines = []
    for run, value in LITERATURE.items():
        mine = [r["test_ll"] for r in records if r["run"] == run and "diverged" not in r and r["dataset"] == "mnist"]
        large = k_curves[(k_curves.run == run) & (k_curves.dataset == "mnist")]
        if mine:
            lines.append(f"- {labels.get(run, run)}: {np.mean(mine):.2f} nats here (K = {listed(r.get('eval_k') for r in records if r['run'] == run)}, "
                         f"{len(mine)} seed(s)) against {value:.2f} in Burda et al. (2016) (K = 5000): {np.mean(mine) - value:+.2f} nats"
                         + (f"; at K = {listed(large['eval_k'])}, {large['test_ll'].mean():.2f} "
                            f"({large['test_ll'].mean() - value:+.2f} nats)." if len(large) else "."))
    return "\n".join(lines)


SEED_STYLES = ("-", "--", "-.", ":")  # a seed's line style, the same in every panel


def curves_figure(records: list[dict], small_records: list[dict], labels: dict) -> Figure:
    """Validation ELBO [nats] against the epoch (log scale, so that a run's first 20 epochs and the 20-epoch grid
    take a readable part of it), one panel per converged model in its colour, one line style per seed (dotted
    vertical lines: best epochs); in the VAE's panel, in grey, the 20-epoch grid's VAE of the same seeds up to
    its last epoch (a vertical dashed line). One legend under the panels."""
    traced = [r for r in records if r.get("history")]
    runs = list(dict.fromkeys(r["run"] for r in traced))
    columns = min(len(runs), 3) or 1
    rows = max(1, math.ceil(len(runs) / columns))
    fig, axes = subplots(rows, columns, figsize=(3.3 * columns, 2.5 * rows + 0.6), squeeze=False, sharey=True)
    small_vae = [r for r in small_records if r["dataset"] == "mnist" and r["run"] == "vae" and r.get("history")]
    if traced:  # from the 5th percentile of the converged curves, or the 20-epoch VAE from its 5th epoch if lower
        low = min([pd.DataFrame(r["history"])["valid_elbo"].quantile(0.05) for r in traced]
                  + [min(h["valid_elbo"] for h in r["history"][4:]) - 1 for r in small_vae if len(r["history"]) > 4])
        high = max(max(h["valid_elbo"] for h in r["history"]) for r in traced)
    seeds = sorted({r["seed"] for r in traced})
    for ax, run in zip(axes.flat, runs):
        colour = MODEL_COLOURS.get(run, (0.2, 0.2, 0.6))
        for record in sorted((r for r in traced if r["run"] == run), key=lambda r: r["seed"]):
            history = pd.DataFrame(record["history"])
            style = SEED_STYLES[seeds.index(record["seed"]) % len(SEED_STYLES)]
            ax.plot(history["epoch"], history["valid_elbo"], color=colour, lw=1.1, ls=style)
            ax.axvline(record["best_epoch"], color=colour, lw=0.8, ls=":")
        for record in small_vae if run == "vae" else []:
            history = pd.DataFrame(record["history"])
            ax.plot(history["epoch"], history["valid_elbo"], color="0.45", lw=2.0, alpha=0.7, zorder=3)
            ax.axvline(history["epoch"].max(), color="0.45", lw=1, ls="--")
        ax.set_title(textwrap.fill(labels.get(run, run), 32), fontsize=9)
        ax.set_xscale("log")
        ax.set_xlabel("epoch (log scale)")
        ax.set_ylim(low, high + 0.05 * (high - low))
    for ax in axes[:, 0]:
        ax.set_ylabel("validation ELBO [nats]")
    for ax in list(axes.flat)[len(runs):]:
        ax.set_axis_off()
    if not traced:
        axes[0, 0].text(0.5, 0.5, "no converged record with a history yet", ha="center", va="center",
                        transform=axes[0, 0].transAxes)
    handles = [Line2D([], [], color="0.3", lw=1.1, ls=SEED_STYLES[i % len(SEED_STYLES)], label=f"seed {seed}")
               for i, seed in enumerate(seeds)]
    if small_vae:
        handles.append(Line2D([], [], color="0.45", lw=2.0, alpha=0.7, label="20-epoch grid's VAE (to its last epoch)"))
    fig.tight_layout()
    if handles:
        fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False, bbox_to_anchor=(0.5, 0.0))
    return fig


def lost_text(lost: list[dict], labels: dict[str, str]) -> str:
    """Runs that lost ground (:func:`gpvae.report.lost_ground`), one clause per run: its seeds, the mean
    best validation ELBO [nats] of its source and of itself, and the mean first-epoch fall of those seeds that
    restarted at a higher learning rate than their source ended with (:func:`gpvae.report.restarted_faster`)."""
    clauses = []
    for run in dict.fromkeys(x["run"] for x in lost):
        mine = [x for x in lost if x["run"] == run]
        before, after = (sum(x[key] for x in mine) / len(mine) for key in ("source_valid_elbo", "valid_elbo"))
        restart = restart_clause(mine)
        restart = f"; {restart}" if restart else ""
        clauses.append(f"{labels.get(run, run)} lost ground against the {labels.get(mine[0]['source'], mine[0]['source'])} "
                       f"it started from on seed{'s' if len(mine) > 1 else ''} {', '.join(str(x['seed']) for x in mine)} "
                       f"(best validation ELBO {before:.1f} → {after:.1f} nats{restart})")
    return "; ".join(clauses)


def restart_text(restarts: list[dict], labels: dict[str, str], dataset: str = "mnist") -> str:
    """One Markdown sentence on how the warm-started runs (:func:`gpvae.report.restarts`) of ``dataset`` began:
    per run the first epoch's fall in validation ELBO [nats, mean over seeds] and its learning rate against the
    source's final one."""
    mine = [x for x in restarts if x["dataset"] == dataset]
    if not mine:
        return ""
    parts = []
    for run in dict.fromkeys(x["run"] for x in mine):
        runs = [x for x in mine if x["run"] == run]
        drop = sum(x["drop"] for x in runs) / len(runs)
        rates = {rate(x["lr"]) for x in runs if x["lr"] is not None}
        known = [x for x in runs if x["source_final_lr"] is not None]
        finals = "/".join(sorted({rate(x["source_final_lr"]) for x in known}))
        finals = (f"the source's final {finals}" + (f" (recorded for {len(known)} of them)" if len(known) < len(runs) else "")
                  if known else "the source's final rate, which its record lacks")
        parts.append(f"{labels.get(run, run)} {drop:+.2f} nats ({len(runs)} seed{'s' * (len(runs) > 1)}; lr "
                     f"{'/'.join(sorted(rates)) or '?'} against {finals})")
    return ("**How the warm starts began.** Fall of the validation ELBO from the source's best to the end of the "
            "first epoch: " + "; ".join(parts) + ". A fall is what the first epoch undid of the source's training.")


def lost_between(lost: list[dict], dataset: str, runs, labels: dict[str, str]) -> str:
    """:func:`lost_text` of the ``lost`` runs (:func:`gpvae.report.lost_ground`) among ``runs`` on ``dataset``."""
    return lost_text([x for x in lost if x["dataset"] == dataset and x["run"] in runs], labels)


def difference_line(name: str, row, what: str, lost: str = "") -> str:
    """``- name, what: mean ± sd nats (n = k): outcome.``; not measurable where a matched seed's AIS is
    not certified (row ``uncertified`` > 0). ``lost``: :func:`lost_text` of the pair's runs that lost ground,
    said after the outcome: such a difference measures that training, not the method."""
    if row.get("uncertified", 0) > 0:
        reason = f"{int(row['uncertified'])} of {int(row['n'])} matched seeds without a certified AIS"
        return f"- {name}, {what}: {validity.shown(None, reason)}: {verdicts.NOT_RESOLVED}."
    line = f"- {name}, {what}: {report.mean_sd(row['mean'], row['sd'])} nats ({seeds_text(row)}): {verdicts.paired(row)}"
    if lost:
        line += f" — but {lost}: the difference measures that training, not the method"
    return line + "."


def _paired(frame: pd.DataFrame, a: str, b: str, value: str = "test_ll") -> pd.Series:
    both = frame[frame.run.isin([a, b])].pivot_table(index="seed", columns="run", values=value)
    return (both[a] - both[b]).dropna() if {a, b} <= set(both.columns) else pd.Series(dtype=float)


def budget_quantities(budgets: dict[str, tuple[pd.DataFrame, str]]) -> dict[str, dict[str, pd.Series]]:
    """Each verdict's quantity per seed at each budget (``{budget: (MNIST runs frame, SA-VAE's control)}``):
    R4 − VAE, R5 − its control, SA-VAE − its control [nats], the VAE's amortization gap [nats] and the
    share of it R4 closes (1 − R4's gap / the VAE's, same seed)."""
    def share(frame):
        gaps = frame.pivot_table(index="seed", columns="run", values="amortization_gap")
        return (1 - gaps["gp"] / gaps["vae"]).dropna() if {"gp", "vae"} <= set(gaps.columns) else pd.Series(dtype=float)

    quantities = {"R4 − VAE [nats]": lambda f, c: _paired(f, "gp", "vae"),
                  "R5 − its control [nats]": lambda f, c: _paired(f, "gp_refit", "vae_extra") if c == "vae_continued" else pd.Series(dtype=float),
                  "SA-VAE − its control [nats]": lambda f, c: _paired(f, "savae", c),
                  "VAE amortization gap [nats]": lambda f, c: f[f.run == "vae"].set_index("seed")["amortization_gap"].dropna(),
                  "share of it R4 closes": lambda f, c: share(f)}
    return {name: {budget: fn(frame, control) if len(frame) else pd.Series(dtype=float)
                   for budget, (frame, control) in budgets.items()} for name, fn in quantities.items()}


def budget_table(quantities: dict[str, dict[str, pd.Series]], lost: str = "") -> pd.io.formats.style.Styler:
    """Mean ± sd (seeds) of each of :func:`budget_quantities` at each budget; ``lost``: :func:`lost_text` of the
    runs that lost ground, said in the caption (their rows measure that training, not the method)."""
    rows = {name: {budget: report.mean_sd(v.mean(), v.std()) + f" ({len(v)})" if len(v) else "-"
                   for budget, v in by_budget.items()} for name, by_budget in quantities.items()}
    return pd.DataFrame(rows).T.style.set_caption(
        "Mean ± sd over seeds (n); '-': no pair of records at that budget yet. At 20 epochs the control is the VAE "
        "trained 2 more epochs; at convergence SA-VAE's control is the VAE trained on with its schedule, R5's the VAE "
        "trained its 20 epochs." + (f" At convergence {lost}: the rows with those runs measure that training, "
                                     "not the method." if lost else ""))


def budget_figure(quantities: dict[str, dict[str, pd.Series]]) -> Figure:
    """One panel per quantity: mean ± sd over seeds (black) and single seeds (grey) at each budget."""
    fig, axes = subplots(1, len(quantities), figsize=(2.3 * len(quantities), 2.8))
    for ax, (name, by_budget) in zip(np.atleast_1d(axes), quantities.items()):
        for x, values in enumerate(by_budget.values()):
            if len(values):
                ax.errorbar([x], [values.mean()], yerr=[values.std() if len(values) > 1 else 0], marker="o", capsize=3, color="k")
                ax.scatter([x] * len(values), values, color="0.6", s=10, zorder=3)
        ax.set_xticks(range(len(by_budget)), list(by_budget), fontsize=8)
        ax.set_xlim(-0.5, len(by_budget) - 0.5)
        ax.set_title(name, fontsize=8)
        ax.axhline(0, color="0.7", lw=0.8)
    fig.tight_layout()
    return fig


def first_below(history: list[dict], key: str, fraction: float) -> int | None:
    """The first epoch whose ``key`` is below ``fraction`` of its first recorded value (None: never)."""
    values = [(h["epoch"], h[key]) for h in history if key in h]
    return next((epoch for epoch, v in values if v < fraction * values[0][1]), None) if values else None


def amplitude_figure(records: list[dict], run: str = "gp_paper") -> Figure:
    """The kernel amplitude [output units², log scale] of ``run``'s records against the epoch, one line per
    seed (dotted: its best epoch); the legend below the axes."""
    fig, ax = subplots(figsize=(5.4, 3.3))
    for record in sorted((r for r in records if r["run"] == run and r.get("history")), key=lambda r: r["seed"]):
        history = [h for h in record["history"] if "kernel_outputscale" in h]
        ax.plot([h["epoch"] for h in history], [max(h["kernel_outputscale"], 1e-12) for h in history], marker=".",
                label=f"seed {record['seed']}")
        ax.axvline(record["best_epoch"], color=ax.lines[-1].get_color(), lw=0.6, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("kernel amplitude [output units²]")
    ax.set_title("R1 at convergence: the GP's amplitude (dotted: best epoch)", fontsize=9)
    legend_below(fig, [ax])
    fig.tight_layout()
    return fig


def amplitude_lines(records: list[dict], run: str = "gp_paper") -> str:
    """Per seed of ``run``: its amplitude after epoch 1, when it fell below 1 % of that, and at the best epoch
    the amplitude, the GP's relative correction and KL/N [nats]."""
    lines = []
    for record in sorted((r for r in records if r["run"] == run and r.get("history")), key=lambda r: r["seed"]):
        history = [h for h in record["history"] if "kernel_outputscale" in h]
        at_best = next((h for h in history if h["epoch"] == record["best_epoch"]), history[-1])
        below = first_below(history, "kernel_outputscale", 0.01)
        lines.append(f"- seed {record['seed']}: amplitude {history[0]['kernel_outputscale']:.2g} after epoch 1, "
                     f"below 1 % of it from epoch {below if below else 'never'}; at the best epoch "
                     f"{record['best_epoch']}: {at_best['kernel_outputscale']:.2g}, correction "
                     f"‖E F − h‖ / ‖h‖ = {at_best['correction_ratio_valid']:.2g}, KL/N = {at_best['kl_per_example']:.2g} nats.")
    return "\n".join(lines)


def comparisons(run: str, others: list[str], runs: pd.DataFrame, ais: pd.DataFrame, labels: dict,
                name: str) -> str:
    """``run`` (called ``name``) minus each of ``others`` on MNIST, seed-matched: test log p̂ (IS), test ELBO,
    AIS and IS from q* (gap subset) [nats], each with its verdict (:func:`difference_line`)."""
    mnist_ais = ais[(ais.profile == "converged") & (ais.dataset == "mnist")] if len(ais) else ais
    lines = []
    for other in others:
        for what, frame, value in (("test log p̂ (IS)", runs, "test_ll"), ("test ELBO", runs, "test_elbo"),
                                   ("AIS", mnist_ais, "ais"), ("IS from q* (gap subset)", mnist_ais, "is_from_optimum")):
            if not len(frame):
                continue
            row = report.paired_differences(frame[frame.run.isin([run, other])], run, value=value)
            if ("mnist", other) in row.index:
                lines.append(difference_line(f"{name} − {labels.get(other, other)}", row.loc[("mnist", other)], what))
    return "\n".join(lines)


def error_fit_line(records: list[dict], run: str, labels: dict) -> str:
    """How far the per-image SVI behind ``run``'s observed errors went, over its records: the batches whose q*
    met the SVI criterion, of all, with the images and the step cap of its last fit, and the share of the
    errors' variance its GP explains on the fit's subset (mean over seeds, per error model); empty without a fit."""
    last = [r["fits"][-1] for r in records if r["run"] == run and r.get("fits")]
    if not last:
        return ""
    fits = [fit["svi"] for fit in last]
    batches = [b for fit in fits for b in fit["batches"]]
    met = sum(bool(b["converged"]) for b in batches)
    explained = {name: np.mean([fit["error_model"][name]["explained_on_fit_subset"] for fit in last])
                 for name in ("mean", "log_variance") if all(name in fit.get("error_model", {}) for fit in last)}
    return (f"- {labels.get(run, run)}: q* of the observed errors met its SVI criterion in {met} of {len(batches)} "
            f"batches ({met / len(batches):.0%}) over {len(fits)} seed(s), {listed((f['images'] for f in fits), counts=True)} images "
            f"per fit, at most {listed(f['max_steps'] for f in fits)} steps"
            + ("; the GP explains " + " and ".join(f"{share:.0%} of the {name.replace('_', '-')} errors' variance"
                                                   for name, share in explained.items()) + " on its fit subset"
               if explained else "") + ".")


def training_lines(records: list[dict], runs: list[str], seeds: list[int], grid_seeds: list[int], labels: dict) -> str:
    """Per record of ``runs`` at ``seeds``: its amortization gap [nats] (not measurable for a proposal richer
    than q*'s family), epochs and training time [h]; then the seeds recorded against the grid's."""
    lines = []
    for run in runs:
        for r in sorted((r for r in records if r["run"] == run and r["seed"] in seeds), key=lambda r: r["seed"]):
            premise = validity.gap_family_premise(r["model"])
            gap = validity.shown(r["gaps"]["amortization_gap"], premise) + ("" if premise else " nats")
            lines.append(f"- {labels.get(run, run)}, seed {r['seed']}: amortization gap {gap} "
                         f"(gap subset, {images_text(r['gaps']['n'], r['gaps'].get('subset_seed'))}); "
                         f"{r['epochs_done']} epochs (best {r['best_epoch']}), "
                         f"{r['train_seconds'] / 3600:.1f} h of training on {r['device']}.")
    lines.append(f"- Seeds: {', '.join(map(str, seeds))} of the grid's {', '.join(map(str, grid_seeds))}.")
    return "\n".join(lines)


def _signed(value: float) -> str:
    return f"{value:+.3f}".replace("-", "−")


def proposal_control_lines(controls: pd.DataFrame, runs: pd.DataFrame, labels: dict, run: str = "gp",
                           reference: str = "vae", declared: int = 0) -> str:
    """Is ``run``'s (R4's) importance-sampling gain over ``reference`` (its VAE) more than a wider proposal's?
    Per seed of the proposal_control records (:func:`gpvae.report.load_proposal_controls`): ``run`` − ``reference``
    by the protocol's IS beside the gains of the VAE's Gaussian widened and mixed with the prior, on the same
    test images and K (a seed whose records differ in either is left out, said so); then per dataset ``run``'s
    gain minus each control's, paired over seeds (:func:`gpvae.verdicts.paired`, waiting for the ``declared``
    seeds) [nats]."""
    if controls.empty:
        return "- No proposal_control record yet: `make converged` measures it after the VAE of each seed."
    name, base, lines = labels.get(run, run), labels.get(reference, reference), []
    beyond = {(dataset, control): {} for dataset in controls["dataset"].unique() for control in ("widened", "defensive")}
    indexed = runs.set_index(["dataset", "seed", "run"])
    for row in controls.itertuples(index=False):
        key = (row.dataset, row.seed)
        if (*key, run) not in indexed.index or (*key, reference) not in indexed.index:
            continue
        protocol = [tuple(None if pd.isna(v) else v for v in indexed.loc[(*key, r), list(report.TEST_PROTOCOL)])
                    for r in (run, reference)]
        own = tuple(None if pd.isna(v) else v for v in (row.eval_k, row.n_test, row.subset_seed))
        if protocol[0] != protocol[1] or protocol[1] != own:
            lines.append(f"- {dataset_label(row.dataset)}, seed {row.seed}: left out, its records measure other images or another K "
                         f"({name} {protocol[0]}, {reference} {protocol[1]}, control {own}).")
            continue
        gain = indexed.loc[(*key, run), "test_ll"] - indexed.loc[(*key, reference), "test_ll"]
        widened, defensive = row.widened - row.own, row.defensive - row.own
        beyond[(row.dataset, "widened")][row.seed] = gain - widened
        beyond[(row.dataset, "defensive")][row.seed] = gain - defensive
        lines.append(f"- {dataset_label(row.dataset)}, seed {row.seed} (K = {int(row.eval_k)}, {int(row.n_test):,} test "
                     f"images): {name} − {base} {_signed(gain)}; the {base}'s Gaussian with its variance × {row.scale:g} "
                     f"{_signed(widened)}; mixed with the prior at weight {row.prior_weight:g} {_signed(defensive)}.")
    for (dataset, control), values in beyond.items():
        difference = verdicts.spread(values)
        if difference["n"]:
            what = "the widened Gaussian's" if control == "widened" else "the defensive mixture's"
            row = {**difference, "declared": declared}
            lines.append(f"- {dataset_label(dataset)}: {name}'s gain beyond {what} "
                         f"{report.mean_sd(difference['mean'], difference['sd'], 3)} ({seeds_text(row)}): "
                         f"{verdicts.paired(row)}.")
    return "\n".join(lines)
