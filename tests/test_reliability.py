"""Nothing silently wrong, tried as a new user would (through the CLI): caches that cannot go stale,
divergence that stays finite, corrupt or foreign files, options that cannot all hold, resumption
without the warm start's source. Every case gives a correct result or exit 2 / 3 naming the problem."""
import json
import shutil
import subprocess
import sys

import pytest
import torch

from gpvae import run_folder
from gpvae.data import cache_dir
from gpvae import cli
from gpvae.config import ConfigError, TrainConfig

from .conftest import REPO, data_dir, requires_data

pytestmark = requires_data
SMALL = ["--max-train", "1000", "--max-test", "60", "--eval-k", "20", "--device", "cpu"]
ERRORS = ["--error-images", "100", "--error-svi-steps", "100", "--error-inducing", "32"]


def _train(tmp_path, out, *args) -> int:
    return cli.main(["train", *SMALL, "--data-dir", str(data_dir()), "--out", str(tmp_path / out), *args])


def _metrics(tmp_path, out) -> dict:
    return json.loads((tmp_path / out / "metrics.json").read_text())


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


@pytest.fixture
def vae(tmp_path):
    assert _train(tmp_path, "vae", "--model", "vae", "--epochs", "1") == 0
    return tmp_path / "vae"


def test_the_error_fit_cache_follows_the_source_weights(tmp_path, vae):
    """R4 fitted to a VAE trained further gives what a fit to a clean copy of that VAE gives."""
    assert _train(tmp_path, "gp1", "--model", "gp", "--init-from", str(vae), "--epochs", "0", *ERRORS) == 0
    assert _train(tmp_path, "vae", "--model", "vae", "--epochs", "2", "--resume") == 0
    shutil.copytree(vae, tmp_path / "clean")
    assert _train(tmp_path, "gp2", "--model", "gp", "--init-from", str(vae), "--epochs", "0", *ERRORS) == 0
    assert _train(tmp_path, "gp3", "--model", "gp", "--init-from", str(tmp_path / "clean"), "--epochs", "0", *ERRORS) == 0
    assert _metrics(tmp_path, "gp2")["test_ll"] == _metrics(tmp_path, "gp3")["test_ll"]
    assert _metrics(tmp_path, "gp2")["test_ll"] != _metrics(tmp_path, "gp1")["test_ll"]
    assert not list(vae.glob("*cache*")), "a fit wrote into its source run's folder"


def test_a_damaged_fit_cache_is_recomputed(tmp_path, vae, monkeypatch):
    assert _train(tmp_path, "gp1", "--model", "gp", "--init-from", str(vae), "--epochs", "0", *ERRORS) == 0
    caches = list((cache_dir() / "fits").glob("svi_errors_*.pt"))
    assert caches
    for cache in caches:
        _truncate(cache)
    assert _train(tmp_path, "gp2", "--model", "gp", "--init-from", str(vae), "--epochs", "0", *ERRORS) == 0
    assert _metrics(tmp_path, "gp2")["test_ll"] == _metrics(tmp_path, "gp1")["test_ll"]


def test_divergence_that_stays_finite_exits_3_and_writes_no_metrics(tmp_path, capsys):
    assert _train(tmp_path, "lr1", "--model", "vae", "--epochs", "3", "--lr", "1") == 3
    err = capsys.readouterr().err
    assert "diverged" in err and "Traceback" not in err
    assert not (tmp_path / "lr1" / "metrics.json").exists()
    checkpoint = tmp_path / "lr1" / "checkpoint.pt"
    if checkpoint.exists():  # only finite epochs are ever checkpointed
        saved = run_folder.load_checkpoint(tmp_path / "lr1")
        assert all(torch.isfinite(torch.tensor([h["valid_elbo"], h["train_loss"]])).all() for h in saved["history"])
    else:
        assert "nothing was saved" in err


def test_a_checkpoint_without_a_finite_epoch_is_refused_by_evaluate(tmp_path, vae, capsys):
    saved = torch.load(vae / "checkpoint.pt", weights_only=True)
    saved["best_valid_elbo"] = float("nan")
    torch.save(saved, vae / "checkpoint.pt")
    assert cli.main(["evaluate", str(vae)]) == 2
    assert "no trained parameters" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["evaluate", "resume", "init_from"])
