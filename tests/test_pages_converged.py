"""The converged chapter's tables, figures and verdict sentences (gpvae.pages.converged) on small fixture records."""
import json
from types import SimpleNamespace

import matplotlib
import pandas as pd
import pytest

from gpvae import report
from gpvae.layout import Layout
from gpvae.pages import converged, converged_ais

from .test_report import record

matplotlib.use("Agg")
AIS_VALUES = {"gp": [-97.0, -97.1, -97.2], "vae": [-97.0, -97.1, -97.2],  # one decoder: tied
              "iwae": [-98.0, -98.1, -98.2],  # R4 ahead: holds
              "savae": [-96.0, -96.1, -96.2],  # R4 behind: fails
              "hf": [-97.5, -96.0, -98.0]}  # R4 − HF +0.5, −1.1, +0.8: not resolved


def write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


def ais_record(dataset, run, seed, value, width=0.3, n=40, subset_seed=7, steps=300, leapfrog=3):
    return {"dataset": dataset, "run": run, "model": run, "seed": seed, "mean": value, "n": n, "subset_seed": subset_seed,
            "is": {"mean": value - 0.5, "eval_k": 11, "seconds": 1.0}, "estimator_gap": 0.5, "seconds": 30.0,
            "settings": {"steps": steps, "leapfrog": leapfrog, "chains": 1}, "decoder_sha256": "d",
            "certificate": {"certified": width <= 0.5, "width": width},
            "gap_subset": {"n": n, "subset_seed": subset_seed, "mean": value, "elbo_opt": value - 2.0, "is_from_optimum": value + 0.1,
                           "approximation_gap": {"mean": 2.0}}}


def fixture_grid(tmp_path, values=AIS_VALUES, width=0.3, subset_seed=7, dataset="mnist", runs=None):
    """A results folder with run and AIS records of ``values`` ({run: per-seed AIS}); a grid stand-in whose
    ``runs`` (specs) default to one model per run, each declaring the seeds of the longest list."""
    layout = Layout(tmp_path / "runs", tmp_path / "results")
    for run, per_seed in values.items():
        for seed, value in enumerate(per_seed):
            run_record = record(dataset, run, seed, value - 0.5)
            run_record["gaps"] |= {"n": 40, "subset_seed": subset_seed, "eval_k": 11, "log_px": value - 0.5,
                                   "elbo_opt": value - 2.0}
            write(layout.record_path(dataset, run, seed), run_record)
            write(layout.run_measurement_path("ais", dataset, run, seed),
                  ais_record(dataset, run, seed, value, width, subset_seed=subset_seed))
    seeds = list(range(max(map(len, values.values()))))
    return SimpleNamespace(layout=layout, controls=lambda: {}, runs=runs or {run: {"model": run} for run in values},
                           datasets={dataset: {}}, run_seeds=lambda dataset, run: seeds)


def test_table6_caption_states_the_protocol_of_its_records():
    records = [dict(record("mnist", "vae", s, -90.0 - s), eval_k=7, n_test=13, epochs_done=9, best_epoch=4) for s in (0, 1)]
    small = [dict(record("mnist", "vae", 0, -95.0), eval_k=3, n_test=21)]
    curves = pd.DataFrame({"dataset": ["mnist"], "seed": [0], "run": ["vae"], "eval_k": [70], "test_ll": [-89.5],
                           "decoder_sha256": ["d"]})
    styler = converged.table6(records, small, curves, {"vae": "VAE"}, ["vae"])
    caption = styler.caption
    assert "K = 7 importance samples" in caption and "the first 13 test images" in caption
    assert "K = 3 on the first 21 test images" in caption and "K = 70 for VAE (seed 0" in caption
    assert "K = 1000" not in caption and "10,000" not in caption  # nothing the records do not carry
    frame = styler.data
    assert frame.loc[("VAE", 0), "K = 70 [nats]"] == -89.5 and frame.loc[("VAE", 0), "epochs (best); stopped by"] == "9 (4); -"
    assert frame.shape[1] + frame.index.nlevels <= 8  # the literature is the lines below the table
    assert frame.loc[("VAE", 0), "20 epochs (CPU grid)"].startswith("-95.00")


