"""Summaries of the workflow's records for the book (gpvae.report)."""
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from gpvae import report, verdicts
from gpvae.runs.grid import Grid

REPO = Path(__file__).resolve().parents[1]


def record(dataset, run, seed, test_ll, amortization=1.0):
    return {"dataset": dataset, "run": run, "seed": seed, "model": run, "test_ll": test_ll, "test_elbo": test_ll - 5,
            "wall_seconds": 60.0, "gaps": {"approximation_gap": 2.0, "amortization_gap": amortization, "n": 100},
            "git_commit": "abc", "device": "cpu"}


RECORDS = [record("mnist", "vae", 0, -93.0), record("mnist", "vae", 1, -93.2), record("mnist", "vae", 2, -93.1),
           record("mnist", "gp", 0, -92.5), record("mnist", "gp", 1, -92.9), record("omniglot", "vae", 0, -136.0)]


def test_summary_is_mean_sample_sd_and_count_per_dataset_and_run():
    stats = report.summarize(report.frame(RECORDS), "test_ll")
    vae = stats.loc[("mnist", "vae")]
    assert vae["mean"] == pytest.approx(-93.1) and vae["sd"] == pytest.approx(0.1) and vae["n"] == 3
    assert math.isnan(stats.loc[("omniglot", "vae")]["sd"])  # one seed: no spread, not zero


def test_paired_differences_use_only_seeds_both_runs_have():
    diff = report.paired_differences(report.frame(RECORDS), "gp").loc[("mnist", "vae")]
    # seeds 0 and 1 only: (-92.5 + 93.0, -92.9 + 93.2) = (0.5, 0.3)
    assert diff["n"] == 2 and diff["mean"] == pytest.approx(0.4) and diff["sd"] == pytest.approx(math.sqrt(0.02))
    assert ("omniglot", "vae") not in report.paired_differences(report.frame(RECORDS), "gp").index


def test_two_rows_for_one_seed_are_refused_not_averaged():
    with pytest.raises(ValueError, match=r"more than one row.*'mnist', 0, 'vae'"):
        report.paired_differences(report.frame(RECORDS + [record("mnist", "vae", 0, -80.0)]), "gp")


@pytest.mark.parametrize("change", [{"subset_seed": 7}, {"n_test": 500}, {"eval_k": 5000}])
def test_test_values_measured_on_other_images_or_with_another_k_are_not_paired(change):
    measured = [{**r, "eval_k": 1000, "n_test": 2000, "subset_seed": None} for r in RECORDS]
    assert report.paired_differences(report.frame(measured), "gp").loc[("mnist", "vae"), "n"] == 2
    measured[1] = {**measured[1], **change}  # vae of seed 1 on other images, or with another K
    with pytest.raises(ValueError, match=r"mnist seed 1: gp and vae were measured under another protocol"):
        report.paired_differences(report.frame(measured), "gp")
    assert report.paired_differences(report.frame(measured), "gp", value="approximation_gap").loc[
        ("mnist", "vae"), "n"] == 2  # the gap subset is another measurement's


def test_an_ais_difference_without_a_certificate_is_not_resolved_whatever_its_size():
    # seed 0 certified on mnist, seed 1 not; on fashion no seed certified: a 20-nat lead stays unresolved
    rows = [("mnist", 0, "gp", -90.0, True), ("mnist", 0, "vae", -91.0, True),
            ("mnist", 1, "gp", -90.1, False), ("mnist", 1, "vae", -91.2, False),
            ("mnist", 2, "gp", -90.2, True), ("mnist", 2, "vae", -91.1, True),
            ("fashion", 0, "gp", -1860.0, False), ("fashion", 0, "vae", -1880.0, False),
            ("fashion", 1, "gp", -1861.0, False), ("fashion", 1, "vae", -1881.0, False)]
    ais = pd.DataFrame(rows, columns=["dataset", "seed", "run", "ais", "certified"])
    diff = report.paired_differences(ais, "gp", value="ais")
    assert diff.loc[("mnist", "vae"), "uncertified"] == 1 and diff.loc[("fashion", "vae"), "uncertified"] == 2
    assert verdicts.paired(diff.loc[("fashion", "vae")]) == verdicts.NOT_RESOLVED
    assert verdicts.paired(diff.loc[("mnist", "vae")]) == verdicts.NOT_RESOLVED
    certified = report.paired_differences(ais[ais.certified], "gp", value="ais").loc[("mnist", "vae")]
    assert certified["uncertified"] == 0 and verdicts.paired(certified) == verdicts.HOLDS
    decided = verdicts.likelihood(diff.xs("fashion", level="dataset"))
    assert decided.outcome == verdicts.NOT_RESOLVED and "no BDMC certificate" in decided.measured
    assert "uncertified" not in report.paired_differences(report.frame(RECORDS), "gp")  # IS rows carry none
    # nor does a value of the AIS rows that does not rest on AIS: IS from q* beside it decides as usual
    ais["is_from_optimum"] = ais["ais"] - 0.5
    beside = report.paired_differences(ais, "gp", value="is_from_optimum")
    assert "uncertified" not in beside and verdicts.paired(beside.loc[("fashion", "vae")]) != verdicts.NOT_RESOLVED


