"""gpvae's measurements of a VAE that pythae (a peer library, the ``pythae`` extra) built and trained with its
own trainer on gpvae's binarized MNIST: gpvae's importance sampling beside pythae's own estimate
(``VAE.get_nll``) on the same images, then AIS with its BDMC certificate, the gap decomposition and GP-RF fitted
post hoc, through an external run folder (:mod:`gpvae.external`). The full-scale record of the external chapter::

    python -m gpvae.pythae_check --epochs 50 --out results/external/pythae_mnist.json

pythae is imported only by the functions that train or load its models.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import sys
import time
import warnings
from functools import partial
from importlib import metadata
from pathlib import Path
from unittest import mock

import torch

from . import data as datasets
from . import external, protocol, report
from .ais import AISSettings
from .cli import EXIT_USAGE
from .config import ConfigError
from .evaluation import log_likelihood
from .io import write_json, write_text
from .measurements import ais_run, bdmc_run, evaluate_run, evaluation_stem, gaps_run, gprf_run
from .models import VAE
from .progress import quiet
from .layout import measurement_file
from .provenance import REPOSITORY, provenance, require_clean_commit, resolve_device
from .run_folder import make_external_run

RECORD = Path("results") / "external" / "pythae_mnist.json"  # in the repository
PARKED = Path("results") / "external" / "pythae_parked"  # the stages of a check parked part-way, in the repository
COMMAND = f"python -m gpvae.pythae_check --epochs 50 --out {RECORD}"
TOLERANCE_SES = 4  # the IS estimates agree within this many standard errors of their mean difference
BUILDER = '''"""The pythae VAE that pythae saved in {folder}, for gpvae.external."""
import gpvae.pythae_check


def build():
    return gpvae.pythae_check.load({folder!r})
'''


def train(images: torch.Tensor, valid: torch.Tensor, epochs: int, latent_dim: int, output_dir: str | Path,
          seed: int = 0, device: str = "cpu", learning_rate: float = 1e-3, batch_size: int = 100) -> Path:
    """Train a ``pythae.models.VAE`` with pythae's default MLP networks and Bernoulli decoder (``bce``) by pythae's
    ``TrainingPipeline`` for ``epochs`` on binary ``images`` (N, C, H, W), keeping the epoch of least loss on
    ``valid``; returns the folder where pythae saved that model (``AutoModel.load_from_folder`` reads it)."""
    _import_pythae()
    from pythae.models import VAE as PythaeVAE, VAEConfig
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig, training_callbacks

    torch.manual_seed(seed)  # pythae seeds its trainer, not the networks it builds
    model = PythaeVAE(VAEConfig(input_dim=tuple(images.shape[1:]), latent_dim=latent_dim, reconstruction_loss="bce"))
    config = BaseTrainerConfig(output_dir=str(output_dir), num_epochs=epochs, learning_rate=learning_rate,
                               per_device_train_batch_size=batch_size, per_device_eval_batch_size=batch_size,
                               seed=seed, no_cuda=torch.device(device).type != "cuda")
    pipeline = TrainingPipeline(model=model, training_config=config)
    silent = quiet()  # then pythae's progress bars and its log to the console are off too
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict) if name.startswith("pythae")]
    levels = [one.level for one in loggers]
    with mock.patch.object(training_callbacks, "tqdm", partial(training_callbacks.tqdm, disable=silent)):
        for one in loggers if silent else []:
            one.setLevel(logging.WARNING)
        try:
            pipeline(train_data=images, eval_data=valid)
        finally:
            for one, level in zip(loggers, levels):
                one.setLevel(level)
    return Path(pipeline.trainer.training_dir) / "final_model"


def _import_pythae() -> None:
    """Import the parts of pythae used here without the warning ``tqdm.auto`` gives in a kernel without
    ipywidgets (pythae's progress bars work without them)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        for module in ("pythae.models", "pythae.pipelines", "pythae.trainers"):
            importlib.import_module(module)


def load_pythae(folder: str | Path):
    """The pythae model that pythae saved in ``folder`` (``AutoModel.load_from_folder``)."""
    _import_pythae()
    from pythae.models import AutoModel

    return AutoModel.load_from_folder(str(folder))


def load(folder: str | Path) -> VAE:
    """The pythae VAE that pythae saved in ``folder``, as a gpvae model (:func:`gpvae.external.from_pythae`)."""
    return external.from_pythae(load_pythae(folder))


def agreement(pythae_model, images: torch.Tensor, k: int, seed: int = 0, measured: VAE | None = None) -> dict:
    """gpvae's log p̂(x) by importance sampling from the model's own proposal (K = ``k``) beside pythae's estimate
    on the same binary ``images`` (N, C, H, W), per image [nats]. pythae's ``get_nll(x, n_samples, batch_size)``
    is the same estimator (its log-densities drop the (d/2) log 2π that cancels in each weight), but despite its
    name it returns the mean log p̂(x), not its negative; it draws ``batch_size`` samples whenever ``n_samples``
    is at most that; and it returns only the mean over its images. So it is called per image with
    ``n_samples = batch_size = k``: both estimates then have the same expectation (the same K-sample bias), their
    mean difference is Monte Carlo error, and they ``agree`` within :data:`TOLERANCE_SES` standard errors of it
    (the per-image differences' standard deviation over √N). ``measured``: the gpvae model whose estimate is
    compared (default :func:`~gpvae.external.from_pythae` of ``pythae_model``)."""
    measured = measured or external.from_pythae(pythae_model)
    device = next(pythae_model.parameters()).device
    torch.manual_seed(seed)
    ours = log_likelihood(measured, images, k, device=device).double()
    with torch.no_grad():
        theirs = torch.tensor([pythae_model.get_nll(x.to(device), n_samples=k, batch_size=k)
                               for x in images.split(1)], dtype=torch.float64)
    difference = ours - theirs
    mean, standard_error = difference.mean().item(), (difference.std() / math.sqrt(len(images))).item()
    return {"n": len(images), "eval_k": k, "gpvae_is": ours.mean().item(), "pythae_get_nll": theirs.mean().item(),
            "difference": mean, "standard_error": standard_error, "tolerance_ses": TOLERANCE_SES,
            "agrees": abs(mean) <= TOLERANCE_SES * standard_error,
            "per_example": {"gpvae_is": [round(v, 4) for v in ours.tolist()],
                            "pythae_get_nll": [round(v, 4) for v in theirs.tolist()]}}


def agreement_text(agreed: dict) -> str:
    """One sentence: the two estimates, their difference with its standard error, and the verdict."""
    verdict = "within" if agreed["agrees"] else "NOT within"
    return (f"On the same {agreed['n']} test images with K = {agreed['eval_k']}: gpvae's IS {agreed['gpvae_is']:.2f} "
            f"nats, pythae's `get_nll` {agreed['pythae_get_nll']:.2f} nats; difference {agreed['difference']:+.3f} "
            f"± {agreed['standard_error']:.3f} (standard error), {verdict} {agreed['tolerance_ses']} standard errors.")


def check(out: str | Path, epochs: int, runs_dir: str | Path, max_train: int | None = None, images: int = 500,
          eval_k: int = protocol.EVAL_K, max_test: int | None = None, ais_steps: int = 4000,
          ais_subset: int = protocol.AIS_SUBSET, gap_subset: int = protocol.GAP_SUBSET, error_images: int | None = None,
          error_inducing: int = 512, latent_dim: int = 16, seed: int = 0, device: str = "auto",
          data_dir: str | None = None, command: str | None = None) -> dict:
    """The whole check, written to the record ``out``: a pythae VAE trained by pythae (:func:`train`) on the first
    ``max_train`` (None: all 50,000) of gpvae's MNIST training images, binarized once with ``seed``, keeping
    the epoch best on the validation images; :func:`agreement` on ``images`` test images drawn with ``seed``;
    then, through an external run folder in ``runs_dir``, gpvae's measurements: IS and the ELBO on the first
    ``max_test`` test images (None: all), the BDMC certificate and AIS (T = ``ais_steps``) on ``ais_subset``
    images, the gap decomposition on ``gap_subset`` images, GP-RF fitted post hoc to ``error_images`` (None: the
    default of :meth:`~gpvae.gp.options.GPRFOptions.observed_images`). The
    record holds the agreement, the measurement summary (:func:`gpvae.report.measurement_summary`), the
    training and its provenance (commit, ``command``, device). Resumable: run again with the same arguments at
    the same commit, it reads the stages it finished (``runs_dir``: ``training.json``, ``agreement.json``, the
    measurement files of ``measured/``) instead of measuring them again."""

    require_clean_commit(Path(out).parent)
    runs, dev = Path(runs_dir), resolve_device(device)
    arguments = {"epochs": epochs, "max_train": max_train, "images": images, "eval_k": eval_k, "max_test": max_test,
                 "ais_steps": ais_steps, "ais_subset": ais_subset, "gap_subset": gap_subset,
                 "error_images": error_images, "error_inducing": error_inducing, "latent_dim": latent_dim,
                 "seed": seed, "device": str(dev)}
    resuming = _resumable(runs, arguments, provenance(dev)["git_commit"])
    data = datasets.load("mnist", data_dir)

    def stage(path: Path, measure) -> dict:  # a stage this check already finished is read, not measured again
        return json.loads(path.read_text()) if resuming and path.exists() else measure()

    def kept(path: Path, result: dict) -> dict:
        write_json(path, result)
        return result

    def trained() -> dict:
        started = time.perf_counter()
        saved = train(datasets.binarize_once(data.train[:max_train], seed), data.valid, epochs, latent_dim,
                      runs / "pythae", seed, str(dev))
        return kept(runs / "training.json", {
            "epochs": epochs, "images": len(data.train[:max_train]), "latent_dim": latent_dim,
            "networks": "pythae's default MLP (784-512-d, d-512-784)", "saved": str(saved),
            "seconds": time.perf_counter() - started})

    training = stage(runs / "training.json", trained)
    saved = Path(training["saved"])
    indices = datasets.test_subset(len(data.test), images, seed)
    agreed = stage(runs / "agreement.json", lambda: kept(runs / "agreement.json", agreement(
        load_pythae(saved).to(dev), data.test[indices], eval_k, seed)))
    folder = runs / "measured"
    if not (resuming and (folder / external.EXTERNAL).exists()):
        module = write_text(runs / "pythae_vae.py", BUILDER.format(folder=str(saved.resolve())))
        folder = make_external_run(folder, f"{module}:build", "mnist", data_dir, str(dev), seed, eval_k)
    n_test = len(data.test) if max_test is None else max_test
    stage(measurement_file(folder, f"evaluation_{evaluation_stem(eval_k, n_test)}"),
          lambda: evaluate_run(folder, eval_k, max_test, data_dir))
    settings = AISSettings(steps=ais_steps)
    stage(measurement_file(folder, "bdmc"), lambda: bdmc_run(folder, [settings], images=ais_subset, data_dir=data_dir))
    stage(measurement_file(folder, "gaps"), lambda: gaps_run(folder, gap_subset, eval_k, data_dir, subset_seed=seed))
    stage(measurement_file(folder, "ais"), lambda: ais_run(folder, settings, ais_subset, subset_seed=seed,
                                                           eval_k=eval_k, data_dir=data_dir, gap_subset=True))
    stage(measurement_file(folder, "gprf"), lambda: gprf_run(folder, error_images, error_inducing, eval_k=eval_k,
                                                             max_test=max_test, data_dir=data_dir))
    record = {"command": command or "gpvae.pythae_check.check", "pythae_version": metadata.version("pythae"),
              "dataset": "mnist", "training": training, "agreement": {**agreed, "indices": indices.tolist()},
              "summary": report.measurement_summary(folder).to_dict("records"), "run_dir": str(folder),
              **provenance(dev)}
    write_json(out, record)
    return record


def _resumable(runs: Path, arguments: dict, commit: str) -> bool:
    """Whether the stages already written under ``runs`` belong to this check: the same ``arguments`` at the same
    ``commit`` (``runs/check.json``); otherwise another check's stage files are removed, every stage is measured
    again and ``check.json`` says so."""
    marker = runs / "check.json"
    mine = {"arguments": arguments, "git_commit": commit}
    if marker.exists() and json.loads(marker.read_text()) == mine:
        return True
    for stale in (runs / "training.json", runs / "agreement.json", *(runs / "measured").glob("*.json")):
        stale.unlink(missing_ok=True)  # another check's stages: none may enter this check's record
    write_json(marker, mine)
    return False


def gap_summary(gaps: dict) -> str:
    """Markdown of a gap decomposition (:func:`gpvae.evaluation.amortization_gaps`) [nats, mean over its images],
    each quantity named with its estimator; the approximation gap is the IS estimate's (log p̂ − ELBO(q*)), the
    definition by AIS needs a certified AIS, which this smoke-scale check does not run."""
    values = {name: f"{gaps[name]['mean']:.2f}".replace("-", "−")
              for name in ("log_px", "elbo_opt", "elbo_model", "amortization_gap", "approximation_gap")}
    return (f"On {gaps['n']} test images (K = {gaps['eval_k']}): log p̂(x) by IS {values['log_px']} nats, "
            f"ELBO(q*) {values['elbo_opt']}, ELBO of pythae's encoder {values['elbo_model']}: amortization gap "
            f"{values['amortization_gap']} nats; log p̂(x) by IS − ELBO(q*) {values['approximation_gap']} nats "
            "(the approximation gap proper needs AIS with its certificate: the full-scale record below).")


def record_text(path: str | Path | None = None, parked: str | Path | None = None) -> str:
    """Markdown of the record at ``path`` (default: the repository's :data:`RECORD`): the agreement, the table of
    gpvae's measurements and the provenance (commit, command, device). Where there is none: the stages of a
    check parked part-way in ``parked`` (default, for the repository's record: :data:`PARKED`), said to be so;
    else the command that measures it."""
    path = Path(path) if path else REPOSITORY / RECORD
    if path.exists():
        record = json.loads(path.read_text())
        return "\n".join([_trained_text(record["training"], record["agreement"], record["pythae_version"]), "",
                          *_summary_rows(record["summary"]), "",
                          f"Commit `{record['git_commit']}`, command `{record['command']}`, device {record['device']}."])
    parked = Path(parked) if parked else REPOSITORY / PARKED if path == REPOSITORY / RECORD else None
    if parked is None or not (parked / "check.json").exists() or not (parked / "training.json").exists():
        return f"**Not yet measured at full scale:** `{COMMAND}`"
    check = json.loads((parked / "check.json").read_text())
    agreed = json.loads((parked / "agreement.json").read_text()) if (parked / "agreement.json").exists() else None
    measured = parked / "measured"
    stages = [json.loads(p.read_text()) for p in sorted(measured.glob("*.json"))]
    devices = sorted({stage["device"] for stage in stages if "git_commit" in stage})  # measurements, not options
    stage_names = {"bdmc": "the BDMC certificate", "gaps": "the gap decomposition", "ais": "AIS", "gprf": "GP-RF"}
    missing = [words for name, words in stage_names.items() if not measurement_file(measured, name).exists()]
    return "\n".join([
        f"**Parked part-way:** the full-scale check's stages measured so far"
        + (f"; not yet: {', '.join(missing)}" if missing else "") + f" (`{COMMAND}` at commit "
        f"`{check['git_commit'][:12]}` resumes it; `{PARKED}/README.md` says how).",
        "", _trained_text(json.loads((parked / "training.json").read_text()), agreed), "",
        *_summary_rows(report.measurement_summary(measured).to_dict("records")), "",
        f"Commit `{check['git_commit']}`, device {', '.join(devices) or 'not recorded'}."])


def _trained_text(training: dict, agreed: dict | None, version: str | None = None) -> str:
    return (f"pythae{f' {version}' if version else ''} VAE, d = {training['latent_dim']}, trained by pythae for "
            f"{training['epochs']} epoch{'s' * (training['epochs'] != 1)} on {training['images']:,} binarized MNIST "
            f"images." + (f" {agreement_text(agreed)}" if agreed else ""))


def _summary_rows(summary: list[dict]) -> list[str]:
    """A Markdown table of :func:`gpvae.report.measurement_summary` rows."""
    return ["| quantity | nats | protocol |", "|---|---|---|",
            *(f"| {row['quantity']} | {row['nats']} | {row['protocol']} |" for row in summary)]


def main(argv: list[str] | None = None) -> int:
    """``python -m gpvae.pythae_check``: :func:`check` from the command line."""
    parser = argparse.ArgumentParser(prog="python -m gpvae.pythae_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--out", default=str(RECORD), help="the record (JSON)")
    parser.add_argument("--runs-dir", default="runs/pythae", help="pythae's saved model and the external run folder")
    parser.add_argument("--max-train", type=int, default=None, help="training images (default: all 50,000)")
    parser.add_argument("--images", type=int, default=500, help="test images of the agreement, drawn with --seed")
    parser.add_argument("--eval-k", type=int, default=protocol.EVAL_K)
    parser.add_argument("--max-test", type=int, default=None, help="test images of IS and GP-RF (default: all)")
    parser.add_argument("--ais-steps", type=int, default=4000)
    parser.add_argument("--ais-subset", type=int, default=protocol.AIS_SUBSET)
    parser.add_argument("--gap-subset", type=int, default=protocol.GAP_SUBSET)
    parser.add_argument("--error-images", type=int, default=None,
                        help="GP-RF's observed errors (default: 10,000 or every training image, whichever is fewer)")
    parser.add_argument("--error-inducing", type=int, default=512)
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None)
    args = vars(parser.parse_args(argv))
    command = " ".join(["python -m gpvae.pythae_check", *(sys.argv[1:] if argv is None else argv)])
    try:
        record = check(**args, command=command)
    except (datasets.DataError, ConfigError) as err:
        print(f"gpvae.pythae_check: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(agreement_text(record["agreement"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
