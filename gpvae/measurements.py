"""Measurements of a finished run folder, each written to ``RUN_DIR/<name>.json`` with its provenance:
the gap decomposition, log p̂(x) at several K, posterior difficulty against the amortization gap,
out-of-distribution scores, AIS with its estimator gap and the BDMC certificate, and re-evaluation."""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from . import data as datasets
from .config import ConfigError, TrainConfig
from .evaluation import (GAP_ELBO_SAMPLES, AISSettings, ais_log_likelihood, amortization_gaps, auroc, bdmc,
                         difficulty_scores, evaluate, log_likelihood, neighbour_distances, partial_spearman,
                         posterior_difficulty, roc_curve, spearman, widened_proposal)
from .io import RunFolderError, read_json, write_json
from .models import GPRF, VAE, LatentVariableModel
from .protocol import GAP_EVAL_K, GAP_SUBSET, NEIGHBOUR_CONTROL
from .provenance import parameter_digest, provenance
from .validity import DIAGONAL_GAUSSIAN, PROPOSAL_FAMILY
from .run_folder import fit_to_data, load_checkpoint, load_run, require_agreement
from .layout import measurement_file


WIDER_SCALES = (1.25, 1.5, 2.0, 3.0)  # the encoder's variance × c, c chosen on validation images
PRIOR_WEIGHTS = (0.01, 0.05, 0.2)  # the prior's share in a defensive mixture, chosen on validation images
CONTROL_VALID_IMAGES = 500


class TrainingDiverged(RuntimeError):
    """A training or a measurement gave non-finite or exploding values (exit 3)."""


def require_finite(result: dict, what: str) -> None:
    """A result with a non-finite mean has failed: :class:`TrainingDiverged` naming the values."""
    bad = {k: v for k, v in result.items() if isinstance(v, float) and not math.isfinite(v)}
    if bad:
        raise TrainingDiverged(f"{what} gave non-finite {bad}; no metrics were written")


def _subset(data: datasets.ImageData, size: int, subset_seed: int | None, what: str) -> torch.Tensor:
    """Test-image indices of a measurement (:func:`gpvae.data.test_subset`), refused up front when
    the run's test set is smaller."""
    try:
        return datasets.test_subset(len(data.test), size, subset_seed)
    except ValueError as err:
        raise ConfigError(f"{what}: {err}") from None


def gaps_run(run_dir: str | Path, gap_subset: int = GAP_SUBSET, eval_k: int | None = None, data_dir: str | None = None,
             device: str | None = None, subset_seed: int | None = None, name: str = "gaps") -> dict:
    """Gap decomposition (:func:`gpvae.evaluation.amortization_gaps`) of a run's best model on
    ``gap_subset`` test images (the first ones, or drawn with ``subset_seed``), with K = ``eval_k``
    (default :data:`gpvae.protocol.GAP_EVAL_K`); writes ``RUN_DIR/<name>.json`` (default ``gaps.json``, the
    run's own gap subset) with the images' ``indices``."""
    config, data, model, dev = load_run(run_dir, eval_k=eval_k or GAP_EVAL_K, data_dir=data_dir, device=device,
                                        full_test=True)
    indices = _subset(data, gap_subset, subset_seed, "--gap-subset")
    digest = parameter_digest(model)  # of the model as loaded, the one later readers load (read_gaps)
    torch.manual_seed(config.seed)
    result = amortization_gaps(model, data.test[indices], config.eval_k, config.batch_size, dev)
    require_finite({name: result[name]["mean"] for name in ("log_px", "elbo_opt", "elbo_model")},
                   f"the gap decomposition of {run_dir}")  # e.g. q*'s SVI diverging: no gaps.json
    result.update(indices=indices.tolist(), subset_seed=subset_seed, model=config.model, dataset=config.dataset,
                  model_sha256=digest, run_dir=str(run_dir), **provenance(dev))
    write_json(measurement_file(run_dir, name), result)
    return result