def test_missing_cells_are_the_grid_minus_the_records():
    grid = Grid.of("cpu")
    absent = report.missing(grid, RECORDS)
    assert ("mnist", "vae", 0) not in absent and ("mnist", "iwae", 0) in absent
    assert len(absent) == len(grid.cells()) - len(RECORDS)


def test_mean_sd_text():
    assert report.mean_sd(-93.1234, 0.0567) == "-93.12 ± 0.06"
    assert report.mean_sd(-93.1234, math.nan) == "-93.12"
    assert report.mean_sd(math.nan, math.nan) == "–"


@pytest.mark.parametrize("mean, sd, n, expected", [
    (0.5, 0.2, 3, "holds"), (0.5, 0.3, 3, "not resolved"), (-0.7, 0.3, 2, "fails"), (2.0, math.nan, 1, "not resolved"),
])
def test_verdict_needs_two_seeds_and_twice_the_sd(mean, sd, n, expected):
    assert verdicts.paired(pd.Series({"mean": mean, "sd": sd, "n": n})) == expected


def test_models_only_leaves_out_the_controls():
    grid = Grid.of("cpu")
    runs = report.frame(RECORDS + [record("mnist", "vae_extra", 0, -92.0)])
    kept = report.models_only(report.summarize(runs, "test_ll"), grid)
    assert ("mnist", "vae_extra") not in kept.index and ("mnist", "gp") in kept.index
    by_run = report.summarize(runs, "test_ll").droplevel("dataset")  # a plain index of runs
    assert "vae_extra" not in report.models_only(by_run, grid).index


def test_a_warm_start_that_ends_below_its_source_lost_ground():
    grid = Grid.of("cpu")
    records = [dict(record("fashion_mnist", "vae", 0, -1930.0), valid_elbo=-1967.6),
               dict(record("fashion_mnist", "savae", 0, -2731.0), valid_elbo=-2729.9),  # SA-VAE broke it
               dict(record("fashion_mnist", "vae_extra", 0, -1909.0), valid_elbo=-1967.0),  # gained
               dict(record("fashion_mnist", "vlae", 0, -1931.0), valid_elbo=-1968.2),  # within the margin
               dict(record("fashion_mnist", "gp", 0, -1908.0), valid_elbo=None),  # a post-hoc fit: no epochs
               dict(record("mnist", "savae", 0, -96.0), valid_elbo=-100.0)]  # no source record
    lost = report.lost_ground(records, grid)
    assert [(x["run"], x["source"], x["valid_elbo"]) for x in lost] == [("savae", "vae", -2729.9)]


def test_a_restart_is_read_from_both_histories():
    """The first epoch's fall from the source's best validation ELBO, with both learning rates; a run's rate
    missing from its history comes from its options, a source's stays unknown; no history, no row."""
    grid = Grid.of("converged")
    source = dict(record("mnist", "vae", 0, -88.0), valid_elbo=-92.5,
                  history=[{"valid_elbo": -100.0, "lr": 1e-3}, {"valid_elbo": -92.5, "lr": 1e-5}])
    restarted = dict(record("mnist", "gp_refit", 0, -89.0), valid_elbo=-95.7, options={"lr": 1e-3},
                     history=[{"valid_elbo": -95.8}, {"valid_elbo": -95.7}])
    gentle = dict(record("mnist", "vae_extra_source_lr", 0, -88.0), valid_elbo=-92.4,
                  history=[{"valid_elbo": -92.45, "lr": 1e-5}])
    unknown = dict(record("mnist", "vae", 1, -88.0), valid_elbo=-92.5, history=[{"valid_elbo": -92.5}])
    bare = dict(record("mnist", "savae", 1, -88.0), valid_elbo=-91.0, history=[{"valid_elbo": -91.5, "lr": 1e-3}])
    rows = {x["run"]: x for x in report.restarts([source, restarted, gentle, unknown, bare,
                                                  dict(record("mnist", "gp", 0, -88.0), history=[])], grid)}
    assert rows["gp_refit"]["drop"] == pytest.approx(3.3) and rows["gp_refit"]["lr"] == 1e-3
    assert rows["gp_refit"]["source_final_lr"] == 1e-5 and rows["vae_extra_source_lr"]["drop"] == pytest.approx(-0.05)
    assert rows["savae"]["source_final_lr"] is None and set(rows) == {"gp_refit", "vae_extra_source_lr", "savae"}
    lost = report.lost_ground([source, restarted, gentle], grid)
    assert [(x["run"], x["restart"]["drop"]) for x in lost] == [("gp_refit", pytest.approx(3.3))]


