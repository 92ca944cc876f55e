"""The appendix chapter's tables and sentences (gpvae.pages.appendix) on small fixture records."""
import json

import pytest

from gpvae import validity
from gpvae.layout import Layout
from gpvae.pages.appendix import APPROXIMATION, AMORTIZATION, SHARED_PROFILE, AppendixPage, describe, gap_cells, short_commit

from .test_report import record

OPTIONS = {"vae": {}, "iwae": {"iwae_k": 5}, "hf": {"householder_steps": 10},
           "gp": {"kernel": "rbf", "inducing": 128, "variance_link": "lognormal", "objective": "marginal",
                  "variational": "shared"}}
COMMIT = "23f4d8a42fefc5e2ad8110206b9f436528da7f7c"


def run_record(run, model, test_ll, profile=SHARED_PROFILE, max_test=2000, gaps=None, commit=COMMIT):
    """A run record by hand (the shape of results/workflow/hand_<budget>/mnist/<run>_seed0.json)."""
    found = {**record("mnist", run, 0, test_ll), "model": model, "profile": profile, "budget": f"Budget of {profile}.",
             "eval_k": 1000, "n_test": max_test or 10000, "epochs_done": 10, "best_epoch": 9, "valid_elbo": test_ll - 6,
             "train_seconds": 120.0, "options": {"max_test": max_test, **OPTIONS[model]}, "git_commit": commit}
    found.pop("gaps")
    if gaps:
        found["gaps"] = {"log_px": test_ll, "elbo_opt": test_ll - 1, "elbo_model": test_ll - 2, "n": 100, "eval_k": 5000,
                         "subset_seed": None, "q_star_converged": True, **gaps}
    return found


def write(root, profile, records=(), evaluations=(), bench=None):
    """``records``, their per-example ``evaluations`` and a ``bench`` report under ``root/workflow/<profile>``."""
    layout = Layout(root / "workflow" / profile, root / "workflow" / profile)
    files = [(layout.record_path(r["dataset"], r["run"], r["seed"]), r) for r in records]
    files += [(layout.run_measurement_path("evaluation", e["dataset"], e["run"], e["seed"]), e) for e in evaluations]
    files += [(layout.dataset_record("mnist", "bench"), bench)] if bench else []
    for path, found in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(found))


def bench_report(commit=COMMIT, macs=False):
    rows = [{"model": m, "infer_ms": 1.0 + i, "infer_ratio_to_vae": 1.0 + i, "train_step_ms": 4.0, "train_ratio_to_vae": 1.0,
             "peak_mem_mb": 1.7, **({"infer_macs_per_image": 1e5, "macs_ratio_to_vae": 1.0 + i} if macs else {})}
            for i, m in enumerate(("vae", "gp"))]
    return {"gp": {"dataset": "mnist", "batch_size": 100, "repeats": 30, "threads": 2, "device": "cpu (x86_64, 2 threads)",
                   "git_commit": commit, "results": rows}}


def test_short_commit_keeps_ten_characters_and_the_dirty_mark():
    assert short_commit(COMMIT) == "23f4d8a42f"
    assert short_commit(COMMIT + "+dirty") == "23f4d8a42f+dirty"
    assert short_commit(None) == "–"


def test_describe_names_the_model_by_its_options():
    assert describe(run_record("gp", "gp", -90.0)) == "GP-RF (rbf, M=128, lognormal, objective marginal, q(v) shared)"
    assert describe(run_record("iwae", "iwae", -90.0)) == "IWAE (K=5)"
    assert describe(run_record("hf", "hf", -90.0)) == "HF (T=10)"


def test_an_empty_results_folder_says_nothing_is_recorded_yet(tmp_path):
    page = AppendixPage.load(tmp_path)
    assert page.summary().startswith("0 records of the workflow's `cpu` profile; 0 runs by hand in 0 profiles")
    for method in (page.workflow_listing, page.hand_profiles, page.shared_budget_claim, page.gap_decompositions,
                   page.evaluations, page.benchmarks):
        text, tables = method()
        assert text.startswith("No ") and tables == [], method.__name__


def test_each_profile_by_hand_has_one_table_whose_caption_states_budget_and_protocol(tmp_path):
    write(tmp_path, SHARED_PROFILE, [run_record("vae", "vae", -95.0), run_record("gp", "gp", -94.0, commit=COMMIT + "+dirty")])
    write(tmp_path, "hand_200epochs", [run_record("vae", "vae", -90.0, profile="hand_200epochs", max_test=None)])
    text, tables = AppendixPage.load(tmp_path).hand_profiles()
    assert text.startswith("3 runs in 2 profiles")
    assert [t.caption.split(".")[0] for t in tables] == ["Profile hand_10k_10epochs", "Profile hand_200epochs"]
    assert "Budget of hand_10k_10epochs." in tables[0].caption and "K = 1000 on the first 2,000 test images" in tables[0].caption
    assert "K = 1000 on all 10,000 test images" in tables[1].caption
    shared = tables[0].data
    assert len(shared.columns) <= 8 and list(shared.index) == ["gp", "vae"]
    assert shared.loc["gp", "commit"] == "23f4d8a42f+dirty" and shared.loc["vae", "train time [min]"] == pytest.approx(2.0)


def test_the_shared_budget_claim_subtracts_each_model_from_the_best_gp_rf_variant(tmp_path):
    write(tmp_path, SHARED_PROFILE, [run_record("gp", "gp", -94.0), run_record("gp_worse", "gp", -99.0),
                                     run_record("vae", "vae", -95.5), run_record("iwae", "iwae", -93.0)])
    text, [table] = AppendixPage.load(tmp_path).shared_budget_claim()
    assert "test log p̂(x) -94.00 nats (run gp," in text
    frame = table.data.set_index("run")["GP-RF − model [nats]"]
    assert list(frame.index) == ["iwae", "vae"] and list(frame) == pytest.approx([-1.0, 1.5])
    assert "K = 1000 on the first 2,000 test images" in table.caption
    write(tmp_path / "only_gp", SHARED_PROFILE, [run_record("gp", "gp", -94.0)])
    assert AppendixPage.load(tmp_path / "only_gp").shared_budget_claim()[1] == []