def read_gaps(run_dir: str | Path, model: LatentVariableModel, name: str = "gaps") -> dict:
    """``RUN_DIR/<name>.json`` (default ``gaps.json``) of ``model`` (the run's best model): its ``indices`` (the
    first ``n`` test images for files before subsets) and ``model_checked``, whether the file names the model's
    digest (files before digests do not; their consumers check them otherwise). Raises
    :class:`RunFolderError` when the file is missing, damaged or measured on another model."""
    command = f"python -m gpvae evaluate {run_dir} --gaps" + (f" --gaps-name {name}" if name != "gaps" else "")
    path = measurement_file(run_dir, name)
    gaps = read_json(path, f"run `{command}` first")
    recorded = gaps.get("model_sha256")
    if recorded is not None and recorded != parameter_digest(model):
        raise RunFolderError(f"{path} was measured on another model than the run's best one "
                             f"(digest {recorded[:12]}…): the run was trained on since; run `{command}` again")
    return {**gaps, "indices": gaps.get("indices", list(range(gaps["n"]))), "model_checked": recorded is not None}


GAP_SUBSET_SEED_OFFSET = 10_000  # the seed of the gap subset's own AIS chains is the run's seed + this


def _ais_on_gap_subset(model: LatentVariableModel, data: datasets.ImageData, gaps: dict, indices: torch.Tensor,
                       ais_values: torch.Tensor, settings: AISSettings, config: TrainConfig, dev: torch.device) -> dict:
    """AIS on the images of a gap decomposition (:func:`read_gaps`) and the approximation gap by AIS,
    AIS − ELBO(q*) per image [nats]: values of images in the AIS subset (``indices``, ``ais_values``) are
    reused, the others annealed with the same settings and the run's seed + :data:`GAP_SUBSET_SEED_OFFSET`
    (a stream of their own: with the AIS subset's seed their chains would start from the same draws as
    its first images', and their errors would be correlated)."""
    if len(gaps["elbo_opt"]["per_example"]) != len(gaps["indices"]):
        raise RunFolderError(f"gaps.json of {config.run_dir}: {len(gaps['indices'])} indices but "
                             f"{len(gaps['elbo_opt']['per_example'])} values of ELBO(q*): it is damaged; rerun --gaps")
    known = dict(zip(indices.tolist(), ais_values.tolist()))
    missing = [i for i in gaps["indices"] if i not in known]
    seconds, seed = 0.0, config.seed + GAP_SUBSET_SEED_OFFSET
    if missing:
        extra = ais_log_likelihood(model, data.test[torch.tensor(missing)], settings, config.batch_size, dev, seed)
        known.update(zip(missing, extra["per_example"].tolist()))
        seconds = extra["seconds"]
    values = torch.tensor([known[i] for i in gaps["indices"]], dtype=torch.float64)
    gap = values - torch.tensor(gaps["elbo_opt"]["per_example"], dtype=torch.float64)
    return {"n": len(values), "indices": gaps["indices"], "subset_seed": gaps.get("subset_seed"),
            "annealed": len(missing), "annealed_seed": seed if missing else None, "seconds": seconds, "model_checked": gaps["model_checked"],
            "mean": values.mean().item(), "per_example": [round(v, 4) for v in values.tolist()],
            "is": gaps["log_px"]["mean"], "is_eval_k": gaps.get("eval_k"), "elbo_opt": gaps["elbo_opt"]["mean"],
            "is_from_optimum": gaps.get("log_px_from_optimum", {}).get("mean"),
            "approximation_gap": {"mean": gap.mean().item(), "per_example": [round(v, 4) for v in gap.tolist()]}}