def test_k_curves_are_one_row_per_run_and_k_and_pair_like_records(tmp_path):
    def check(dataset, seed, lls):
        return {"dataset": dataset, "seed": seed, "runs": {
            run: {"decoder_sha256": "d" + str(seed), "n_test": 40,
                  "curve": [{"eval_k": k, "test_ll": ll} for k, ll in zip((10, 100), values)]}
            for run, values in lls.items()}}
    for seed, lls in ((0, {"vae": (-95.0, -94.0), "gp": (-94.0, -93.8)}), (1, {"vae": (-95.2, -94.2), "gp": (-94.4, -94.0)})):
        path = tmp_path / "mnist" / "k_curve" / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(check("mnist", seed, lls)))
    (tmp_path / "mnist" / "vae_seed0.json").write_text(json.dumps(record("mnist", "vae", 0, -93.0)))  # not a curve
    curves = report.load_k_curves(tmp_path)
    assert len(curves) == 8 and list(curves.columns) == report.K_CURVE_COLUMNS
    at_100 = report.paired_differences(curves[curves.eval_k == 100], "gp").loc[("mnist", "vae")]
    assert at_100["mean"] == pytest.approx(0.2) and at_100["n"] == 2  # (0.2, 0.2)
    other = curves.assign(n_test=curves.n_test.where((curves.run != "gp") | (curves.seed != 1), 20))
    with pytest.raises(ValueError, match="mnist seed 1: gp and vae were measured under another protocol"):
        report.paired_differences(other[other.eval_k == 100], "gp")  # a curve of other images is not paired
    assert report.load_k_curves(tmp_path / "nothing").empty


def test_difficulty_rows_per_score_with_the_partial_rho_for_the_run_s_own_scores(tmp_path):
    check = {"dataset": "omniglot", "seed": 1, "runs": {"gp": {
        "n": 100, "spearman_with_gap": {"mean_function_variance": 0.5, "negative_elbo": 0.3},
        "partial_spearman_given_negative_elbo": {"mean_function_variance": 0.4}}}}
    path = tmp_path / "omniglot" / "difficulty" / "seed1.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(check))
    rows = report.load_difficulty(tmp_path).set_index("score")
    assert rows.loc["mean_function_variance", "partial_spearman"] == 0.4 and math.isnan(rows.loc["negative_elbo", "partial_spearman"])
    assert rows.loc["negative_elbo", "spearman"] == 0.3 and set(rows["n"]) == {100}


def test_spread_is_a_verdict_row():
    row = verdicts.spread(pd.Series([0.5, 0.7, math.nan, 0.6]))
    assert row["n"] == 3 and row["mean"] == pytest.approx(0.6) and row["sd"] == pytest.approx(0.1)
    assert verdicts.paired(row) == "holds" and math.isnan(verdicts.spread(pd.Series([0.2]))["sd"])


def test_the_seed_spread_of_a_readings_cell_is_the_verdict_row_in_plain_numbers():
    cell = report.spread({2: -93.0, 0: -93.2, 1: -93.1})
    assert cell["seeds"] == [0, 1, 2] and cell["values"] == [-93.2, -93.1, -93.0] and type(cell["sd"]) is float
    assert cell["sd"] == pytest.approx(verdicts.spread([-93.2, -93.1, -93.0])["sd"]) and cell["mean"] == pytest.approx(-93.1)
    assert report.spread({0: 1.0})["sd"] is None and report.per_seed(cell) == {0: -93.2, 1: -93.1, 2: -93.0}
    assert report.cell_text(cell) == "-93.10 ± 0.10" and report.cell_text(None) == "–" and report.per_seed(None) == {}