def test_table6_shows_the_20_epoch_value_only_for_a_run_both_grids_name_alike():
    """A control named vae_extra in both grids (+20 epochs here, +2 there) is two runs: no value beside it;
    a resumed run's time is its training time over every job, not its last job's wall time."""
    records = [dict(record("mnist", "vae_extra", 0, -88.0), train_seconds=7200.0, wall_seconds=60.0)]
    small = [record("mnist", "vae_extra", 0, -97.6)]
    frame = converged.table6(records, small, pd.DataFrame(columns=["dataset", "run", "seed", "eval_k", "test_ll"]),
                             {"vae_extra": "VAE +20 epochs"}, ["vae_extra"], {"vae_extra": "VAE +2 epochs"}).data
    assert frame.loc[("VAE +20 epochs", 0), "20 epochs (CPU grid)"] == "-"
    assert frame.loc[("VAE +20 epochs", 0), "training time [h]"] == 2.0


def test_table6_gives_a_post_hoc_fit_its_job_time_and_the_20_epoch_reference_once_per_model():
    records = [dict(record("mnist", "gp", seed, -88.5), epochs_done=0, best_epoch=0, train_seconds=0.0,
                    wall_seconds=1800.0) for seed in (0, 1)]
    records += [dict(record("mnist", "vae", seed, -88.6), epochs_done=700, best_epoch=650, train_seconds=3600.0)
                for seed in (0, 1)]
    small = [record("mnist", run, seed, -98.0) for run in ("vae", "gp") for seed in (0, 1)]
    frame = converged.table6(records, small, pd.DataFrame(columns=["dataset", "run", "seed", "eval_k", "test_ll"]),
                             {"vae": "VAE", "gp": "R4"}, ["vae", "gp"]).data
    assert frame.loc[("R4", 1), "training time [h]"] == 0.5 and frame.loc[("VAE", 1), "training time [h]"] == 1.0
    assert frame.loc[("VAE", 0), "20 epochs (CPU grid)"].startswith("-98.00") and frame.loc[("VAE", 1), "20 epochs (CPU grid)"] == ""
    assert frame.loc[("R4", 0), "epochs (best); stopped by"] == "0 (0); post-hoc fit"


def test_ais_captions_state_subset_steps_and_width_of_the_records(tmp_path):
    ais = converged_ais.ais_frame({"converged": fixture_grid(tmp_path)})
    summary = converged_ais.ais_summary(ais, {"converged": {}})
    caption = converged_ais.ais_table(summary, ais).caption
    assert "40 test images drawn at random (subset seed 7), T = 300, L = 3, 1 chain(s)" in caption
    assert "BDMC width up to 0.30 nats, IS with K = 11, seeds 0, 1, 2" in caption
    assert "40 test images drawn at random (subset seed 7)" in converged_ais.gap_table(summary, ais).caption


def test_first_images_are_said_to_be_the_first(tmp_path):
    ais = converged_ais.ais_frame({"20 epochs": fixture_grid(tmp_path, {"vae": [-97.0]}, subset_seed=None)})
    summary = converged_ais.ais_summary(ais, {"20 epochs": {}})
    assert "the first 40 test images" in converged_ais.ais_table(summary, ais).caption
    assert "drawn at random" not in converged_ais.gap_table(summary, ais).caption


def test_gaps_resting_on_an_uncertified_ais_are_not_measurable(tmp_path):
    certified = converged_ais.ais_frame({"c": fixture_grid(tmp_path / "a", {"vae": [-97.0, -97.2]})})
    broken = converged_ais.ais_frame({"c": fixture_grid(tmp_path / "b", {"vae": [-97.0, -97.2]}, width=3.0)})
    for ais, measurable in ((certified, True), (broken, False)):
        summary = converged_ais.ais_summary(ais, {"c": {}})
        row = converged_ais.ais_table(summary, ais).data.iloc[0]
        gaps = converged_ais.gap_table(summary, ais).data.iloc[0]
        assert (row["AIS [nats]"] == "-97.10 ± 0.14") == measurable  # an uncertified AIS is no value of log p(x)
        assert row["BDMC width [nats]"] == ("0.30" if measurable else "3.00")  # the reason, beside it
        for cell in (row["AIS [nats]"], row["estimator gap [nats]"], gaps["approximation gap by AIS [nats]"],
                     gaps["IS from q* − AIS [nats]"]):
            assert (cell == "not measurable †") != measurable
        for caption in (converged_ais.ais_table(summary, ais).caption, converged_ais.gap_table(summary, ais).caption):
            reason = "† not measurable, c, MNIST: AIS not certified: the BDMC sandwich is 3.00 nats wide, over 0.5."
            assert caption.endswith(reason) != measurable and caption.count("not certified") == (not measurable)
        assert measurable == (row["estimator gap [nats]"] == "0.50 ± 0.00")


