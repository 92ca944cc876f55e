"""The results chapter's tables, figures and verdicts (gpvae.pages.results) on small fixture records."""
import json
import re
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from gpvae import validity
from gpvae.pages import protocol, results_claims, results_figures
from gpvae.pages.results import ResultsPage
from gpvae.runs.grid import Grid
from tests.test_report import record

REPO = Path(__file__).resolve().parents[1]
GRID = Grid.of("cpu")
HOLDING, FAILING, UNRESOLVED = (1.0, 1.1, 0.9), (-1.0, -1.1, -0.9), (1.0, -1.0, 0.2)  # per-seed differences


def run_record(dataset, run, seed, test_ll, eval_k=1000, n_test=2000, subset_seed=None, gaps=None):
    """A run record with the keys the page reads (the shape of results/workflow/cpu/<dataset>/<run>_seed<s>.json)."""
    found = {**record(dataset, run, seed, test_ll), "model": GRID.runs[run]["model"], "eval_k": eval_k,
             "n_test": n_test, "valid_elbo": test_ll - 6, "epochs_done": 20, "options": {},
             "history": [{"epoch": 1, "valid_elbo": test_ll - 10}, {"epoch": 2, "valid_elbo": test_ll - 6}]}
    found["gaps"] = {**found["gaps"], "n": 100, "eval_k": eval_k, "subset_seed": None, **(gaps or {})}
    if subset_seed is not None:
        found["subset_seed"] = subset_seed
    return found


def ais_record(dataset, run, seed, mean, width, gap_subset=None, n=500, eval_k=1000, steps=4000, leapfrog=2):
    """An AIS record (results/workflow/cpu/<dataset>/ais/<run>_seed<s>.json) certified by a sandwich ``width`` wide."""
    found = {"dataset": dataset, "run": run, "model": run, "seed": seed, "mean": mean, "n": n, "subset_seed": 2026,
             "is": {"mean": mean - 0.5, "eval_k": eval_k, "seconds": 5.0}, "estimator_gap": 0.5, "seconds": 50.0,
             "settings": {"steps": steps, "leapfrog": leapfrog, "chains": 1}, "decoder_sha256": "d",
             "certificate": {"certified": width <= 0.5, "width": width}}
    return found | ({"gap_subset": gap_subset} if gap_subset else {})


def write(root, records=(), ais=(), benches=None, difficulty=(), k_curves=()) -> ResultsPage:
    """The records under ``root`` at the grid's paths, and the page that reads them."""
    grid = GRID.replace(results_dir=str(root))
    layout = grid.layout
    files = [(layout.record_path(r["dataset"], r["run"], r["seed"]), r) for r in records]
    files += [(layout.run_measurement_path("ais", r["dataset"], r["run"], r["seed"]), r) for r in ais]
    files += [(layout.dataset_record(d, "bench"), b) for d, b in (benches or {}).items()]
    files += [(layout.measurement_path(name, r["dataset"], r["seed"]), r)
              for name, found in (("difficulty", difficulty), ("k_curve", k_curves)) for r in found]
    for path, found in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(found))
    return ResultsPage.load(grid)


def pair(dataset, run, differences, base=-95.0, reference="vae"):
    """Records of ``reference`` and of ``run`` that many nats above it, seed by seed."""
    return [r for seed, d in enumerate(differences)
            for r in (run_record(dataset, reference, seed, base - seed), run_record(dataset, run, seed, base - seed + d))]


def line_of(text, dataset="MNIST"):
    return next(line for line in text.splitlines() if line.startswith(f"- **{dataset}**"))


@pytest.mark.parametrize("differences, outcome", [
    (HOLDING, "the claim **holds**"), (FAILING, "the claim **fails**"), (UNRESOLVED, "the claim **not resolved**")])
def test_the_likelihood_verdict_holds_fails_or_is_not_resolved_by_the_paired_criterion(tmp_path, differences, outcome):
    page = write(tmp_path, pair("mnist", "gp", differences))
    assert outcome in line_of(results_claims.likelihood(page))


