"""The landing page's claim lines, table and protocol statement, on small fixture evidence: each claim
holds, fails, is not resolved, or has nothing to stand on, as the records say."""

import pandas as pd
import pytest

from gpvae import report, verdicts
from gpvae.pages import landing
from gpvae.runs.grid import Grid

CONVERGED = Grid.of("converged")


def ais_rows(values: dict[str, list[float]], certified: bool = True) -> pd.DataFrame:
    """AIS rows of MNIST: {run: [log p(x) of seed 0, 1, ...]} [nats], IS 0.4 nat below."""
    rows = [{"dataset": "mnist", "seed": seed, "run": run, "ais": v, "is": v - 0.4, "estimator_gap": 0.4, "eval_k": 1000,
             "steps": 4000, "leapfrog": 5, "certified": certified, "width": 0.3 if certified else 3.0, "n": 500}
            for run, seeds in values.items() for seed, v in enumerate(seeds)]
    return pd.DataFrame(rows, columns=report.AIS_COLUMNS)


def evidence(ais: pd.DataFrame | None = None, **fields) -> landing.Evidence:
    return landing.Evidence("converged", CONVERGED, ais=ais if ais is not None else ais_rows({}), **fields)


@pytest.mark.parametrize("values, outcome", [
    ({"gp": [-86.0, -86.1, -85.9], "vae": [-87.0, -87.1, -86.9], "iwae": [-86.5, -86.6, -86.4],
      "savae": [-86.7, -86.8, -86.6]}, verdicts.HOLDS),
    ({"gp": [-87.5, -87.6, -87.4], "vae": [-87.5, -87.6, -87.4], "iwae": [-86.0, -86.1, -85.9]}, verdicts.FAILS),
    ({"gp": [-86.0], "vae": [-87.0], "iwae": [-86.5]}, verdicts.NOT_RESOLVED),
])
def test_likelihood_is_decided_by_ais_against_every_baseline(values, outcome):
    line = landing.likelihood_line(evidence(ais_rows(values)))
    assert line.startswith(f"**1. Higher test log-likelihood than every baseline — {outcome}.**")
    assert "GP-RF (R4) − IWAE" in line and "by AIS certified by BDMC" in line


def test_likelihood_on_uncertified_ais_is_not_resolved_whatever_its_size():
    values = {"gp": [-80.0, -80.1, -79.9], "vae": [-90.0, -90.1, -89.9]}
    assert f"— {verdicts.NOT_RESOLVED}.**" in landing.likelihood_line(evidence(ais_rows(values, certified=False)))


def test_likelihood_without_ais_is_not_measured():
    line = landing.likelihood_line(evidence())
    assert f"— {verdicts.NOT_RESOLVED}.**" in line and "not measured" in line


def test_a_control_is_never_counted_among_the_baselines():
    values = {"gp": [-87.0, -87.1, -86.9], "vae": [-87.5, -87.6, -87.4], "vae_continued": [-80.0, -80.1, -79.9]}
    line = landing.likelihood_line(evidence(ais_rows(values)))
    assert f"— {verdicts.HOLDS}.**" in line and "control" not in line


def frontier(gp_ratio: float, savae_ratio: float, knn: float = 0.5) -> dict:
    settings = {"r4_default": {"ratio_to_vae": {"100": gp_ratio}}, "sa_vae_inference": {"ratio_to_vae": {"100": savae_ratio}},
                "knn10": {"spearman": {"neighbour_distance": knn}}}
    return {"runs": {"vae": {"settings": settings, "device": "cpu (x86_64, 1 threads)"}}}


def bench(**ratios) -> dict:
    """A bench.json: each run's inference time × the VAE's, timed side by side."""
    return {run: {"results": [{"infer_ratio_to_vae": r}], "device": "cpu (x86_64, 2 threads)", "repeats": 30,
                  "batch_size": 100, "load_average": [1.9, 1.9, 1.9]} for run, r in {"vae": 1.0, **ratios}.items()}


@pytest.mark.parametrize("benches, outcome", [({"mnist": bench(gp=1.2, savae=40.0)}, verdicts.HOLDS),
                                              ({"mnist": bench(gp=4.2, savae=46.0)}, verdicts.FAILS),
                                              ({"mnist": bench(gp=1.2)}, verdicts.NOT_RESOLVED),
                                              ({}, verdicts.NOT_RESOLVED)])