def test_the_approximation_gap_of_a_richer_proposal_is_not_measurable(tmp_path):
    ais = converged_ais.ais_frame({"c": fixture_grid(tmp_path, {"vae": [-97.0, -97.2], "iaf": [-96.0, -96.1]})})
    summary = converged_ais.ais_summary(ais, {"c": {}})
    table = converged_ais.gap_table(summary, ais)
    gaps = table.data["approximation gap by AIS [nats]"]
    assert gaps[("c", "MNIST", "iaf")] == "not measurable ‡" and gaps[("c", "MNIST", "vae")] == "2.00"
    assert table.caption.endswith("a smaller family than the proposal (inverse autoregressive flow).")


@pytest.mark.parametrize("other, outcome", [("iwae", "holds"), ("savae", "fails"), ("hf", "not resolved"),
                                            ("vae", "tied")])
def test_the_ais_verdict_of_r4_against_a_model(tmp_path, other, outcome):
    grid = fixture_grid(tmp_path)
    lines = converged_ais.ais_verdicts(converged_ais.ais_frame({"converged": grid}), {"converged": grid},
                                   {"converged": {}}).splitlines()
    line = next(x for x in lines if f"GP-RF (R4) − {other}, by AIS" in x)
    assert line.endswith(f": {outcome}.")


def test_an_ais_verdict_on_uncertified_seeds_is_not_measurable(tmp_path):
    grid = fixture_grid(tmp_path, width=2.0)
    text = converged_ais.ais_verdicts(converged_ais.ais_frame({"converged": grid}), {"converged": grid}, {"converged": {}})
    assert "− iwae, by AIS: not measurable (3 of 3 matched seeds without a certified AIS): not resolved." in text
    assert "nats (n = 3)" not in text


def test_a_difference_with_a_run_that_lost_ground_says_so(tmp_path):
    runs = {run: {"model": run} for run in AIS_VALUES} | {"savae": {"model": "savae", "warm_start": "vae"}}
    grid = fixture_grid(tmp_path, runs=runs)
    for seed in range(3):  # SA-VAE ended 3 nats below the VAE it started from, by validation ELBO
        path = grid.layout.record_path("mnist", "savae", seed)
        path.write_text(json.dumps(json.loads(path.read_text()) | {"valid_elbo": -98.0}))
        path = grid.layout.record_path("mnist", "vae", seed)
        path.write_text(json.dumps(json.loads(path.read_text()) | {"valid_elbo": -95.0}))
    text = converged_ais.ais_verdicts(converged_ais.ais_frame({"converged": grid}), {"converged": grid},
                                  {"converged": {"savae": "SA-VAE", "vae": "VAE"}})
    line = next(x for x in text.splitlines() if "− SA-VAE, by AIS" in x)
    assert "SA-VAE lost ground against the VAE it started from on seeds 0, 1, 2 (best validation ELBO -95.0 → -98.0" in line
    assert "measures that training, not the method" in line and "lost ground" not in next(x for x in text.splitlines() if "− iwae" in x)


@pytest.mark.parametrize("other, outcome", [("iwae", "holds"), ("savae", "fails"), ("hf", "not resolved")])
def test_comparisons_state_each_difference_and_its_verdict(tmp_path, other, outcome):
    grid = fixture_grid(tmp_path)
    ais = converged_ais.ais_frame({"converged": grid})
    runs = report.frame(report.load_records(grid.layout.results_dir))
    text = converged.comparisons("gp", [other], runs, ais, {}, "R4")
    assert f"- R4 − {other}, test log p̂ (IS): " in text and f"- R4 − {other}, AIS: " in text
    assert all(line.endswith(f": {outcome}.") for line in text.splitlines())


