"""The importance-weighted screen (``workflow/config/iw.yaml``) as library code: GP-RF trained with an
importance-weighted bound (``gp_iw``: of the marginal proposal q̄; ``gp_iw_expected``: of q(z | x, F), averaged
over F) against IWAE at the same k and against R1, the ELBO-trained reading they modify, by AIS; and the
kernel amplitude per epoch (does it collapse as R1's does?). No torch: JSON records only."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from matplotlib.figure import Figure
import pandas as pd

from .. import report, verdicts
from ..plotting import MODEL_COLOURS, run_labels
from . import dataset_label, legend_below, subplots
from .converged import difference_line, lost_between
from .protocol import measurement_protocol, protocol_text

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

    from ..runs.grid import Grid

READINGS = ("gp_iw", "gp_iw_expected")  # the readings screened
AGAINST = ("iwae", "gp_paper")  # IWAE at the same k, and R1 (the same reading trained in the ELBO)
AMPLITUDE = "kernel_outputscale"


@dataclass
class ScreenPage:
    """The screen's grid, its run records and its AIS rows (:func:`gpvae.report.load_ais`)."""

    grid: Grid
    records: list[dict]
    ais: pd.DataFrame

    @classmethod
    def load(cls, grid: Grid) -> ScreenPage:
        root = grid.layout.results_dir
        records = [r for r in report.load_records(root) if r["run"] in grid.runs and "diverged" not in r]
        ais = report.load_ais(root)
        return cls(grid, records, ais[ais.run.isin(list(grid.runs))])

    @property
    def labels(self) -> dict[str, str]:
        return run_labels(self.grid)

    def progress(self) -> str:
        """How many of the grid's runs × seeds have a record and an AIS record, and which are missing."""
        missing = pd.DataFrame(report.missing(self.grid, self.records), columns=["dataset", "run", "seed"])
        pending = "; ".join(f"{dataset_label(d)} {self.labels.get(r, r)} (seed{'s' if len(s) > 1 else ''} "
                            f"{', '.join(map(str, s))})" for (d, r), s in missing.groupby(["dataset", "run"], sort=False)["seed"])
        return (f"{len(self.records)} of {len(self.grid.cells())} runs × seeds recorded, {len(self.ais)} with AIS; "
                + (f"not yet: {pending}." if pending else "none missing."))

    def table(self) -> Styler | None:
        """log p(x) by AIS and the protocol's IS on the same images [nats], mean ± sd over seeds (n), per dataset
        and run; None without an AIS record."""
        if self.ais.empty:
            return None
        rows = {}
        for (dataset, run), part in self.ais.groupby(["dataset", "run"], sort=False):
            ais, is_ = verdicts.spread(part.set_index("seed")["ais"]), verdicts.spread(part.set_index("seed")["is"])
            rows[(dataset_label(dataset), self.labels.get(run, run))] = {
                "log p(x) by AIS [nats]": f"{report.mean_sd(ais['mean'], ais['sd'])} ({int(ais['n'])})",
                "IS, same images [nats]": f"{report.mean_sd(is_['mean'], is_['sd'])} ({int(is_['n'])})"}
        order = [self.labels.get(r, r) for r in self.grid.runs]
        table = pd.DataFrame(rows).T.rename_axis(["dataset", "model"])
        table = table.reindex(sorted(table.index, key=lambda key: (key[0], order.index(key[1]))))
        return table.style.set_caption(
            "The importance-weighted screen by AIS, mean ± sd over seeds (n): "
            + protocol_text(measurement_protocol(self.grid, "ais")) + f". Budget: {self.grid.budget}")

    def verdicts(self) -> str:
        """Markdown, one line per dataset and comparison: each screened reading minus IWAE and minus R1 by AIS,
        seed-matched, with its outcome (:func:`gpvae.pages.converged.difference_line`)."""
        lost = report.lost_ground(self.records, self.grid)
        lines = []
        for reading in READINGS:
            if reading not in set(self.ais.run):
                continue
            for (dataset, other), row in report.paired_differences(self.ais, reading, value="ais",
                                                                   grid=self.grid).iterrows():
                if other in AGAINST:
                    lines.append(difference_line(f"{dataset_label(dataset)}: {self.labels[reading]} − "
                                                 f"{self.labels[other]}", row, "by AIS",
                                                 lost_between(lost, dataset, (reading, other), self.labels)))
        return "\n".join(lines) or "- no AIS record of a screened reading yet."

    def amplitude_figure(self) -> Figure:
        """The kernel amplitude [output units², log scale] per epoch of R1 and of each screened reading, one
        panel per dataset, one line per run and seed, each run in its own line style so that runs whose
        amplitudes coincide stay visible (R1 first, the readings over it); the legend below the panels."""
        datasets, runs = list(self.grid.datasets), ("gp_paper", *READINGS)
        styles = dict(zip(runs, ("-", "--", ":", "-.")))
        fig, axes = subplots(1, len(datasets), figsize=(4.4 * len(datasets), 3.4), squeeze=False, sharey=True)
        for ax, dataset in zip(axes[0], datasets):
            for record in sorted(self.records, key=lambda r: (runs.index(r["run"]) if r["run"] in runs else -1, r["seed"])):
                history = [h for h in record.get("history", []) if AMPLITUDE in h]
                if record["dataset"] != dataset or record["run"] not in runs or not history:
                    continue
                ax.plot([h["epoch"] for h in history], [max(h[AMPLITUDE], 1e-12) for h in history],
                        color=MODEL_COLOURS.get(record["run"]), lw=1.6, ls=styles[record["run"]],
                        label=self.labels[record["run"]] if record["seed"] == min(self.grid.seeds) else None)
            ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.set_title(dataset_label(dataset), fontsize=10)
        axes[0][0].set_ylabel("kernel amplitude [output units²]")
        fig.tight_layout()
        legend_below(fig, axes[0], columns=3)
        return fig

    def amplitude_lines(self) -> str:
        """Markdown, one line per dataset and run: the amplitude after the first and the last epoch (mean over
        seeds) and their ratio — below 1 %: collapsed."""
        lines = []
        for dataset in self.grid.datasets:
            for run in ("gp_paper", *READINGS):
                ends = [(h[0][AMPLITUDE], h[-1][AMPLITUDE]) for r in self.records
                        if r["dataset"] == dataset and r["run"] == run
                        and (h := [x for x in r.get("history", []) if AMPLITUDE in x])]
                if ends:
                    first, last = (sum(e[i] for e in ends) / len(ends) for i in (0, 1))
                    lines.append(f"- {dataset_label(dataset)}, {self.labels[run]} ({len(ends)} seed(s)): "
                                 f"{first:.2g} after the first epoch, {last:.2g} after the last ({last / first:.0%} of it"
                                 + ("; collapsed" if last < 0.01 * first else "") + ").")
        return "\n".join(lines) or "- no record of R1 or a screened reading yet."
