"""One-off: the runs made by hand before the workflow existed (results/mnist*/, results/bench/, written by
`python -m gpvae train / evaluate / bench`) in the workflow's schema under results/workflow/hand_*/ (issue 20).
Values are carried over, never recomputed. Each folder becomes a profile of its own (its budget), each run a
record `<profile>/mnist/<run>_seed0.json`, a per-example evaluation a run measurement
`<profile>/mnist/evaluation/<run>_seed0.json`, the benchmarks one `hand_bench/mnist/bench.json`.
Run once from the repository root: python workflow/scripts/convert_hand_records.py"""
import json
import shutil
from pathlib import Path

from gpvae.training import _write_json

OLD = Path("results")
NEW = Path("results/workflow")
PROVENANCE = ("git_commit", "torch_version", "gpytorch_version", "device")
RUN_KEYS = ("model", "test_ll", "test_elbo", "test_bpd", "test_elbo_bpd", "eval_k", "n_test", "epochs_done", "best_epoch",
            "valid_elbo", "stopped", "train_seconds", "n_parameters", "data", "likelihood", "model_summary")
HAND = "run by hand with `python -m gpvae train` before the workflow existed; Adam lr 1e-3, batch 100, parameters of " \
       "the epoch with the best validation ELBO; one thread per run, runs sharing the 2-core CPU (train_seconds an upper bound)"
TRAIN = "OMP_NUM_THREADS=1 python -m gpvae train --dataset mnist --seed 0 --device cpu --data-dir ../shared/data"
SMALL = "--max-train 10000 --max-test 2000 --eval-k 1000"

FOLDERS = {
    "mnist": ("hand_200epochs", f"MNIST, all 50,000 training images, 200 epochs, seed 0; test log p̂ with K = 5000 on all "
                                f"10,000 test images; {HAND}.", {
        "vae": f"{TRAIN} --model vae --epochs 200 --eval-k 5000 --out results/mnist/vae_seed0",
        "iwae": f"{TRAIN} --model iwae --epochs 200 --eval-k 5000 --out results/mnist/iwae_seed0",
        "gp": f"{TRAIN} --model gp --epochs 200 --eval-k 5000 --out results/mnist/gp_seed0",
        "gp_marginal": f"{TRAIN} --model gp --objective marginal --epochs 200 --eval-k 5000 --out runs/long/gp_marginal_seed0"}),
    "mnist_5epochs": ("hand_5epochs", f"MNIST, all 50,000 training images, 5 epochs, seed 0; test log p̂ with K = 1000 on "
                                      f"all 10,000 test images; gaps on the first 100 test images with K = 5000, ELBOs from "
                                      f"1000 draws; {HAND}.", {
        m: f"{TRAIN} --model {m} --epochs 5 --eval-k 1000 --out results/mnist_5epochs/{m}_seed0 && OMP_NUM_THREADS=1 "
           f"python -m gpvae evaluate results/mnist_5epochs/{m}_seed0 --gaps --gap-subset 100 --eval-k 5000"
        for m in ("vae", "savae")}),
    "mnist_10k_10epochs": ("hand_10k_10epochs", f"MNIST, the first 10,000 training images, 10 epochs, seed 0; test log p̂ "
                                                f"with K = 1000 on the first 2,000 test images; {HAND}.", {
        **{f"gp_{v}": f"{TRAIN} --model gp --variational {v} --epochs 10 {SMALL} --out results/mnist_10k_10epochs/gp_{v}_seed0"
           for v in ("shared", "meanfield", "full")},
        "vae": f"{TRAIN} --model vae --epochs 10 {SMALL} --out results/mnist_10k_10epochs/vae_seed0",
        "gp_marginal": f"{TRAIN.replace('OMP_NUM_THREADS=1 ', '')} --model gp --objective marginal --epochs 10 {SMALL} "
                       f"--out results/mnist_10k_10epochs/gp_marginal_seed0",
        **{m: f"{TRAIN} --model {m} --epochs 10 {SMALL} --out runs/small/{m}_seed0" for m in ("hf", "iaf", "vlae", "iwae", "savae")},
        "vae_rerun": f"{TRAIN} --model vae --epochs 10 {SMALL} --out runs/small/vae_seed0",
        "rme_staged": f"{TRAIN} --model rme --mixture-schedule staged --epochs 10 {SMALL} --out runs/small/rme_seed0",
        "rme_recursive": f"{TRAIN} --model rme --epochs 10 {SMALL} --out runs/small/rme_recursive_seed0"}),
    "mnist_10k_vlae_warm_start": ("hand_10k_vlae_warm_start", f"MNIST, the first 10,000 training images, seed 0: VLAE "
                                                              f"warm-started from the 10-epoch VAE of the shared budget and "
                                                              f"trained 10 more epochs, beside the VAE trained 20 epochs; test "
                                                              f"log p̂ with K = 1000 on the first 2,000 test images; {HAND}.", {
        "vlae_from_vae": f"{TRAIN} --model vlae --init-from runs/small/vae_seed0 --epochs 10 {SMALL} "
                         f"--out runs/small/vlae_from_vae_seed0",
        "vae_20epochs": f"{TRAIN} --model vae --epochs 20 {SMALL} --out runs/small/vae_20epochs_seed0"}),
    "mnist_30epochs": ("hand_30epochs", f"MNIST, all 50,000 training images, 30 epochs, seed 0 (VLAE and SA-VAE not run); "
                                        f"test log p̂ with K = 1000 on all 10,000 test images; {HAND}.", {
        **{m: f"{TRAIN} --model {m} --epochs 30 --eval-k 1000 --out runs/long/medium_{m}_seed0" for m in ("vae", "hf", "iaf", "iwae")},
        "rme_staged": f"{TRAIN} --model rme --mixture-schedule staged --epochs 30 --eval-k 1000 --out runs/long/medium_rme_seed0",
        "rme_recursive": f"{TRAIN} --model rme --epochs 30 --eval-k 1000 --out runs/long/medium_rme_recursive_seed0"}),
}
EVALUATIONS = {("mnist", "gp"): "python -m gpvae evaluate results/mnist/gp_seed0 --eval-k 100 --max-test 1000 --per-example "
                                "--data-dir ../shared/data",
               ("mnist", "gp_marginal"): "python -m gpvae evaluate runs/long/gp_marginal_seed0 --per-example --eval-k 100 "
                                         "--max-test 1000"}