def k_curve_run(run_dir: str | Path, eval_ks: list[int], max_test: int, data_dir: str | None = None,
                device: str | None = None, subset_seed: int | None = None) -> dict:
    """log p̂(x) of a run's best model at each K of ``eval_ks`` on ``max_test`` test images (the first, or
    drawn with ``subset_seed``): how
    far the protocol's K is from convergence. Writes and returns ``RUN_DIR/k_curve.json``: per K the mean
    and per-image values [nats] (seeded like the protocol), and the SHA-256 of the decoder's parameters.
    Two runs with one decoder digest define the same p(x), so their log p̂ differ only by the estimator."""
    config, data, model, dev = load_run(run_dir, max_test=max_test, subset_seed=subset_seed, data_dir=data_dir,
                                        device=device)
    started = time.perf_counter()
    curve = []
    for k in eval_ks:
        torch.manual_seed(config.seed)
        ll = log_likelihood(model, data.test, k, config.batch_size, dev)
        curve.append({"eval_k": k, "test_ll": ll.mean().item(), "per_example": [round(v, 4) for v in ll.tolist()]})
    result = {"curve": curve, "n_test": len(data.test), "subset_seed": data.test_seed, "decoder_sha256": parameter_digest(model.decoder),
              "seconds": time.perf_counter() - started, "model": config.model, "dataset": config.dataset,
              "run_dir": str(run_dir), **provenance(dev)}
    write_json(measurement_file(run_dir, "k_curve"), result)
    return result


def difficulty_run(run_dir: str | Path, reference_dir: str | Path, data_dir: str | None = None,
                   device: str | None = None, gaps_name: str = "gaps", name: str = "difficulty") -> dict:
    """Does a run's posterior difficulty (the GP's predictive variances) rank the per-image amortization
    gap of ``reference_dir``'s encoder (its ``<gaps_name>.json``: ELBO(q*) − ELBO(encoder) on its images)
    better than that reference's own encoder variance and negative ELBO (:data:`GAP_ELBO_SAMPLES` draws), and
    than the mean distance to the nearest training images its errors were observed on
    (:data:`NEIGHBOUR_CONTROL`, :func:`gpvae.evaluation.neighbour_distances`; a GP-RF run)?
    Writes and returns ``RUN_DIR/<name>.json``: Spearman ρ of every score with the gap, the partial
    ρ of the run's scores given the reference's negative ELBO, the per-image values, and which images' q*
    met its SVI criterion (``converged``: per image, from its batch's record)."""
    config, data, model, dev = load_run(run_dir, full_test=True, data_dir=data_dir, device=device)
    require_agreement(load_checkpoint(reference_dir)["config"], config, ("dataset",),
                      f"{reference_dir} cannot be the difficulty reference of {run_dir}")
    reference_config, _, reference, _ = load_run(reference_dir, full_test=True, data_dir=data_dir, device=device)
    gaps = read_gaps(reference_dir, reference, gaps_name)
    gap = gaps["amortization_gap"]["per_example"]
    indices = torch.tensor(gaps["indices"])
    images = data.test[indices]
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    own = posterior_difficulty(model, images, config.batch_size, dev)
    baseline = difficulty_scores(reference, images, GAP_ELBO_SAMPLES, config.batch_size, dev)
    controls = neighbour_control(model, data, config, [images], dev)[0]
    scores = {**own, **baseline, **controls}
    result = {"n": len(gap), "reference": str(reference_dir), "scores_of_reference": sorted(baseline),
              "controls": sorted(controls),
              "spearman_with_gap": {k: spearman(v, gap) for k, v in scores.items()},
              "partial_spearman_given_negative_elbo": {k: partial_spearman(v, gap, baseline["negative_elbo"])
                                                       for k, v in own.items()},
              "per_image": {"gap": [round(v, 5) for v in gap], **{k: [float(f"{v:.5g}") for v in values]
                                                                   for k, values in scores.items()}},
              "converged": converged_images(gaps, reference_config.batch_size), "indices": gaps["indices"], "subset_seed": gaps.get("subset_seed"),
              "seconds": time.perf_counter() - started, "model": config.model, "dataset": config.dataset,
              "run_dir": str(run_dir), **provenance(dev)}
    write_json(measurement_file(run_dir, name), result)
    return result