def test_a_truncated_checkpoint_is_named_with_exit_2(tmp_path, vae, capsys, how):
    _truncate(vae / "checkpoint.pt")
    if how == "evaluate":
        code = cli.main(["evaluate", str(vae)])
    elif how == "resume":
        code = _train(tmp_path, "vae", "--model", "vae", "--epochs", "2", "--resume")
    else:
        code = _train(tmp_path, "gp", "--model", "gp", "--init-from", str(vae), "--epochs", "0", *ERRORS)
    err = capsys.readouterr().err
    assert code == 2 and "checkpoint.pt" in err and "Traceback" not in err, err


def test_damaged_decompressed_data_is_refused_in_the_data_folder_and_redone_in_the_cache(tmp_path, capsys):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in (data_dir() / "MNIST" / "raw").glob("*.gz"):
        shutil.copy(gz, raw)
    assert _train(tmp_path, "a", "--model", "vae", "--epochs", "0", "--data-dir", str(tmp_path / "data")) == 0
    cached = cache_dir() / "data" / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    _truncate(cached)
    assert _train(tmp_path, "b", "--model", "vae", "--epochs", "0", "--data-dir", str(tmp_path / "data")) == 0
    assert _metrics(tmp_path, "b")["test_ll"] == _metrics(tmp_path, "a")["test_ll"]
    shutil.copy(cached, raw / cached.name)  # a decompressed file in the data folder itself ...
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(cached.parent / name, raw / name)
    _truncate(raw / cached.name, 0.9)  # ... damaged
    capsys.readouterr()
    assert _train(tmp_path, "c", "--model", "vae", "--epochs", "0", "--data-dir", str(tmp_path / "data")) == 2
    err = capsys.readouterr().err
    assert "t10k-images-idx3-ubyte" in err and "damaged" in err


