"""Training on real MNIST: determinism, resume after interruption, NaN handling, the CLI contract."""
import json
import os
import subprocess
import sys

import pytest
import torch

from gpvae import measurements, run_folder, training
from gpvae.cli import main as cli_main
from gpvae.io import RunFolderError
from gpvae.layout import CHECKPOINT, METRICS
from gpvae.config import ConfigError, TrainConfig
from gpvae.models import VAE

from .conftest import REPO, data_dir, requires_data

pytestmark = requires_data
SMALL = dict(dataset="mnist", max_train=300, max_test=40, eval_k=20, batch_size=50, latent_dim=8, device="cpu")


def _config(tmp_path, name, **kw):
    return TrainConfig(**{**SMALL, "data_dir": str(data_dir()), "out": str(tmp_path / name), **kw})


def test_same_seed_same_metrics(tmp_path):
    a = training.train(_config(tmp_path, "a", epochs=2, seed=3))
    b = training.train(_config(tmp_path, "b", epochs=2, seed=3))
    c = training.train(_config(tmp_path, "c", epochs=2, seed=4))
    assert (a["test_ll"], a["test_elbo"]) == (b["test_ll"], b["test_elbo"])
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert a["test_ll"] != c["test_ll"]


def test_resume_after_interruption_ends_where_an_uninterrupted_run_ends(tmp_path, monkeypatch):
    straight = training.train(_config(tmp_path, "straight", epochs=3, model="iwae"))
    run_epoch = training._run_epoch

    def interrupt_in_second_epoch(model, optimizer, data, config, generator, device, epoch, state):
        if epoch == 1:
            run_epoch(model, optimizer, data, config, generator, device, epoch, state)  # work that will be lost
            raise KeyboardInterrupt
        return run_epoch(model, optimizer, data, config, generator, device, epoch, state)

    monkeypatch.setattr(training, "_run_epoch", interrupt_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        training.train(_config(tmp_path, "resumed", epochs=3, model="iwae"))
    assert run_folder.load_checkpoint(tmp_path / "resumed")["epoch"] == 1
    monkeypatch.setattr(training, "_run_epoch", run_epoch)
    resumed = training.train(_config(tmp_path, "resumed", epochs=3, model="iwae", resume=True))
    assert resumed["test_ll"] == straight["test_ll"]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]