def neighbour_control(model, data, config, image_sets: list[torch.Tensor], device) -> list[dict[str, list[float]]]:
    """Per tensor of ``image_sets``, ``{NEIGHBOUR_CONTROL: distances}`` for a GP-RF model fitted to images
    (:func:`gpvae.evaluation.neighbour_distances` to the training images of its fit), else ``{}``."""
    if not hasattr(model, "fit_images"):
        return [{} for _ in image_sets]
    stored = model.fit_images(data, config.seed)
    return [{NEIGHBOUR_CONTROL: neighbour_distances(model, stored, images, batch_size=config.batch_size, device=device)}
            for images in image_sets]


def converged_images(gaps: dict, batch_size: int) -> list[bool]:
    """Per image of a gap decomposition, whether its q* met the SVI criterion: the flag of the batch it was
    optimised in, batches in order, each of its recorded ``images`` (a record without them: ``batch_size``
    images each, the last the rest)."""
    batches, n = gaps["svi"]["batches"], gaps["n"]
    sizes = [b.get("images") or min(batch_size, n - i * batch_size) for i, b in enumerate(batches)]
    if sum(sizes) != n:
        raise RunFolderError(f"the gap decomposition's SVI batches cover {sum(sizes)} images, not its {n}")
    return [bool(b["converged"]) for b, size in zip(batches, sizes) for _ in range(size)]


def ood_run(run_dir: str | Path, sets: list[str], images: int, subset_seed: int | None, ood_seed: int,
            elbo_samples: int, data_dir: str | None = None, device: str | None = None) -> dict:
    """Do a run's difficulty scores (:func:`gpvae.evaluation.difficulty_scores`: the GP's predictive
    variances where the model has them, the encoder's variance, the negative ELBO from ``elbo_samples``
    draws; for a GP-RF run fitted to images, the nearest-neighbour control, :func:`neighbour_control`) flag
    images of other datasets? ``images`` test images of the run's dataset (the first, or drawn with
    ``subset_seed``) against ``images`` of each of ``sets`` (:func:`gpvae.data.out_of_distribution`, seed
    ``ood_seed``). Writes and returns ``RUN_DIR/ood.json``: per set and score the AUROC of "higher means out
    of distribution" and ROC points."""
    config, data, model, dev = load_run(run_dir, full_test=True, data_dir=data_dir, device=device)
    inside = data.test[_subset(data, images, subset_seed, "ood images")]
    try:
        outside = {name: datasets.out_of_distribution(name, data, images, ood_seed, data_dir) for name in sets}
    except ValueError as err:
        raise ConfigError(f"ood of {run_dir}: {err}") from None
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    scores_in = difficulty_scores(model, inside, elbo_samples, config.batch_size, dev)
    scores_out = {name: difficulty_scores(model, x, elbo_samples, config.batch_size, dev) for name, x in outside.items()}
    controls = neighbour_control(model, data, config, [inside, *outside.values()], dev)  # after the seeded draws
    scores_in |= controls[0]
    for name, control in zip(outside, controls[1:]):
        scores_out[name] |= control
    auc = {name: {k: auroc(scores_in[k], scores_out[name][k]) for k in scores_in} for name in outside}
    roc = {name: {k: roc_curve(scores_in[k], scores_out[name][k]) for k in scores_in} for name in outside}
    result = {"n": images, "subset_seed": subset_seed, "sets": list(sets), "ood_seed": ood_seed,
              "elbo_samples": elbo_samples, "auroc": auc, "roc": roc, "seconds": time.perf_counter() - started,
              "model": config.model, "dataset": config.dataset, "run_dir": str(run_dir), **provenance(dev)}
    write_json(measurement_file(run_dir, "ood"), result)
    return result


