"""The readings chapter (``book/readings.ipynb``): the protocol, the collapse diagnostics, the study tables,
the gap-closed, difficulty and ROC figures, R4's accuracy–cost frontier and the three claims' verdicts.
Every caption states the protocol its records carry. No torch: JSON records only."""
from __future__ import annotations

import dataclasses
import json
import math
import textwrap

from matplotlib.figure import Figure
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from .. import report, validity, verdicts
from ..plotting import LABEL_OFFSETS, MODEL_LABELS, place_labels, scientific_ticks
from . import dataset_label, legend_below, listed, subplots
from .protocol import images_text, records_images

DIAGNOSTICS = [("kernel_outputscale", "kernel amplitude [output units²]", True),
               ("kl_per_example", "KL(q(v) ‖ p(v)) / N [nats]", True),
               ("correction_ratio_valid", "‖E F − h‖ / ‖h‖, validation [ratio]", True),
               ("mean_function_variance_valid", "predictive variance of M,\nvalidation [latent units²]", True),
               ("expected_minus_marginal_elbo", "expected − marginal ELBO [nats]", False)]
JOINT_READINGS = ("r1_paper", "r2_fixed", "r3_posthoc")
STUDY_VALUES = ("test_ll", "test_elbo", "fraction_closed", "spearman_gp", "spearman_encoder", "spearman_elbo",
                "auroc_omniglot_gp", "auroc_omniglot_encoder", "auroc_omniglot_elbo", "auroc_fashion_mnist_gp",
                "auroc_fashion_mnist_elbo", "auroc_mnist_gp", "auroc_mnist_elbo", "amortization_gap")
SCORES = {"mean_function_variance": "GP variance", "encoder_variance": "encoder variance", "negative_elbo": "−ELBO"}


def protocol(grid, dataset: str, seed: int) -> str:
    """The study grid's budget, runs, evaluation settings and its difficulty and ood measurements, in words."""
    labels = configuration_labels(grid)
    runs = ", ".join(labels[r] for d, r, s in grid.cells() if d == dataset and s == seed)
    e = grid.evaluation(dataset)
    tests = images_text(e["max_test"], e.get("test_subset_seed")) if e["max_test"] else "all test images"
    lines = [grid.budget, f"{dataset_label(dataset)}, seed {seed}: {runs}.",
             f"Test log p̂(x) with K = {e['eval_k']} on {tests}; gap decompositions with K = {e['gap_eval_k']} on "
             f"{images_text(e['gap_subset'], e.get('subset_seed'))}."]
    difficulty = grid.measurement("difficulty", dataset)
    if difficulty:
        lines.append(f"Difficulty: the scores of {', '.join(labels[r] for r in difficulty['runs'])} against the "
                     f"per-image amortization gap of the {labels[difficulty['reference']]}.")
    ood = grid.measurement("ood", dataset)
    if ood:
        lines.append(f"Out of distribution: {images_text(ood['images'], ood.get('subset_seed'))} of "
                     f"{dataset_label(dataset)} against as many of "
                     f"{' and '.join(dataset_label(s) for s in ood['sets'])} (drawn with seed {ood['ood_seed']}), "
                     f"−ELBO from {ood['elbo_samples']} draws, for {', '.join(labels[r] for r in ood['runs'])}.")
    return "\n".join(lines)


def configuration_labels(grid) -> dict[str, str]:
    """The study grid's runs as the prose names them: the head of each run's note before its colon ("R1",
    "R3 with 1,024 inducing inputs", "control for R5"), else the model's label ("VAE"); a run that regresses
    observed errors says how many where its head does not ("R4 (10,000 observed errors)")."""
    labels = {}
    for run, spec in grid.runs.items():
        label = spec["note"].split(":")[0] if spec.get("note") else MODEL_LABELS.get(spec["model"], run)
        if spec.get("gp_fit") == "errors" and spec.get("error_images") and "observed errors" not in label:
            label += f" ({spec['error_images']:,} observed errors)"
        labels[run] = label
    return labels


def _history(record: dict, key: str) -> list[dict]:
    return [h for h in record["history"] if key in h]


