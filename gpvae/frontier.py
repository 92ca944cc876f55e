"""The accuracy–cost frontier of GP-RF's error regression (reading R4) on one trained VAE.

Each setting of a declared grid ({label: options of :class:`~gpvae.gp.options.GPRFOptions`}) is fitted
post hoc to the VAE of a run folder, as the grid's R4 run is (``init_from`` that run, no epochs): the
observed errors of its first ``error_images`` training images come from the content-addressed SVI
cache, so every setting regresses the same errors. A setting with another ``model`` (e.g. ``savae``)
is that model's inference on the same VAE's networks, unfitted: SA-VAE's T SVI steps from the VAE's
encoder, the semi-amortized point beside the one-pass ones. Each is measured on the VAE's gap subset (the
images, per-image ELBO(q*) and amortization gap of its ``gaps.json``), beside the VAE itself:

* ``gap_closed``: the share of the VAE's amortization gap that one pass closes,
  mean(ELBO(q̄) − ELBO(q_VAE)) / mean(ELBO(q*) − ELBO(q_VAE)); the decoder is the VAE's, so q* is too;
* ``test_ll``: log p̂(x) with the protocol's K on the subset, seeded like the protocol;
* ``spearman``: Spearman ρ of each difficulty score with the per-image gap (the VAE's row: its own
  encoder variance and negative ELBO, the baselines a GP variance has to beat);
* ``variance_error``: for a low-rank predictive, how far its variance lies from the full-rank
  predictive variance of the same fit on the subset (:func:`_variance_error`);
* ``infer_ms`` and ``ratio_to_vae`` at each batch size: inference (the proposal, one draw, its exact
  density) timed interleaved with the VAE in one process (:func:`gpvae.bench.interleaved_medians`);
* ``macs_per_image``: multiply-adds counted from the shapes (:func:`gpvae.bench.inference_macs`).

:func:`choose_default` applies the stated rule for the default setting (:data:`MAX_INFER_RATIO`).
"""
from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path

import torch

from .bench import inference_macs, inference_pass, interleaved_medians, load_average
from .evaluation import GAP_ELBO_SAMPLES, difficulty_scores, elbo, log_likelihood, posterior_difficulty, spearman
from .provenance import provenance
from .io import write_json
from .measurements import read_gaps
from .models.data_fit import FitsToData
from .run_folder import fit_to_data, load_run, new_model
from .validity import low_rank_premise
from .verdicts import MIN_GAP_CLOSED, SPEED_TARGET

BATCH_SIZES = (100, 1)  # inference is timed on a test batch of each size
MAX_INFER_RATIO = SPEED_TARGET  # the default is the setting closing most of the gap within this time × the VAE's


def _variance_error(model, x: torch.Tensor) -> dict | None:
    """How far a low-rank predictive variance v_r lies from the full-rank one v of the same fit on ``x``:
    ``per_output`` mean |v_r − v| / v over images and outputs, ``of_mean`` |Σ v_r − Σ v| / Σ v. None at full rank."""
    gp = getattr(model, "gp", None)
    if not getattr(gp, "variance_rank", 0):
        return None
    with torch.no_grad():
        features = model.encoder.features(x)
        _, low_rank = gp.marginals(features)
        rank, gp.variance_rank = gp.variance_rank, 0
        try:
            _, full = gp.marginals(features)
        finally:
            gp.variance_rank = rank
    return {"per_output": ((low_rank - full).abs() / full).mean().item(),
            "of_mean": ((low_rank.sum() - full.sum()).abs() / full.sum()).item()}