def test_the_likelihood_verdict_without_gp_rf_is_not_measurable_and_by_uncertified_ais_not_resolved(tmp_path):
    page = write(tmp_path, [run_record("mnist", "vae", 0, -95.0)])
    assert line_of(results_claims.likelihood(page)) == "- **MNIST**: no GP-RF record yet: not measurable."
    ais = [ais_record("mnist", run, seed, -95.0 + (2.0 + 0.1 * seed if run == "gp" else 0), width=17.0)
           for seed in range(3) for run in ("vae", "gp")]
    page = write(tmp_path, pair("mnist", "gp", HOLDING), ais)
    verdict = line_of(results_claims.likelihood(page))
    assert "the claim **holds**" in verdict and "**By AIS** the claim **not resolved**" in verdict


@pytest.mark.parametrize("differences, outcome", [
    (HOLDING, "SA-VAE 1.00 ± 0.10 (n=3, ahead of the control)"), (FAILING, "behind the control"),
    (UNRESOLVED, "SA-VAE 0.07 ± 1.01 (n=3, not resolved)")])
def test_the_control_verdict_is_each_controlled_model_minus_the_control(tmp_path, differences, outcome):
    page = write(tmp_path, pair("mnist", "savae", differences, reference="vae_extra"))
    assert outcome in line_of(results_claims.control(page).split("\n\n")[-1])


def test_without_a_control_record_the_control_verdict_is_not_measurable(tmp_path):
    page = write(tmp_path, pair("mnist", "gp", HOLDING))
    assert results_claims.control(page).endswith("- no control record yet: not measurable.")


def bench(**ratios):
    """A bench.json: each run's inference time relative to the VAE's."""
    return {run: {"results": [{"infer_ms": 0.6 * r, "infer_ratio_to_vae": r, "train_step_ms": 3.0,
                               "train_ratio_to_vae": 1.0}], "device": "cpu", "repeats": 3, "batch_size": 100,
                  "git_commit": "abcdef0123456"} for run, r in {"vae": 1.0, **ratios}.items()}


@pytest.mark.parametrize("ratios, outcome", [
    ({"gp": 1.2, "savae": 30.0}, "**holds**"), ({"gp": 5.0, "savae": 30.0}, "**fails**"),
    ({"gp": 1.2}, "**not resolved** — no benchmark of record with both GP-RF and SA-VAE")])
def test_the_speed_verdict_reads_the_benchmark_of_record(tmp_path, ratios, outcome):
    page = write(tmp_path, benches={"mnist": bench(**ratios)})
    assert outcome in line_of(results_claims.speed(page))
    assert "(benchmark of record, cpu grid, MNIST, batch 100, 3 interleaved repeats, cpu.)" in results_claims.speed(page)


def test_the_cost_table_defines_its_ratios_and_states_its_protocol(tmp_path):
    table = write(tmp_path, benches={"mnist": bench(gp=4.0)}).cost_table()
    assert table.data.loc[("MNIST", "GP-RF (R4)"), "inference × VAE"] == 4.0
    for stated in ("× VAE: the model's median time over the VAE's", "on a batch of 100 test images",
                   "median of 3 repeats", "commit MNIST abcdef0123", "the VAE is timed again beside each model"):
        assert stated in table.caption


def test_without_a_benchmark_the_speed_verdict_is_not_measurable(tmp_path):
    assert results_claims.speed(write(tmp_path)) == "- no benchmark of record yet: not measurable."


def difficulty_record(seed, own, encoder, elbo, dataset="mnist"):
    """A difficulty record: Spearman ρ of each score with the VAE encoder's per-image amortization gap."""
    return {"dataset": dataset, "seed": seed, "runs": {"gp": {
        "n": 100, "spearman_with_gap": {"mean_function_variance": own, "variance_function_variance": own - 0.1,
                                        "encoder_variance": encoder, "negative_elbo": elbo},
        "partial_spearman_given_negative_elbo": {"mean_function_variance": own / 2, "variance_function_variance": 0.1}}}}


@pytest.mark.parametrize("own, elbo, outcome, claim", [
    ((0.70, 0.72, 0.68), (0.30, 0.31, 0.29), "the GP's variance tracks the gap", "holds"),
    ((-0.50, -0.52, -0.48), (0.30, 0.31, 0.29), "the GP's variance runs against the gap", "fails"),
    ((0.70, 0.72, 0.68), (0.70, 0.75, 0.65), "against the VAE negative ELBO: not resolved", "not resolved")])