def test_comparisons_by_an_uncertified_ais_are_not_measurable(tmp_path):
    grid = fixture_grid(tmp_path, width=0.9)
    ais = converged_ais.ais_frame({"converged": grid})
    runs = report.frame(report.load_records(grid.layout.results_dir))
    lines = converged.comparisons("gp", ["iwae"], runs, ais, {}, "R4").splitlines()
    assert lines[0].endswith("holds.")  # IS needs no certificate
    assert lines[2] == "- R4 − iwae, AIS: not measurable (3 of 3 matched seeds without a certified AIS): not resolved."


def test_the_amortization_gap_of_a_richer_proposal_is_not_measurable():
    records = [dict(record("mnist", run, 0, -90.0, amortization=2.5), model=model, epochs_done=10, best_epoch=8,
                    train_seconds=3600.0) for run, model in (("savae", "savae"), ("iaf", "iaf"))]
    text = converged.training_lines(records, ["savae", "iaf"], [0], [0, 1], {})
    assert "- savae, seed 0: amortization gap 2.50 nats (gap subset, the first 100 test images)" in text
    assert "- iaf, seed 0: amortization gap not measurable (q* is sought among diagonal Gaussians" in text
    assert text.endswith("- Seeds: 0 of the grid's 0, 1.")


def test_the_budget_quantities_pair_seeds_within_each_budget():
    frame = report.frame([record("mnist", "vae", s, -93.0, amortization=4.0) for s in (0, 1)]
                         + [record("mnist", "gp", s, -92.5 - 0.1 * s, amortization=3.0) for s in (0, 1)])
    quantities = converged.budget_quantities({"20 epochs": (frame, "vae_extra"), "converged": (frame.iloc[:0], "vae_continued")})
    assert list(quantities["R4 − VAE [nats]"]["20 epochs"]) == pytest.approx([0.5, 0.4])
    assert list(quantities["share of it R4 closes"]["20 epochs"]) == pytest.approx([0.25, 0.25])
    table = converged.budget_table(quantities).data
    assert table.loc["R4 − VAE [nats]", "20 epochs"] == "0.45 ± 0.07 (2)" and table.loc["R4 − VAE [nats]", "converged"] == "-"


def test_the_curves_are_one_panel_per_model_with_no_figure_legend_over_the_data():
    history = [{"epoch": e, "valid_elbo": -100.0 + e} for e in range(1, 6)]
    records = [dict(record("mnist", run, s, -90.0), history=history, best_epoch=5) for run in ("vae", "gp") for s in (0, 1)]
    fig = converged.curves_figure(records, [dict(record("mnist", "vae", 0, -95.0), history=history)], {})
    drawn = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in drawn] == ["vae", "gp"]
    assert all(ax.get_xlabel() == "epoch (log scale)" and ax.get_xscale() == "log" for ax in drawn)  # one x-axis
    assert all(ax.get_legend() is None for ax in drawn) and len(fig.legends) == 1  # one legend, under the panels
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "seed 0", "seed 1", "20-epoch grid's VAE (to its last epoch)"]
    styles = {ax.get_title(): [line.get_linestyle() for line in ax.lines if len(line.get_xdata()) > 2] for ax in drawn}
    assert styles["gp"] == ["-", "--"] and styles["vae"][:2] == ["-", "--"]  # a seed's style is the same in every panel


def test_the_bdmc_legend_is_below_the_axes():
    bdmc = pd.DataFrame({"profile": ["c"] * 2, "dataset": ["mnist"] * 2, "leapfrog": [5] * 2, "decoder_passes": [10, 40],
                         "width": [2.0, 0.4], "seed": [0, 0]})
    fig = converged_ais.bdmc_figure(bdmc)
    assert fig.axes[0].get_legend() is None and len(fig.legends) == 1
    assert fig.axes[0].get_ylabel() == "BDMC sandwich width [nats]" and fig.axes[0].get_yscale() == "log"
    below_zero = converged_ais.bdmc_figure(bdmc.assign(width=[130.0, -0.02]))  # Monte Carlo error below zero
    assert below_zero.axes[0].get_yscale() == "symlog"  # still a log scale away from zero, not linear


