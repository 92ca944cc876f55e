"""The GP-RF readings study (the specification (book/specification.md) §3b): every reading on the same footing, declared here.

``python -m gpvae.study train|measure|bench|table [--configs a,b] [--seeds 0,1,2]`` trains the
declared configurations (skipping finished runs, resuming interrupted ones), measures each on fixed
test images, benchmarks them against the VAE, and writes the records and the table to
``results/gp_study/<dataset>/``. Runs (checkpoints) go to ``runs/study/<dataset>/``.

Fixed before any result was seen (the protocol of the study):

* budget: MNIST, all 50,000 training images, the VAE trained :data:`EPOCHS` epochs (seeds 0, 1, 2);
  Omniglot-28 likewise (its 17,352 training images) for the VAE and the two best readings, seed 0;
  joint readings train as long from scratch; post-hoc readings start from the VAE of the same seed;
* test log p̂(x): K = :data:`EVAL_K` importance samples on the first :data:`TEST_IMAGES` test images;
* gap decomposition and difficulty: the first :data:`GAP_IMAGES` test images, q* by the SVI oracle
  (:func:`gpvae.evaluation.optimal_elbo`) from the run's encoder output, ELBOs from
  :data:`GAP_ELBO_SAMPLES` draws; the fraction of the VAE's amortization gap closed is
  1 − gap(run) / gap(VAE of the same seed), gap = mean ELBO(q*) − mean ELBO(proposal);
* difficulty: Spearman correlation of each score with the per-image amortization gap of the run's
  encoder Gaussian; OOD: AUROC of each score, MNIST test images against :data:`OOD_IMAGES` seeded
  random Fashion-MNIST (binarized once, seed 0) and Omniglot-28 test images (for an Omniglot-trained
  model: against MNIST and Fashion-MNIST). Scores: the GP's
  predictive variance of the mean and of the variance function, the encoder's variance (mean of
  exp ℓ over d) and the negative ELBO — the last two are the VAE's own, the baselines.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from . import data as datasets
from .bench import bench
from .config import TrainConfig
from .evaluation import GAP_ELBO_SAMPLES, auroc, difficulty_scores, elbo, optimal_elbo, spearman
from .objectives import gaussian_elbo
from .provenance import provenance
from .training import TrainingDiverged, _write_json, load_run, train

EPOCHS = 50
EVAL_K = 1000
TEST_IMAGES = 2000
GAP_IMAGES = 500
OOD_IMAGES = 2000
OOD_ELBO_SAMPLES = 10
ROC_POINTS = 51
OOD_SETS = {"mnist": ("fashion_mnist", "omniglot"), "omniglot": ("mnist", "fashion_mnist")}
SEEDS = (0, 1, 2)
# name: (options, seeds). "init_from": "vae" means the VAE run of the same dataset and seed.
POSTHOC = dict(model="gp", init_from="vae")
VARIATIONAL_POSTHOC = dict(POSTHOC, gp_fit="elbo", objective="marginal", freeze="both", epochs=5)
CONFIGS = {
    "vae": (dict(model="vae", epochs=EPOCHS), SEEDS),
    "r1_paper": (dict(model="gp", gp_preset="paper", epochs=EPOCHS), (0,)),
    "r2_fixed": (dict(model="gp", gp_fit="elbo", objective="marginal", amplitude="fixed", amplitude_value=0.1, epochs=EPOCHS), (0,)),
    "r3_posthoc": (VARIATIONAL_POSTHOC, SEEDS),
    "r3_posthoc_m1024": (dict(VARIATIONAL_POSTHOC, inducing=1024), (0,)),
    "r3_posthoc_ngd": (dict(VARIATIONAL_POSTHOC, variational="natural", ngd_lr=0.01), (0,)),
    "r4_gp": (dict(POSTHOC, gp_fit="errors", epochs=0, error_images=10_000, error_inducing=512), SEEDS),
    "r4_gp_n1000": (dict(POSTHOC, gp_fit="errors", epochs=0, error_images=1000, error_inducing=512), (0,)),
    "r4_knn": (dict(POSTHOC, gp_fit="errors", error_model="knn", epochs=0, error_images=10_000), SEEDS),
    "r5_refit": (dict(POSTHOC, gp_fit="errors", freeze="encoder", epochs=10, refit_rounds=1, refit_epochs=10,
                      error_images=10_000), (0,)),
    "vae_decoder_control": (dict(model="vae", init_from="vae", freeze="encoder", epochs=10), (0,)),
}
RUNS = Path("runs/study")
RECORDS = Path("results/gp_study")


def run_dir(dataset: str, name: str, seed: int) -> Path:
    return RUNS / dataset / f"{name}_seed{seed}"


def config_of(name: str, seed: int, dataset: str = "mnist", data_dir: str | None = None) -> TrainConfig:
    options, _ = CONFIGS[name]
    options = dict(options)
    if options.get("init_from") == "vae":
        options["init_from"] = str(run_dir(dataset, "vae", seed))
    return TrainConfig(**options, dataset=dataset, seed=seed, eval_k=EVAL_K, max_test=TEST_IMAGES, device="cpu",
                       data_dir=data_dir, out=str(run_dir(dataset, name, seed)), resume=True)


def train_one(name: str, seed: int, dataset: str, data_dir: str | None) -> dict:
    """Train (or resume, or skip when finished) one configuration and seed."""
    folder = run_dir(dataset, name, seed)
    if (folder / "metrics.json").exists():
        return json.loads((folder / "metrics.json").read_text())
    config = config_of(name, seed, dataset, data_dir)
    try:
        return train(config)
    except TrainingDiverged as err:  # a result too: recorded, and shown as such in the table
        record = {"config": name, "seed": seed, "dataset": dataset, "options": config.to_dict(), "diverged": str(err),
                  "command": f"python -m gpvae.study train --configs {name} --seeds {seed}",
                  **provenance(torch.device("cpu"))}
        _write_json_mkdir(RECORDS / dataset / f"{name}_seed{seed}.json", record)
        return record


def _shares_vae_decoder(name: str) -> bool:
    options = CONFIGS[name][0]
    return options.get("init_from") == "vae" and (options.get("freeze") in ("decoder", "both") or
                                                  options.get("epochs") == 0)


def _optimal_elbo(model, x, folder: Path) -> torch.Tensor:
    """ELBO(q*) per image of ``x`` under the model's decoder, from its encoder's output; cached."""
    cache = folder / f"qstar_elbo_N{len(x)}.pt"
    if cache.exists():
        return torch.load(cache, weights_only=True)
    torch.manual_seed(0)
    values, *_ = optimal_elbo(model, x, lambda xb: model.encoder(xb))
    torch.save(values, cache)
    return values


def _encoder_elbo(model, x: torch.Tensor, n_samples: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([gaussian_elbo(model, xb, *model.encoder(xb), n_samples) for xb in x.split(100)])


def _ood_images(name: str, data_dir: str | None) -> torch.Tensor:
    data = datasets.load(name, data_dir)
    pick = torch.randperm(len(data.test), generator=torch.Generator().manual_seed(0))[:OOD_IMAGES]
    x = data.test[pick]
    return datasets.binarize_once(x / 255.0, 0) if data.likelihood == "logistic" else x


def measure(name: str, seed: int, dataset: str = "mnist", data_dir: str | None = None) -> dict:
    """The study's measurements of one trained configuration and seed; writes its record."""
    folder = run_dir(dataset, name, seed)
    if not (folder / "metrics.json").exists():
        path = RECORDS / dataset / f"{name}_seed{seed}.json"
        return json.loads(path.read_text()) if path.exists() else {}  # diverged, or not trained
    metrics = json.loads((folder / "metrics.json").read_text())
    config, data, model, _ = load_run(folder, data_dir=data_dir)
    model.eval()
    x_gap = data.test[:GAP_IMAGES]
    torch.manual_seed(seed)
    elbo_model = elbo(model, x_gap, n_samples=GAP_ELBO_SAMPLES)
    elbo_encoder = _encoder_elbo(model, x_gap, GAP_ELBO_SAMPLES)
    qstar_folder = run_dir(dataset, "vae", seed) if _shares_vae_decoder(name) else folder
    elbo_opt = _optimal_elbo(model, x_gap, qstar_folder)
    encoder_gap = elbo_opt - elbo_encoder
    x_test = data.test[:TEST_IMAGES]
    scores_in = difficulty_scores(model, x_test, OOD_ELBO_SAMPLES)
    gap_scores = {k: v[:GAP_IMAGES] for k, v in scores_in.items()}
    record = {"config": name, "seed": seed, "dataset": dataset, "options": config.to_dict(),
              "test_ll": metrics["test_ll"], "test_elbo": metrics["test_elbo"], "eval_k": metrics["eval_k"],
              "n_test": metrics["n_test"], "train_seconds": metrics["train_seconds"],
              "model_summary": metrics.get("model_summary", {}), "fits": metrics.get("fits", []),
              "gap": {"n": GAP_IMAGES, "elbo_samples": GAP_ELBO_SAMPLES, "elbo_opt": elbo_opt.mean().item(),
                      "elbo_model": elbo_model.mean().item(), "elbo_encoder": elbo_encoder.mean().item(),
                      "amortization_gap": (elbo_opt - elbo_model).mean().item(),
                      "encoder_amortization_gap": encoder_gap.mean().item()},
              "spearman_with_gap": {k: spearman(v, encoder_gap) for k, v in gap_scores.items()},
              "auroc": {}, "history": metrics.get("history", []), "trained_at": metrics.get("git_commit")}
    record["roc"] = {}
    for ood in OOD_SETS[dataset]:
        scores_out = difficulty_scores(model, _ood_images(ood, data_dir), OOD_ELBO_SAMPLES)
        record["auroc"][ood] = {k: auroc(scores_in[k], scores_out[k]) for k in scores_in}
        record["roc"][ood] = {k: roc_curve(scores_in[k], scores_out[k]) for k in scores_in}
    vae_record = RECORDS / dataset / f"vae_seed{seed}.json"
    if name == "vae":
        record["gap"]["fraction_closed"] = 0.0
    elif vae_record.exists():
        vae_gap = json.loads(vae_record.read_text())["gap"]["amortization_gap"]
        record["gap"]["fraction_closed"] = 1 - record["gap"]["amortization_gap"] / vae_gap
    record["per_image"] = {"gap_scores": {k: _rounded(v) for k, v in gap_scores.items()},
                           "encoder_gap": _rounded(encoder_gap.tolist()), "elbo_model": _rounded(elbo_model.tolist())}
    record.update(command=f"python -m gpvae.study measure --configs {name} --seeds {seed}", **provenance(
        torch.device("cpu")))
    _write_json_mkdir(RECORDS / dataset / f"{name}_seed{seed}.json", record)
    return record