def test_the_difficulty_verdict_needs_the_gp_ahead_of_chance_and_both_vae_scores(tmp_path, own, elbo, outcome, claim):
    page = write(tmp_path, difficulty=[difficulty_record(s, own[s], -0.4, elbo[s]) for s in range(3)])
    verdict = line_of(results_claims.difficulty(page))
    assert outcome in verdict and verdict.endswith(f"The claim **{claim}**.")
    assert line_of(results_claims.difficulty(page), "Omniglot-28").endswith("no difficulty record yet: not measurable.")
    assert page.difficulty_table() is not None and isinstance(results_figures.difficulty(page), Figure)


def gap_block(record_gaps):
    """An AIS record's gap_subset that used the run record's gap decomposition (same images and values)."""
    return {"n": record_gaps["n"], "subset_seed": None, "mean": record_gaps["elbo_opt"] + 5.0,
            "is": record_gaps["log_px"], "elbo_opt": record_gaps["elbo_opt"], "is_from_optimum": None,
            "approximation_gap": {"mean": 5.0}}


def test_table_2_shows_a_value_whose_premise_fails_as_not_measurable_with_its_reason(tmp_path):
    records, ais = [], []
    for dataset, width in (("mnist", 0.4), ("fashion_mnist", 17.0)):
        for run in ("vae", "hf"):
            for seed in range(2):
                gaps = {"n": 50, "log_px": -100.0, "elbo_opt": -99.0 if dataset == "mnist" else -60.0,
                        "approximation_gap": -1.0 if dataset == "mnist" else -40.0, "amortization_gap": 3.0}
                records.append(run_record(dataset, run, seed, -100.0, gaps=gaps))
                ais.append(ais_record(dataset, run, seed, -98.0, width, gap_block(records[-1]["gaps"])))
    page = write(tmp_path, records, ais)
    table = page.gap_table().data
    assert table.loc[("MNIST", "VAE"), "approximation gap by AIS [nats]"] == "5.00 ± 0.00 (2)"
    assert table.loc[("MNIST", "VAE"), "approximation gap by IS [nats]"] == "-1.00 ± 0.00"  # within the margin
    assert table.loc[("MNIST", "VAE"), "amortization gap [nats]"] == "3.00 ± 0.00"
    # a flow against diagonal Gaussians: neither gap is its own family's decomposition
    for column in ("amortization gap [nats]", "approximation gap by IS [nats]", "approximation gap by AIS [nats]"):
        for dataset in ("MNIST", "Fashion-MNIST"):
            assert table.loc[(dataset, "HF"), column] == validity.NOT_MEASURABLE
    # Fashion-MNIST's AIS is not certified, its IS far below ELBO(q*)
    assert table.loc[("Fashion-MNIST", "VAE"), "approximation gap by AIS [nats]"] == validity.NOT_MEASURABLE
    assert table.loc[("Fashion-MNIST", "VAE"), "approximation gap by IS [nats]"] == validity.NOT_MEASURABLE
    shown = table.drop(columns="seeds").to_numpy().ravel()
    assert not any(re.fullmatch(r"-\d.*", cell) and float(cell.split()[0]) < -validity.LOOSE_NATS for cell in shown)
    sentence = page.withheld_text()
    assert "shows 8 of its 12 values as not measurable" in sentence
    assert "6 because their proposal is richer" in sentence and "1 because their AIS has no BDMC certificate" in sentence
    assert "1 because the protocol's IS estimate falls below ELBO(q*)" in sentence
    assert "Fashion-MNIST not measurable (AIS not certified" in page.ais_notes()  # an uncertified AIS orders nothing
    by_ais = page.ais_table()
    for column in ("AIS [nats]", "estimator gap, AIS − IS [nats]"):  # uncertified: neither is a value
        assert by_ais.data.loc[("Fashion-MNIST", "VAE"), column] == validity.NOT_MEASURABLE
    assert by_ais.data.loc[("MNIST", "VAE"), "AIS [nats]"] == "-98.00 ± 0.00"
    assert "Not measurable, AIS not certified: the BDMC sandwich is 17.00 nats wide" in by_ais.caption



def test_without_a_certified_seed_a_dataset_gets_no_verdict_by_ais(tmp_path):
    records, ais = [], []
    for run, value in (("vae", -98.0), ("gp", -90.0)):
        for seed in range(3):
            gaps = {"n": 50, "log_px": -100.0, "elbo_opt": -99.0, "approximation_gap": -1.0, "amortization_gap": 3.0}
            records.append(run_record("fashion_mnist", run, seed, -100.0, gaps=gaps))
            ais.append(ais_record("fashion_mnist", run, seed, value + 0.01 * seed, 17.0, gap_block(gaps)))
    notes = write(tmp_path, records, ais).ais_notes()
    assert "- **Fashion-MNIST**: AIS not certified: the BDMC sandwich is 17.00 nats wide, over 0.5; no verdict by AIS." in notes
    assert "the claim **" not in notes