def test_progress_names_parked_and_missing_runs(tmp_path):
    layout = Layout(tmp_path / "runs", tmp_path / "results")
    write(layout.parked_checkpoint("mnist", "iwae", 1), {})
    grid = SimpleNamespace(layout=layout, budget="B", cells=lambda: [("mnist", r, s) for r in ("vae", "iwae") for s in (0, 1)])
    text = converged.progress(grid, [dict(record("mnist", "vae", 0, -90.0), wall_seconds=7200.0)], {"iwae": "IWAE"})
    assert text == ("B\n\n1 of the grid's 4 runs × seeds have a record (2.0 job-hours of wall time); under way "
                    "(checkpoint committed): IWAE (seed 1); not started: vae (seed 1); IWAE (seed 0).")
    write(layout.parked_checkpoint("mnist", "iwae", 0), {})
    assert "under way (checkpoint committed): IWAE (seeds 0, 1); not started: vae (seed 1)." in converged.progress(
        grid, [record("mnist", "vae", 0, -90.0)], {"iwae": "IWAE"})


def test_the_budget_table_says_which_runs_lost_ground():
    quantities = {"R5 − its control [nats]": {"converged": pd.Series([0.5, 0.6])}}
    lost = converged.lost_text([{"run": "gp_refit", "seed": 0, "source": "vae", "source_valid_elbo": -92.4,
                                 "valid_elbo": -95.7, "restart": None}], {"gp_refit": "R5", "vae": "VAE"})
    caption = converged.budget_table(quantities, lost).caption
    assert "At convergence R5 lost ground against the VAE it started from on seed 0" in caption
    assert "lost ground" not in converged.budget_table(quantities).caption


def control_record(seed, own, widened, defensive, eval_k=1000, n_test=10000):
    return {"dataset": "mnist", "run": "vae", "seed": seed, "eval_k": eval_k, "n_test": n_test, "subset_seed": None,
            "test_ll": {"own": own, "widened": widened, "defensive": defensive},
            "chosen": {"scale": 1.5, "prior_weight": 0.01}}


def runs_frame(gains, eval_k=1000):
    records = [dict(record("mnist", run, seed, -90.0 + (gain if run == "gp" else 0.0)), eval_k=eval_k, n_test=10000,
                    subset_seed=None) for seed, gain in enumerate(gains) for run in ("gp", "vae")]
    return report.frame(records)


@pytest.mark.parametrize("gains, widened, outcome", [([0.10, 0.11, 0.12], 0.02, "holds"),  # beyond the control
                                                     ([0.10, 0.11, 0.12], 0.20, "fails"),  # a wider Gaussian does better
                                                     ([0.10, 0.11, 0.12], 0.11, "not resolved")])
def test_r4_s_is_gain_is_read_against_the_wider_proposal_control(tmp_path, gains, widened, outcome):
    for seed in range(3):
        write(tmp_path / "mnist" / "proposal_control" / f"vae_seed{seed}.json",
              control_record(seed, -90.0, -90.0 + widened, -90.0 + 0.01 * seed))
    controls = report.load_proposal_controls(tmp_path)
    assert list(controls["widened"] - controls["own"]) == pytest.approx([widened] * 3)
    labels = {"gp": "GP-RF (R4)", "vae": "VAE"}
    text = converged.proposal_control_lines(controls, runs_frame(gains), labels, declared=3)
    assert ("- MNIST, seed 1 (K = 1000, 10,000 test images): GP-RF (R4) − VAE +0.110; the VAE's Gaussian with its "
            "variance × 1.5") in text
    assert text.splitlines()[-2].startswith("- MNIST: GP-RF (R4)'s gain beyond the widened Gaussian's ")
    assert text.splitlines()[-2].endswith(f"(n = 3): {outcome}.")
    two = converged.proposal_control_lines(controls[controls.seed < 2], runs_frame(gains), labels, declared=3)
    assert two.splitlines()[-2].endswith("(n = 2 of 3 declared seeds): not resolved.")  # waits for the third seed


