"""The readings chapter's tables, figures and verdicts (gpvae.pages.readings) on small fixture records."""
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

from gpvae import report, validity
from gpvae.pages import readings
from tests.figures import book_theme, overlapping_texts

matplotlib.use("Agg")


def cell(values: dict) -> dict:
    return report.spread(values)


def setting(ratio, closed, model="gp", of_mean=None, test_ll=-88.0, rho=0.7, **options):
    return {"options": {"model": model, **options}, "ratio_to_vae": {"100": ratio, "1": ratio}, "gap_closed": closed,
            "test_ll": test_ll, "spearman": {"mean_function_variance": rho},
            "variance_error": None if of_mean is None else {"per_output": of_mean, "of_mean": of_mean},
            "macs_per_image": 2e5 * ratio, "macs_ratio_to_vae": ratio}


def frontier_record(settings, default=None):
    measured = {"settings": {"vae": setting(1.0, 0.0, model="vae"), **settings}, "n": 37, "subset_seed": 5,
                "gap": 2.5, "eval_k": 13, "repeats": 3, "device": "cpu (x86_64, 2 threads)", "git_commit": "a" * 40,
                "timing": {"100": {"threads": 2, "load_average": [1.0, 1.0, 1.0]}},
                "default": default or {"setting": None, "fastest": "broken", "closes_most": "good", "reason": "r"}}
    return {"dataset": "mnist", "seed": 0, "runs": {"vae": measured}}


FRONTIER = frontier_record({"good": setting(2.0, 0.3, error_inducing=128), "slow": setting(4.0, 0.1),
                            "broken": setting(1.2, -0.1, of_mean=4.0, test_ll=-87.8, rho=-0.3, error_variance_rank=8)})


def test_a_broken_low_rank_setting_is_not_measurable_in_the_frontier_table():
    table = readings.frontier_table(FRONTIER).data
    for column in ("gap closed [%]", "log p̂ (subset) [nats]", "best Spearman ρ with the gap"):
        assert table.loc["rank 8", column] == validity.NOT_MEASURABLE  # the reason is the caption's
    assert "more than 10%): rank 8 (400%)." in readings.frontier_table(FRONTIER).caption
    assert table.loc["M = 128", "gap closed [%]"] == "30.00" and table.loc["M = 128", "best Spearman ρ with the gap"] == "0.70"
    assert table.loc["rank 8", "variance error of the mean [%]"] == "400.00" and table.shape[1] <= 8
    assert list(table.index) == ["the VAE", "M = 128", "R4's defaults", "rank 8"]  # settings in words


def test_the_frontier_caption_states_the_record_s_images_k_and_timing():
    caption = readings.frontier_table(FRONTIER).caption
    assert caption.startswith("MNIST, seed 0: 37 test images drawn at random (subset seed 5), mean amortization gap of the VAE 2.50 nats, K = 13")
    assert "median of 3 interleaved repeats on cpu (x86_64, 2 threads), 2 thread(s)" in caption


def test_a_broken_setting_is_not_drawn_and_the_figure_says_so():
    fig = readings.frontier_figure(FRONTIER)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["1", "2", "3", "1  the VAE\n2  M = 128\n3  R4's defaults"]  # keyed
    assert "not drawn" in ax.get_title() and "rank 8" in ax.get_title() and ax.get_legend() is None


def test_the_fastest_reported_setting_is_a_valid_one():
    text = readings.frontier_decision(FRONTIER, 1.5, 0.2)
    assert "Fastest valid GP setting: M = 128 (2.00× the VAE, closes 30%); closes most: M = 128 (30%)" in text
    assert text.endswith("Not measurable (low-rank predictive outside its tolerance): rank 8.")
    chosen = readings.frontier_decision(frontier_record({"broken": setting(1.2, 0.5, of_mean=4.0, quadrature_nodes=3)},
                                                        {"setting": "broken", "reason": "closes 50%"}), 1.5, 0.2)
    assert "(but 3 nodes is not measurable: the low-rank" in chosen and "Fastest valid" not in chosen


