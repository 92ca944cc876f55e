"""One tiny grid (tests/data/grid_smoke.yaml) run end to end through the workflow (workflow/Snakefile):
papermill trainings, measurements, records and table, then what a fresh machine, a lost run and a change of
settings do with them. Its own file, so that pytest-xdist runs it beside the rest of the workflow's tests."""
import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from gpvae.runs import persistence, records
from gpvae.runs.grid import Grid
from gpvae.cli import main as cli_main

from .conftest import REPO, SNAKEMAKE, data_dir, requires_data


@pytest.fixture(scope="module")
def smoke_grid(tmp_path_factory):
    """The tiny grid of tests/data/grid_smoke.yaml (VAE, then R4 fitted to it) run to the end."""
    root = tmp_path_factory.mktemp("workflow")
    spec = yaml.safe_load((REPO / "tests" / "data" / "grid_smoke.yaml").read_text())
    spec.update(runs_dir=str(root / "runs"), results_dir=str(root / "results"))
    config = root / "grid.yaml"
    config.write_text(yaml.safe_dump(spec))
    # a record of an earlier pass (another seed): the table lists it beside this pass's
    earlier = root / "results" / "mnist" / "vae_seed9.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text(json.dumps({"dataset": "mnist", "run": "vae", "seed": 9, "test_ll": -99.0,
                                   "gaps": {"approximation_gap": 1.0, "amortization_gap": 2.0, "n": 4}}))
    env = {**os.environ, "GPVAE_DATA_DIR": str(data_dir())}
    command = [*SNAKEMAKE, "--configfile", str(config), "--cores", "2", "--rerun-triggers", "mtime"]
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=900)
    assert first.returncode == 0, first.stderr[-5000:]
    return spec, root, command, env


@requires_data
def test_smoke_grid_writes_records_with_provenance_and_the_table(smoke_grid):
    spec, root, _, _ = smoke_grid
    vae = json.loads((root / "results" / "mnist" / "vae_seed0.json").read_text())
    gp = json.loads((root / "results" / "mnist" / "gp_seed0.json").read_text())
    for record in (vae, gp):
        assert {"git_commit", "device", "options", "budget", "wall_seconds", "command", "gaps"} <= set(record)
        assert record["n_test"] == 40 and record["eval_k"] == 8 and record["gaps"]["n"] == 4
        assert record["wall_seconds"] > 0 and isinstance(record["gaps"]["q_star_converged"], bool)
    assert gp["options"]["init_from"] == str(root / "runs" / "mnist" / "vae_seed0") and gp["valid_elbo"] is None
    assert len(vae["history"]) == 1 and vae["options"]["max_train"] == 1000
    # the executed chapter is the run's record: its parameters cell carries the run's parameters
    notebook = json.loads((root / "runs" / "mnist" / "gp_seed0" / "training.ipynb").read_text())
    injected = next(c for c in notebook["cells"] if "injected-parameters" in c["metadata"].get("tags", []))
    assert '"init_from"' in "".join(injected["source"])
    rows = list(csv.DictReader((root / "results" / "runs.csv").open()))
    assert [(r["run"], r["seed"]) for r in rows] == [("diverges", "0"), ("gp", "0"), ("vae", "0"), ("vae", "9")]
    assert rows[0]["test_ll"] == ""  # a diverged run has no numbers
    assert float(rows[2]["test_ll"]) == pytest.approx(vae["test_ll"])
    bench = json.loads((root / "results" / "mnist" / "bench.json").read_text())
    assert set(bench) == {"vae", "gp"} and bench["gp"]["results"][0]["model"] == "gp"


@requires_data
def test_the_proposal_control_record_starts_from_the_vae_s_own_estimate(smoke_grid):
    _, root, _, _ = smoke_grid
    vae = json.loads((root / "results" / "mnist" / "vae_seed0.json").read_text())
    control = json.loads((root / "results" / "mnist" / "proposal_control" / "vae_seed0.json").read_text())
    assert control["proposal_control"] == {"runs": ["vae"], "valid_images": 5} and control["validation"]["images"] == 5
    assert control["test_ll"]["own"] == pytest.approx(vae["test_ll"], abs=1e-4)  # the protocol's draws
    assert (control["eval_k"], control["n_test"]) == (vae["eval_k"], vae["n_test"])
    assert {"git_commit", "device", "wall_seconds", "command"} <= set(control)


