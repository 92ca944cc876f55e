"""The difficulty claim on its own design (gpvae.pages.difficulty) on small fixture records."""
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from gpvae import report, verdicts
from gpvae.layout import Layout
from gpvae.pages import difficulty

SPEC = {"runs": ["gp"], "reference": "vae", "images": 300, "subset_seed": 5,
        "combination": ["mean_function_variance", "negative_elbo"], "resamples": 100}


def record(seed: int, noise: dict, converged_share: float = 1.0, n: int = 300) -> dict:
    """One seed's record: per-image gap and scores, each score the gap plus Gaussian noise of ``noise[score]``."""
    rng = np.random.default_rng(seed)
    gap = rng.gamma(2.0, 2.0, n)
    per_image = {"gap": gap.tolist(), **{score: (gap + sd * rng.standard_normal(n)).tolist() for score, sd in noise.items()}}
    converged = [i < converged_share * n for i in range(n)]
    return {"runs": {"gp": {"n": n, "subset_seed": 5, "per_image": per_image, "converged": converged}}}


def grid(tmp_path, noise: dict, seeds=(0, 1, 2), converged_share: float = 1.0):
    layout = Layout(tmp_path / "runs", tmp_path / "results")
    for seed in seeds:
        path = layout.measurement_path("difficulty_large", "mnist", seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record(seed, noise, converged_share)))
    return SimpleNamespace(layout=layout, seeds=[0, 1, 2], measurement=lambda name, dataset: SPEC,
                           run_measurement_cells=lambda name: [("mnist", "gp", s) for s in (0, 1, 2)])


AHEAD = {"mean_function_variance": 1.0, "variance_function_variance": 3.0, "negative_elbo": 6.0, "encoder_variance": 6.0,
         "training_neighbour_distance": 6.0}


def test_a_gp_ahead_of_every_control_holds_and_the_table_says_by_how_much(tmp_path):
    design = difficulty.Design.load(grid(tmp_path, AHEAD))
    assert design.complete("gp") and design.decide().outcome == verdicts.HOLDS
    table = difficulty.table(design, {"gp": "R4"})
    frame = table.data
    assert list(frame[("", "score")]) == ["GP variance, mean function", "GP variance, log-variance function", "combination"]
    assert frame.loc[0, ("minus", "the VAE's −ELBO")].endswith(": holds")
    assert "300 test images drawn at random (subset seed 5) per seed" in table.caption
    assert "GP variance, mean function and the VAE's −ELBO" in table.caption
    assert difficulty.line(design).startswith("holds: ρ = ")


def test_a_control_ahead_of_the_gp_fails_the_claim(tmp_path):
    behind = {**AHEAD, "mean_function_variance": 6.0, "training_neighbour_distance": 1.0}
    decided = difficulty.Design.load(grid(tmp_path, behind)).decide()
    assert decided.outcome == verdicts.FAILS
    assert decided.details["the distance to the 10 nearest training images"] == verdicts.FAILS


def test_images_whose_q_star_did_not_converge_are_left_out_and_counted(tmp_path):
    design = difficulty.Design.load(grid(tmp_path, AHEAD, converged_share=0.5))
    assert design.kept("gp") == (450, 900) and "450 of 900 (50.0%) with q* converged" in design.protocol()


def test_missing_seeds_leave_the_design_incomplete_and_an_undeclared_design_absent(tmp_path):
    design = difficulty.Design.load(grid(tmp_path, AHEAD, seeds=(0, 1)))
    assert not design.complete("gp") and design.seeds("gp") == [0, 1]
    undeclared = SimpleNamespace(measurement=lambda name, dataset: None)
    assert difficulty.Design.load(undeclared) is None


def test_the_status_says_how_far_the_design_has_come(tmp_path):
    assert "no record yet" in difficulty.status(difficulty.Design.load(grid(tmp_path / "a", AHEAD, seeds=())))
    partial = difficulty.status(difficulty.Design.load(grid(tmp_path / "b", AHEAD, seeds=(0,))), "gp", {"gp": "R4"})
    assert partial.startswith("The claim's own design: 1 of 3 seeds of R4 measured; the landing page decides")
    assert difficulty.status(None) == "The grid declares no difficulty design of its own."


def test_a_control_missing_from_the_records_leaves_the_claim_not_resolved(tmp_path):
    without_neighbours = {k: v for k, v in AHEAD.items() if k != "training_neighbour_distance"}
    decided = difficulty.Design.load(grid(tmp_path, without_neighbours)).decide()
    assert decided.details["the distance to the 10 nearest training images"] == verdicts.NOT_RESOLVED
    assert decided.outcome == verdicts.NOT_RESOLVED and "not measured: the distance" in decided.measured