def test_readings_table_takes_runs_without_a_gap_decomposition(tmp_path):
    # a converted run by hand has no gaps: no amortization gap or share closed for it, the rest as usual
    (tmp_path / "mnist").mkdir()
    for run, seed, gaps in [("vae", 0, {"amortization_gap": 4.0}), ("vae", 1, {"amortization_gap": 5.0}),
                            ("gp", 0, {"amortization_gap": 3.0}), ("gp", 1, None), ("hf", 0, None),
                            ("gp_joint", 0, {"amortization_gap": 1.0})]:
        record = {"dataset": "mnist", "run": run, "seed": seed, "test_ll": -90.0 - seed, "test_elbo": -95.0,
                  "model": run.split("_")[0], "epochs_done": 20 if run == "gp_joint" else 0 if run == "gp" else 10}
        (tmp_path / "mnist" / f"{run}_seed{seed}.json").write_text(json.dumps(record | ({"gaps": gaps} if gaps else {})))
    table = report.readings_table(tmp_path, "mnist")
    assert table["gp"]["amortization_gap"]["seeds"] == [0] and table["gp"]["fraction_closed"]["values"] == [0.25]
    assert table["vae"]["fraction_closed"]["seeds"] == [0, 1] and "amortization_gap" not in table["hf"]
    assert table["hf"]["test_ll"]["mean"] == -90.0 and "fraction_closed" not in table["hf"]
    # GP-RF trained with its own decoder: its gap is not measurable (q* in a smaller family), nor a share of another's
    assert "fraction_closed" not in table["gp_joint"] and table["gp_joint"]["amortization_gap"]["mean"] == 1.0


def test_missing_measurements_are_the_grid_s_cells_without_a_record():
    grid = Grid.of("cpu")
    rows = pd.DataFrame({"dataset": ["mnist", "mnist", "omniglot", "omniglot", "omniglot", "fashion_mnist"],
                         "seed": [0, 0, 0, 1, 2, 2]})
    assert report.missing_measurements(grid, "k_curve", rows) == "mnist seeds 1, 2; fashion_mnist seeds 0, 1"
    assert report.missing_measurements(grid, "difficulty", rows.iloc[:0]).startswith("mnist seeds 0, 1, 2; omniglot")


def test_missing_per_run_measurements_are_counted_run_by_run():
    grid = Grid.of("cpu")
    rows = pd.DataFrame({"dataset": ["mnist", "mnist"], "run": ["vae", "gp"], "seed": [0, 0]})
    # 10 AIS runs x 3 seeds on MNIST and Omniglot-28, 9 on Fashion-MNIST (no VLAE): one run of a seed is not the seed
    assert report.missing_measurements(grid, "ais", rows) == ("mnist 28 of 30 runs × seeds; omniglot 30 of 30 runs × "
                                                              "seeds; fashion_mnist 27 of 27 runs × seeds")
    everything = pd.DataFrame(grid.run_measurement_cells("ais"), columns=["dataset", "run", "seed"])
    assert report.missing_measurements(grid, "ais", everything) == ""


