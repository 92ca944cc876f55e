"""R4's accuracy–cost frontier: every setting fitted to one VAE's errors and measured against it."""
import json

import pytest

from gpvae import cli, frontier, training
from gpvae.config import TrainConfig

from .conftest import data_dir, requires_data

SETTINGS = {"full": {"error_images": 100, "error_svi_steps": 100, "error_inducing": 32},
            "low_rank": {"error_images": 100, "error_svi_steps": 100, "error_inducing": 32, "error_kernel_groups": 1,
                         "error_variance_rank": 4, "quadrature_nodes": 3},
            "moments": {"error_images": 100, "error_svi_steps": 100, "error_inducing": 32,
                        "error_inputs": "features_and_moments"},
            "knn": {"error_images": 100, "error_svi_steps": 100, "error_model": "knn", "error_neighbours": 5},
            "savae": {"model": "savae", "svi_steps": 5}}


@requires_data
def test_the_frontier_measures_every_setting_against_the_vae_on_its_gap_subset(tmp_path):
    vae = tmp_path / "vae"
    training.train(TrainConfig(model="vae", dataset="mnist", epochs=1, max_train=1000, max_test=60, eval_k=20,
                               device="cpu", data_dir=str(data_dir()), out=str(vae)))
    assert cli.main(["evaluate", str(vae), "--gaps", "--gap-subset", "20", "--subset-seed", "3",
                     "--eval-k", "20", "--data-dir", str(data_dir())]) == 0
    gaps = json.loads((vae / "gaps.json").read_text())
    result = frontier.frontier_run(vae, SETTINGS, repeats=2, data_dir=str(data_dir()))
    assert json.loads((vae / "frontier.json").read_text())["settings"].keys() == {"vae", *SETTINGS}
    rows = result["settings"]
    assert result["indices"] == gaps["indices"] and result["n"] == 20
    assert rows["vae"]["gap_closed"] == 0 and rows["vae"]["ratio_to_vae"] == {"100": 1.0, "1": 1.0}
    assert set(rows["vae"]["spearman"]) == {"encoder_variance", "negative_elbo"}
    for label in set(SETTINGS) - {"savae"}:
        row = rows[label]
        assert row["fit"]["error_model"] is not None and row["macs_per_image"] > 0
        assert set(row["infer_ms"]) == {"100", "1"} and all(v > 0 for v in row["ratio_to_vae"].values())
    # the share closed is measured, not assumed: its numerator is the setting's own ELBO on the VAE's images
    assert rows["full"]["gap_closed"] != rows["knn"]["gap_closed"]
    # one shape count per setting: a 1-kernel, rank-4 predictive on 32 inducing inputs counts fewer MACs
    assert rows["low_rank"]["macs_per_image"] < rows["full"]["macs_per_image"]
    # the encoder's mean and log-variance as extra inputs: a wider kernel, and another fit of the same errors
    assert rows["moments"]["macs_per_image"] > rows["full"]["macs_per_image"]
    assert rows["moments"]["elbo"] != rows["full"]["elbo"]
    assert rows["low_rank"]["variance_error"]["of_mean"] >= 0 and rows["full"]["variance_error"] is None
    assert "neighbour_distance" in rows["knn"]["spearman"]
    # SA-VAE's refinement of the same VAE: no fit, its own cost, never a candidate for GP-RF's default
    assert rows["savae"]["fit"] is None and rows["savae"]["ratio_to_vae"]["100"] > 1
    assert rows["savae"]["gap_closed"] > 0  # SVI steps from the encoder raise the ELBO
    assert {result["default"]["fastest"], result["default"]["closes_most"]} <= set(SETTINGS) - {"savae"}


def _row(closed, ratio):
    return {"gap_closed": closed, "ratio_to_vae": {"100": ratio}, "options": {}}


@pytest.mark.parametrize("rows, chosen, reason", [
    ({"a": _row(0.30, 1.4), "b": _row(0.40, 2.0), "c": _row(0.25, 1.1)}, "a", "closes 30%"),
    ({"a": _row(0.10, 1.4), "b": _row(0.40, 2.0)}, None, "under 20%"),
    ({"a": _row(0.30, 1.6), "sa": {**_row(0.9, 1.2), "options": {"model": "savae"}}}, None, "no setting runs within 1.5x"),
])
def test_the_default_rule_holds_fails_or_finds_no_setting(rows, chosen, reason):
    decision = frontier.choose_default({"vae": _row(0.0, 1.0), **rows})
    assert decision["setting"] == chosen and reason in decision["reason"]
    gp = {k: r for k, r in rows.items() if r["options"].get("model", "gp") == "gp"}
    assert decision["closes_most"] == max(gp, key=lambda k: gp[k]["gap_closed"])  # another model never counts


def test_a_broken_low_rank_setting_is_never_chosen_fastest_or_best():
    broken = {**_row(0.90, 1.0), "variance_error": {"of_mean": 5.0, "per_output": 6.0}}
    decision = frontier.choose_default({"vae": _row(0.0, 1.0), "ok": _row(0.30, 1.4), "broken": broken})
    assert decision["setting"] == decision["fastest"] == decision["closes_most"] == "ok"