def test_each_image_takes_the_convergence_of_the_svi_batch_it_was_optimised_in():
    from gpvae.io import RunFolderError
    from gpvae.measurements import converged_images
    recorded = {"n": 5, "svi": {"batches": [{"converged": True, "images": 2}, {"converged": False, "images": 3}]}}
    assert converged_images(recorded, batch_size=100) == [True, True, False, False, False]
    older = {"n": 250, "svi": {"batches": [{"converged": True}, {"converged": False}, {"converged": True}]}}
    flags = converged_images(older, batch_size=100)  # batches of 100, 100 and 50
    assert flags[:100] == [True] * 100 and flags[100:200] == [False] * 100 and flags[200:] == [True] * 50
    with pytest.raises(RunFolderError, match="cover 150 images, not its 250"):  # another batch size: refused
        converged_images(older, batch_size=50)


def test_one_seed_resolves_nothing_and_a_null_draw_is_refused(tmp_path):
    one_seed = difficulty.Design.load(grid(tmp_path, AHEAD, seeds=(0,)))
    decided = one_seed.decide()
    assert decided.outcome == verdicts.NOT_RESOLVED and set(decided.details.values()) == {verdicts.NOT_RESOLVED}
    row = difficulty.table(one_seed, {}).data.iloc[0]  # its estimates shown, without an interval
    assert "[" not in row[("", "ρ with the gap")] and row[("minus", "the VAE's −ELBO")].endswith(": not resolved")
    from gpvae.options import ConfigError
    from gpvae.runs.grid import Grid
    spec = Grid.of("converged").spec | {"difficulty_large": {**SPEC, "subset_seed": None}}
    with pytest.raises(ConfigError, match="subset_seed takes an integer"):
        Grid(spec)
    with pytest.raises(ConfigError, match="combination takes two different scores"):
        Grid(Grid.of("converged").spec | {"difficulty_large": {**SPEC, "combination": ["negative_elbo", "negative_elbo"]}})


def ood_rows(own: list[float], elbo: list[float], knn: list[float]):
    """AUROC rows of R4's GP variance, the VAE's −ELBO and encoder variance and R4's neighbour control, per seed."""
    rows = [{"dataset": "mnist", "seed": seed, "run": run, "ood": "omniglot", "score": score, "auroc": value, "n": 2000,
             "subset_seed": 2027, "ood_seed": 0}
            for run, score, values in (("gp", "mean_function_variance", own), ("vae", "negative_elbo", elbo),
                                       ("vae", "encoder_variance", [0.3] * len(own)),
                                       ("gp", "training_neighbour_distance", knn))
            for seed, value in enumerate(values)]
    return pd.DataFrame(rows, columns=report.OOD_COLUMNS)


def test_the_ood_table_sets_the_gp_variance_against_the_elbo_and_the_neighbours():
    labels = {"gp": "R4"}
    table = difficulty.ood_table(ood_rows([0.90, 0.91, 0.89], [0.85, 0.86, 0.83], [0.95, 0.97, 0.96]), labels)
    rows = table.data.set_index("score")["R4's GP variance ahead by"]
    assert rows["R4: GP variance"].endswith(verdicts.HOLDS)  # over chance
    assert rows["the VAE's −ELBO"] == f"0.053 ± 0.006: {verdicts.HOLDS}"
    assert rows["the VAE's encoder variance"] == "–"  # shown, but not a comparison the grid declared
    assert rows[f"the distance to the {difficulty.NEIGHBOURS} nearest training images"].endswith(verdicts.FAILS)
    assert table.data.set_index("score").loc["R4: GP variance", "AUROC"] == "0.900 ± 0.010 (n = 3)"
    assert "2,000 test images drawn at random (subset seed 2027)" in table.caption
    one_seed = difficulty.ood_table(ood_rows([0.90], [0.85], [0.95]), labels).data.set_index("score")
    assert one_seed.loc["the VAE's −ELBO", "R4's GP variance ahead by"].endswith(verdicts.NOT_RESOLVED)
    assert difficulty.ood_table(ood_rows([], [], []), labels) is None


def test_the_ood_line_groups_each_dataset_s_outcomes():
    line = difficulty.ood_line(ood_rows([0.90, 0.91, 0.89], [0.85, 0.86, 0.83], [0.95, 0.97, 0.96]))
    assert line == ("Out of distribution, read beside the claim (AUROC of the GP's variance for images of another "
                    "dataset): Omniglot-28 (3 seeds): ahead of chance and the VAE's −ELBO, behind the distance to the "
                    f"{difficulty.NEIGHBOURS} nearest training images.")
    assert difficulty.ood_line(ood_rows([], [], [])) == ""