def test_the_approximation_gap_by_ais_comes_from_the_gap_subset_or_from_a_gap_subset_that_is_the_ais_subset_of_the_same_model(tmp_path):
    (tmp_path / "mnist" / "ais").mkdir(parents=True)

    def ais_record(run, **extra):
        return {"dataset": "mnist", "run": run, "model": run, "seed": 0, "mean": -97.0, "n": 500, "subset_seed": 2026,
                "is": {"mean": -97.5, "eval_k": 1000, "seconds": 5.0}, "estimator_gap": 0.5, "seconds": 50.0,
                "settings": {"steps": 4000, "leapfrog": 2, "chains": 1}, "decoder_sha256": "d",
                "certificate": {"certified": True, "width": 0.4}, **extra}

    block = {"n": 100, "mean": -96.0, "elbo_opt": -100.0, "is_from_optimum": -96.4,
             "approximation_gap": {"mean": 4.0, "per_example": [4.0] * 100}}
    gaps = {"vae": {"subset_seed": None, "n": 100, "elbo_opt": -99.0},  # the first images: not the AIS subset
            "gp": {"subset_seed": 2026, "n": 500, "eval_k": 1000, "log_px": -97.5, "elbo_opt": -99.0,
                   "log_px_from_optimum": -97.2},  # the AIS subset, and the AIS record's IS there
            # the AIS subset, but the run retrained since (another IS value) or measured with another K
            "savae": {"subset_seed": 2026, "n": 500, "eval_k": 1000, "log_px": -97.9, "elbo_opt": -99.0},
            "vlae": {"subset_seed": 2026, "n": 500, "eval_k": 5000, "log_px": -97.5, "elbo_opt": -99.0},
            "hf": {"subset_seed": None, "n": 100, "elbo_opt": -100.0},
            "iaf": {"subset_seed": None, "n": 100, "elbo_opt": -99.5},  # rewritten since its AIS: not that block's
            "rme": {"subset_seed": None, "n": 100, "elbo_opt": -100.0, "log_px": -97.5}}  # its IS is not the block's
    block["subset_seed"] = None
    for run, extra in (("vae", {}), ("gp", {}), ("savae", {}), ("vlae", {}), ("hf", {"gap_subset": block}), ("iaf", {"gap_subset": block}),
                       ("rme", {"gap_subset": {**block, "is": -97.0}})):
        (tmp_path / "mnist" / "ais" / f"{run}_seed0.json").write_text(json.dumps(ais_record(run, **extra)))
        (tmp_path / "mnist" / f"{run}_seed0.json").write_text(json.dumps(
            {"dataset": "mnist", "run": run, "seed": 0, "test_ll": -98.0, "gaps": gaps[run]}))
    table = report.load_ais(tmp_path).set_index("run")
    assert math.isnan(table.loc["vae", "approximation_gap"])  # no image in common is assumed
    assert table.loc["gp", "approximation_gap"] == pytest.approx(2.0) and table.loc["gp", "gap_n"] == 500
    assert table.loc["gp", "is_from_optimum"] == -97.2
    assert table.loc[["savae", "vlae"], ["gap_n", "approximation_gap"]].isna().all().all()
    assert (table.loc["hf", ["gap_n", "gap_ais", "elbo_opt", "approximation_gap"]].tolist()
            == [100, -96.0, -100.0, 4.0])
    assert table.loc["iaf", ["gap_n", "approximation_gap"]].isna().all()
    assert table.loc["rme", ["gap_n", "approximation_gap"]].isna().all()


def test_an_ais_row_states_its_images_and_chains_and_is_certified_by_the_library_rule_not_its_grids(tmp_path):
    """One certificate rule for every page (gpvae.validity.ais_premise): a record whose grid accepted a 3-nat
    sandwich (a smoke grid's max_width) is not certified on the pages; the seeded draw of its images and its
    chains are columns beside the value."""
    (tmp_path / "mnist" / "ais").mkdir(parents=True)
    for run, width in (("vae", 0.45), ("gp", 3.0)):
        (tmp_path / "mnist" / "ais" / f"{run}_seed0.json").write_text(json.dumps(
            {"dataset": "mnist", "run": run, "model": run, "seed": 0, "mean": -97.0, "n": 500, "subset_seed": 2026,
             "is": {"mean": -97.5, "eval_k": 1000, "seconds": 5.0}, "estimator_gap": 0.5, "seconds": 50.0,
             "settings": {"steps": 4000, "leapfrog": 2, "chains": 3}, "decoder_sha256": "d",
             "certificate": {"certified": True, "width": width, "max_width": 1000.0}}))
    table = report.load_ais(tmp_path).set_index("run")
    assert table.loc["vae", "certified"] and not table.loc["gp", "certified"]
    assert table.loc["gp", ["subset_seed", "chains", "n"]].tolist() == [2026, 3, 500]


def test_a_control_is_labelled_by_the_extra_epochs_and_the_runs_of_its_own_grid():
    from gpvae.plotting import MODEL_LABELS, run_labels

    cpu, converged = (run_labels(Grid.of(name)) for name in ("cpu", "converged"))
    assert cpu["vae_extra"] == "VAE +2 epochs (control of SA-VAE, VLAE)"
    assert converged["vae_extra"] == "VAE +20 epochs (control of GP-RF (R5, decoder refit))"
    assert converged["vae_continued"] == MODEL_LABELS["vae_continued"] and cpu["gp"] == MODEL_LABELS["gp"]


