"""Every figure of the book, drawn from the committed records in the book's theme: no text of it runs into
another (tick labels among themselves, labels and titles across panels) and no marker is cut by its frame."""
import json

import pandas as pd
import pytest

from gpvae import report
from gpvae.pages import converged, converged_ais, landing, readings, results_figures
from gpvae.pages.results import ResultsPage
from gpvae.pages.screen import ScreenPage
from gpvae.plotting import run_labels
from gpvae.runs.grid import Grid
from tests.figures import book_theme, clipped_markers, overlapping_texts


def results_figure(name):
    return lambda: getattr(results_figures, name)(ResultsPage.load(Grid.of("cpu")))


def converged_records():
    grid = Grid.of("converged")
    return grid, [r for r in report.load_records(grid.layout.results_dir) if r["run"] in grid.runs]


def curves():
    grid, records = converged_records()
    return converged.curves_figure(records, report.load_records(Grid.of("cpu").layout.results_dir), run_labels(grid))


def budget():
    grid, records = converged_records()
    small = report.frame(report.load_records(Grid.of("cpu").layout.results_dir))
    runs = report.frame(records)
    return converged.budget_figure(converged.budget_quantities({
        "20 epochs": (small[small.dataset == "mnist"], "vae_extra"), "converged": (runs[runs.dataset == "mnist"], "vae_continued")}))


def bdmc():
    frames = [report.load_bdmc(Grid.of(p).layout.results_dir).assign(profile=p) for p in ("converged", "cpu")]
    return converged_ais.bdmc_figure(pd.concat(frames))


def study():
    grid = Grid.of("study")
    root = grid.layout.results_dir
    records = {f"{r['run']}_seed{r['seed']}": r for r in report.load_records(root) if r["dataset"] == "mnist"}
    return grid, records, report.readings_table(root, "mnist")


def run_record(grid, kind, run):
    path = grid.layout.run_measurement_path(kind, "mnist", run, 0) if kind == "ood" else \
        grid.layout.measurement_path(kind, "mnist", 0)
    return json.loads(path.read_text())


FIGURES = {
    **{f"results.{name}": results_figure(name) for name in ("likelihood_cost", "curves", "differences", "k_curve", "difficulty")},
    "converged.curves": curves,
    "converged.budget": budget,
    "converged.amplitude": lambda: converged.amplitude_figure(converged_records()[1], "gp_paper"),
    "converged.bdmc": bdmc,
    "landing": lambda: landing.converged_figure(landing.Evidence.load("converged", Grid.of("converged"))),
    "readings.diagnostics": lambda: readings.diagnostics_figure(study()[1], 0, readings.configuration_labels(study()[0])),
    "readings.gap_closed": lambda: readings.gap_closed_figure(study()[2], labels=readings.configuration_labels(study()[0])),
    "readings.difficulty": lambda: readings.difficulty_figure(run_record(study()[0], "difficulty", "r4_gp")["runs"]["r4_gp"]),
    "readings.roc": lambda: readings.roc_figure(run_record(study()[0], "ood", "r4_gp")),
    "readings.frontier": lambda: readings.frontier_figure(run_record(Grid.of("converged"), "frontier", "vae")),
    "screen.amplitude": lambda: ScreenPage.load(Grid.of("iw")).amplitude_figure(),
}


@pytest.mark.parametrize("name", FIGURES)
def test_a_figure_of_record_shows_every_text_and_marker_whole(name):
    with book_theme():
        fig = FIGURES[name]()
    assert overlapping_texts(fig) == []
    assert clipped_markers(fig) == []