def test_nan_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    config = _config(tmp_path, "nan", epochs=3)
    calls = {"n": 0}
    real_loss = VAE.loss

    def loss_that_explodes(self, x):
        calls["n"] += 1
        return real_loss(self, x) * (float("nan") if calls["n"] > 8 else 1.0)  # 6 steps per epoch

    monkeypatch.setattr(VAE, "loss", loss_that_explodes)
    with pytest.raises(training.TrainingDiverged, match="epoch 2, step 3"):
        training.train(config)
    saved = run_folder.load_checkpoint(config.out)
    assert saved["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


def test_a_non_finite_test_estimate_is_recorded_as_a_divergence_not_left_without_a_record(tmp_path, monkeypatch):
    """Regression: a finished training whose evaluation gave NaN (Fashion-MNIST SA-VAE seed 2, its SVI driving a
    log-variance to -109) raised without ``diverged.json``, so its workflow job failed on every rerun."""
    from gpvae.runs.steps import diverged

    config = _config(tmp_path, "nan_eval", epochs=1)
    real_evaluate = training.evaluate

    def evaluate_to_nan(*args, **kwargs):
        return {**real_evaluate(*args, **kwargs), "test_ll": float("nan")}

    monkeypatch.setattr(training, "evaluate", evaluate_to_nan)
    with pytest.raises(training.TrainingDiverged, match=r"non-finite \{'test_ll': nan\}"):
        training.train(config)
    assert not (tmp_path / "nan_eval" / METRICS).exists()
    assert run_folder.load_checkpoint(config.out)["epoch"] == 1  # the training is kept
    assert diverged(config.out)  # the workflow's train job records it
    metrics = json.loads((tmp_path / "nan_eval" / METRICS).read_text())
    assert "non-finite {'test_ll': nan}" in metrics["diverged"] and metrics["epochs_done"] == 1


def test_an_exploding_gradient_stops_training_as_diverged(tmp_path, monkeypatch):
    """Regression: SA-VAE's unrolled SVI sent the training gradient from 1e4 to 1e14 on Fashion-MNIST while
    Adam's normalized steps kept the loss finite, and the run ended hundreds of nats below its start."""
    config = _config(tmp_path, "explodes", epochs=2)
    norms = iter([2.0] + [3.0] * 7 + [2.0 * training.GRADIENT_EXPLOSION_FACTOR * 1.01] + [1.0] * 100)
    monkeypatch.setattr(training, "_gradient_norm", lambda model: next(norms))
    with pytest.raises(training.TrainingDiverged, match=r"gradient norm 2.02e\+06 at epoch 2, step 3, beyond 1e\+06x"):
        training.train(config)
    assert run_folder.load_checkpoint(config.out)["epoch"] == 1
    assert "gradient norm" in json.loads((tmp_path / "explodes" / training.DIVERGED).read_text())["diverged"]


def test_a_savae_whose_svi_lowers_the_elbo_stops_as_diverged(tmp_path, monkeypatch):
    from gpvae.models.savae import SAVAE

    overshoot = _config(tmp_path, "overshoot", epochs=2, model="savae", svi_steps=5, svi_lr=5.0)
    with pytest.raises(training.TrainingDiverged, match="gradient norm inf at epoch 1"):  # this one explodes first
        training.train(overshoot)
    config = _config(tmp_path, "lowers", epochs=2, model="savae", svi_steps=5)
    with monkeypatch.context() as patch:  # a milder overshoot: SVI lowers the ELBO, the gradient stays bounded
        patch.setattr(SAVAE, "svi_gain", lambda self, x: torch.full((len(x),), -0.5))
        with pytest.raises(training.TrainingDiverged, match="SVI steps lower the validation ELBO by 0.5 nats .*after epoch 1"):
            training.train(config)
    assert not (tmp_path / "lowers" / training.CHECKPOINT).exists()  # the failed epoch is never checkpointed
    assert "--svi-max-grad-norm" in json.loads((tmp_path / "lowers" / training.DIVERGED).read_text())["diverged"]
    healthy = training.train(_config(tmp_path, "clipped", epochs=1, model="savae", svi_steps=5, svi_lr=5.0,
                                     svi_max_grad_norm=0.01))
    assert healthy["history"][0]["svi_gain_valid"] > 0 and healthy["history"][0]["largest_grad_norm"] > 0


def test_every_path_the_library_writes_is_checked_before_any_work(tmp_path, capsys):
    """Regression: ``--out`` naming an existing file ended in a FileExistsError traceback (exit 1)."""
    taken = tmp_path / "taken.txt"
    taken.write_text("not a run folder")
    for argv, named in ((["train", "--out", str(taken)], f"--out {taken} is a file"),
                        (["train", "--out", str(taken / "run")], f"{taken} is a file, so no folder"),
                        (["bench", "--json", str(tmp_path)], f"--json {tmp_path} is a folder"),
                        (["bench-ais", str(tmp_path), "--json", str(taken / "x.json")], f"{taken} is a file")):
        assert cli_main([*argv, "--data-dir", str(data_dir())] if argv[0] != "bench-ais" else argv) == 2
        assert named in capsys.readouterr().err
    assert taken.read_text() == "not a run folder"  # nothing lost


def _relabel(run: str, **changes) -> None:
    """Rewrite the options a run folder's checkpoint records (a run of another dataset or latent size)."""
    path = f"{run}/{CHECKPOINT}"
    saved = torch.load(path, weights_only=True)
    saved["config"].update(changes)
    torch.save(saved, path)


def test_a_warm_start_or_a_reference_of_other_data_is_refused_by_name(tmp_path):
    """Regression: a VAE trained on Omniglot-28 was accepted as the warm start of an MNIST run without a word
    (the networks have the same shapes)."""
    training.train(_config(tmp_path, "source", epochs=1))
    _relabel(tmp_path / "source", dataset="omniglot")
    with pytest.raises(RunFolderError, match=r"cannot warm start from .*source: it was trained with dataset 'omniglot' "
                                             r"\(this run: 'mnist'\)"):
        training.train(_config(tmp_path, "warm", epochs=1, init_from=str(tmp_path / "source")))
    _relabel(tmp_path / "source", dataset="mnist", latent_dim=16)
    with pytest.raises(RunFolderError, match=r"latent_dim 16 \(this run: 8\)"):
        training.train(_config(tmp_path, "warm", epochs=1, init_from=str(tmp_path / "source")))
    assert not (tmp_path / "warm" / CHECKPOINT).exists()  # refused before any work
    training.train(_config(tmp_path, "run", epochs=1))
    _relabel(tmp_path / "source", dataset="fashion_mnist", latent_dim=8)
    with pytest.raises(RunFolderError, match="cannot be the difficulty reference"):
        measurements.difficulty_run(tmp_path / "run", tmp_path / "source", data_dir=str(data_dir()))


def test_existing_run_is_not_overwritten_and_resume_refuses_other_options(tmp_path):
    training.train(_config(tmp_path, "run", epochs=1))
    with pytest.raises(RunFolderError, match="--resume"):
        training.train(_config(tmp_path, "run", epochs=1))
    with pytest.raises(RunFolderError, match="lr"):
        training.train(_config(tmp_path, "run", epochs=2, lr=0.1, resume=True))


def test_the_proposal_control_refuses_a_proposal_that_is_not_an_encoder_s_gaussian(tmp_path, monkeypatch):
    for model in ("iaf", "savae", "gp"):
        config = TrainConfig(model=model)
        monkeypatch.setattr(measurements, "load_run", lambda *a, config=config, **k: (config, None, None, "cpu"))
        with pytest.raises(ConfigError, match=f"holds a {model} run, whose proposal is not one"):
            measurements.proposal_control_run(tmp_path)


def test_invalid_config_values():
    with pytest.raises(ConfigError, match="model"):
        TrainConfig(model="nope")
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="subset_seed = 3 draws the max_test test images; without max_test"):
        TrainConfig(subset_seed=3)