def test_ais_costs_are_one_sentence_per_dataset_with_setting_ratio_and_protocol(tmp_path):
    cost = {"dataset": "fashion_mnist", "model": "vae", "settings": {"steps": 1000, "leapfrog": 5}, "eval_k": 500,
            "ais_seconds_per_image": 0.9627, "is_seconds_per_image": 0.11903, "ratio": 8.088, "images": 100, "repeats": 3,
            "device": "cpu (x86_64, 1 threads)", "load_average": [1.05, 1.01, 1.09]}
    for dataset in ("fashion_mnist", "mnist"):
        (tmp_path / dataset).mkdir()
        (tmp_path / dataset / "ais_cost.json").write_text(json.dumps({**cost, "dataset": dataset}))
    (tmp_path / "omniglot").mkdir()  # a dataset without a cost record has no sentence
    sentences = report.ais_costs(tmp_path, {"fashion_mnist": "Fashion-MNIST"})
    assert len(sentences) == 2 and sentences[0].startswith("AIS cost of record (Fashion-MNIST, vae): T = 1000, L = 5 ")
    assert "0.963 s/image against IS K = 500 0.1190 s/image, 8.1× (100 images, median of 3" in sentences[0]
    assert sentences[1].startswith("AIS cost of record (mnist, vae)")


def test_a_run_folder_s_summary_shows_an_approximation_gap_only_where_ais_is_certified(tmp_path):
    (tmp_path / "evaluation_K100_N20.json").write_text(json.dumps({"test_ll": -95.0, "test_elbo": -99.0, "eval_k": 100,
                                                                   "n_test": 20}))
    (tmp_path / "gaps.json").write_text(json.dumps({"n": 10, "eval_k": 100, "amortization_gap": {"mean": 2.5},
                                                    "approximation_gap": {"mean": -0.7}}))
    setting = {"steps": 1000, "leapfrog": 5}
    ais = {"mean": -94.0, "n": 20, "settings": setting, "estimator_gap": 1.0,
           "gap_subset": {"n": 10, "approximation_gap": {"mean": 1.2}}}
    (tmp_path / "ais.json").write_text(json.dumps(ais))

    def rows():
        table = report.measurement_summary(tmp_path)
        return dict(zip(table["quantity"], table["nats"])), dict(zip(table["quantity"], table["meaning"]))

    values, meanings = rows()  # no certificate: the IS-based −0.7 is never shown, nor AIS − IS
    assert values["approximation gap"] == "not measurable" and "without a BDMC certificate" in meanings["approximation gap"]
    assert values["estimator gap, AIS − IS"] == values["log p(x), AIS from the prior"] == "not measurable"
    assert values["log p̂(x), importance sampling"] == "-95.00" and values["amortization gap"] == "2.50"
    bdmc = {"images": 100, "sandwich": [{"settings": setting, "width": 3.1}]}
    (tmp_path / "bdmc.json").write_text(json.dumps(bdmc))
    values, meanings = rows()  # a sandwich too wide to certify
    assert values["approximation gap"] == "not measurable" and "sandwich is 3.10 nats wide, over 0.5" in meanings["approximation gap"]
    bdmc["sandwich"][0]["width"] = 0.3
    (tmp_path / "bdmc.json").write_text(json.dumps(bdmc))
    values, _ = rows()  # certified: AIS − ELBO(q*) on the gap images
    assert values["approximation gap"] == "1.20" and values["estimator gap, AIS − IS"] == "+1.00"
    assert values["log p(x), AIS from the prior"] != "not measurable"
    (tmp_path / "bdmc.json").write_text(json.dumps({**bdmc, "decoder_sha256": "another decoder"}))
    values, _ = rows()  # a certificate of another decoder certifies nothing
    assert values["approximation gap"] == values["estimator gap, AIS − IS"] == "not measurable"
    (tmp_path / "bdmc.json").write_text(json.dumps(bdmc))
    (tmp_path / "gaps.json").write_text(json.dumps({"n": 12, "eval_k": 100, "amortization_gap": {"mean": 2.5}}))
    values, meanings = rows()  # the folder's gaps were measured again on other images than AIS's
    assert values["approximation gap"] == "not measurable" and "covers 10 images" in meanings["approximation gap"]
    del ais["gap_subset"]
    (tmp_path / "ais.json").write_text(json.dumps(ais))
    values, meanings = rows()
    assert values["approximation gap"] == "not measurable" and "--ais-gap-subset" in meanings["approximation gap"]