def _rounded(values: list[float], digits: int = 5) -> list[float]:
    return [float(f"{v:.{digits}g}") for v in values]


def roc_curve(in_scores, out_scores, points: int = ROC_POINTS) -> dict[str, list[float]]:
    """False- and true-positive rates of "score above threshold means out-of-distribution" at
    ``points`` thresholds (quantiles of all scores), for plotting; the AUROC is computed exactly."""
    a, b = torch.as_tensor(in_scores, dtype=torch.float64), torch.as_tensor(out_scores, dtype=torch.float64)
    thresholds = torch.quantile(torch.cat([a, b]), torch.linspace(1, 0, points, dtype=torch.float64))
    fpr = [(a > t).double().mean().item() for t in thresholds]
    tpr = [(b > t).double().mean().item() for t in thresholds]
    return {"fpr": [0.0] + _rounded(fpr, 4) + [1.0], "tpr": [0.0] + _rounded(tpr, 4) + [1.0]}


def _write_json_mkdir(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, obj)


def bench_all(names: list[str], dataset: str = "mnist", data_dir: str | None = None, repeats: int = 30) -> dict:
    """Inference and training-step time of each GP configuration beside the VAE, one process each."""
    out = {}
    for name in names:
        if CONFIGS[name][0]["model"] != "gp":
            continue
        config = config_of(name, 0, dataset, data_dir)
        report = bench(["gp"], config, repeats)
        out[name] = report
    _write_json_mkdir(RECORDS / dataset / "bench.json", out)
    return out