def diagnostics_figure(records: dict[str, dict], seed: int, labels: dict[str, str] | None = None) -> Figure:
    """The collapse diagnostics of R1, R2 and R3 (``records`` by ``<run>_seed<s>``, named by ``labels``) against
    the epoch, one panel each of :data:`DIAGNOSTICS` (dotted: on training images); the legend below the panels."""
    labels = labels or {}
    fig, axes = subplots(1, len(DIAGNOSTICS), figsize=(17, 3.6))
    for ax, (key, label, log) in zip(axes, DIAGNOSTICS):
        for name in JOINT_READINGS:
            record = records.get(f"{name}_seed{seed}")
            if record is None:
                continue
            history = _history(record, key)
            ax.plot([h["epoch"] for h in history], [h[key] for h in history], marker=".", label=labels.get(name, name))
            if key == "mean_function_variance_valid":
                ax.plot([h["epoch"] for h in history], [h["mean_function_variance_train"] for h in history], ls=":",
                        color=ax.lines[-1].get_color(), label=f"{labels.get(name, name)} (training images)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if log:
            ax.set_yscale("log")
    legend_below(fig, axes, columns=6)
    fig.tight_layout()
    return fig


def diagnostics(records: dict[str, dict], seed: int) -> dict[str, float]:
    """``{<run>_<key>: its last recorded value}`` of the diagnostics of R1, R2 and R3 (NaN: not recorded), and
    ``<run>_marginal_minus_expected_elbo`` [nats], the prose's positive form of their difference."""
    keys = [key for key, _, _ in DIAGNOSTICS] + ["mean_function_variance_train"]
    values = {}
    for name in JOINT_READINGS:
        record = records.get(f"{name}_seed{seed}")
        for key in keys:
            history = _history(record, key) if record else []
            values[f"{name}_{key}"] = history[-1][key] if history else math.nan
        values[f"{name}_marginal_minus_expected_elbo"] = -values[f"{name}_expected_minus_marginal_elbo"]
    return values


def study_protocol(records: dict[str, dict], ood_records: dict[str, dict]) -> str:
    """What the run and ood records carry: K and the test images of log p̂, the gap subset, the OOD images."""
    done = [r for r in records.values() if "diverged" not in r]
    gaps = [r["gaps"] for r in done if r.get("gaps")]
    text = (f"test log p̂ with K = {listed(r.get('eval_k') for r in done)} on "
            f"{records_images(done)}")
    if gaps:
        text += f"; gaps and Spearman on {images_text(listed(g['n'] for g in gaps), gaps[0].get('subset_seed'))}"
    measured = [r for r in ood_records.values() if "diverged" not in r]
    if measured:
        text += (f"; OOD: {images_text(listed(r['n'] for r in measured), measured[0].get('subset_seed'))} of "
                 f"{dataset_label(measured[0]['dataset'])} against as many of each of "
                 f"{', '.join(dataset_label(s) for s in measured[0]['auroc'])}")
    return text


def _value(rows: dict, name: str, key: str) -> float:
    cell = rows.get(name, {}).get(key)
    return cell["mean"] if isinstance(cell, dict) and cell.get("mean") is not None else math.nan


def _ood_sets(rows: dict) -> list[str]:
    return list(dict.fromkeys(k[len("auroc_"):-len("_gp")] for r in rows.values() for k in r
                              if k.startswith("auroc_") and k.endswith("_gp")))


def likelihood_table(rows: dict, caption: str, labels: dict[str, str] | None = None) -> pd.io.formats.style.Styler:
    """One row per configuration that trained (named by ``labels``): seeds, test log p̂ and ELBO [nats] (mean ± sd), the share of
    the VAE's amortization gap closed, and inference time × the VAE's."""
    fmt = report.cell_text
    labels = labels or {}
    table = pd.DataFrame([{"configuration": labels.get(name, name), "seeds": len(r["seeds"]), "test log p̂(x) [nats]": fmt(r["test_ll"]),
                           "test ELBO [nats]": fmt(r["test_elbo"]), "gap closed": fmt(r.get("fraction_closed")),
                           "inference × VAE": f"{r['infer_ratio_to_vae']:.2f}" if "infer_ratio_to_vae" in r else "–"}
                          for name, r in rows.items() if "diverged" not in r])
    return table.style.hide(axis="index").set_caption(caption)


def difficulty_table(rows: dict, caption: str, labels: dict[str, str] | None = None) -> pd.io.formats.style.Styler:
    """One row per configuration that trained (named by ``labels``): the Spearman ρ with the VAE's per-image gap, and the AUROC
    against each OOD set, of its own score (GP variance), the encoder's variance and the negative ELBO."""
    fmt, labels = report.cell_text, labels or {}
    scores = ("gp", "encoder", "elbo")
    table = pd.DataFrame([{"configuration": labels.get(name, name),
                           **{f"Spearman {t}": fmt(r.get(f"spearman_{s}")) for s, t in zip(scores, ("GP var", "enc. var", "−ELBO"))},
                           **{f"AUROC {dataset_label(o)} GP / enc / −ELBO": " / ".join(fmt(r.get(f"auroc_{o}_{s}")) for s in scores)
                              for o in _ood_sets(rows)}}
                          for name, r in rows.items() if "diverged" not in r])
    return table.style.hide(axis="index").set_caption(caption)


def study_values(rows: dict, prefix: str = "") -> dict[str, float]:
    """Glue values ``<prefix><run>_<key>`` (mean over seeds; NaN: not measured) of :data:`STUDY_VALUES`, with
    ``_ll_minus_vae`` [nats] and ``_infer`` (× the VAE's inference time)."""
    values = {}
    for name, row in rows.items():
        if "diverged" in row:
            continue
        values |= {f"{prefix}{name}_{key}": _value(rows, name, key) for key in STUDY_VALUES}
        values[f"{prefix}{name}_ll_minus_vae"] = _value(rows, name, "test_ll") - _value(rows, "vae", "test_ll")
        values[f"{prefix}{name}_ll_minus_control"] = (_value(rows, name, "test_ll")
                                                      - _value(rows, "vae_decoder_control", "test_ll"))
        if "infer_ratio_to_vae" in row:
            values[f"{prefix}{name}_infer"] = row["infer_ratio_to_vae"]
    return values


def gap_closed_figure(rows: dict, target: float = verdicts.MIN_GAP_CLOSED, labels: dict[str, str] | None = None) -> Figure:
    """The share of the VAE's amortization gap each configuration (named by ``labels``) closes (dots: seeds; bar:
    mean), beside the share the frontier's default rule asks of R4 (:data:`gpvae.verdicts.MIN_GAP_CLOSED`)."""
    labels = labels or {}
    names = [n for n, r in rows.items() if n != "vae" and "fraction_closed" in r]
    fig, ax = subplots(figsize=(8, 0.45 * len(names) + 1.6))
    for i, name in enumerate(names):
        values = rows[name]["fraction_closed"]["values"]
        ax.scatter(values, [i] * len(values), color="C0", zorder=3)
        ax.plot([np.mean(values)] * 2, [i - 0.3, i + 0.3], color="k")
    ax.axvline(0, color="grey", lw=1)
    ax.axvline(target, color="C3", lw=1, ls="--", label=f"the default rule's minimum: {target:.0%}")
    ax.set_yticks(range(len(names)), [labels.get(n, n) for n in names])
    ax.set_xlabel("share of the VAE's test amortization gap closed [fraction; 1 = all of it]")
    ax.set_ylabel("configuration")
    legend_below(fig, [ax])
    fig.tight_layout()
    return fig


def difficulty_figure(ranked: dict) -> Figure:
    """The per-image amortization gap [nats] against three difficulty scores of one difficulty record
    (its ``per_image``), each panel titled with the Spearman ρ."""
    gap = np.asarray(ranked["per_image"]["gap"])
    panels = [("mean_function_variance", "GP predictive variance of M [latent units²]"),
              ("encoder_variance", "encoder variance, mean of e^ℓ [latent units²]"),
              ("negative_elbo", "negative ELBO [nats]")]
    fig, axes = subplots(1, 3, figsize=(14, 3.8))
    for ax, (key, label) in zip(axes, panels):
        ax.scatter(ranked["per_image"][key], gap, s=6, alpha=0.5)
        ax.set_xlabel(label)
        scientific_ticks(ax)
        ax.set_title(f"Spearman ρ = {spearmanr(ranked['per_image'][key], gap).statistic:.2f}")
    axes[0].set_ylabel("per-image amortization gap [nats]")
    fig.tight_layout()
    return fig


def partial_table(difficulty: pd.DataFrame, labels: dict[str, str] | None = None
                  ) -> tuple[pd.io.formats.style.Styler, dict[str, float]]:
    """Per run of :func:`gpvae.report.load_difficulty` rows (named by ``labels``): its own score's ρ with the gap and the partial ρ
    given the negative ELBO (means over seeds); and the glue values ``<run>_partial_spearman``."""
    rows = []
    for run, group in difficulty.groupby("run", sort=False):
        own = group[group["score"] == report.own_score(group["score"])]
        rows.append({"run": run, "configuration": (labels or {}).get(run, run), "own score": own["score"].iloc[0].replace("_", " "), "seeds": len(own),
                     "ρ(score, gap)": float(own["spearman"].mean()),
                     "ρ(score, gap | −ELBO)": float(own["partial_spearman"].mean())})
    images = listed(difficulty["n"])
    caption = ("Does the configuration's own uncertainty predict the per-image amortization gap of the VAE's encoder "
               f"beyond the VAE's negative ELBO? ({images} test images per record; mean over seeds)")
    table = pd.DataFrame(rows, columns=["configuration", "own score", "seeds", "ρ(score, gap)", "ρ(score, gap | −ELBO)"])
    return (table.style.format(precision=2).hide(axis="index").set_caption(caption),
            {f"{r['run']}_partial_spearman": r["ρ(score, gap | −ELBO)"] for r in rows})


def roc_figure(record: dict) -> Figure:
    """ROC curves of one ood record's scores, one panel per OOD set, each panel's legend (with AUROCs) below it."""
    sets = list(record["roc"])
    fig, axes = subplots(1, len(sets), figsize=(5 * len(sets), 5.2), squeeze=False, sharey=True)
    for ax, ood in zip(axes[0], sets):
        for key, label in SCORES.items():
            curve = record["roc"][ood][key]
            ax.plot(curve["fpr"], curve["tpr"], label=f"{label} (AUROC {record['auroc'][ood][key]:.3f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":")
        ax.set_xlabel(f"false-positive rate [fraction of {dataset_label(record['dataset'])} images flagged]")
        ax.set_title(f"{dataset_label(record['dataset'])} vs {dataset_label(ood)}")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)
    axes[0, 0].set_ylabel("true-positive rate [fraction of OOD images flagged]")  # one label: panels share it
    fig.tight_layout()
    return fig


def frontier_rows(record: dict) -> tuple[dict, dict]:
    """The measured run of a frontier record and its settings' rows."""
    measured = next(iter(record["runs"].values()))
    return measured, measured["settings"]


def setting_labels(rows: dict) -> dict[str, str]:
    """Setting name → :func:`setting_label`, the name added where two settings would read alike."""
    labels = {name: setting_label(name, row["options"]) for name, row in rows.items()}
    repeated = {label for label in labels.values() if list(labels.values()).count(label) > 1}
    return {name: f"{label} ({name})" if label in repeated else label for name, label in labels.items()}


def setting_label(name: str, options: dict) -> str:
    """A frontier setting in words, from the options it changes (the grid's ``frontier.settings``):
    ``"M = 128, k-means, one kernel, rank 16, 5 nodes"``; R4's defaults where it changes none of those."""
    if name == "vae":
        return "the VAE"
    if options.get("model") == "savae":
        return "SA-VAE's refinement"
    if options.get("error_model") == "knn":
        return f"{options.get('error_neighbours', '')} nearest neighbours' errors (control)".lstrip()
    words = [f"M = {options['error_inducing']}" if "error_inducing" in options else "",
             "k-means" if options.get("error_inducing_placement") == "kmeans" else "",
             "one kernel" if options.get("error_kernel_groups") == 1 else "",
             f"rank {options['error_variance_rank']}" if options.get("error_variance_rank") else "",
             f"{options['quadrature_nodes']} nodes" if "quadrature_nodes" in options else "",
             "features + moments" if options.get("error_inputs") == "features_and_moments" else ""]
    return ", ".join(w for w in words if w) or "R4's defaults"


def frontier_premise(row: dict) -> str | None:
    """Why a frontier setting's gap closed, log p̂ and Spearman are not measurable (a broken low-rank predictive)."""
    return validity.low_rank_premise(row["variance_error"])


def frontier_table(record: dict) -> pd.io.formats.style.Styler:
    """One row per setting: inference × VAE (batch 100 and 1), MACs, share of the gap closed [%], log p̂ on the
    subset [nats], the best Spearman ρ with the gap and the variance error [%]; not measurable where the
    low-rank predictive is outside its tolerance."""
    measured, rows = frontier_rows(record)
    names, table = setting_labels(rows), []
    for label, row in rows.items():
        premise = frontier_premise(row)
        best = max((v for v in row["spearman"].values() if v == v), default=math.nan)
        table.append({"setting": names[label], "infer × VAE (batch 100)": f"{row['ratio_to_vae']['100']:.2f}",
                      "infer × VAE (batch 1)": f"{row['ratio_to_vae']['1']:.2f}",
                      "MACs / image [M] (× VAE)": f"{row['macs_per_image'] / 1e6:.2f} ({row['macs_ratio_to_vae']:.2f})",
                      "gap closed [%]": validity.shown(100 * row["gap_closed"], premise, brief=True),
                      "log p̂ (subset) [nats]": validity.shown(row["test_ll"], premise, brief=True),
                      "best Spearman ρ with the gap": validity.shown(best, premise, brief=True),
                      "variance error of the mean [%]": "–" if row["variance_error"] is None else
                      f"{100 * row['variance_error']['of_mean']:.2f}"})
    timing = measured["timing"]["100"]
    return pd.DataFrame(table).set_index("setting").style.set_caption(
        f"{dataset_label(record['dataset'])}, seed {record['seed']}: {images_text(measured['n'], measured.get('subset_seed'))}, "
        f"mean amortization gap of the VAE {measured['gap']:.2f} nats, K = {measured['eval_k']}; median of "
        f"{measured['repeats']} interleaved repeats on {measured['device']}, {timing['threads']} thread(s), load average "
        f"{timing['load_average']} during the timing; commit {measured['git_commit'][:12]}. Not measurable (a low-rank predictive whose total variance is off "
        f"the full-rank one's by more than {validity.LOW_RANK_VARIANCE_TOLERANCE:.0%}): " + ("; ".join(
            f"{names[label]} ({row['variance_error']['of_mean']:.0%})" for label, row in rows.items()
            if frontier_premise(row))
            or "none") + ".")


def frontier_decision(record: dict, max_ratio: float = verdicts.SPEED_TARGET,
                      min_closed: float = verdicts.MIN_GAP_CLOSED) -> str:
    """The recorded default rule's outcome, and the fastest and the most-closing *valid* GP setting."""
    measured, rows = frontier_rows(record)
    decision = measured["default"]
    valid = {label: row for label, row in rows.items() if label != "vae"
             and row["options"].get("model", "gp") == "gp" and frontier_premise(row) is None}
    broken = [label for label, row in rows.items() if frontier_premise(row)]
    fastest = min(valid, key=lambda label: valid[label]["ratio_to_vae"]["100"], default=None)
    most = max(valid, key=lambda label: valid[label]["gap_closed"], default=None)
    chosen = decision["setting"]

    names = setting_labels(rows)

    def named(label: str) -> str:
        return names.get(label, label)

    text = (f"Default rule (≤ {max_ratio}× the VAE's time, ≥ {min_closed:.0%} closed): "
            f"{named(chosen) if chosen else 'no setting qualifies'} — {decision['reason']}"
            + (f" (but {named(chosen)} is not measurable: {frontier_premise(rows[chosen])})" if chosen in broken else "")
            + ". ")
    if fastest:
        text += (f"Fastest valid GP setting: {named(fastest)} ({valid[fastest]['ratio_to_vae']['100']:.2f}× the VAE, "
                 f"closes {valid[fastest]['gap_closed']:.0%}); closes most: {named(most)} "
                 f"({valid[most]['gap_closed']:.0%}). ")
    if broken:
        text += f"Not measurable (low-rank predictive outside its tolerance): {'; '.join(map(named, broken))}. "
    return (text + frontier_disagreement(record)).strip()


def frontier_disagreement(record: dict) -> str:
    """Where a measurable setting's q̄ loses ELBO against the VAE's Gaussian (a negative share of the gap closed)
    yet gains log p̂, a sentence naming those settings and why the two can disagree; else ``""``."""
    _, rows = frontier_rows(record)
    vae = rows.get("vae", {}).get("test_ll")
    names = setting_labels(rows)
    both = [names[label] for label, row in rows.items()
            if label != "vae" and frontier_premise(row) is None and vae is not None
            and row["gap_closed"] < 0 and row["test_ll"] > vae]
    if not both:
        return ""
    return (f"Lower ELBO but higher log p̂ than the VAE: {'; '.join(both)} (one seed, the subset above, no interval). The "
            "two can disagree: q̄ averages the encoder's Gaussian over the GP's uncertainty, a wider proposal, and width "
            "can cost ELBO (mass where the posterior has little) while it helps importance sampling (tails that cover "
            "the posterior's); the converged chapter's proposal control measures what widening the VAE's own Gaussian "
            "buys.")


def frontier_figure(record: dict | None, missing: str = "", max_ratio: float = verdicts.SPEED_TARGET,
                    min_closed: float = verdicts.MIN_GAP_CLOSED) -> Figure:
    """Share of the gap closed [%] against inference time × the VAE's (batch 100, log scale), one numbered point
    per measurable setting (black: the VAE; orange: SA-VAE), the numbers' key beside the axes; settings that
    are not measurable are listed in the title, not drawn. Without a record: ``missing`` as text."""
    if record is None:
        fig, ax = subplots(figsize=(7.5, 1.2))
        ax.text(0.5, 0.5, missing, ha="center", va="center")
        ax.set_axis_off()
        return fig
    _, rows = frontier_rows(record)
    fig, ax = subplots(figsize=(9, 4.8))
    drawn = [label for label, row in rows.items() if not frontier_premise(row)]
    numbers = []
    for number, label in enumerate(drawn, start=1):
        row = rows[label]
        colour = "k" if label == "vae" else "C0" if row["options"].get("model", "gp") == "gp" else "C1"
        ax.scatter(row["ratio_to_vae"]["100"], 100 * row["gap_closed"], color=colour, zorder=3)
        numbers.append(ax.annotate(str(number), (row["ratio_to_vae"]["100"], 100 * row["gap_closed"]), fontsize=8,
                                   xytext=LABEL_OFFSETS[0], textcoords="offset points"))
    names = setting_labels(rows)
    ax.text(1.02, 1.0, "\n".join(f"{number}  {names[label]}"
                                  for number, label in enumerate(drawn, start=1)),
            transform=ax.transAxes, va="top", fontsize=8, family="monospace")  # the key, outside the data
    ax.axvline(max_ratio, color="C3", lw=1, ls="--", label=f"{max_ratio}× the VAE's time")
    ax.axhline(100 * min_closed, color="C2", lw=1, ls=":", label=f"{min_closed:.0%} of the gap")
    broken = [label for label, row in rows.items() if frontier_premise(row)]
    if broken:
        ax.set_title(textwrap.fill("not drawn (low-rank predictive not measurable): "
                                   + "; ".join(names[label] for label in broken), 70),
                     fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("inference time × the VAE's (batch 100, CPU, log scale)")
    ax.set_ylabel("share of the VAE's amortization gap closed [%]")
    legend_below(fig, [ax])
    fig.tight_layout()
    place_labels(fig, numbers)  # after the layout: where the points finally are
    return fig


def savae_ratio(bench_path) -> tuple[float | None, str]:
    """SA-VAE (T = 20)'s inference time × the VAE's and its device from a hand benchmark (``bench.json``)."""
    if not bench_path.exists():
        return None, "no benchmark"
    bench = json.loads(bench_path.read_text())["savae_T20"]
    return next(r["infer_ratio_to_vae"] for r in bench["results"] if r["model"] == "savae"), bench["device"]


def claim_verdicts(rows: dict, baseline_of: dict[str, str], savae: tuple[float | None, str], reading: str = "r4_gp",
                   labels: dict[str, str] | None = None) -> list[tuple[verdicts.Verdict, str]]:
    """The three claims, each decided by :mod:`gpvae.verdicts` on one ``reading`` for all three (R4, the library's
    default; never the configuration that does best on each, which would pick the winner on the seeds that then
    test it), each with what was measured: its likelihood gain over its baseline by IS (``baseline_of``, else the
    VAE: with the VAE's decoder kept, a better sampler of one model, not a better model), its speed against
    ``savae`` = (ratio, device) with the gap it closes, its GP variance's Spearman ρ with the gap and Omniglot AUROC
    against the VAE's −ELBO; runs named by ``labels``. A claim without a measurement of ``reading`` is not
    measurable."""
    row, base = rows.get(reading, {}), baseline_of.get(reading, "vae")
    labels = labels or {}
    name, base_name = labels.get(reading, reading), labels.get(base, base)
    likelihood_claim = (f"1. higher test log p̂ than its {base_name} by IS (the study's reading: not the abstract's claim "
                        "over IWAE and SA-VAE, which the landing page decides by AIS)")
    decided = []
    if row and "diverged" not in row:
        difference = verdicts.spread(pd.Series(report.per_seed(row.get("test_ll")))
                                     - pd.Series(report.per_seed(rows.get(base, {}).get("test_ll"))))
        verdict = verdicts.likelihood(pd.DataFrame({base: difference}).T, claim=likelihood_claim)
        decided.append((verdict, f"{name} − {base_name} by IS: {report.mean_sd(difference['mean'], difference['sd'])} "
                                 f"nats (n = {int(difference['n'])})"))
        verdict = verdicts.speed(row.get("infer_ratio_to_vae"), savae[0])
        decided.append((verdict, f"{name}: {verdict.measured} (two benchmarks timed apart: the study's, and SA-VAE's "
                                 f"with T = 20 by hand on {savae[1]}; the claim of record reads one, on the landing page), closes "
                                 f"{_value(rows, reading, 'fraction_closed'):.0%} of the gap; {verdict.breakdown()}"))
    else:
        missing = row.get("diverged") and f"{name} diverged" or f"no record of {name}"
        decided += [(dataclasses.replace(verdict, outcome=validity.NOT_MEASURABLE), missing)
                    for verdict in (verdicts.likelihood(pd.DataFrame(columns=["mean", "sd", "n"]), claim=likelihood_claim),
                                    verdicts.speed(None, None))]
    if report.per_seed(row.get("spearman_gp")):
        per_seed = {key: report.per_seed(row.get(key)) for key in
                    ("spearman_gp", "spearman_elbo", "auroc_omniglot_gp", "auroc_omniglot_elbo")}
        rank = verdicts.ahead_of_baselines(per_seed["spearman_gp"], {"the VAE's −ELBO": per_seed["spearman_elbo"]})
        ood = verdicts.ahead_of_baselines(per_seed["auroc_omniglot_gp"], {"the VAE's −ELBO": per_seed["auroc_omniglot_elbo"]},
                                          chance=0.5)
        decided.append((dataclasses.replace(rank, outcome=verdicts.combined([rank.outcome, ood.outcome])),
                        f"{name}: Spearman ρ with the gap {rank.measured}; Omniglot AUROC {ood.measured}"))
    else:
        claim = verdicts.ahead_of_baselines({}, {})
        decided.append((dataclasses.replace(claim, outcome=validity.NOT_MEASURABLE),
                        f"{name}'s own score was not ranked against the per-image gap"))
    return decided


def claims(decided: list[tuple[verdicts.Verdict, str]], reading: str = "R4") -> pd.io.formats.style.Styler:
    """The table of :func:`claim_verdicts`: claim, criterion, what was measured, verdict."""
    return pd.DataFrame([{"claim": d.claim, "criterion": d.criterion, "measured": m, "verdict": d.outcome}
                         for d, m in decided]).style.hide(axis="index").set_caption(
        f"The study's reading of each claim at its budget, decided by gpvae.verdicts on the study's seeds, all three on "
        f"one reading ({reading}) against the VAE it starts from, not on the best reading per claim. These are not the "
        f"verdicts of record: the landing page compares GP-RF with every baseline, at convergence.")


def claim_outcomes(decided: list[tuple[verdicts.Verdict, str]]) -> dict[str, str]:
    """``claim1_verdict``, ``claim2_verdict``, ``claim3_verdict``: the outcome of each claim of
    :func:`claim_verdicts` (in their order), for the prose beside the table."""
    return {f"claim{number}_verdict": d.outcome for number, (d, _) in enumerate(decided, start=1)}