BENCH = {"savae_T1": "--models vae,gp,savae --svi-steps 1 --repeats 50", "savae_T5": "--models vae,gp,savae --svi-steps 5 --repeats 50",
         "savae_T20": "--models vae,gp,savae --svi-steps 20 --repeats 50",
         "gp_meanfield": "--models vae,gp --variational meanfield --repeats 30",
         "gp_full": "--models vae,gp --variational full --repeats 30",
         "gp_full_M256": "--models vae,gp --variational full --inducing 256 --repeats 20",
         "all_models": "--models iwae,savae,gp,hf,iaf,vlae,rme --dataset mnist --batch-size 100 --repeats 30"}


def converted(path: Path, measured_at: str) -> dict:
    return {"path": str(path), "measured_at": measured_at, "by": "workflow/scripts/convert_hand_records.py (issue 20)"}


def write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, record)


def run_name(folder: str) -> str:
    return folder.replace("_seed0", "")  # vae_seed0_rerun -> vae_rerun


for folder, (profile, budget, commands) in FOLDERS.items():
    runs = sorted(p for p in (OLD / folder).iterdir() if (p / "metrics.json").exists())
    assert {run_name(p.name) for p in runs} == set(commands), (folder, [p.name for p in runs])
    for path in runs:
        run = run_name(path.name)
        m = json.loads((path / "metrics.json").read_text())
        head = {"dataset": "mnist", "run": run, "seed": m["seed"], "profile": profile, "budget": budget, "note": None}
        record = {**head, **{k: m[k] for k in RUN_KEYS if k in m}, **{k: m[k] for k in PROVENANCE}, "options": m["options"],
                  "history": m["history"], "fits": m.get("fits", []), "wall_seconds": None, "max_rss_mb": None,
                  "command": commands[run], "converted_from": converted(path / "metrics.json", m["git_commit"])}
        if (path / "gaps.json").exists():
            g = json.loads((path / "gaps.json").read_text())
            record["gaps"] = {k: g[k]["mean"] for k in ("log_px", "elbo_opt", "elbo_model", "approximation_gap",
                                                        "amortization_gap") if g.get(k)} | {
                "n": g["n"], "eval_k": g["eval_k"], "subset_seed": None,
                "q_star_converged": all(b["converged"] for b in g["svi"]["batches"])}
            record["converted_from"]["gaps"] = {"path": str(path / "gaps.json"), "measured_at": g["git_commit"]}
        write(NEW / profile / "mnist" / f"{run}_seed{m['seed']}.json", record)
        for evaluation in sorted(path.glob("evaluation_*.json")):
            e = json.loads(evaluation.read_text())
            per_image = json.loads(evaluation.with_name(evaluation.name.replace("evaluation_", "per_example_")).read_text())
            write(NEW / profile / "mnist" / "evaluation" / f"{run}_seed{m['seed']}.json", {
                **head, "model": e["model"], "evaluation": {"eval_k": e["eval_k"], "n_test": e["n_test"]},
                "test_ll": e["test_ll"], "test_elbo": e["test_elbo"], "model_summary": e["model_summary"],
                "per_image": per_image, **{k: e[k] for k in PROVENANCE}, "command": EVALUATIONS[(folder, run)],
                "converted_from": converted(evaluation, e["git_commit"])})

bench = {}
for name, arguments in BENCH.items():
    path = OLD / "bench" / f"mnist_cpu_{name}.json" if name != "all_models" else OLD / "bench" / "mnist_all_models_cpu.json"
    b = json.loads(path.read_text())
    bench[name] = {**b, "profile": "hand_bench", "command": f"python -m gpvae bench {arguments} --device cpu --data-dir "
                                                           f"../shared/data --json {path}",
                   "converted_from": converted(path, b["git_commit"])}
assert len(bench) == len(list((OLD / "bench").glob("*.json")))
write(NEW / "hand_bench" / "mnist" / "bench.json", bench)
for folder in [*FOLDERS, "bench"]:
    shutil.rmtree(OLD / folder)