def _mean_sd(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values), "values": values}


TABLE_SCORES = {"gp": "mean_function_variance", "encoder": "encoder_variance", "elbo": "negative_elbo"}


def _own_score(record: dict) -> str:
    """The configuration's own uncertainty score: the GP's variance, or the kNN control's distance."""
    return "neighbour_distance" if "neighbour_distance" in record["spearman_with_gap"] else "mean_function_variance"


def table(dataset: str = "mnist") -> list[dict]:
    """One row per configuration: mean ± sd over seeds of every study measurement; writes table.json."""
    bench_path = RECORDS / dataset / "bench.json"
    benches = json.loads(bench_path.read_text()) if bench_path.exists() else {}
    rows = []
    for name in CONFIGS:
        records = [json.loads(p.read_text()) for p in sorted((RECORDS / dataset).glob(f"{name}_seed*.json"))]
        diverged = [r for r in records if "diverged" in r]
        records = [r for r in records if "diverged" not in r]
        if diverged and not records:
            rows.append({"config": name, "seeds": [r["seed"] for r in diverged], "diverged": diverged[0]["diverged"]})
        if not records:
            continue
        row = {"config": name, "seeds": [r["seed"] for r in records],
               "test_ll": _mean_sd([r["test_ll"] for r in records]),
               "test_elbo": _mean_sd([r["test_elbo"] for r in records]),
               "fraction_closed": _mean_sd([r["gap"].get("fraction_closed", float("nan")) for r in records]),
               "amortization_gap": _mean_sd([r["gap"]["amortization_gap"] for r in records])}
        for label, key in TABLE_SCORES.items():
            key = _own_score(records[0]) if label == "gp" else key
            if key in records[0]["spearman_with_gap"]:
                row[f"spearman_{label}"] = _mean_sd([r["spearman_with_gap"][key] for r in records])
                for ood in OOD_SETS[dataset]:
                    row[f"auroc_{ood}_{label}"] = _mean_sd([r["auroc"][ood][key] for r in records])
        if name in benches:
            row["infer_ratio_to_vae"] = benches[name]["results"][0]["infer_ratio_to_vae"]
        rows.append(row)
    _write_json_mkdir(RECORDS / dataset / "table.json", {"rows": rows, "protocol": __doc__})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpvae.study", description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("train", "measure", "bench", "table"))
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated configurations")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: each configuration's)")
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "omniglot"))
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    names = [n for n in args.configs.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        print(f"gpvae.study: unknown configuration(s) {unknown}; choose from {', '.join(CONFIGS)}", file=sys.stderr)
        return 2
    if args.stage == "bench":
        bench_all(names, args.dataset, args.data_dir)
    elif args.stage == "table":
        for row in table(args.dataset):
            print(row["config"], "diverged" if "diverged" in row else
                  f"{row['test_ll']['mean']:.2f} closed {row['fraction_closed']['mean']:.3f}")
    else:
        for name in names:
            seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else CONFIGS[name][1]
            for seed in seeds:
                (train_one if args.stage == "train" else measure)(name, seed, args.dataset, args.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