@requires_data
def test_k_curve_record_evaluates_both_runs_at_each_k_with_their_decoder_digest(smoke_grid):
    _, root, _, _ = smoke_grid
    check = json.loads((root / "results" / "mnist" / "k_curve" / "seed0.json").read_text())
    assert check["k_curve"] == {"runs": ["vae", "gp"], "eval_ks": [2, 8], "max_test": 4} and set(check["runs"]) == {"vae", "gp"}
    for run in check["runs"].values():
        assert [c["eval_k"] for c in run["curve"]] == [2, 8] and run["n_test"] == 4
        assert all(len(c["per_example"]) == 4 and c["test_ll"] == pytest.approx(sum(c["per_example"]) / 4, abs=1e-3)
                   for c in run["curve"])
        assert {"git_commit", "device", "wall_seconds"} <= set(run)
    # R4 is fitted to the VAE's encoder errors and leaves its decoder as it was: one p(x) for both
    assert check["runs"]["vae"]["decoder_sha256"] == check["runs"]["gp"]["decoder_sha256"]


@requires_data
def test_difficulty_record_ranks_the_gp_variance_and_the_vae_scores_against_the_vae_gap(smoke_grid):
    _, root, _, _ = smoke_grid
    check = json.loads((root / "results" / "mnist" / "difficulty" / "seed0.json").read_text())
    assert check["difficulty"] == {"runs": ["gp"], "reference": "vae"} and set(check["runs"]) == {"gp"}
    gp = check["runs"]["gp"]
    vae_gaps = json.loads((root / "runs" / "mnist" / "vae_seed0" / "gaps.json").read_text())
    assert gp["n"] == 4 and gp["per_image"]["gap"] == pytest.approx(vae_gaps["amortization_gap"]["per_example"], abs=1e-4)
    assert set(gp["spearman_with_gap"]) == {"mean_function_variance", "variance_function_variance", "encoder_variance",
                                            "negative_elbo", "training_neighbour_distance"}
    assert gp["controls"] == ["training_neighbour_distance"] and min(gp["per_image"]["training_neighbour_distance"]) > 0
    assert set(gp["partial_spearman_given_negative_elbo"]) == {"mean_function_variance", "variance_function_variance"}
    assert gp["scores_of_reference"] == ["encoder_variance", "negative_elbo"] and gp["wall_seconds"] > 0


@requires_data
def test_the_difficulty_design_ranks_its_own_draw_and_commits_the_vae_s_gaps_there(smoke_grid):
    spec, root, _, _ = smoke_grid
    check = json.loads((root / "results" / "mnist" / "difficulty_large" / "seed0.json").read_text())
    gp = check["runs"]["gp"]
    drawn = json.loads((root / "runs" / "mnist" / "vae_seed0" / "difficulty_large_gaps.json").read_text())
    assert gp["n"] == 6 and gp["subset_seed"] == 3 and gp["indices"] == drawn["indices"] and len(gp["converged"]) == 6
    assert gp["per_image"]["gap"] == pytest.approx(drawn["amortization_gap"]["per_example"], abs=1e-4)
    committed = Grid(spec).layout.weights_dir("mnist", "vae", 0) / "difficulty_large_gaps.json"
    assert json.loads(committed.read_text())["indices"] == drawn["indices"]  # a fresh machine restores it


@requires_data
def test_ood_record_scores_the_images_of_other_datasets_by_every_difficulty_score(smoke_grid):
    _, root, _, _ = smoke_grid
    vae, gp = (json.loads((root / "results" / "mnist" / "ood" / f"{run}_seed0.json").read_text()) for run in ("vae", "gp"))
    assert gp["ood"]["sets"] == ["fashion_mnist", "omniglot"] and gp["n"] == 6 and gp["wall_seconds"] > 0
    assert set(gp["auroc"]) == set(gp["roc"]) == {"fashion_mnist", "omniglot"}
    assert set(gp["auroc"]["omniglot"]) == {"mean_function_variance", "variance_function_variance", "encoder_variance",
                                            "negative_elbo", "training_neighbour_distance"}  # with its control
    assert set(vae["auroc"]["omniglot"]) == {"encoder_variance", "negative_elbo"}
    assert all(0 <= v <= 1 for scores in gp["auroc"].values() for v in scores.values())
    # R4 keeps its VAE's encoder: the encoder's variance is one score, so one AUROC
    assert gp["auroc"]["omniglot"]["encoder_variance"] == vae["auroc"]["omniglot"]["encoder_variance"]
    curve = gp["roc"]["fashion_mnist"]["negative_elbo"]
    assert curve["fpr"][0] == curve["tpr"][0] == 0.0 and curve["fpr"][-1] == curve["tpr"][-1] == 1.0