def test_speed_from_the_benchmark_of_record_timed_side_by_side(benches, outcome):
    line = landing.speed_line(evidence(bench=benches, frontiers={("mnist", 0): frontier(9.0, 2.0)}))
    assert f"— {outcome}.**" in line  # the frontier's own timing never decides the claim
    if benches.get("mnist", {}).keys() >= {"gp", "savae"}:
        assert ("benchmark of record, converged grid, MNIST, batch 100, 30 interleaved repeats, "
                "cpu (x86_64, 2 threads), load average 1.9") in line


def test_speed_falls_back_to_the_smaller_budget_only_without_a_benchmark():
    line = landing.speed_line(evidence(), landing.Evidence("20 epochs", CONVERGED, bench={"mnist": bench(gp=1.1, savae=9.0)}))
    assert f"— {verdicts.HOLDS}.**" in line and "benchmark of record, converged grid" in line  # the grid's profile


def difficulty_rows(own: list[float], elbo: list[float]) -> pd.DataFrame:
    rows = [{"dataset": "mnist", "seed": seed, "run": "gp", "score": score, "spearman": v, "partial_spearman": None,
             "n": 2000}
            for score, values in (("mean_function_variance", own), ("negative_elbo", elbo),
                                  ("encoder_variance", [-0.4] * len(own)))
            for seed, v in enumerate(values)]
    return pd.DataFrame(rows, columns=report.DIFFICULTY_COLUMNS)


@pytest.mark.parametrize("own, elbo, knn, outcome", [
    ([0.80, 0.81, 0.79], [0.70, 0.71, 0.69], [0.60, 0.61, 0.59], verdicts.HOLDS),
    ([0.80, 0.81, 0.79], [0.70, 0.71, 0.69], [0.90, 0.91, 0.89], verdicts.FAILS),  # behind the neighbours
    ([0.80, 0.81, 0.79], [0.70, 0.71, 0.69], [0.60], verdicts.NOT_RESOLVED),  # the control on one seed only
])
def test_difficulty_must_beat_the_elbo_and_a_nearest_neighbour_average(own, elbo, knn, outcome):
    frontiers = {("mnist", seed): frontier(1.0, 40.0, value) for seed, value in enumerate(knn)}
    line = landing.difficulty_line(evidence(difficulty=difficulty_rows(own, elbo), frontiers=frontiers))
    assert f"— {outcome}.**" in line and "2,000 test images per seed" in line


def test_difficulty_without_records_is_not_resolved():
    assert f"— {verdicts.NOT_RESOLVED}.**" in landing.difficulty_line(evidence())
    assert landing.difficulty_table(evidence()) is None


def test_the_difficulty_table_shows_the_numbers_and_verdicts_of_the_line():
    frontiers = {("mnist", seed): frontier(1.0, 40.0, value) for seed, value in enumerate([0.60, 0.61, 0.59])}
    found = evidence(difficulty=difficulty_rows([0.80, 0.81, 0.79], [0.70, 0.71, 0.69]), frontiers=frontiers)
    table = landing.difficulty_table(found)
    rows = table.data.set_index("score")
    assert rows.loc["the VAE's −ELBO", "seed 1"] == "0.710" and rows.loc["the VAE's −ELBO", "verdict"] == verdicts.HOLDS
    assert rows.loc["the VAE's encoder variance (enters reversed)", "GP-RF ahead by"] == "0.400 ± 0.010"
    assert rows.loc["the distance to the 10 nearest training images", "mean ± sd"] == "0.600 ± 0.010"
    assert "2,000 test images per seed" in table.caption and f"the claim: {verdicts.HOLDS}" in table.caption
    assert "the frontier's 10-nearest-neighbour setting, on its seeds only" in table.caption  # where the records lack the control
    own = difficulty_rows([0.80, 0.81, 0.79], [0.70, 0.71, 0.69])
    own = pd.concat([own, own[own.score == "negative_elbo"].assign(score="training_neighbour_distance", spearman=0.6)])
    assert "each difficulty record's own" in landing.difficulty_table(evidence(difficulty=own)).caption


def test_the_table_leaves_controls_out_and_notes_the_rows_that_test_nothing():
    found = evidence(ais_rows({"vae": [-87.5, -87.6], "vae_extra": [-87.4, -87.5], "gp_paper": [-87.4, -87.5]}),
                     records=[{"dataset": "mnist", "run": "gp_paper", "seed": seed, "epochs_done": 700,
                               "history": [{"kernel_outputscale": a} for a in (1e-2, 1e-3, 1e-9)]} for seed in (0, 1)])
    table = landing.converged_table(found).set_index("model")
    assert list(table.index) == ["VAE", "GP-RF (R1, literal)"] and table["seeds"].tolist() == [2, 2]
    assert table.loc["GP-RF (R1, literal)", "note"].startswith("amplitude collapsed") and table.loc["VAE", "note"] == ""