def test_a_gap_whose_premise_fails_is_not_measurable_never_a_number(tmp_path):
    write(tmp_path, "hand_5epochs", [
        run_record("hf", "hf", -95.0, profile="hand_5epochs", gaps={"approximation_gap": 2.0, "amortization_gap": -3.0}),
        run_record("vae", "vae", -96.0, profile="hand_5epochs", gaps={"approximation_gap": 0.78, "amortization_gap": 3.06}),
        run_record("iwae", "iwae", -97.0, profile="hand_5epochs", gaps={"approximation_gap": -2.5, "amortization_gap": 1.0})])
    text, [table] = AppendixPage.load(tmp_path).gap_decompositions()
    rows = table.data.rename(lambda name: name.split("/")[1])
    # q* among diagonal Gaussians is not the flow's family: neither gap is the flow's decomposition (the caption says why)
    assert rows.loc["hf", "amortization gap [nats]"] == rows.loc["hf", "approximation gap [nats]"] == validity.NOT_MEASURABLE
    assert rows.loc["vae", "approximation gap [nats]"] == "0.78" and rows.loc["vae", "amortization gap [nats]"] == "3.06"
    assert rows.loc["iwae", "approximation gap [nats]"] == validity.NOT_MEASURABLE
    assert rows.loc["iwae", "amortization gap [nats]"] == "1.00" and "smaller family" in table.caption
    assert "K = 5000 on the first 100 test images" in table.caption and len(table.data.columns) <= 8
    assert text.startswith("3 runs by hand")


def test_the_workflow_listing_is_two_narrow_tables_with_the_premises_applied(tmp_path):
    write(tmp_path, "cpu", [dict(run_record("hf", "hf", -95.0, profile="cpu", gaps={"approximation_gap": 20.0,
                                                                                    "amortization_gap": -15.0}),
                                 wall_seconds=600.0)])
    text, (numbers, provenance) = AppendixPage.load(tmp_path).workflow_listing()
    assert "results/workflow/cpu/runs.csv" in text
    assert len(numbers.data.columns) <= 8 and len(provenance.data.columns) <= 8
    row = numbers.data.loc[("mnist", "hf", 0)]
    assert row["amortization gap [nats]"].startswith(validity.NOT_MEASURABLE)
    assert row["test log p̂(x) [nats]"] == -95.0
    assert provenance.data.loc[("mnist", "hf", 0), "train / wall time [min]"].endswith("/ 10.0")
    assert "K = 1000 on the first 2,000 test images" in numbers.caption and "K = 5000 on the first 100" in numbers.caption


def test_per_example_evaluations_give_hyperparameters_and_variance_ranges(tmp_path):
    gp = run_record("gp", "gp", -90.0, profile="hand_200epochs")
    evaluation = {"dataset": "mnist", "run": "gp", "seed": 0, "profile": "hand_200epochs", "model": "gp",
                  "evaluation": {"eval_k": 100, "n_test": 1000}, "model_summary": {"kernel_outputscale": 3.2e-6},
                  "per_image": {"mean_function_variance": [1e-4, 2e-4, 5e-4]}, "git_commit": COMMIT}
    write(tmp_path, "hand_200epochs", [gp], [evaluation])
    text, [table] = AppendixPage.load(tmp_path).evaluations()
    row = table.data["hand_200epochs/gp"]
    assert row["kernel_outputscale"] == "3.2e-06" and row["mean_function_variance: min / median / max"] == "0.0001 / 0.0002 / 0.0005"
    assert "K = 100 on the first 1,000 test images" in table.caption and text.startswith("1 per-example")


def test_each_benchmark_record_is_one_table_captioned_with_its_path_and_setting(tmp_path):
    write(tmp_path, "cpu", bench=bench_report())
    write(tmp_path, "converged", bench=bench_report(macs=True))
    page = AppendixPage.load(tmp_path)
    text, tables = page.benchmarks()
    assert text == "2 benchmark records." and "2 benchmark records under" in page.summary()
    captions = [t.caption for t in tables]
    assert captions[0].startswith("results/workflow/converged/mnist/bench.json: MNIST, batch 100, 30 interleaved")
    assert captions[1].startswith("results/workflow/cpu/mnist/bench.json")
    assert "MACs / VAE" in tables[0].data and "MACs / VAE" not in tables[1].data
    assert all(len(t.data.columns) <= 8 for t in tables)
    assert tables[1].data.loc[("gp", "gp"), "inference / VAE"] == 2.0


@pytest.mark.parametrize("model, approximation, amortization, shown", [
    ("vae", 1.25, 2.5, ("1.25", "2.50")),
    ("vae", -5.0, 2.5, (validity.NOT_MEASURABLE, "2.50")),  # IS more than a nat below ELBO(q*)
    ("hf", 22.0, -3.0, (validity.NOT_MEASURABLE, validity.NOT_MEASURABLE)),  # q* in a smaller family: neither gap
    ("iaf", 7.8, 1.0, (validity.NOT_MEASURABLE, validity.NOT_MEASURABLE)),
    ("vae", None, None, ("–", "–")),
])
def test_a_gap_cell_is_shown_only_where_its_premises_hold(model, approximation, amortization, shown):
    cells = gap_cells(model, approximation, amortization)
    assert (cells[APPROXIMATION], cells[AMORTIZATION]) == shown