def ais_run(run_dir: str | Path, settings: AISSettings, subset: int, subset_seed: int | None = None,
            eval_k: int | None = None, data_dir: str | None = None, device: str | None = None,
            certificate: dict | None = None, gap_subset: bool = False) -> dict:
    """log p(x) of a run's decoder by AIS from the prior (:func:`gpvae.evaluation.ais_log_likelihood`) on
    ``subset`` test images (the first, or drawn with ``subset_seed``), beside the protocol's importance-
    sampling estimate with the run's own proposal (K = ``eval_k``, default the run's) on the same images:
    their difference is the estimator gap. With ``gap_subset``, also AIS on the images of the run's
    ``gaps.json`` and the approximation gap by AIS there (:func:`_ais_on_gap_subset`). Writes and returns
    ``RUN_DIR/ais.json`` (per-image values, indices, settings, acceptance, seconds, decoder digest,
    provenance, the ``certificate`` that fixed T when given, and ``gap_subset``)."""
    config, data, model, dev = load_run(run_dir, full_test=True, eval_k=eval_k, data_dir=data_dir, device=device)
    gaps = read_gaps(run_dir, model) if gap_subset else None
    indices = _subset(data, subset, subset_seed, "--ais-subset")
    images = data.test[indices]
    annealed = ais_log_likelihood(model, images, settings, config.batch_size, dev, config.seed)
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    sampled = log_likelihood(model, images, config.eval_k, config.batch_size, dev)
    is_seconds = time.perf_counter() - started
    ais_values = annealed.pop("per_example")
    annealed.pop("schedules", None)  # a pilot's step sizes per transition: T values per batch, not recorded
    result = {"n": len(indices), "indices": indices.tolist(), "subset_seed": subset_seed, **annealed,
              "per_example": [round(v, 4) for v in ais_values.tolist()],
              "is": {"eval_k": config.eval_k, "mean": sampled.mean().item(), "seconds": is_seconds,
                     "per_example": [round(v, 4) for v in sampled.tolist()]},
              "estimator_gap": (ais_values - sampled.double()).mean().item(),
              "decoder_sha256": parameter_digest(model.decoder), "model": config.model, "dataset": config.dataset,
              "run_dir": str(run_dir), **provenance(dev), **({"certificate": certificate} if certificate else {})}
    if gaps is not None:
        result["gap_subset"] = _ais_on_gap_subset(model, data, gaps, indices, ais_values, settings, config, dev)
        require_finite(result["gap_subset"], f"AIS on the gap subset of {run_dir}")
    require_finite(result, f"AIS of {run_dir}")
    write_json(measurement_file(run_dir, "ais"), result)
    return result


def bdmc_run(run_dir: str | Path, settings: list[AISSettings], images: int = 100,
             data_dir: str | None = None, device: str | None = None) -> dict:
    """The BDMC certificate of a run's decoder: for each AIS setting (T, L) of ``settings``
    (:func:`gpvae.ais.settings_grid`), forward and reverse AIS (:func:`gpvae.evaluation.bdmc`) on ``images``
    images simulated from the model (seeded with the run's seed); the protocol's setting is the one of fewest
    decoder passes whose mean sandwich width is at most the threshold the caller states
    (:func:`gpvae.runs.jobs.certified_setting`). Writes and returns ``RUN_DIR/bdmc.json``."""
    config, _, model, dev = load_run(run_dir, data_dir=data_dir, device=device)
    sandwich = []
    for setting in settings:
        one = bdmc(model, images, setting, config.batch_size, dev, config.seed)
        lower, upper = one.pop("lower"), one.pop("upper")
        sandwich.append({**one, "decoder_passes": setting.decoder_passes,
                         "per_example": {"lower": [round(v, 4) for v in lower.tolist()],
                                         "upper": [round(v, 4) for v in upper.tolist()]}})
    result = {"images": images, "sandwich": sandwich, "decoder_sha256": parameter_digest(model.decoder),
              "model": config.model, "dataset": config.dataset, "run_dir": str(run_dir), **provenance(dev)}
    require_finite({f"width_T{s['settings']['steps']}_L{s['settings']['leapfrog']}": s["width"] for s in sandwich},
                    f"BDMC of {run_dir}")
    write_json(measurement_file(run_dir, "bdmc"), result)
    return result


def evaluation_stem(eval_k: int, n_test: int, subset_seed: int | None = None) -> str:
    """``K{K}_N{N}[_S{seed}]``: how :func:`evaluate_run` names the files of one evaluation in a run folder."""
    return f"K{eval_k}_N{n_test}" + (f"_S{subset_seed}" if subset_seed is not None else "")