def test_a_row_that_keeps_another_models_decoder_says_its_ais_is_that_models():
    rows = ais_rows({"vae": [-87.5, -87.6], "gp": [-87.5, -87.6], "gp_refit": [-88.0, -88.1]})
    rows["decoder_sha256"] = [f"{run if run != 'gp' else 'vae'}{seed}" for run, seed in zip(rows.run, rows.seed)]
    table = landing.converged_table(evidence(rows)).set_index("model")
    assert table.loc["GP-RF (R4)", "note"] == "keeps the VAE's decoder: AIS equal by construction"
    assert table.loc["GP-RF (R5, decoder refit)", "note"] == table.loc["VAE", "note"] == ""
    assert landing.shared_decoders(rows[~((rows.run == "vae") & (rows.seed == 1))], CONVERGED.runs) == {}  # unmatched
    assert landing.shared_decoders(rows.assign(steps=[4000, 4000, 1000, 1000, 4000, 4000]), CONVERGED.runs) == {}
    rows.loc[(rows.run == "gp") & (rows.seed == 1), "decoder_sha256"] = "refitted"  # one seed of its own: no note
    assert landing.shared_decoders(rows, CONVERGED.runs) == {}
    assert landing.shared_decoders(ais_rows({"vae": [-87.5], "gp": [-87.5]}), CONVERGED.runs) == {}  # no digests


def record(max_test, n_test, eval_k, gap_n, gap_seed) -> dict:
    return {"dataset": "mnist", "run": "vae", "seed": 0, "eval_k": eval_k, "n_test": n_test,
            "options": {"max_test": max_test}, "gaps": {"n": gap_n, "eval_k": eval_k, "subset_seed": gap_seed}}


def test_the_protocol_statement_is_read_from_the_records():
    first = landing.protocol_statement([record(2000, 2000, 1000, 100, None)], "20 epochs")
    assert "K = 1000 on the first 2,000 test images" in first and "K = 1000 on the first 100 test images" in first
    drawn = landing.protocol_statement([record(None, 10000, 5000, 500, 2026)], "converged")
    assert "K = 5000 on all 10,000 test images" in drawn
    assert "500 test images drawn at random (subset seed 2026)" in drawn and "K = 1000" not in drawn


def test_a_reading_that_lost_ground_is_said_to_have_failed_to_optimize():
    values = {"gp": [-87.0, -87.1, -86.9], "vae": [-87.0, -87.1, -86.9], "gp_refit": [-88.0, -88.1, -87.9]}
    records = [{"dataset": "mnist", "run": run, "seed": seed, "valid_elbo": elbo}
               for seed in range(3) for run, elbo in (("vae", -92.4), ("gp_refit", -95.7))]
    line = landing.likelihood_line(evidence(ais_rows(values), records=records))
    assert "GP-RF (R5, decoder refit) fails (it lost ground against the VAE it started from" in line
    assert "lost ground" not in landing.likelihood_line(evidence(ais_rows(values)))
    histories = {"vae": [{"valid_elbo": -92.4, "lr": 1e-5}], "gp_refit": [{"valid_elbo": -95.8, "lr": 1e-3}]}
    restarted = [dict(r, history=histories[r["run"]]) for r in records]
    line = landing.likelihood_line(evidence(ais_rows(values), records=restarted))
    assert ("fails (it lost ground against the VAE it started from; 3 of 3 seeds restarted at lr 1e-3 against the "
            "source's final 1e-5 and fell 3.4 nats of validation ELBO in the first epoch)") in line