def stated(caption):
    """The K values and image counts a caption states."""
    return ({int(k) for k in re.findall(r"K = (\d+)", caption)},
            {int(n.replace(",", "")) for n in re.findall(r"(\d[\d,]*) test images", caption)})


def test_captions_state_the_k_and_images_the_records_carry_not_the_grid_file_s(tmp_path):
    records = [run_record("mnist", run, seed, -95.0, eval_k=100, n_test=20, gaps={"eval_k": 50, "n": 10})
               for run in ("vae", "gp") for seed in range(2)]
    records += [run_record("omniglot", "vae", seed, -140.0, eval_k=30, n_test=40, subset_seed=7) for seed in range(2)]
    ais = [ais_record("mnist", "vae", seed, -94.0, 0.3, n=30, eval_k=100, steps=500, leapfrog=3) for seed in range(2)]
    k_curves = [{"dataset": "mnist", "seed": seed, "runs": {run: {
        "curve": [{"eval_k": k, "test_ll": -95.0 + k / 1000} for k in (10, 100)], "n_test": 15,
        "decoder_sha256": "d"} for run in ("vae", "gp")}} for seed in range(2)]
    page = write(tmp_path, records, ais, k_curves=k_curves)
    table1 = page.likelihood_table().caption
    assert "MNIST: K = 100 on the first 20 test images (seeds 0, 1)" in table1
    assert "Omniglot-28: K = 30 on 40 test images drawn at random (subset seed 7) (seeds 0, 1)" in table1
    assert stated(table1) == ({100, 30}, {20, 40})  # the grid file's K = 1000 on 2,000 images appears nowhere
    assert "MNIST: K = 50 on the first 10 test images" in page.gap_table().caption
    assert stated(page.ais_table().caption) == ({100}, {30})
    assert "drawn at random (subset seed 2026), AIS T = 500, L = 3, certified" in page.ais_table().caption
    assert stated(page.k_curve_table().caption) == (set(), {15})
    assert "the first 15 test images" in page.k_curve_table().caption
    assert "first 40" not in page.likelihood_notes()  # Omniglot-28's note is about its first images only


def test_the_protocol_text_lists_each_distinct_setting_with_its_seeds():
    frame = protocol.test_protocol([
        run_record("mnist", "vae", 0, -95.0), run_record("mnist", "vae", 1, -95.0),
        run_record("mnist", "gp", 2, -95.0, eval_k=500, n_test=100, subset_seed=3)])
    assert protocol.protocol_text(frame) == ("MNIST: K = 500 on 100 test images drawn at random (subset seed 3) "
                                               "(seed 2); K = 1000 on the first 2,000 test images (seeds 0, 1)")
    assert protocol.protocol_text(protocol.test_protocol([{"dataset": "mnist", "run": "vae", "seed": 0,
                                                          "diverged": "nan"}])) == ""


def test_without_records_every_table_is_absent_every_figure_says_so_and_no_claim_is_decided(tmp_path):
    page = write(tmp_path)
    assert all(table is None for table in (page.ais_table(), page.gap_table(), page.cost_table(),
                                           page.k_curve_table(), page.difficulty_table()))
    figures = [results_figures.likelihood_cost(page), results_figures.curves(page), results_figures.differences(page), results_figures.k_curve(page),
               results_figures.difficulty(page)]
    assert all(isinstance(fig, Figure) for fig in figures)
    claims = results_claims.claims(page)
    assert "**holds**" not in claims and "**fails**" not in claims
    assert claims.count("not measurable") >= 2 * len(GRID.datasets)


def test_figures_label_their_axes_with_units_and_keep_the_legend_outside(tmp_path):
    page = write(tmp_path, pair("mnist", "gp", HOLDING), benches={"mnist": bench(gp=1.2, savae=30.0)})
    fig = results_figures.likelihood_cost(page)
    labels = [ax.get_ylabel() for ax in fig.axes] + [ax.get_xlabel() for ax in fig.axes]
    assert all("[" in label or "bits/dim" in label for label in labels)
    assert not any(ax.get_legend() for ax in fig.axes) and fig.legends  # one legend, of the figure