def test_a_setting_that_loses_elbo_but_gains_log_likelihood_is_explained():
    record = frontier_record({"wide": setting(3.0, -0.02, test_ll=-87.9, error_inducing=64),
                              "narrow": setting(3.0, -0.02, test_ll=-88.1, error_inducing=32),
                              "broken": setting(3.0, -0.02, test_ll=-87.9, of_mean=4.0, error_variance_rank=8)})
    record["runs"]["vae"]["settings"]["vae"]["test_ll"] = -88.0
    text = readings.frontier_decision(record, 1.5, 0.2)
    assert "Lower ELBO but higher log p̂ than the VAE: M = 64 (one seed" in text and "a wider proposal" in text
    assert readings.frontier_disagreement(frontier_record({"good": setting(2.0, 0.3, test_ll=-87.0)})) == ""


def test_a_frontier_setting_is_named_by_the_options_it_changes():
    assert readings.setting_label("m128_kmeans_g1_r16_q5", {
        "model": "gp", "error_images": 50000, "error_inducing": 128, "error_inducing_placement": "kmeans",
        "error_kernel_groups": 1, "error_variance_rank": 16, "quadrature_nodes": 5}) == \
        "M = 128, k-means, one kernel, rank 16, 5 nodes"
    assert readings.setting_label("knn10", {"error_model": "knn", "error_neighbours": 10}) == \
        "10 nearest neighbours' errors (control)"
    assert readings.setting_label("sa", {"model": "savae"}) == "SA-VAE's refinement"
    assert readings.setting_label("r4_default", {"model": "gp", "error_images": 50000}) == "R4's defaults"
    alike = {"a": {"options": {"error_images": 100}}, "b": {"options": {"error_images": 200}}, "c": {"options": {}}}
    assert readings.setting_labels(alike) == {"a": "R4's defaults (a)", "b": "R4's defaults (b)", "c": "R4's defaults (c)"}


def rows_for(gain_per_seed, ratio=1.2, rho=None, rho_elbo=None, auroc=None, auroc_elbo=None):
    """Study rows of the VAE and one reading ``r4`` whose log p̂ is the VAE's plus ``gain_per_seed``."""
    vae = {s: -93.0 - 0.1 * s for s in range(len(gain_per_seed))}
    r4 = {"run": "r4", "seeds": list(vae), "test_ll": cell({s: vae[s] + g for s, g in enumerate(gain_per_seed)}),
          "test_elbo": cell(vae), "fraction_closed": cell({s: 0.3 for s in vae}), "infer_ratio_to_vae": ratio}
    for key, values in (("spearman_gp", rho), ("spearman_elbo", rho_elbo), ("auroc_omniglot_gp", auroc),
                        ("auroc_omniglot_elbo", auroc_elbo)):
        if values:
            r4[key] = cell(dict(enumerate(values)))
    return {"vae": {"run": "vae", "seeds": list(vae), "test_ll": cell(vae), "test_elbo": cell(vae)}, "r4": r4}


def verdict_of(rows, claim_number, savae=(40.0, "cpu")):
    decided = readings.claim_verdicts(rows, {}, savae, reading="r4", labels={"r4": "R4", "vae": "VAE"})
    table = readings.claims(decided, reading="R4").data
    row = table[table["claim"].str.startswith(f"{claim_number}.")].iloc[0]
    assert readings.claim_outcomes(decided)[f"claim{claim_number}_verdict"] == row["verdict"]  # the prose's word
    return row


@pytest.mark.parametrize("gains, outcome", [([0.5, 0.6, 0.55], "holds"), ([-0.5, -0.6, -0.55], "fails"),
                                            ([0.5], "not resolved")])
def test_the_likelihood_claim(gains, outcome):
    row = verdict_of(rows_for(gains), 1)
    assert row["verdict"] == outcome and row["measured"].startswith("R4 − VAE by IS: ")  # runs by their labels


@pytest.mark.parametrize("ratio, savae, outcome", [(1.2, (40.0, "cpu"), "holds"), (3.0, (40.0, "cpu"), "fails"),
                                                   (1.2, (None, "no benchmark"), "not resolved")])
def test_the_speed_claim(ratio, savae, outcome):
    assert verdict_of(rows_for([0.5], ratio=ratio), 2, savae)["verdict"] == outcome


