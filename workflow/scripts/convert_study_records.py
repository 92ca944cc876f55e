"""One-off: the readings study's records (results/gp_study/, written by the retired gpvae/study.py) in the
workflow's schema under results/workflow/study/ (issue 20). Values are carried over, never recomputed,
except the difficulty's Spearman ρ, recomputed from the stored per-image values against the VAE's
per-image gap and −ELBO (the workflow's convention; the study ranked each run's own encoder gap and −ELBO).
Run once from the repository root: python workflow/scripts/convert_study_records.py"""
import json
from pathlib import Path

from gpvae import workflow as wf
from gpvae.evaluation import partial_spearman, spearman
from gpvae.training import _write_json

GRID = wf.load_grid("workflow/config/study.yaml")
OLD = Path("results/gp_study")
COMMAND = "snakemake --profile workflow/profiles/study"
PROVENANCE = ("git_commit", "torch_version", "gpytorch_version", "device")


def converted(path: Path, measured_at: str) -> dict:
    return {"path": str(path), "measured_at": measured_at,
            "by": "workflow/scripts/convert_study_records.py (issue 20)"}


for dataset in GRID["datasets"]:
    old = {p.stem: json.loads(p.read_text()) for p in (OLD / dataset).glob("*_seed*.json")}
    for d, run, seed in wf.cells(GRID):
        if d != dataset:
            continue
        name = f"{run}_seed{seed}"
        r, source = old[name], OLD / dataset / f"{name}.json"
        target = wf.record_path(GRID, dataset, run, seed)
        head = {"dataset": dataset, "run": run, "seed": seed, "profile": GRID["profile"], "budget": GRID["budget"],
                "note": GRID["runs"][run].get("note"), "model": r["options"]["model"]}
        if "diverged" in r:
            _write_json(target, {**head, "diverged": r["diverged"], "options": r["options"],
                                 **{k: r[k] for k in PROVENANCE}, "command": f"{COMMAND} {target}",
                                 "converted_from": converted(source, r["git_commit"])})
            continue
        history = r["history"]
        best = max(history, key=lambda h: h["valid_elbo"]) if history else None
        gap = r["gap"]
        _write_json(target, {
            **head, "test_ll": r["test_ll"], "test_elbo": r["test_elbo"], "eval_k": r["eval_k"], "n_test": r["n_test"],
            "epochs_done": len(history), "best_epoch": best["epoch"] if best else 0,
            "valid_elbo": best["valid_elbo"] if best else None, "train_seconds": r["train_seconds"],
            "model_summary": r["model_summary"], "git_commit": r["trained_at"],
            **{k: r[k] for k in PROVENANCE[1:]}, "options": r["options"],
            "gaps": {"elbo_opt": gap["elbo_opt"], "elbo_model": gap["elbo_model"],
                     "amortization_gap": gap["amortization_gap"], "n": gap["n"], "eval_k": None, "subset_seed": None},
            "history": history, "fits": r["fits"], "wall_seconds": None, "max_rss_mb": None,
            "command": f"{COMMAND} {target}", "converted_from": converted(source, r["git_commit"])})
    for seed in GRID["seeds"]:  # difficulty: the readings that keep the VAE's encoder, against its gap
        if (dataset, seed) not in wf.measurement_cells(GRID, "difficulty"):
            continue
        spec = wf.measurement(GRID, "difficulty", dataset)
        vae = old[f"{spec['reference']}_seed{seed}"]["per_image"]
        gap, baseline = vae["encoder_gap"], {k: vae["gap_scores"][k] for k in ("encoder_variance", "negative_elbo")}
        runs = {}
        for run in wf.measured_at(GRID, "difficulty", dataset, seed):
            r = old[f"{run}_seed{seed}"]
            if "diverged" in r:
                runs[run] = {"diverged": r["diverged"]}
                continue
            own = {k: v for k, v in r["per_image"]["gap_scores"].items() if k not in baseline}
            scores = {**own, **baseline}
            runs[run] = {"n": len(gap), "reference": str(wf.run_dir(GRID, dataset, spec["reference"], seed)),
                         "scores_of_reference": sorted(baseline),
                         "spearman_with_gap": {k: spearman(v, gap) for k, v in scores.items()},
                         "partial_spearman_given_negative_elbo": {
                             k: partial_spearman(v, gap, baseline["negative_elbo"]) for k, v in own.items()},
                         "per_image": {"gap": gap, **scores}, "seconds": None, "model": r["options"]["model"],
                         "dataset": dataset, **{k: r[k] for k in PROVENANCE}, "wall_seconds": None,
                         "converted_from": converted(OLD / dataset / f"{run}_seed{seed}.json", r["git_commit"])}
        target = wf.measurement_path(GRID, "difficulty", dataset, seed)
        _write_json(target, {"dataset": dataset, "seed": seed, "profile": GRID["profile"], "budget": GRID["budget"],
                             "difficulty": spec, "runs": runs, "command": f"{COMMAND} {target}"})
    spec = wf.measurement(GRID, "ood", dataset)
    for d, run, seed in wf.run_measurement_cells(GRID, "ood"):
        if d != dataset:
            continue
        r = old[f"{run}_seed{seed}"]
        target = wf.run_measurement_path(GRID, "ood", dataset, run, seed)
        values = ({"diverged": r["diverged"]} if "diverged" in r else
                  {"n": spec["images"], "subset_seed": spec["subset_seed"], "sets": spec["sets"],
                   "ood_seed": spec["ood_seed"], "elbo_samples": spec["elbo_samples"], "auroc": r["auroc"], "roc": r.get("roc", {}),
                   "seconds": None, "model": r["options"]["model"], "dataset": dataset, **{k: r[k] for k in PROVENANCE}})
        _write_json(target, {"dataset": dataset, "run": run, "seed": seed, "profile": GRID["profile"],
                             "budget": GRID["budget"], "ood": spec, **values, "wall_seconds": None,
                             "command": f"{COMMAND} {target}",
                             "converted_from": converted(OLD / dataset / f"{run}_seed{seed}.json", r["git_commit"])})
    bench = OLD / dataset / "bench.json"
    if bench.exists():
        _write_json(Path(GRID["results_dir"]) / dataset / "bench.json", json.loads(bench.read_text()))
