"""The importance-weighted screen's page on fixture records: the AIS table, the verdicts against IWAE and R1
(holds, fails, not resolved, not measurable), and the amplitude trajectories."""

import pytest

from gpvae import validity
from gpvae.pages.screen import ScreenPage
from gpvae.runs.grid import Grid

from .test_pages_converged import ais_record, write
from .test_report import record



def screen(tmp_path, ais: dict[str, list[float]], width: float = 0.3, amplitudes=None) -> ScreenPage:
    """MNIST records and AIS of ``ais`` ({run: per-seed AIS [nats]}); ``amplitudes``: {run: per-epoch amplitude}."""
    grid = Grid.of("iw").replace(results_dir=str(tmp_path / "results"), runs_dir=str(tmp_path / "runs"))
    for run, values in ais.items():
        for seed, value in enumerate(values):
            run_record = record("mnist", run, seed, value - 0.5)
            run_record["history"] = [{"epoch": e + 1, "kernel_outputscale": a}
                                     for e, a in enumerate((amplitudes or {}).get(run, []))]
            write(grid.layout.record_path("mnist", run, seed), run_record)
            write(grid.layout.run_measurement_path("ais", "mnist", run, seed), ais_record("mnist", run, seed, value, width))
    return ScreenPage.load(grid)


@pytest.mark.parametrize("gp_iw, outcome", [([-90.0, -90.1, -89.9], "holds"), ([-93.0, -93.1, -92.9], "fails"),
                                            ([-91.0, -92.5, -89.7], "not resolved")])
def test_a_screened_reading_against_iwae_at_the_same_k(tmp_path, gp_iw, outcome):
    page = screen(tmp_path, {"iwae": [-91.0, -91.1, -90.9], "gp_paper": [-92.0, -92.1, -91.9], "gp_iw": gp_iw})
    line = next(x for x in page.verdicts().splitlines() if "− IWAE, by AIS" in x)
    assert line.startswith("- MNIST: GP-RF (R1, IW bound of q̄) − IWAE") and line.endswith(f": {outcome}.")
    assert any("− GP-RF (R1, literal), by AIS" in x for x in page.verdicts().splitlines())


def test_a_verdict_waits_for_every_seed_the_grid_declares(tmp_path):
    """Two of the screen's three seeds agree beyond 2 sd: still not resolved, and said so."""
    page = screen(tmp_path, {"iwae": [-91.0, -91.1], "gp_iw": [-90.0, -90.1]})
    line = next(x for x in page.verdicts().splitlines() if "− IWAE, by AIS" in x)
    assert line.endswith("(n = 2 of 3 declared seeds): not resolved.")


def test_uncertified_ais_leaves_the_screen_not_measurable(tmp_path):
    page = screen(tmp_path, {"iwae": [-91.0, -91.1], "gp_iw": [-80.0, -80.1]}, width=3.0)
    assert f"{validity.NOT_MEASURABLE} (2 of 2 matched seeds without a certified AIS): not resolved." in page.verdicts()


def test_the_table_states_what_the_ais_records_carry(tmp_path):
    page = screen(tmp_path, {"iwae": [-91.0, -91.2], "gp_iw": [-90.0, -90.2]})
    table = page.table()
    assert table.data.loc[("MNIST", "IWAE"), "log p(x) by AIS [nats]"] == "-91.10 ± 0.14 (2)"
    assert "40 test images drawn at random (subset seed 7)" in table.caption and "T = 300, L = 3" in table.caption
    assert screen(tmp_path / "empty", {}).table() is None


def test_the_amplitude_lines_say_when_it_collapsed(tmp_path):
    page = screen(tmp_path, {"gp_paper": [-92.0], "gp_iw": [-90.0]},
                  amplitudes={"gp_paper": [1e-2, 1e-3, 1e-5], "gp_iw": [1e-2, 2e-2, 3e-2]})
    lines = page.amplitude_lines().splitlines()
    assert "0.01 after the first epoch, 1e-05 after the last (0% of it; collapsed)" in lines[0]
    assert lines[1].endswith("(300% of it).") and "collapsed" not in lines[1]
    fig = page.amplitude_figure()
    assert fig.axes[0].get_yscale() == "log" and not fig.axes[0].get_legend()