def evaluate_run(run_dir: str | Path, eval_k: int | None = None, max_test: int | None = None,
                 data_dir: str | None = None, device: str | None = None, per_example: bool = False,
                 subset_seed: int | None = None) -> dict:
    """Re-evaluate a run's best model on ``max_test`` test images (None: the run's), the first or drawn with
    ``subset_seed``; writes and returns ``RUN_DIR/evaluation_K{K}_N{N}[_S{seed}].json``. With
    ``per_example``, also writes ``per_example_K{K}_N{N}[_S{seed}].json``: per test image the log-likelihood,
    the ELBO and, for models that define it (GP-RF), the posterior difficulty."""
    config, data, model, dev = load_run(run_dir, eval_k=eval_k, max_test=max_test, data_dir=data_dir, device=device,
                                        subset_seed=subset_seed if max_test is not None else None)
    result = evaluate(model, data.test, config.eval_k, config.batch_size, dev, data.likelihood, config.seed)
    values = result.pop("per_example")
    result.update(subset_seed=data.test_seed, model=config.model, dataset=config.dataset, run_dir=str(run_dir),
                  model_summary=model.summary(), **provenance(dev))
    stem = evaluation_stem(config.eval_k, result["n_test"], data.test_seed)
    write_json(measurement_file(run_dir, f"evaluation_{stem}"), result)
    if per_example:
        if hasattr(model, "difficulty"):
            values.update(posterior_difficulty(model, data.test, config.batch_size, dev))
        write_json(measurement_file(run_dir, f"per_example_{stem}"), values)
    return result


def gprf_run(run_dir: str | Path, error_images: int | None = None, error_inducing: int = 512, eval_k: int | None = None,
             max_test: int | None = None, data_dir: str | None = None, device: str | None = None,
             subset_seed: int | None = None) -> dict:
    """GP-RF's error regression (reading R4) fitted post hoc to a run's VAE — any run folder, an external one
    included: the encoder's errors observed by per-image SVI on ``error_images`` training images (None: the
    default of :meth:`~gpvae.gp.options.GPRFOptions.observed_images`), regressed
    on its features; then the protocol's log p̂(x) with q̄ beside the VAE's own, on the same test images and
    draws, and the GP's per-image predictive variances. Writes and returns ``RUN_DIR/gprf.json``."""
    config, data, vae, dev = load_run(run_dir, eval_k=eval_k, max_test=max_test, data_dir=data_dir, device=device,
                                      subset_seed=subset_seed if max_test is not None else None)
    if type(vae) is not VAE:
        raise ConfigError(f"--gprf fits GP-RF to a VAE's encoder; {run_dir} holds a {type(vae).__name__}, whose own "
                          "proposal is not the encoder's Gaussian (train --model gp --init-from a VAE run instead)")
    options = {"gp_fit": "errors", "error_images": error_images, "error_inducing": error_inducing}
    try:
        gprf = GPRF(vae.encoder, vae.decoder, len(data.train), **options).to(dev)
        options["error_images"] = gprf.options.observed_images(len(data.train))
        gprf.check_data(data, config.dataset)
    except ValueError as err:
        raise ConfigError(f"GP-RF on {run_dir}: {err}") from None
    fit = fit_to_data(gprf, gprf.fit_images(data, config.seed).to(dev), config, 0, final=True)
    started = time.perf_counter()
    estimates = {}
    for name, model in (("vae", vae), ("gprf", gprf)):
        torch.manual_seed(config.seed)
        estimates[name] = log_likelihood(model, data.test, config.eval_k, config.batch_size, dev)
    difficulty = posterior_difficulty(gprf, data.test, config.batch_size, dev)
    result = {"n_test": len(data.test), "subset_seed": data.test_seed, "eval_k": config.eval_k, "options": options,
              "test_ll": {name: values.mean().item() for name, values in estimates.items()},
              "gain": (estimates["gprf"] - estimates["vae"]).mean().item(),
              "gain_per_example": [round(v, 4) for v in (estimates["gprf"] - estimates["vae"]).tolist()],
              "difficulty": {k: [float(f"{v:.5g}") for v in values] for k, values in difficulty.items()},
              "fit": fit, "seconds": time.perf_counter() - started, "model_summary": gprf.summary(),
              "dataset": config.dataset, "run_dir": str(run_dir), **provenance(dev)}
    require_finite(result["test_ll"], f"GP-RF on {run_dir}")
    write_json(measurement_file(run_dir, "gprf"), result)
    return result