def test_a_seed_whose_control_used_another_k_is_left_out_not_compared(tmp_path):
    write(tmp_path / "mnist" / "proposal_control" / "vae_seed0.json", control_record(0, -90.0, -89.9, -90.0, eval_k=5000))
    text = converged.proposal_control_lines(report.load_proposal_controls(tmp_path), runs_frame([0.1]), {})
    assert text.startswith("- MNIST, seed 0: left out, its records measure other images or another K") and "beyond" not in text
    assert "No proposal_control record yet" in converged.proposal_control_lines(report.load_proposal_controls(tmp_path / "none"), runs_frame([0.1]), {})


def test_the_restart_sentence_gives_each_warm_start_s_first_epoch_fall_and_rates():
    restarts = [{"dataset": "mnist", "run": "gp_refit", "seed": s, "source": "vae", "source_valid_elbo": -92.5,
                 "source_final_lr": 1e-5, "lr": 1e-3, "first_valid_elbo": -95.5 - s, "drop": 3.0 + s} for s in (0, 1)]
    restarts.append({"dataset": "mnist", "run": "savae", "seed": 0, "source": "vae", "source_valid_elbo": -92.5,
                     "source_final_lr": None, "lr": 1e-3, "first_valid_elbo": -93.4, "drop": 0.9})
    text = converged.restart_text(restarts, {"gp_refit": "R5", "savae": "SA-VAE"})
    assert "R5 +3.50 nats (2 seeds; lr 1e-3 against the source's final 1e-5)" in text
    assert "SA-VAE +0.90 nats (1 seed; lr 1e-3 against the source's final rate, which its record lacks)" in text
    restarts[0]["source_final_lr"] = None
    assert "R5 +3.50 nats (2 seeds; lr 1e-3 against the source's final 1e-5 (recorded for 1 of them))" in \
        converged.restart_text(restarts, {"gp_refit": "R5"})
    assert converged.restart_text(restarts, {}, dataset="omniglot") == ""


def test_a_run_that_lost_ground_after_a_faster_restart_says_so():
    restart = {"lr": 1e-3, "source_final_lr": 1e-5, "drop": 3.4}
    lost = [{"dataset": "mnist", "run": "gp_refit", "seed": s, "source": "vae", "source_valid_elbo": -92.4,
             "valid_elbo": -95.7, "restart": restart if s else None} for s in (0, 1)]
    text = converged.lost_text(lost, {"gp_refit": "R5", "vae": "VAE"})
    assert text == ("R5 lost ground against the VAE it started from on seeds 0, 1 (best validation ELBO -92.4 → -95.7 "
                    "nats; 1 of 2 seeds restarted at lr 1e-3 against the source's final 1e-5 and fell 3.4 nats of "
                    "validation ELBO in the first epoch)")


def test_the_ais_and_is_orderings_count_models_not_controls(tmp_path):
    grid = fixture_grid(tmp_path, {"vae": [-97.0, -97.2], "iwae": [-96.0, -96.1], "hf": [-96.5, -96.4],
                                   "vae_extra": [-96.9, -97.1]})
    grid.controls = lambda: {"vae_extra": ["hf"]}
    ais = converged_ais.ais_frame({"converged": grid})
    lines = converged_ais.ais_orderings(converged_ais.ais_summary(ais, {"converged": {}}))
    assert "(3 models)" in lines and "vae_extra" not in lines


def test_the_error_fit_line_counts_the_batches_whose_q_star_converged():
    fit = {"svi": {"images": 2000, "max_steps": 5000, "batches": [{"converged": True}, {"converged": False}]}}
    records = [dict(record("mnist", "gp_heldout", s, -90.0), fits=[fit]) for s in (0, 1)]
    line = converged.error_fit_line(records, "gp_heldout", {"gp_heldout": "R4 held out"})
    assert line == ("- R4 held out: q* of the observed errors met its SVI criterion in 2 of 4 batches (50%) over 2 "
                    "seed(s), 2,000 images per fit, at most 5000 steps.")
    explained = {"mean": {"explained_on_fit_subset": 0.1}, "log_variance": {"explained_on_fit_subset": 0.2}}
    records = [dict(r, fits=[dict(fit, error_model=explained)]) for r in records]
    assert converged.error_fit_line(records, "gp_heldout", {}).endswith(
        "; the GP explains 10% of the mean errors' variance and 20% of the log-variance errors' variance on its fit "
        "subset.")
    assert converged.error_fit_line(records, "gp", {}) == ""
