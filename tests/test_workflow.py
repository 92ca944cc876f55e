"""The runs-of-record workflow (workflow/Snakefile, gpvae.runs): grids, dry runs of every profile, persistence
and the committed records. The tiny grid run end to end is tests/test_workflow_run.py."""
import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from gpvae import report
from gpvae.runs import jobs, persistence, records, schema, steps
from gpvae.runs.grid import Grid
from gpvae.config import ConfigError

from .conftest import REPO, SNAKEMAKE


def test_cpu_grid_is_every_dataset_model_and_seed_but_vlae_on_logistic_data():
    cpu = Grid.of("cpu")
    cells = cpu.cells()
    assert len(cells) == (3 * 10 - 1) * 3
    assert ("fashion_mnist", "vlae", 0) not in cells and ("mnist", "vlae", 2) in cells
    assert {r["model"] for r in cpu.runs.values()} == {"vae", "iwae", "hf", "iaf", "rme", "savae", "vlae", "gp"}


def test_the_cpu_grid_controls_for_the_extra_epochs_of_the_warm_started_models():
    cpu = Grid.of("cpu")
    assert cpu.controls() == {"vae_extra": ["savae", "vlae"]} and Grid.of("gpu").controls() == {}
    control = cpu.chapter_parameters("omniglot", "vae_extra", 2)
    for run in cpu.controls()["vae_extra"]:  # the same schedule as the models it controls for
        compared = cpu.chapter_parameters("omniglot", run, 2)
        assert (control["epochs"], control["options"]["init_from"]) == (compared["epochs"], compared["options"]["init_from"])
    assert control["model"] == "vae" and control["options"] == {"init_from": f"{cpu.layout.runs_dir}/omniglot/vae_seed2"}


@pytest.mark.parametrize("table", sorted(REPO.glob("results/workflow/*/runs.csv")), ids=lambda path: path.parent.name)
def test_a_committed_table_is_the_table_of_its_committed_records(table, tmp_path):
    """Regression: records rewritten after the last grid pass (Fashion-MNIST's seed-0 runs, SA-VAE's reruns)
    left ``runs.csv`` holding their old numbers; it must be what the ``table`` rule makes of the records."""
    from gpvae import report

    records.write_table(report.load_records(table.parent), tmp_path / "runs.csv")
    assert (tmp_path / "runs.csv").read_text() == table.read_text(), (
        f"{table} differs from its records: make it again with the workflow's table rule")


def test_the_fashion_mnist_savae_clips_its_svi_gradients_on_both_grids():
    for name in ("cpu", "gpu"):
        assert Grid.of(name).chapter_parameters("fashion_mnist", "savae", 0)["options"]["svi_max_grad_norm"] == 100.0
        assert "svi_max_grad_norm" not in Grid.of(name).chapter_parameters("mnist", "savae", 0)["options"]


def test_bench_times_each_architecture_once(monkeypatch):
    timed = []
    monkeypatch.setattr("gpvae.runs.jobs.bench", lambda models, config, repeats: timed.append(models) or {"model": models})
    reports = jobs.bench_grid(Grid.of("cpu"), "mnist")
    assert "vae_extra" not in reports and {"vae", "savae", "gp", "gp_paper"} <= set(reports)
    assert len(timed) == len(reports) == 9


