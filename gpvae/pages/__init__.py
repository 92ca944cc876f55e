"""The book's pages as library code: every table, figure and verdict sentence of a results chapter is a
function here, tested on small fixture records; a chapter only loads its grid, calls and renders.

* :mod:`gpvae.pages.landing`: the landing page's one line per claim, the converged table and figure;
* :mod:`gpvae.pages.results`, :mod:`~gpvae.pages.results_figures` and :mod:`~gpvae.pages.results_claims`: the
  20-epoch grid (Tables 1–5, figures, verdicts);
* :mod:`gpvae.pages.converged` and :mod:`~gpvae.pages.converged_ais`: the converged grid (Table 6, curves;
  Table 7, AIS beside IS);
* :mod:`gpvae.pages.difficulty`: the difficulty claim on its own design (``difficulty_large``), bootstrapped;
* :mod:`gpvae.pages.readings`: the readings study, the frontier and the difficulty figures;
* :mod:`gpvae.pages.appendix`: every run of record with its provenance;
* :mod:`gpvae.pages.protocol`: what a caption says of how its numbers were measured, read from the records.

No torch: these modules read JSON records only.
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from ..report import restarted_faster

DATASET_LABELS = {"mnist": "MNIST", "omniglot": "Omniglot-28", "fashion_mnist": "Fashion-MNIST"}


def dataset_label(dataset: str) -> str:
    """The name a page gives a dataset: ``"omniglot"`` → ``"Omniglot-28"``."""
    return DATASET_LABELS.get(dataset, dataset)


def seeds_text(row) -> str:
    """``"n = 3"``, or ``"n = 2 of 3 declared seeds"`` while a paired difference (a row of
    :func:`gpvae.report.paired_differences`) lacks seeds its grid declares."""
    n, declared = int(row["n"]), row.get("declared", 0)
    return f"n = {n}" + (f" of {int(declared)} declared seeds" if declared == declared and declared > n else "")


def rate(value: float) -> str:
    """A learning rate as the grids write it: ``1e-3``, ``5e-4``."""
    return f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e")


def restart_clause(lost: list[dict]) -> str:
    """How the warm starts among ``lost`` (rows of :func:`gpvae.report.lost_ground`, of one run) that restarted
    faster than their source ended (:func:`gpvae.report.restarted_faster`) began: ``"2 of 3 seeds restarted at
    lr 1e-3 against the source's final 1e-5 and fell 3.5 nats of validation ELBO in the first epoch"``; empty
    when none did."""
    restarts = [x["restart"] for x in lost if restarted_faster(x["restart"])]
    if not restarts:
        return ""
    rates = ", ".join(sorted({rate(r["lr"]) for r in restarts}))
    finals = ", ".join(sorted({rate(r["source_final_lr"]) for r in restarts}))
    return (f"{len(restarts)} of {len(lost)} seed{'s' * (len(lost) > 1)} restarted at lr {rates} against the source's "
            f"final {finals} and fell {sum(r['drop'] for r in restarts) / len(restarts):.1f} nats of validation ELBO "
            "in the first epoch")


def listed(values, counts: bool = False) -> str:
    """``"1000"``, ``"0, 1, 2"``: the distinct values of a protocol setting, sorted (NaN and None left out);
    with ``counts``, numbers of images and the like, with thousands separators (``"2,000"``)."""
    distinct = sorted({int(v) if isinstance(v, (float, np.floating)) and float(v).is_integer() else v
                       for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))},
                      key=lambda v: (0, v, "") if isinstance(v, (int, float, np.number)) else (1, 0, str(v)))
    return ", ".join(f"{v:,}" if counts and isinstance(v, (int, np.integer)) else str(v) for v in distinct) or "–"


def subplots(rows: int = 1, columns: int = 1, figsize: tuple[float, float] = (6.4, 4.8), **options):
    """``(figure, axes)`` as :func:`matplotlib.pyplot.subplots` gives them, but a figure pyplot does not hold:
    a chapter displays or glues it once, and the notebook never draws it a second time at the cell's end."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, columns, **options)


def legend_below(fig, axes, columns: int = 4) -> None:
    """One legend under the panels (never over the data), with every label drawn in any of ``axes``."""
    entries = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(entries.values(), entries.keys(), loc="upper center", ncol=min(len(entries), columns),
                   frameon=False, bbox_to_anchor=(0.5, 0.0))