@pytest.mark.parametrize("rho, auroc, outcome", [([0.8, 0.82, 0.81], [0.9, 0.91, 0.92], "holds"),
                                                 ([0.3, 0.32, 0.31], [0.9, 0.91, 0.92], "fails"),
                                                 ([0.8], [0.9], "not resolved"),
                                                 (None, None, validity.NOT_MEASURABLE)])
def test_the_difficulty_claim(rho, auroc, outcome):
    rows = rows_for([0.5], rho=rho, rho_elbo=rho and [0.6] * len(rho), auroc=auroc, auroc_elbo=auroc and [0.7] * len(auroc))
    assert verdict_of(rows, 3)["verdict"] == outcome


def test_the_study_caption_states_k_images_subset_and_ood_of_the_records():
    records = {"vae_seed0": {"eval_k": 17, "n_test": 300, "gaps": {"n": 50, "subset_seed": None}},
               "r4_seed0": {"eval_k": 17, "n_test": 300, "gaps": {"n": 50, "subset_seed": None}}}
    ood = {"vae_seed0": {"dataset": "mnist", "n": 60, "subset_seed": 3, "auroc": {"omniglot": {}}},
           "bad_seed0": {"diverged": "nan"}}
    text = readings.study_protocol(records, ood)
    assert text == ("test log p̂ with K = 17 on the first 300 test images; gaps and Spearman on the first 50 test images; "
                    "OOD: 60 test images drawn at random (subset seed 3) of MNIST against as many of each of Omniglot-28")


def test_the_study_tables_have_at_most_eight_columns_and_leave_diverged_runs_out():
    rows = rows_for([0.5, 0.6], rho=[0.8, 0.8], auroc=[0.9, 0.9]) | {"ngd": {"run": "ngd", "seeds": [0], "diverged": "nan"}}
    likelihood = readings.likelihood_table(rows, "c").data
    difficulty = readings.difficulty_table(rows, "c").data
    assert list(likelihood["configuration"]) == ["vae", "r4"] and likelihood.shape[1] <= 8 and difficulty.shape[1] <= 8
    assert difficulty.loc[1, "AUROC Omniglot-28 GP / enc / −ELBO"] == "0.90 ± 0.00 / – / –"
    values = readings.study_values(rows)
    assert values["r4_ll_minus_vae"] == pytest.approx(0.55) and math.isnan(values["vae_fraction_closed"])


def test_diagnostics_are_the_last_recorded_values_and_their_legend_is_below():
    history = [{"epoch": e, "kernel_outputscale": 0.01 / e, "kl_per_example": 1.0, "correction_ratio_valid": 0.1,
                "mean_function_variance_valid": 0.2, "mean_function_variance_train": 0.3,
                "expected_minus_marginal_elbo": -1.0} for e in (1, 2, 4)]
    records = {"r1_paper_seed0": {"history": history}}
    values = readings.diagnostics(records, 0)
    assert values["r1_paper_kernel_outputscale"] == 0.0025 and math.isnan(values["r2_fixed_kl_per_example"])
    fig = readings.diagnostics_figure(records, 0)
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1


def test_the_roc_legends_are_outside_the_axes():
    curve = {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 0.8, 1.0]}
    record = {"dataset": "mnist", "roc": {"omniglot": dict.fromkeys(readings.SCORES, curve)},
              "auroc": {"omniglot": dict.fromkeys(readings.SCORES, 0.7)}}
    ax = readings.roc_figure(record).axes[0]
    legend = ax.get_legend()
    assert legend.get_bbox_to_anchor().transformed(ax.transAxes.inverted()).y1 < 0  # below the axes
    assert ax.get_title() == "MNIST vs Omniglot-28"


def test_the_partial_table_takes_each_run_s_own_score():
    difficulty = pd.DataFrame({"dataset": "mnist", "seed": [0, 0, 1], "run": ["r4", "r4", "r4"],
                               "score": ["mean_function_variance", "negative_elbo", "mean_function_variance"],
                               "spearman": [0.6, 0.7, 0.8], "partial_spearman": [0.3, math.nan, 0.5], "n": 50})
    table, values = readings.partial_table(difficulty)
    assert values == {"r4_partial_spearman": pytest.approx(0.4)} and table.data.loc[0, "seeds"] == 2
    assert "(50 test images per record; mean over seeds)" in table.caption