def test_chapter_parameters_warm_start_and_overrides():
    cpu = Grid.of("cpu")
    gp = cpu.chapter_parameters("fashion_mnist", "gp", 1)
    assert gp["options"]["init_from"] == str(REPO / "runs/workflow/cpu/fashion_mnist/vae_seed1")  # the repository's runs_dir
    assert gp["options"]["error_images"] == 2000 and gp["epochs"] == 0  # the dataset's override, the run's epochs
    assert gp["max_train"] == 20000 and gp["max_test"] == 500 and gp["eval_k"] == 500
    vae = cpu.chapter_parameters("mnist", "vae", 0)
    assert vae == {"model": "vae", "dataset": "mnist", "epochs": 20, "max_train": None, "max_test": 2000,
                   "eval_k": 1000, "seed": 0, "device": "cpu", "out": str(REPO / "runs/workflow/cpu/mnist/vae_seed0"),
                   "options": {}}
    assert Grid.of("gpu").chapter_parameters("mnist", "savae", 0)["options"] == {}  # from scratch on a GPU
    drawn = Grid.of("cpu").spec
    drawn["evaluation"]["test_subset_seed"] = 2027  # the max_test images drawn: an option of every run's training
    assert Grid(drawn).chapter_parameters("mnist", "vae", 0)["options"] == {"subset_seed": 2027}
    drawn["evaluation"]["max_test"] = None  # every test image: nothing to draw, and a seed that draws nothing is refused
    with pytest.raises(ConfigError, match="test_subset_seed draws the max_test test images; with max_test null"):
        Grid(drawn)


@pytest.mark.parametrize("change, message", [
    (lambda g: g["runs"]["vae"].update(no_such_option=1), "no_such_option"),
    (lambda g: g["runs"]["gp"].update(warm_start="nothing"), "unknown run 'nothing'"),
    (lambda g: g["runs"]["vae_extra"].update(control_for=["savae", "nothing"]), r"unknown runs \['nothing'\]"),
    (lambda g: g["runs"]["vae_extra"].update(control_for="savae"), "control_for takes a list"),
    (lambda g: g["runs"]["iwae"].update(iwae_k=0), "iwae_k"),
    (lambda g: g.pop("budget"), "missing keys"),
    (lambda g: g["k_curve"].update(runs=["vae", "nothing"]), r"k_curve names unknown runs \['nothing'\]"),
    (lambda g: g["datasets"]["mnist"].update(k_curve={"eval_k": [10]}), "k_curve of mnist needs exactly the keys"),
    (lambda g: g["difficulty"].update(reference="nothing"), r"difficulty names unknown runs \['nothing'\]"),
    (lambda g: g["bdmc"].update(leapfrog=[5, 1]), "bdmc of mnist: AIS leapfrog steps .* one L or one per T"),
    (lambda g: g["ais"].update(leapfrog=5), "ais of mnist needs exactly the keys"),  # the certificate fixes L
    (lambda g: g["ais"].update(chains=0), "ais of mnist: chains takes a positive integer, got 0"),
    (lambda g: g["ais"].update(subset=-5), "ais of mnist: subset takes a positive integer, got -5"),
    (lambda g: g["ais"].update(subset_seed="2026"), "ais of mnist: subset_seed takes an integer or null"),
    (lambda g: g["ais"].update(certificate="iwae"), "certificate run 'iwae' has no bdmc measurement"),
    (lambda g: g["bdmc"].update(images=0.5), "bdmc of mnist: images takes a positive integer"),
    (lambda g: g["bdmc"].update(max_width=0), "bdmc of mnist: max_width takes a positive number"),
    (lambda g: g["k_curve"].update(max_test=True), "k_curve of mnist: max_test takes a positive integer"),
    (lambda g: g["evaluation"].update(test_subset_sed=1), r"evaluation of mnist needs .*unknown: \['test_subset_sed'\]"),
    (lambda g: g["evaluation"].pop("gap_eval_k"), r"evaluation of mnist needs .*missing: \['gap_eval_k'\]"),
    (lambda g: g["evaluation"].update(test_subset_seed=-1), "evaluation of mnist: test_subset_seed takes a seed"),
])
def test_invalid_grids_are_refused_with_the_reason(change, message):
    bad = Grid.of("cpu").spec
    change(bad)
    with pytest.raises(ConfigError, match=message):
        Grid(bad)