@pytest.mark.parametrize("values, own, knn", [
    ({"gp": [-86.0, -86.1, -85.9], "vae": [-87.0, -87.1, -86.9], "iwae": [-86.5, -86.6, -86.4]}, [0.8, 0.81, 0.79], [0.6] * 3),
    ({"gp": [-87.5, -87.6, -87.4], "vae": [-87.5, -87.6, -87.4], "iwae": [-86.0, -86.1, -85.9]}, [0.8, 0.81, 0.79], [0.9] * 3),
    ({"gp": [-86.0], "vae": [-87.0], "iwae": [-86.5]}, [0.8], [0.6]),
    ({"gp": [-87.0, -87.1, -86.9], "vae": [-87.0, -87.1, -86.9], "iwae": [-88.0, -88.1, -87.9]}, [0.8], [0.6]),  # a tie
    ({}, [], []),
])
def test_the_summary_is_one_short_line_per_claim_with_the_full_lines_verdicts(values, own, knn):
    frontiers = {("mnist", seed): frontier(1.0, 40.0, value) for seed, value in enumerate(knn)}
    found = evidence(ais_rows(values), difficulty=difficulty_rows(own, [0.7] * len(own)), frontiers=frontiers,
                     bench={"mnist": bench(gp=1.2, savae=40.0)})
    lines = landing.summary_lines(found)
    full = (landing.likelihood_line(found), landing.speed_line(found), landing.difficulty_line(found))
    assert [landing.headline(line) for line in lines] == [landing.headline(line) for line in full]
    assert all(len(line.split()) <= 60 for line in lines)
    if values:  # the comparison that decides claim 1, with its budget and estimator
        decided = landing.headline(full[0]).split("— ")[1].rstrip(".**")
        assert "Converged MNIST, AIS certified by BDMC [nats]: GP-RF (R4) − " in lines[0] and "not measured" not in lines[0]
        carried = {verdicts.FAILS: (f"): {verdicts.FAILS}", f"): {verdicts.TIED}"), verdicts.HOLDS: (f"): {verdicts.HOLDS}",),
                   verdicts.NOT_RESOLVED: (f"): {verdicts.NOT_RESOLVED}",)}[decided]
        assert any(text in lines[0] for text in carried), lines[0]


def test_the_difficulty_record_s_own_neighbour_control_is_read_before_the_frontier_s():
    rows = difficulty_rows([0.80, 0.81, 0.79], [0.70, 0.71, 0.69])
    knn = pd.DataFrame([{"dataset": "mnist", "seed": seed, "run": "gp", "score": "training_neighbour_distance",
                         "spearman": 0.9, "partial_spearman": None, "n": 2000} for seed in range(3)],
                       columns=report.DIFFICULTY_COLUMNS)
    frontiers = {("mnist", 0): frontier(1.0, 40.0, 0.1)}  # the frontier's kNN on one seed only: not read
    table = landing.difficulty_table(evidence(difficulty=pd.concat([rows, knn]), frontiers=frontiers)).data
    row = table.set_index("score").loc["the distance to the 10 nearest training images"]
    assert row["mean ± sd"] == "0.900 ± 0.000" and row["verdict"] == verdicts.FAILS


def test_difficulty_is_decided_on_its_own_design_once_every_seed_has_it(tmp_path):
    from gpvae.pages.difficulty import Design
    from tests.test_pages_difficulty import AHEAD, grid as design_grid
    subset = difficulty_rows([0.60, 0.61, 0.59], [0.70, 0.71, 0.69])  # the 500-image subset: behind the ELBO
    line = landing.difficulty_line(evidence(difficulty=subset, design=Design.load(design_grid(tmp_path / "a", AHEAD))))
    assert line.startswith(f"**3. The GP's variance measures posterior difficulty — {verdicts.HOLDS}.**")
    assert "per seed, of which 900 of 900 (100.0%) with q* converged" in line
    assert line.endswith(f"On the 2,000-image gap subset: {verdicts.FAILS}.")
    assert "Out of distribution" not in line  # no ood record
    from tests.test_pages_difficulty import ood_rows
    with_ood = evidence(difficulty=subset, design=Design.load(design_grid(tmp_path / "a", AHEAD)),
                        ood=ood_rows([0.9, 0.91], [0.8, 0.81], [0.95, 0.96]))
    assert landing.difficulty_line(with_ood).endswith(
        "Omniglot-28 (2 seeds): ahead of chance and the VAE's −ELBO, behind the distance to the 10 nearest training "
        "images.")
    found = evidence(difficulty=subset, design=Design.load(design_grid(tmp_path / "a", AHEAD)))
    summary = landing.summary_lines(found)[2]  # the short line agrees with the long one, numbers included
    assert summary.startswith(f"**3. The GP's variance measures posterior difficulty — {verdicts.HOLDS}.**")
    assert "(hierarchical bootstrap); ahead of chance, the VAE's −ELBO" in summary and "behind" not in summary
    assert "Converged MNIST, 300 drawn test images × 3 seeds: ρ of the GP's variance" in summary  # the brief protocol
    partial = Design.load(design_grid(tmp_path / "b", AHEAD, seeds=(0,)))
    line = landing.difficulty_line(evidence(difficulty=subset, design=partial))
    assert f"— {verdicts.FAILS}.**" in line and "(300 images per seed, decided by a hierarchical bootstrap): 1 of 3 seeds" in line
    summary = landing.summary_lines(evidence(difficulty=subset, design=partial))[2]
    assert summary.endswith("(provisional: the claim's own design of 300 images per seed has 1 of 3 seeds).")