def proposal_control_run(run_dir: str | Path, valid_images: int = CONTROL_VALID_IMAGES, eval_k: int | None = None,
                         max_test: int | None = None, subset_seed: int | None = None, data_dir: str | None = None,
                         device: str | None = None, scales: tuple[float, ...] = WIDER_SCALES,
                         prior_weights: tuple[float, ...] = PRIOR_WEIGHTS) -> dict:
    """The wider-proposal control of an importance-sampling gain (GP-RF's q̄ over its VAE's Gaussian): a run whose
    proposal is the encoder's diagonal Gaussian, evaluated by the protocol's log p̂(x) with that Gaussian, with
    its variance × c (:func:`~gpvae.evaluation.widened_proposal`) and with a defensive mixture with the prior;
    c and the prior's weight each chosen by the mean log p̂ on ``valid_images`` validation images drawn with the
    run's seed, then measured on the run's test images (``max_test``, the first or drawn with ``subset_seed``)
    with one seed per proposal. Writes and returns ``RUN_DIR/proposal_control.json`` [nats]."""
    config, data, model, dev = load_run(run_dir, eval_k=eval_k, max_test=max_test, data_dir=data_dir, device=device,
                                        subset_seed=subset_seed if max_test is not None else None)
    if PROPOSAL_FAMILY.get(config.model) != DIAGONAL_GAUSSIAN or config.model == "savae":
        raise ConfigError(f"--proposal-control widens an encoder's diagonal Gaussian; {run_dir} holds a {config.model} "
                          "run, whose proposal is not one")
    if not 1 <= valid_images <= len(data.valid):
        raise ConfigError(f"--valid-images {valid_images}: the validation split has {len(data.valid)} images")
    started = time.perf_counter()
    valid = data.valid[datasets.test_subset(len(data.valid), valid_images, config.seed)]

    def estimate(x: torch.Tensor, scale: float = 1.0, prior_weight: float = 0.0) -> torch.Tensor:
        torch.manual_seed(config.seed)
        return log_likelihood(model, x, config.eval_k, config.batch_size, dev,
                              proposal=widened_proposal(model, scale, prior_weight))

    by_scale = {c: estimate(valid, scale=c).mean().item() for c in (1.0, *scales)}
    by_weight = {w: estimate(valid, prior_weight=w).mean().item() for w in (0.0, *prior_weights)}
    chosen = {"scale": max(by_scale, key=by_scale.get), "prior_weight": max(by_weight, key=by_weight.get)}
    test = {"own": estimate(data.test), "widened": estimate(data.test, scale=chosen["scale"]),
            "defensive": estimate(data.test, prior_weight=chosen["prior_weight"])}
    result = {"n_test": len(data.test), "subset_seed": data.test_seed, "eval_k": config.eval_k,
              "validation": {"images": valid_images, "subset_seed": config.seed,
                             "scale": {str(c): v for c, v in by_scale.items()},
                             "prior_weight": {str(w): v for w, v in by_weight.items()}},
              "chosen": chosen, "test_ll": {name: values.mean().item() for name, values in test.items()},
              "gain": {name: (test[name] - test["own"]).mean().item() for name in ("widened", "defensive")},
              "gain_per_example": {name: [round(v, 4) for v in (test[name] - test["own"]).tolist()]
                                   for name in ("widened", "defensive")},
              "seconds": time.perf_counter() - started, "model": config.model, "dataset": config.dataset,
              "run_dir": str(run_dir), **provenance(dev)}
    require_finite(result["test_ll"], f"the proposal control of {run_dir}")
    write_json(measurement_file(run_dir, "proposal_control"), result)
    return result