def test_an_ais_job_whose_certificate_run_diverged_names_it(tmp_path):
    cpu = Grid.of("cpu").replace(runs_dir=str(tmp_path))
    folder = cpu.layout.run_dir("mnist", "vae", 0)
    folder.mkdir(parents=True)
    (folder / "bdmc.json").write_text(json.dumps({"diverged": "non-finite loss at epoch 3", "run_dir": str(folder)}))
    with pytest.raises(ConfigError, match=r"mnist seed 0: the AIS certificate run 'vae' diverged \(non-finite loss"):
        jobs.ais_measurement(cpu, "mnist", "gp", 0)


def test_the_certified_ais_setting_is_the_cheapest_within_the_width_else_the_costliest():
    def entry(steps, leapfrog, width):
        return {"settings": {"steps": steps, "leapfrog": leapfrog, "chains": 1}, "width": width}

    measured = {"sandwich": [entry(250, 5, 6.5), entry(4000, 1, 0.45), entry(1000, 5, 0.4), entry(4000, 5, 0.1)]}
    assert jobs.certified_setting(measured, 0.5) == {"steps": 4000, "leapfrog": 1, "decoder_passes": 4000,
                                                   "width": 0.45, "max_width": 0.5, "certified": True}
    assert jobs.certified_setting(measured, 0.42)["decoder_passes"] == 5000  # (1000, 5): fewer passes than (4000, 5)
    fallback = jobs.certified_setting(measured, 0.05)
    assert (fallback["steps"], fallback["leapfrog"], fallback["certified"]) == (4000, 5, False)


def test_a_measurement_of_a_run_retrained_into_another_model_is_refused(tmp_path):
    cpu = Grid.of("cpu").replace(runs_dir=str(tmp_path / "runs"), results_dir=str(tmp_path / "results"))
    folder, committed = cpu.layout.run_dir("mnist", "vae", 0), cpu.layout.record_path("mnist", "vae", 0)
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"test_ll": -98.25}))
    (folder / "ais.json").write_text(json.dumps({"mean": -97.0, "run_dir": str(folder)}))
    assert records.run_measurement_record(cpu, "ais", "mnist", "vae", 0, "cmd")["mean"] == -97.0  # no record yet
    committed.parent.mkdir(parents=True)
    committed.write_text(json.dumps({"test_ll": -98.25}))
    assert records.run_measurement_record(cpu, "ais", "mnist", "vae", 0, "cmd")["mean"] == -97.0  # the recorded model
    committed.write_text(json.dumps({"test_ll": -98.31}))
    with pytest.raises(ConfigError, match=r"-98.2500 is not the committed record's -98.3100"):
        records.run_measurement_record(cpu, "ais", "mnist", "vae", 0, "cmd")
    # the folder's gap decomposition, which AIS reads for the approximation gap, is checked the same way
    committed.write_text(json.dumps({"test_ll": -98.25, "gaps": {"log_px": -97.5, "elbo_opt": -101.0, "n": 100,
                                                                 "subset_seed": None}}))

    def gaps(elbo_opt, n=100):
        return {"log_px": {"mean": -97.5}, "elbo_opt": {"mean": elbo_opt}, "n": n, "subset_seed": None}

    (folder / "gaps.json").write_text(json.dumps(gaps(-101.0)))
    assert records.run_measurement_record(cpu, "ais", "mnist", "vae", 0, "cmd")["mean"] == -97.0
    (folder / "gaps.json").write_text(json.dumps(gaps(-100.2)))
    with pytest.raises(ConfigError, match=r"elbo_opt -100.2000 is not the committed record's -101.0000"):
        records.run_measurement_record(cpu, "ais", "mnist", "vae", 0, "cmd")
    (folder / "gaps.json").write_text(json.dumps(gaps(-101.0, n=50)))
    with pytest.raises(ConfigError, match="covers 50 images"):  # other images: named as such
        records.run_measurement_record(cpu, "ais", "mnist", "vae", 0, "cmd")
    # an AIS with a gap subset is checked on the decomposition it used, not on the folder's later gaps.json
    used = {"n": 100, "subset_seed": None, "is": -97.5, "elbo_opt": -100.7}
    (folder / "ais.json").write_text(json.dumps({"mean": -97.0, "run_dir": str(folder), "gap_subset": used}))
    (folder / "gaps.json").write_text(json.dumps(gaps(-101.0)))
    with pytest.raises(ConfigError, match=r"elbo_opt -100.7000 is not the committed record's -101.0000"):
        records.run_measurement_record(cpu, "ais", "mnist", "vae", 0, "cmd")