def frontier_run(run_dir: str | Path, settings: dict[str, dict], repeats: int, data_dir: str | None = None,
                 device: str | None = None) -> dict:
    """Fit and measure every setting of ``settings`` on the VAE of ``run_dir`` (module docstring); the
    timing takes ``repeats`` interleaved repeats per batch size. Writes and returns ``RUN_DIR/frontier.json``."""
    run_dir = Path(run_dir)
    config, data, vae, dev = load_run(run_dir, full_test=True, data_dir=data_dir, device=device)
    if config.model != "vae":
        raise ValueError(f"{run_dir}: the frontier regresses a VAE's errors, this run is a {config.model}")
    gaps = read_gaps(run_dir, vae)
    indices = torch.tensor(gaps["indices"])
    images = data.test[indices]
    gap = torch.tensor(gaps["amortization_gap"]["per_example"])
    models, rows = {"vae": vae}, {}
    for label, options in {"vae": None, **settings}.items():
        started = time.perf_counter()
        if options is None:
            model, fit, cfg = vae, None, config
        else:
            options = {"model": "gp", **options}
            gp_options = {"gp_fit": "errors"} if options["model"] == "gp" else {}
            cfg = dataclasses.replace(config, init_from=str(run_dir), epochs=0, freeze="none", **gp_options, **options)
            model = new_model(cfg, data).to(dev)
            fit = (fit_to_data(model, model.fit_images(data, cfg.seed).to(dev), cfg, 0, final=True)
                   if isinstance(model, FitsToData) and model.fits_after_training else None)
            models[label] = model
        model.eval()
        torch.manual_seed(cfg.seed)
        ll = log_likelihood(model, images, cfg.eval_k, cfg.batch_size, dev)
        torch.manual_seed(cfg.seed)
        own_elbo = elbo(model, images, cfg.batch_size, dev, n_samples=GAP_ELBO_SAMPLES)
        torch.manual_seed(cfg.seed)
        scores = (difficulty_scores(vae, images, GAP_ELBO_SAMPLES, cfg.batch_size, dev) if options is None
                  else posterior_difficulty(model, images, cfg.batch_size, dev) if cfg.model == "gp" else {})
        rows[label] = {"options": options or {}, "test_ll": ll.mean().item(), "elbo": own_elbo.mean().item(),
                       "elbo_per_image": [round(v, 4) for v in own_elbo.tolist()],
                       "spearman": {name: spearman(values, gap.tolist()) for name, values in scores.items()},
                       "variance_error": _variance_error(model, images[:cfg.batch_size].to(dev)),
                       "macs_per_image": inference_macs(model, images[:cfg.batch_size].to(dev)),
                       "fit": fit and {k: v for k, v in fit.items() if k != "svi"},
                       "seconds": time.perf_counter() - started}
    vae_elbo = torch.tensor(rows["vae"]["elbo_per_image"])
    for row in rows.values():
        row["gap_closed"] = ((torch.tensor(row["elbo_per_image"]) - vae_elbo).mean() / gap.mean()).item()
    frozen = {label: copy.deepcopy(model).eval() for label, model in models.items()}
    timing = {}
    for batch in BATCH_SIZES:
        x = images[:batch].to(dev)
        medians = interleaved_medians({label: {"infer": inference_pass(m, x)} for label, m in frozen.items()}, dev, repeats,
                                      config.seed)
        timing[str(batch)] = {"load_average": load_average(), "threads": torch.get_num_threads()}
        for label, row in rows.items():
            row.setdefault("infer_ms", {})[str(batch)] = medians[label]["infer"]
            row.setdefault("ratio_to_vae", {})[str(batch)] = medians[label]["infer"] / medians["vae"]["infer"]
    for row in rows.values():
        row["macs_ratio_to_vae"] = row["macs_per_image"] / rows["vae"]["macs_per_image"]
    result = {"settings": rows, "n": len(indices), "indices": indices.tolist(), "subset_seed": gaps.get("subset_seed"),
              "gap": gap.mean().item(), "eval_k": config.eval_k, "elbo_samples": GAP_ELBO_SAMPLES,
              "repeats": repeats, "timing": timing, "default": choose_default(rows), "run_dir": str(run_dir),
              "dataset": config.dataset, **provenance(dev)}
    write_json(run_dir / "frontier.json", result)
    return result


def choose_default(rows: dict[str, dict], max_ratio: float = MAX_INFER_RATIO,
                   min_closed: float = MIN_GAP_CLOSED, batch: str = "100") -> dict:
    """The stated rule for ``--model gp``'s default: among the GP settings at most ``max_ratio`` × the VAE's
    inference time (batch ``batch``), the one that closes the most of the gap, if it closes at least
    ``min_closed``; a setting whose low-rank predictive breaks its tolerance (:func:`gpvae.validity.low_rank_premise`)
    is none of them. Returns {"setting": label or None, "fastest", "closes_most", "reason"}."""
    gp = {label: row for label, row in rows.items() if label != "vae" and row["options"].get("model", "gp") == "gp"
          and low_rank_premise(row.get("variance_error")) is None}
    if not gp:
        return {"setting": None, "fastest": None, "closes_most": None, "reason": "no GP setting was measured"}
    fastest = min(gp, key=lambda label: gp[label]["ratio_to_vae"][batch])
    closes_most = max(gp, key=lambda label: gp[label]["gap_closed"])
    fast_enough = [label for label in gp if gp[label]["ratio_to_vae"][batch] <= max_ratio]
    best = max(fast_enough, key=lambda label: gp[label]["gap_closed"], default=None)
    if best is None:
        reason = f"no setting runs within {max_ratio}x the VAE's inference time (batch {batch})"
    elif gp[best]["gap_closed"] < min_closed:
        reason = (f"the best setting within {max_ratio}x the VAE's time ({best}) closes "
                  f"{gp[best]['gap_closed']:.0%} of the gap, under {min_closed:.0%}")
        best = None
    else:
        reason = f"closes {gp[best]['gap_closed']:.0%} of the gap at {gp[best]['ratio_to_vae'][batch]:.2f}x the VAE's time"
    return {"setting": best, "fastest": fastest, "closes_most": closes_most, "reason": reason}
