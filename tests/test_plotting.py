"""The book's axis helpers (gpvae.plotting): a log axis only over a decade or more, and linear ticks whose
labels never collide, whatever the scale of the values."""
import numpy as np
import pytest

from gpvae.pages import subplots
from gpvae.plotting import place_labels, scientific_ticks, spans_a_decade
from tests.figures import book_theme, overlapping_texts


def test_a_log_axis_needs_a_decade_of_positive_values():
    assert spans_a_decade([0.001, 0.02]) and spans_a_decade([0.5], [5.0, 1.0])
    assert not spans_a_decade([0.00984, 0.00985]) and not spans_a_decade([0.0, -3.0, 2.0, 3.0])
    assert not spans_a_decade([]) and not spans_a_decade([np.nan, 1.0, np.inf])


@pytest.mark.parametrize("low, high, label", [(0.0098408, 0.0098426, "variance [10⁻³ latent units²]"),
                                              (0.0, 0.0175, "variance [latent units²]"),
                                              (2.1e6, 2.4e6, "variance [10⁶ latent units²]")])
def test_narrow_or_small_ranges_get_legible_ticks_and_the_power_joins_the_unit(low, high, label):
    with book_theme():
        fig, ax = subplots(figsize=(5.5, 3.5))
        ax.scatter(np.linspace(low, high, 50), np.arange(50), s=6)
        ax.set_xlabel("variance [latent units²]")
        scientific_ticks(ax, "x")
    assert ax.get_xlabel() == label and overlapping_texts(fig) == []
    assert len({t.get_text() for t in ax.get_xticklabels()}) == len(ax.get_xticklabels())  # no two ticks read alike


def test_point_labels_are_moved_off_each_other():
    fig, ax = subplots(figsize=(4, 3))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    labels = [ax.annotate(str(n), (5.0 + 0.01 * n, 5.0), xytext=(4, 4), textcoords="offset points") for n in range(4)]
    assert overlapping_texts(fig)  # four labels at one point
    place_labels(fig, labels)
    assert overlapping_texts(fig) == [] and len({label.xyann for label in labels}) == 4