@requires_data
def test_a_diverged_training_is_a_record_and_its_later_jobs_say_so(smoke_grid):
    _, root, _, _ = smoke_grid
    record = json.loads((root / "results" / "mnist" / "diverges_seed0.json").read_text())
    assert record["diverged"].startswith("non-finite loss") and "test_ll" not in record
    assert record["options"]["lr"] == 1e6 and {"git_commit", "device", "command", "budget"} <= set(record)
    assert not (root / "results" / "mnist" / "weights" / "diverges_seed0").exists()  # nothing to evaluate
    ood = json.loads((root / "results" / "mnist" / "ood" / "diverges_seed0.json").read_text())
    assert ood["diverged"] == record["diverged"] and "auroc" not in ood


@requires_data
def test_the_record_job_drops_the_parked_checkpoint_of_a_finished_or_diverged_run(smoke_grid, tmp_path):
    spec, root, _, env = smoke_grid
    shutil.copytree(root / "runs", tmp_path / "runs")
    shutil.copytree(root / "results", tmp_path / "results")
    here = Grid({**spec, "runs_dir": str(tmp_path / "runs"), "results_dir": str(tmp_path / "results")})
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(here.spec))
    targets = []
    for run in ("vae", "diverges"):  # parked by a session that stopped, then finished on another machine
        parked = here.layout.parked_checkpoint("mnist", run, 0)
        parked.parent.mkdir(parents=True)
        parked.write_bytes(b"checkpoint")
        (here.layout.run_dir("mnist", run, 0) / "metrics.json").touch()  # its record to be written again
        targets.append(str(here.layout.record_path("mnist", run, 0)))
    done = subprocess.run([*SNAKEMAKE, *targets, "--configfile", str(tmp_path / "grid.yaml"), "--cores", "1",
                           "--rerun-triggers", "mtime"], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not any(here.layout.parked_checkpoint("mnist", run, 0).parent.exists() for run in ("vae", "diverges"))


@requires_data
def test_ais_record_gives_r4_and_its_vae_one_number_at_the_certified_t(smoke_grid):
    _, root, _, _ = smoke_grid
    vae, gp = (json.loads((root / "results" / "mnist" / "ais" / f"{run}_seed0.json").read_text()) for run in ("vae", "gp"))
    assert vae["run"] == "vae" and vae["ais"]["certificate"] == "vae" and vae["wall_seconds"] > 0
    assert vae["indices"] == gp["indices"] != list(range(5)) and vae["n"] == 5  # the seeded random subset
    assert vae["per_example"] == gp["per_example"] and vae["is"]["per_example"] != gp["is"]["per_example"]
    # the certified setting: of the declared (T, L) = (2, 2), (6, 1), the one of fewest decoder passes
    assert vae["certificate"] == {"steps": 2, "leapfrog": 2, "decoder_passes": 4, "width": vae["certificate"]["width"],
                                  "max_width": 1000.0, "certified": True, "run": "vae"}
    assert (vae["settings"]["steps"], vae["settings"]["leapfrog"]) == (2, 2) and vae["estimator_gap"] == pytest.approx(
        sum(vae["per_example"]) / 5 - sum(vae["is"]["per_example"]) / 5, abs=1e-3)
    cost = json.loads((root / "results" / "mnist" / "ais_cost.json").read_text())
    assert cost["ratio"] > 0 and cost["certificate"]["steps"] == vae["certificate"]["steps"] and cost["command"]
    sandwich = json.loads((root / "results" / "mnist" / "bdmc" / "seed0.json").read_text())["runs"]["vae"]["sandwich"]
    assert [(s["settings"]["steps"], s["settings"]["leapfrog"], s["decoder_passes"]) for s in sandwich] == [
        (2, 2, 4), (6, 1, 6)]


@requires_data
def test_committed_weights_evaluate_and_serve_warm_starts_on_a_fresh_machine(smoke_grid, tmp_path):
    spec, root, _, env = smoke_grid
    weights = root / "results" / "mnist" / "weights" / "vae_seed0"
    assert (weights / "checkpoint.pt").stat().st_size < 2_000_000 and (weights / "metrics.json").exists()
    saved = torch.load(weights / "checkpoint.pt", weights_only=True)
    assert "optimizer" not in saved and all(v.dtype == torch.float32 for v in saved["best_model"].values()
                                            if v.is_floating_point())
    assert cli_main(["evaluate", str(weights), "--max-test", "40"]) == 0
    metrics = json.loads((weights / "metrics.json").read_text())
    again = json.loads((weights / "evaluation_K8_N40.json").read_text())
    assert again["test_ll"] == pytest.approx(metrics["test_ll"], abs=1e-4)
    fresh = Grid({**spec, "runs_dir": str(tmp_path / "runs")})  # no run folders: warm starts read the weights
    assert fresh.chapter_parameters("mnist", "gp", 0)["options"]["init_from"] == str(weights)


@requires_data
def test_a_fresh_machine_restores_finished_runs_instead_of_retraining_them(smoke_grid, tmp_path):
    spec, root, _, env = smoke_grid
    results = tmp_path / "results"
    shutil.copytree(root / "results", results)
    (results / "mnist" / "k_curve" / "seed0.json").unlink()  # a measurement still to make on finished runs
    fresh = {**spec, "runs_dir": str(tmp_path / "runs"), "results_dir": str(results)}
    config = tmp_path / "grid.yaml"
    config.write_text(yaml.safe_dump(fresh))
    plan = subprocess.run([*SNAKEMAKE, "--configfile", str(config), "--cores", "1", "--rerun-triggers", "mtime", "-n"],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert plan.returncode == 0, plan.stderr[-3000:]
    counts = {line.split()[0]: int(line.split()[1]) for line in plan.stdout.splitlines()
              if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert counts.get("train", 0) == 0 and counts.get("gaps", 0) == 0 and counts.get("record", 0) == 0, plan.stdout
    assert counts["k_curve"] == 2 and counts["measurement_record"] == 1
    assert "restored" in plan.stderr and (tmp_path / "runs" / "mnist" / "gp_seed0" / "metrics.json").exists()
    # measured once: AIS and its certificate come back from their records, not from a second measurement
    assert counts.get("ais", 0) == 0 and counts.get("bdmc", 0) == 0, plan.stdout
    restored = json.loads((tmp_path / "runs" / "mnist" / "vae_seed0" / "ais.json").read_text())
    committed = json.loads(Grid(fresh).layout.run_measurement_path("ais", "mnist", "vae", 0).read_text())
    assert restored["per_example"] == committed["per_example"] and "sandwich" in json.loads(
        (tmp_path / "runs" / "mnist" / "vae_seed0" / "bdmc.json").read_text())
    # a record rewritten from restored measurements keeps the wall time of the jobs that measured them
    certificate = json.loads(Grid(fresh).layout.committed_measurement_path("bdmc", "mnist", "vae", 0).read_text())
    rewritten = records.measurement_record(Grid.load(config), "bdmc", "mnist", 0, "snakemake")
    assert rewritten["runs"]["vae"]["wall_seconds"] == certificate["runs"]["vae"]["wall_seconds"] is not None
    assert records.run_measurement_record(Grid.load(config), "ais", "mnist", "vae", 0, "snakemake")["wall_seconds"] \
        == committed["wall_seconds"] is not None
    with pytest.raises(Exception, match="committed weights of a finished run"):
        from gpvae.training import train
        from gpvae.config import TrainConfig
        train(TrainConfig(**{**Grid.load(config).runs["vae"], "out": str(tmp_path / "runs" / "mnist" / "vae_seed0"),
                             "resume": True, "epochs": 2, "max_train": 1000, "max_test": 40, "eval_k": 8,
                             "device": "cpu", "data_dir": str(data_dir())}))


def _planned(spec: dict, folder: Path, env: dict) -> dict[str, int]:
    """The jobs a dry run of grid ``spec`` (written to ``folder``) plans, per rule."""
    config = folder / "grid.yaml"
    config.write_text(yaml.safe_dump(spec))
    plan = subprocess.run([*SNAKEMAKE, "--configfile", str(config), "--cores", "1", "--rerun-triggers", "mtime", "-n"],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert plan.returncode == 0, plan.stderr[-3000:]
    return {line.split()[0]: int(line.split()[1]) for line in plan.stdout.splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()}


@requires_data
def test_a_measurement_whose_settings_changed_is_measured_again_and_its_old_record_not_restored(smoke_grid, tmp_path):
    spec, root, _, env = smoke_grid
    shutil.copytree(root / "runs", tmp_path / "runs")  # this machine, after the grid ran
    shutil.copytree(root / "results", tmp_path / "results")
    here = {**spec, "runs_dir": str(tmp_path / "runs"), "results_dir": str(tmp_path / "results")}
    assert _planned(here, tmp_path, env).get("k_curve", 0) == 0  # the same settings: nothing to measure
    other_ks = {**here, "k_curve": {**here["k_curve"], "eval_ks": [2, 4]}}
    planned = _planned(other_ks, tmp_path, env)
    assert planned["k_curve"] == 2 and planned.get("ais", 0) == 0 and planned.get("train", 0) == 0, planned
    # a fresh machine cannot measure a committed AIS record of another subset again in place: refused, named
    fresh = {**spec, "runs_dir": str(tmp_path / "fresh_runs"), "results_dir": str(tmp_path / "results"),
             "ais": {**spec["ais"], "subset": 4}}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(fresh))
    plan = subprocess.run([*SNAKEMAKE, "--configfile", str(tmp_path / "grid.yaml"), "--cores", "1", "-n"],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    said = plan.stdout + plan.stderr
    assert plan.returncode != 0 and "measured with other settings than the grid declares" in said, said[-3000:]
    assert "ais/vae_seed0.json" in said and "ais/gp_seed0.json" in said
    assert not (tmp_path / "fresh_runs" / "mnist" / "vae_seed0" / "ais.json").exists()  # not restored either
    (tmp_path / "results" / "mnist" / "ais" / "vae_seed0.json").unlink()  # git rm: measured with the new subset
    (tmp_path / "results" / "mnist" / "ais" / "gp_seed0.json").unlink()
    planned = _planned(fresh, tmp_path, env)
    assert planned["ais"] == 2 and planned.get("bdmc", 0) == 0 and planned.get("train", 0) == 0, planned


@requires_data
def test_an_unfinished_run_is_parked_and_resumed_on_a_fresh_machine(smoke_grid, tmp_path):
    spec, root, _, _ = smoke_grid
    fresh = Grid({**spec, "runs_dir": str(tmp_path / "runs"), "results_dir": str(tmp_path / "results")})
    started = fresh.layout.run_dir("mnist", "vae", 0)
    started.mkdir(parents=True)
    shutil.copy(root / "runs" / "mnist" / "vae_seed0" / "checkpoint.pt", started / "checkpoint.pt")
    assert persistence.park(fresh) == [fresh.layout.parked_checkpoint("mnist", "vae", 0)]
    shutil.rmtree(tmp_path / "runs")  # the machine is gone; the parked checkpoint is committed
    assert persistence.unpark(fresh, "mnist", "vae", 0) and (started / "checkpoint.pt").exists()
    assert not persistence.unpark(fresh, "mnist", "vae", 0)  # a folder with a checkpoint is never overwritten


@requires_data
def test_the_converged_chapter_renders_records_of_every_kind(smoke_grid, tmp_path):
    """The chapter's tables, AIS verdicts and figures from real records (the smoke grid's), not only its
    'no record yet' paths."""
    import papermill

    _, root, _, _ = smoke_grid
    out = tmp_path / "converged.ipynb"
    shutil.copytree(root / "results", tmp_path / "results" / "workflow" / "converged")  # a results/ folder's layout
    papermill.execute_notebook(str(REPO / "book" / "converged.ipynb"), str(out), progress_bar=False,
                               parameters={"results_dir": str(tmp_path / "results")})
    text = json.dumps([cell.get("outputs", []) for cell in json.loads(out.read_text())["cells"]])
    assert "GP-RF (R4)" in text and "estimator gap" in text and "by AIS" in text
    assert "no AIS record yet" not in text and "No converged record yet" not in text


@requires_data
def test_finished_grid_is_skipped_and_a_lost_run_resumes_from_its_checkpoint(smoke_grid):
    spec, root, command, env = smoke_grid
    again = subprocess.run([*command, "-n"], cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert "Nothing to be done" in again.stdout + again.stderr
    # an interrupted training: the outputs are gone, the checkpoint stays -> the chapter resumes it
    run = root / "runs" / "mnist" / "vae_seed0"
    checkpoint_before = (run / "checkpoint.pt").stat().st_mtime_ns
    (run / "metrics.json").unlink()
    resumed = subprocess.run([*command, "--", str(root / "runs" / "mnist" / "vae_seed0" / "metrics.json")],
                             cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (run / "checkpoint.pt").stat().st_mtime_ns == checkpoint_before  # no epoch trained again
    assert json.loads((run / "metrics.json").read_text())["epochs_done"] == 1