@pytest.mark.parametrize("args, message", [
    (["--model", "gp", "--error-images", "5000"], "exceeds the 1000 training images"),
    (["--model", "gp", "--error-source", "valid", "--error-images", "10001"], "exceeds the 10000 validation images"),
    (["--model", "gp", "--gp-preset", "paper", "--gp-fit", "errors"], "gp_fit"),
    (["--model", "gp", "--error-model", "knn", "--error-images", "100", "--error-neighbours", "500"], "error_neighbours"),
    (["--model", "vae", "--lr-schedule", "plateau", "--lr-factor", "1.5"], "lr_factor"),
])
def test_options_that_cannot_all_hold_are_refused_before_any_work(tmp_path, capsys, args, message):
    assert _train(tmp_path, "x", *args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert not (tmp_path / "x" / "checkpoint.pt").exists()


def test_burda_s_schedule_lowers_the_rate_by_stages_of_3_to_the_i_epochs(tmp_path):
    from gpvae.training import burda_rate
    stages = [burda_rate(1.0, e) for e in range(3280)]
    assert [stages.count(10 ** (-i / 7)) for i in range(8)] == [3 ** i for i in range(8)]  # 3,280 epochs in all
    assert burda_rate(1e-3, 5000) == pytest.approx(1e-4)  # the last stage's rate after them
    assert _train(tmp_path, "b", "--model", "vae", "--epochs", "5", "--max-train", "200", "--lr-schedule", "burda") == 0
    rates = [h["lr"] for h in _metrics(tmp_path, "b")["history"]]
    assert rates == pytest.approx([burda_rate(1e-3, e) for e in range(5)])  # epoch by epoch, as trained


def test_r4_on_held_out_errors_observes_the_validation_images_as_they_are(tmp_path, vae):
    """--error-source valid: the errors of the first validation images (binarized once, never trained on),
    and the nearest-neighbour control measured against those images."""
    assert _train(tmp_path, "gp", "--model", "gp", "--init-from", str(vae), "--epochs", "0", "--error-source", "valid",
                  *ERRORS) == 0
    config, data, model, _ = run_folder.load_run(tmp_path / "gp", data_dir=str(data_dir()))
    assert config.error_source == "valid" and torch.equal(model.fit_images(data, config.seed), data.valid[:100])
    assert _metrics(tmp_path, "gp")["fits"][-1]["svi"]["images"] == 100


def test_the_default_error_images_adapt_to_the_training_images(tmp_path, vae):
    """--max-train 300 with --error-images left at its default observes the errors of all 300 images; a value
    given beyond them is refused (above)."""
    assert _train(tmp_path, "gp", "--model", "gp", "--init-from", str(vae), "--epochs", "0", "--max-train", "300",
                  "--error-svi-steps", "100", "--error-svi-samples", "1", "--error-inducing", "32") == 0
    assert _metrics(tmp_path, "gp")["fits"][0]["svi"]["images"] == 300


def test_a_gap_decomposition_that_is_not_finite_is_refused_and_writes_nothing(tmp_path, vae, monkeypatch, capsys):
    from gpvae import measurements

    nan = {"mean": float("nan"), "per_example": [float("nan")]}
    monkeypatch.setattr(measurements, "amortization_gaps", lambda *args, **kwargs: {
        "log_px": {"mean": -90.0, "per_example": [-90.0]}, "elbo_opt": nan, "elbo_model": {"mean": -95.0}})
    assert cli.main(["evaluate", str(vae), "--gaps", "--gap-subset", "3", "--eval-k", "5"]) == 3
    assert "elbo_opt" in capsys.readouterr().err and not (vae / "gaps.json").exists()


def test_python_api_names_a_value_of_the_wrong_type():
    with pytest.raises(ConfigError, match=r"epochs = '2' \(str\) must be int"):
        TrainConfig(epochs="2")
    with pytest.raises(ConfigError, match="lr = '1e-05'"):
        TrainConfig(lr="1e-05")


def test_evaluate_runs_every_measurement_asked_for(tmp_path, vae):
    assert cli.main(["evaluate", str(vae), "--gaps", "--gap-subset", "3", "--eval-k", "5",
                     "--k-curve", "2", "4", "--max-test", "3"]) == 0
    assert (vae / "gaps.json").exists() and (vae / "k_curve.json").exists()


def test_difficulty_against_a_run_without_gaps_names_the_missing_file(tmp_path, vae, capsys):
    assert _train(tmp_path, "gp", "--model", "gp", "--init-from", str(vae), "--epochs", "0", *ERRORS) == 0
    assert cli.main(["evaluate", str(tmp_path / "gp"), "--difficulty", str(vae)]) == 2
    assert "gaps.json does not exist" in capsys.readouterr().err


def test_difficulty_on_a_draw_of_its_own_reads_the_reference_s_named_gaps(tmp_path, vae):
    """difficulty_large's two steps: the reference's gaps on images of its own draw (another file than the
    run's gap subset), then a run's difficulty against them, with each image's SVI convergence."""
    assert _train(tmp_path, "gp", "--model", "gp", "--init-from", str(vae), "--epochs", "0", *ERRORS) == 0
    assert cli.main(["evaluate", str(vae), "--gaps", "--gaps-name", "drawn_gaps", "--gap-subset", "6",
                     "--subset-seed", "3", "--eval-k", "5"]) == 0
    assert not (vae / "gaps.json").exists()
    assert cli.main(["evaluate", str(tmp_path / "gp"), "--difficulty", str(vae), "--gaps-name", "drawn_gaps",
                     "--difficulty-name", "drawn"]) == 0
    drawn, gaps = (json.loads((path).read_text()) for path in (tmp_path / "gp" / "drawn.json", vae / "drawn_gaps.json"))
    assert drawn["n"] == 6 and drawn["indices"] == gaps["indices"] and drawn["subset_seed"] == 3
    assert len(drawn["converged"]) == 6 and all(isinstance(c, bool) for c in drawn["converged"])
    assert sum(b["images"] for b in gaps["svi"]["batches"]) == 6


def test_a_warm_started_run_resumes_after_its_source_is_gone(tmp_path, vae):
    assert _train(tmp_path, "more", "--model", "vae", "--init-from", str(vae), "--epochs", "1") == 0
    shutil.rmtree(vae)
    assert _train(tmp_path, "more", "--model", "vae", "--init-from", str(vae), "--epochs", "2", "--resume") == 0
    assert _metrics(tmp_path, "more")["epochs_done"] == 2


def test_a_misspelled_papermill_parameter_stops_the_chapter(tmp_path):
    done = subprocess.run([sys.executable, "-m", "papermill", str(REPO / "book" / "training.ipynb"),
                           str(tmp_path / "out.ipynb"), "-k", "python3", "-p", "epoch", "1", "-p", "model", "vae"],
                          capture_output=True, text=True, env={**__import__("os").environ, "GPVAE_SMOKE": "1"})
    assert done.returncode != 0 and "unknown parameter(s) ['epoch']" in done.stdout + done.stderr