def test_the_claims_rest_on_one_reading_not_on_the_best_per_claim():
    rows = rows_for([0.5, 0.6, 0.55])
    rows["lucky"] = {**rows["r4"], "run": "lucky", "test_ll": cell({0: -80.0, 1: -80.1, 2: -80.2})}
    assert verdict_of(rows, 1)["measured"].startswith("R4 − VAE by IS: 0.55")
    for claim in (1, 2, 3):  # without the reading, every claim is not measurable and the prose keeps its words
        assert verdict_of({"vae": rows["vae"]}, claim)["verdict"] == validity.NOT_MEASURABLE


def test_no_text_of_the_difficulty_and_roc_figures_runs_into_another():
    rng = np.random.default_rng(0)
    per_image = {"gap": rng.gamma(2.0, 2.0, 300).tolist(), "mean_function_variance": rng.uniform(1e-4, 0.0175, 300).tolist(),
                 "encoder_variance": rng.uniform(0.69, 0.84, 300).tolist(), "negative_elbo": rng.uniform(40, 190, 300).tolist()}
    curve = {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 0.8, 1.0]}
    record = {"dataset": "mnist", "roc": {o: dict.fromkeys(readings.SCORES, curve) for o in ("fashion_mnist", "omniglot")},
              "auroc": {o: dict.fromkeys(readings.SCORES, 0.7) for o in ("fashion_mnist", "omniglot")}}
    with book_theme():
        difficulty = readings.difficulty_figure({"per_image": per_image})
        roc = readings.roc_figure(record)
    assert overlapping_texts(difficulty) == [] and overlapping_texts(roc) == []


def test_the_study_s_configurations_are_named_as_the_prose_names_them():
    class StudyGrid:
        runs = {"vae": {"model": "vae"}, "r4_gp": {"model": "gp", "note": "R4: error regression of 10,000 errors"},
                "r3_m1024": {"model": "gp", "note": "R3 with 1,024 inducing inputs"},
                "vae_decoder_control": {"model": "vae", "note": "control for R5: the VAE's decoder trained on"},
                "r4_fit": {"model": "gp", "gp_fit": "errors", "error_images": 10000, "note": "R4: regression"},
                "r4_n1000": {"model": "gp", "gp_fit": "errors", "error_images": 1000,
                             "note": "R4 with 1,000 observed errors"}}
    labels = readings.configuration_labels(StudyGrid())
    assert labels == {"vae": "VAE", "r4_gp": "R4", "r3_m1024": "R3 with 1,024 inducing inputs",
                      "vae_decoder_control": "control for R5", "r4_fit": "R4 (10,000 observed errors)",
                      "r4_n1000": "R4 with 1,000 observed errors"}
    rows = rows_for([0.5, 0.6], rho=[0.8, 0.8])
    table = readings.likelihood_table(rows, "c", {"r4": "R4"}).data
    assert list(table["configuration"]) == ["vae", "R4"]
    figure = readings.gap_closed_figure({"r4": {"fraction_closed": {"values": [0.2, 0.3]}}}, labels={"r4": "R4"})
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ["R4"]
    difficulty = pd.DataFrame({"dataset": "mnist", "seed": [0], "run": ["r4"], "score": ["mean_function_variance"],
                               "spearman": [0.6], "partial_spearman": [0.3], "n": 50})
    table, values = readings.partial_table(difficulty, {"r4": "R4"})
    assert table.data.loc[0, "configuration"] == "R4" and set(values) == {"r4_partial_spearman"}  # glue keys: run ids


def test_the_study_protocol_is_printed_in_words_from_its_grid():
    from gpvae.runs.grid import Grid
    text = readings.protocol(Grid.of("study"), "mnist", 0)
    assert "{" not in text and "max_test" not in text  # no raw settings
    assert "Test log p̂(x) with K = 1000 on the first 2,000 test images" in text
    assert "MNIST, seed 0: VAE, R1, R2" in text and "against as many of Fashion-MNIST and Omniglot-28" in text