def test_a_drawn_test_subset_is_recorded_and_measured_again_on_the_same_images(tmp_path):
    metrics = training.train(_config(tmp_path, "drawn", epochs=1, subset_seed=11))
    assert metrics["subset_seed"] == 11 and metrics["n_test"] == SMALL["max_test"]
    assert training.train(_config(tmp_path, "first", epochs=1))["subset_seed"] is None
    again = measurements.evaluate_run(tmp_path / "drawn")  # the run's own draw
    assert again["subset_seed"] == 11 and again["test_ll"] == pytest.approx(metrics["test_ll"], abs=1e-4)
    other = measurements.evaluate_run(tmp_path / "drawn", max_test=SMALL["max_test"], subset_seed=12)
    assert other["subset_seed"] == 12 and other["test_ll"] != pytest.approx(metrics["test_ll"], abs=1e-4)
    assert (tmp_path / "drawn" / "evaluation_K20_N40_S12.json").exists()


def _cli(*args, cwd=REPO):
    env = {**os.environ, "GPVAE_QUIET": "1"}
    return subprocess.run([sys.executable, "-m", "gpvae", *args], capture_output=True, text=True, cwd=cwd, env=env)


@pytest.mark.parametrize("args,expected", [
    (["train", "--model", "nope"], "invalid choice: 'nope'"),
    (["train", "--dataset", "imagenet"], "choose from"),
    (["train", "--epochs", "-1"], "must be at least 0"),
    (["train", "--lr", "fast"], "expected float"),
    (["train", "--data-dir", "/nonexistent", "--epochs", "0"], "MNIST not found"),
    (["train", "--householder-steps", "0"], "must be at least 1"),
    (["train", "--model", "vlae", "--dataset", "fashion_mnist", "--max-train", "100", "--data-dir", str(data_dir())],
     "VLAE needs a decoder likelihood"),
    (["evaluate", "/nonexistent"], "not a gpvae run folder"),
    (["evaluate", "/nonexistent", "--k-curve", "10"], "--k-curve needs --max-test"),
    (["evaluate", "/nonexistent", "--gaps", "--gaps-name", "../elsewhere"], "--gaps-name: expected letters, digits"),
    (["evaluate", "/nonexistent", "--difficulty", "x", "--difficulty-name", "metrics"], "metrics.json is the run folder's own"),
    (["frobnicate"], "invalid choice"),
])
def test_cli_usage_errors_exit_2_without_traceback(args, expected, tmp_path):
    done = _cli(*args, "--out", str(tmp_path / "x")) if args[0] == "train" else _cli(*args)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr


def test_cli_train_then_evaluate(tmp_path):
    out = tmp_path / "RUN"
    done = _cli("train", "--model", "vae", "--dataset", "mnist", "--epochs", "1", "--max-train", "600",
                "--max-test", "50", "--eval-k", "50", "--seed", "0", "--device", "cpu",
                "--data-dir", str(data_dir()), "--out", str(out))
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("model", "dataset", "options", "seed", "epochs_done", "test_ll", "test_elbo", "eval_k", "n_test",
                "train_seconds", "git_commit", "torch_version", "gpytorch_version", "device"):
        assert key in metrics, key
    assert metrics["test_elbo"] < metrics["test_ll"] < 0
    assert len(json.loads((out / "per_example.json").read_text())["test_ll"]) == 50
    again = _cli("evaluate", str(out), "--eval-k", "50", "--max-test", "50")
    assert again.returncode == 0, again.stderr
    evaluation = json.loads((out / "evaluation_K50_N50.json").read_text())
    assert evaluation["test_ll"] == pytest.approx(metrics["test_ll"], abs=1e-4)
    # the K-curve at the protocol's K and images is the protocol's number, draw for draw
    curve = _cli("evaluate", str(out), "--k-curve", "5", "50", "--max-test", "50")
    assert curve.returncode == 0, curve.stderr
    k_curve = json.loads((out / "k_curve.json").read_text())
    assert [c["eval_k"] for c in k_curve["curve"]] == [5, 50]
    assert k_curve["curve"][1]["test_ll"] == pytest.approx(metrics["test_ll"], abs=1e-4)
    assert k_curve["curve"][0]["test_ll"] < k_curve["curve"][1]["test_ll"]  # fewer samples, looser on average
    # the wider-proposal control: the encoder's own Gaussian is the protocol's estimate, draw for draw
    control = _cli("evaluate", str(out), "--proposal-control", "--valid-images", "20", "--eval-k", "50", "--max-test", "50")
    assert control.returncode == 0, control.stderr
    record = json.loads((out / "proposal_control.json").read_text())
    assert record["test_ll"]["own"] == pytest.approx(metrics["test_ll"], abs=1e-4) and record["n_test"] == 50
    assert record["chosen"]["scale"] in (1.0, *measurements.WIDER_SCALES)
    assert record["chosen"]["prior_weight"] in (0.0, *measurements.PRIOR_WEIGHTS)
    widened = record["test_ll"]["widened"] - record["test_ll"]["own"]
    assert widened == pytest.approx(record["gain"]["widened"]) and len(record["gain_per_example"]["defensive"]) == 50


@requires_data
@pytest.mark.parametrize("model", ["vae", "iwae", "hf", "iaf", "rme", "savae", "gp"])
def test_every_model_trains_on_8bit_fashion_mnist_without_diverging(model):
    """Regression: the conv encoder once read raw levels 0..255, and every model but the VAE diverged
    at the second step; it now reads them on [-1, 1] like the likelihood."""
    config = TrainConfig(model=model, dataset="fashion_mnist", max_train=400, max_test=10, device="cpu",
                         inducing=32, error_inducing=32, error_images=400)
    data, net, _ = run_folder.prepare(config)
    assert net.encoder.pixel_levels
    optimizers, generator = net.optimizers(1e-3), torch.Generator().manual_seed(0)
    for step in range(4):
        loss = net.loss(data.training_batch(data.train[step * 100:(step + 1) * 100], generator))
        assert torch.isfinite(loss), f"{model}: non-finite loss at step {step + 1}"
        for optimizer in optimizers:
            optimizer.zero_grad()
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