def test_seeds_from_the_command_line():
    cpu = Grid.of("cpu")
    for given, expected in ((1, [1]), ("[0, 2]", [0, 2]), ([2], [2])):
        assert cpu.replace(seeds=given).seeds == expected


def dry_run_counts(profile: str, tmp_path: Path) -> dict[str, int]:
    """Jobs per rule of a profile's whole plan: empty run and record folders (the committed records would
    be skipped)."""
    done = subprocess.run([*SNAKEMAKE, "--profile", f"workflow/profiles/{profile}", "-n", "--directory", str(REPO),
                           "--config", f"runs_dir={tmp_path}/runs", f"results_dir={tmp_path}/results"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    return {line.split()[0]: int(line.split()[1]) for line in done.stdout.splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()}


@pytest.mark.parametrize("profile, jobs", [("cpu", 87), ("gpu", 78), ("slurm", 78)])
def test_dry_run_of_each_profile(profile, jobs, tmp_path):
    counts = dry_run_counts(profile, tmp_path)
    assert counts["train"] == jobs and counts["bench"] == 3 and counts["table"] == 1
    assert counts["k_curve"] == 2 * 3 * 3 and counts["difficulty"] == 3 * 3  # R4 (and its VAE), per dataset and seed
    assert counts["bdmc"] == 3 * 3 and counts["ais"] == counts["run_measurement_record"] == jobs  # the certificate; every run
    assert counts["ais_cost"] == 3  # AIS against IS, per dataset, holding the machine
    assert counts["measurement_record"] == 3 * 3 * 3


def test_dry_run_of_the_study_profile(tmp_path):
    # the readings study is a grid of the same Snakefile: every run trained, measured and recorded
    counts = dry_run_counts("study", tmp_path)
    assert counts["train"] == counts["gaps"] == counts["record"] == counts["ood"] == 23
    assert counts["run_measurement_record"] == 23 and counts["bench"] == 2  # ood per run; each dataset's bench
    assert counts["difficulty"] == 7 + 3 + 3 + 3 and counts["measurement_record"] == 4  # mnist seeds 0-2, omniglot


def test_every_converged_run_a_claim_compares_with_gp_rf_has_gp_rf_s_seeds(tmp_path):
    converged = Grid.of("converged").replace(results_dir=str(tmp_path))
    gp_seeds = converged.run_seeds("mnist", "gp")
    assert gp_seeds == [0, 1, 2]
    assert converged.side_runs() == ["vae_burda", "iwae_burda"]  # budget points at seed 0, compared by no claim
    assert all(converged.run_seeds("mnist", run) == gp_seeds for run in converged.runs if run not in converged.side_runs())
    # the measurements follow the seeds, except those declared for named seeds (K = 5000, the frontier)
    assert converged.measurement_cells("bdmc") == [("mnist", 0), ("mnist", 1), ("mnist", 2)]
    assert {(run, seed) for _, run, seed in converged.run_measurement_cells("ais")} == {
        (run, seed) for run in converged.spec["ais"]["runs"] for seed in converged.run_seeds("mnist", run)}
    assert converged.measurement_cells("k_curve") == converged.measurement_cells("frontier") == [("mnist", 0)]
    with pytest.raises(ConfigError, match="no run of the grid is measured there"):  # an empty record is refused
        records.measurement_record(converged, "k_curve", "mnist", 1, "cmd")
    with pytest.raises(ConfigError, match="not a cell of the grid's ais measurement"):
        records.run_measurement_record(converged, "ais", "mnist", "nope", 1, "cmd")
    with pytest.raises(ConfigError, match="seeds takes a list"):
        converged.replace(k_curve={**converged.spec["k_curve"], "seeds": 0})
    with pytest.raises(ConfigError, match="dataset 'mnist': seeds"):
        converged.replace(datasets={"mnist": {**converged.datasets["mnist"], "seeds": 0}})
    with pytest.raises(ConfigError, match="seed_rule is no longer read"):
        converged.replace(seed_rule={"extra_seeds": [1], "within_nats": 1.0, "of": ["gp"]})
    with pytest.raises(ConfigError, match="ais of mnist/vae/seed 1: its certificate run 'vae' has no bdmc measurement at seed 1"):
        converged.replace(bdmc={**converged.spec["bdmc"], "seeds": [0]})
    # a run's own seeds, and the dataset's skip, limit a run's cells
    two_seed_gp = converged.replace(runs={**converged.runs, "gp": {**converged.runs["gp"], "seeds": [0, 2]}})
    assert set(converged.cells()) - set(two_seed_gp.cells()) == {("mnist", "gp", 1)}


def test_a_grid_file_reads_its_repositorys_records_from_any_working_folder(tmp_path, monkeypatch):
    """Relative runs_dir and results_dir are the repository's (where Snakemake runs), not the caller's: a
    chapter executed from book/ sees the same records."""
    repo = tmp_path / "repo"
    (repo / "workflow" / "config").mkdir(parents=True)
    (repo / "workflow" / "Snakefile").write_text("")
    spec = yaml.safe_load((REPO / "workflow" / "config" / "converged.yaml").read_text())
    (repo / "workflow" / "config" / "converged.yaml").write_text(yaml.safe_dump(spec))
    for run, test_ll in {"vae": -88.56, "gp": -88.50}.items():
        path = repo / spec["results_dir"] / "mnist" / f"{run}_seed0.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"test_ll": test_ll}))
    monkeypatch.chdir(tmp_path)  # elsewhere: a relative results_dir would find nothing here
    loaded = Grid.load(repo / "workflow" / "config" / "converged.yaml")
    assert loaded.layout.results_dir == repo / spec["results_dir"] and loaded.layout.runs_dir == repo / spec["runs_dir"]
    assert ("mnist", "gp", 2) in loaded.cells() and ("mnist", "vae", 1) in loaded.cells()
    outside = tmp_path / "grid.yaml"  # a grid file outside any repository keeps its paths as written
    outside.write_text(yaml.safe_dump(spec))
    assert str(Grid.load(outside).layout.results_dir) == spec["results_dir"]


def test_a_grid_of_record_is_named_by_its_profile_and_read_from_another_results_folder(tmp_path):
    """Grid.of is the one place that knows where grid files and their records live: the profile's records are
    results_root/workflow/<profile> (a chapter's results_dir parameter), the repository's by default; an
    unknown profile is refused naming the known ones."""
    assert Grid.of("converged").layout.results_dir == REPO / "results" / "workflow" / "converged"
    assert Grid.of("iw", tmp_path).layout.results_dir == tmp_path / "workflow" / "iw"
    assert Grid.of("iw", tmp_path).layout.runs_dir == REPO / "runs" / "workflow" / "iw"
    with pytest.raises(ConfigError, match="no grid of record named 'cnverged'.*converged, cpu"):
        Grid.of("cnverged")


def test_dry_run_of_the_converged_profile(tmp_path):
    """The converged MNIST grid: 12 runs of three seeds (R5 and its control also at the source's learning
    rate, R1 with the importance-weighted bound, R4 on held-out errors), each with its gaps and record, all but
    R4 on held-out errors (its VAE's decoder, so its VAE's AIS) with AIS; the VAE and IWAE on Burda et al.'s
    schedule at seed 0; the VAE's BDMC per seed; K = 5000 and R4's frontier on the VAE at seed 0 only;
    the difficulty of R4 and R5 on the gap subset and on 2,000 images of its own draw, the VAE's gaps there once per
    seed; out of distribution for the VAE, R4 and R5 at every seed."""
    counts = dry_run_counts("converged", tmp_path)
    assert counts["train"] == counts["gaps"] == counts["record"] == 12 * 3 + 2 and counts["ais"] == 11 * 3 + 2
    assert counts["bdmc"] == 3 and counts["k_curve"] == 6 and counts["difficulty"] == 2 * 3 and counts["frontier"] == 1
    assert counts["difficulty_large"] == 2 * 3 and counts["difficulty_gaps"] == 3 and counts["ood"] == 3 * 3
    assert counts["measurement_record"] == 5 + 3 * 2  # k_curve, difficulty(_large), bdmc, frontier; the three at seeds 1-2
    assert counts["ais_cost"] == 1
    converged = Grid.of("converged")
    vae = converged.chapter_parameters("mnist", "vae", 0)
    assert vae["epochs"] == 1500 and vae["max_test"] is None and vae["options"]["patience"] == 50
    assert converged.chapter_parameters("mnist", "gp", 0)["options"]["error_images"] == 50000
    held_out = converged.chapter_parameters("mnist", "gp_heldout", 1)["options"]
    assert held_out["error_source"] == "valid" and held_out["error_svi_steps"] == 5000
    burda = converged.chapter_parameters("mnist", "iwae_burda", 0)
    assert burda["epochs"] == 3280 and burda["options"]["lr_schedule"] == "burda" and burda["options"]["patience"] is None


def test_the_importance_weighted_screen_is_its_own_grid_of_every_run_it_compares(tmp_path):
    """IWAE, R1 and the two importance-weighted readings on MNIST and Omniglot-28, 3 seeds, each with its gaps,
    AIS and record; the VAE's BDMC per seed certifies AIS."""
    iw = Grid.of("iw")
    assert iw.chapter_parameters("omniglot", "gp_iw", 1)["options"] == {"gp_preset": "paper", "objective": "iw", "iw_k": 5}
    assert iw.chapter_parameters("mnist", "gp_iw_expected", 2)["options"]["objective"] == "iw_expected"
    assert iw.chapter_parameters("mnist", "iwae", 0)["options"]["iwae_k"] == 5
    assert iw.layout.results_dir != Grid.of("cpu").layout.results_dir
    counts = dry_run_counts("iw", tmp_path)
    assert counts["train"] == counts["gaps"] == counts["record"] == counts["ais"] == 5 * 2 * 3 and counts["bdmc"] == 2 * 3


def test_without_a_profile_the_workflow_says_how_to_run_it():
    done = subprocess.run([*SNAKEMAKE, "-n", "--cores", "1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "--profile workflow/profiles/cpu" in done.stdout + done.stderr


def test_a_run_with_its_record_drops_its_parked_checkpoint(tmp_path):
    cpu = Grid.of("cpu").replace(results_dir=str(tmp_path))
    parked = cpu.layout.parked_checkpoint("mnist", "savae", 0)
    parked.parent.mkdir(parents=True)
    parked.write_bytes(b"checkpoint")
    parked.with_suffix(".partial").write_bytes(b"half")  # an interrupted park's copy
    persistence.drop_parked(cpu, "mnist", "savae", 0)
    assert not parked.parent.exists()
    persistence.drop_parked(cpu, "mnist", "savae", 0)  # nothing parked: nothing to do


def test_a_training_that_failed_without_diverging_fails_its_job(tmp_path):
    assert not steps.diverged(tmp_path)  # no diverged.json: the job's error stands
    (tmp_path / "metrics.json").write_text(json.dumps({"test_ll": -90.0}))
    assert not steps.diverged(tmp_path, tmp_path / "gaps.json") and not (tmp_path / "gaps.json").exists()


def test_runs_and_datasets_may_name_fewer_seeds_and_grouped_measurements_hold_the_runs_present():
    study = Grid.of("study")
    assert study.run_seeds("mnist", "r4_gp") == [0, 1, 2] and study.run_seeds("mnist", "r1_paper") == [0]
    assert study.run_seeds("omniglot", "r4_gp") == [0]
    assert study.measurement_cells("difficulty") == [("mnist", 0), ("mnist", 1), ("mnist", 2), ("omniglot", 0)]
    assert study.measured_at("difficulty", "mnist", 1) == ["r3_posthoc", "r4_gp", "r4_knn"]
    assert study.replace(seeds=[1]).run_seeds("mnist", "r1_paper") == []  # --config seeds=1: R1 has none
    with pytest.raises(ConfigError, match="seeds takes a list"):
        study.replace(runs={**study.runs, "vae": {"model": "vae", "seeds": 0}})


def test_recorded_settings_are_the_keys_a_measurement_takes_now():
    record = {"ais": {"runs": ["vae"], "subset": 500, "subset_seed": 2026, "chains": 1, "leapfrog": 5,
                      "certificate": "vae"}}  # before the certificate fixed L
    converged = Grid.of("converged")
    assert schema.recorded_settings(record, "ais") == converged.measurement_settings("ais", "mnist")
    del record["ais"]["chains"]  # a record without a key the measurement takes: other settings
    assert schema.recorded_settings(record, "ais") != converged.measurement_settings("ais", "mnist")


def test_a_change_of_how_values_are_analysed_measures_nothing_again():
    converged = Grid.of("converged")
    settings = converged.measurement_settings("difficulty_large", "mnist")
    assert {"images", "subset_seed", "reference"} <= set(settings) and not {"combination", "resamples"} & set(settings)
    record = {"difficulty_large": {**converged.spec["difficulty_large"], "resamples": 10, "combination": ["a", "b"]}}
    assert schema.recorded_settings(record, "difficulty_large") == settings
    record["difficulty_large"]["images"] = 500  # another draw: measured again
    assert schema.recorded_settings(record, "difficulty_large") != settings


def test_a_first_settings_file_is_dated_now_where_a_committed_record_holds_other_settings(tmp_path):
    converged = Grid.of("converged").replace(runs_dir=str(tmp_path / "runs"), results_dir=str(tmp_path / "results"))
    record = converged.layout.run_measurement_path("ais", "mnist", "vae", 0)
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"ais": {**converged.spec["ais"], "subset": 100}}))  # another subset than the grid's
    folder = converged.layout.run_dir("mnist", "vae", 0)
    folder.mkdir(parents=True)
    (folder / "ais.json").write_text("{}")  # this machine's value, of unknown settings
    assert records.stale_records(converged) == []  # present here: measured again, not stale
    written = {path.name: path.stat().st_mtime for path in persistence.date_settings(converged)}
    assert written["ais.settings.json"] > 1e9 and written["k_curve.settings.json"] == 0  # now; the epoch
    (folder / "ais.json").unlink()
    (folder.parent / "ais.settings.json").unlink()
    assert records.stale_records(converged) == [record]  # a fresh machine: refused by the Snakefile, named


def test_targets_of_one_dataset_and_seed(capsys, monkeypatch):
    """What `make results` prioritizes: the records of one dataset and seed, and nothing else, as paths
    Snakemake takes from the repository."""
    monkeypatch.chdir(REPO)
    assert jobs.main(["targets", str(REPO / "workflow" / "config" / "cpu.yaml"), "fashion_mnist", "1"]) == 0
    paths = capsys.readouterr().out.split()
    assert len(paths) == 21 and all(p.startswith("results/workflow/cpu/fashion_mnist/") for p in paths)
    assert sum(p.endswith("_seed1.json") and "/ais/" not in p for p in paths) == 9
    assert {f"results/workflow/cpu/fashion_mnist/{m}/seed1.json" for m in ("k_curve", "difficulty", "bdmc")} <= set(paths)
    assert sum("/ais/" in p for p in paths) == 9  # AIS of every run, recorded run by run


def test_every_committed_record_follows_the_schema_of_its_kind():
    # results/README.md: one schema for the runs of every profile (converted study and hand-run records included;
    # a run by hand has gaps only where it was decomposed)
    base = {"dataset", "run", "seed", "profile", "budget", "command", "options", "git_commit", "device"}
    workflow = REPO / "results" / "workflow"
    records = [json.loads(p.read_text()) for p in sorted(workflow.glob("*/*/*_seed*.json"))]
    hand = {p.name for p in workflow.glob("hand_*")}
    assert {r["profile"] for r in records} == {"cpu", "converged", "study", "iw"} | hand - {"hand_bench"}
    assert not list(REPO.glob("results/*/*/metrics.json")), "a run folder outside results/workflow/: convert it"
    for record in records:
        assert base <= set(record), (record["profile"], record["run"], base - set(record))
        assert record["profile"] not in hand or {"path", "measured_at"} <= set(record["converted_from"])
        if "diverged" not in record:
            assert {"test_ll", "test_elbo", "eval_k", "n_test", "history"} <= set(record)
            assert "gaps" in record or record["profile"] in hand, (record["profile"], record["run"])
            assert "gaps" not in record or {"elbo_opt", "elbo_model", "amortization_gap", "n"} <= set(record["gaps"])
    for path in sorted(workflow.glob("*/*/evaluation/*_seed*.json")):
        evaluation = json.loads(path.read_text())
        assert {"dataset", "run", "seed", "evaluation", "per_image", "model_summary", "command"} <= set(evaluation)
        assert all(len(v) == evaluation["evaluation"]["n_test"] for v in evaluation["per_image"].values())
    for path in sorted(workflow.glob("*/*/bench.json")):
        assert all({"results", "device", "threads", "repeats", "git_commit"} <= set(report)
                   for report in json.loads(path.read_text()).values()), path
    for path in sorted((REPO / "results" / "workflow").glob("*/*/ood/*_seed*.json")):
        ood = json.loads(path.read_text())
        assert {"dataset", "run", "seed", "ood", "command"} <= set(ood) and ("diverged" in ood or set(ood["auroc"]) == set(
            ood["ood"]["sets"]))


def test_a_value_measured_again_is_its_record_s_within_float32_rounding_at_its_size():
    same = {"n": 50, "subset_seed": None, "is": -1804.1779, "elbo_opt": -1810.0}
    recorded = {"n": 50, "subset_seed": None, "log_px": -1804.1780, "elbo_opt": -1810.0}
    assert records.gap_decomposition_mismatch(same, recorded) is None  # one float32 step at 1,804 nats
    assert "log_px -1804.1700" in records.gap_decomposition_mismatch({**same, "is": -1804.17}, recorded)
    # at MNIST's size the absolute tolerance decides: 2e-4 nats is another model
    assert records.gap_decomposition_mismatch({**same, "is": -97.0002}, {**recorded, "log_px": -97.0}) is not None
    assert records.same_recorded_value(-97.00005, -97.0) and not records.same_recorded_value(-1804.0, -1804.01)


def test_a_side_run_is_counted_among_no_claim_s_models():
    converged = Grid.of("converged")
    table = pd.DataFrame({"mean": [1.0, 2.0, 3.0]}, index=pd.Index(["iwae", "vae_burda", "vae_continued"], name="run"))
    assert list(report.models_only(table, converged).index) == ["iwae"]  # neither the side run nor the control
    with pytest.raises(ConfigError, match="compared takes true or false"):
        converged.replace(runs={**converged.spec["runs"], "vae_burda": {**converged.runs["vae_burda"], "compared": "no"}})
