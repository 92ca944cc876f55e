"""Benchmarks: inference time, training-step time and peak memory of several models side by side.

All models are built from one :class:`~gpvae.config.TrainConfig` (only ``model`` differs), run in
one process on the same real minibatch, and timed *interleaved* — each repeat times every model
once, in a fresh seeded random order — so that machine noise and cache effects fall on all of them
alike. Reported times are medians in ms:

* ``infer_ms``: inference for a test batch — the proposal r(z | x), one draw z ~ r per example and
  its exact log-density (evaluation mode, no gradients; for flows the draw is where the flow runs),
  on a frozen copy of the model so that inference-time caches stay valid, as they do at test time;
* ``train_step_ms``: loss, backward pass and Adam step on a training batch;
* ``peak_mem_mb``: peak memory allocated by tensors during one training step (CUDA: the caching
  allocator's peak; CPU: the peak of the PyTorch profiler's allocation trace);
* ``infer_macs_per_image``: multiply-adds per image of the inference above, counted from the shapes
  (:func:`inference_macs`), beside the times.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import statistics
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from . import data as datasets
from .config import TrainConfig
from .progress import progress
from .provenance import provenance, resolve_device
from .run_folder import load_run, new_model

WARMUP = 5


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - start) * 1e3


def interleaved_medians(tasks: dict[str, dict[str, object]], device: torch.device, repeats: int, seed: int) -> dict:
    """Median milliseconds of every callable of ``tasks`` ({label: {what: fn}}), timed interleaved: each
    of :data:`WARMUP` + ``repeats`` repeats runs every label once, in a fresh seeded random order (so that
    no label always follows the same one), and each of its callables in turn. {label: {what: ms}}."""
    labels = list(tasks)
    times = {label: {what: [] for what in tasks[label]} for label in labels}
    shuffle = torch.Generator().manual_seed(seed)
    for repeat in progress(range(WARMUP + repeats), desc="bench", unit="repeat"):
        for label in (labels[i] for i in torch.randperm(len(labels), generator=shuffle)):
            for what, fn in tasks[label].items():
                elapsed = _timed(fn, device)
                if repeat >= WARMUP:
                    times[label][what].append(elapsed)
    return {label: {what: statistics.median(values) for what, values in timed.items()} for label, timed in times.items()}


def load_average() -> list[float] | None:
    """The machine's 1-, 5- and 15-minute load averages (None where the OS has none): beside a timing,
    how busy the cores were."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


@contextlib.contextmanager
def _quiet_stderr():
    """The profiler's C++ side logs to fd 2 on machines without a GPU; silence it while profiling."""
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def peak_memory_mb(fn, device: torch.device) -> float:
    """Peak memory (MB) allocated by tensors while ``fn()`` runs, above what was allocated before."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 1e6
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak / 1e6


def _layer_macs(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    """Multiply-adds of one forward call of a Linear or convolution layer, from its shapes."""
    if isinstance(module, torch.nn.Linear):
        return output.numel() * module.in_features
    if isinstance(module, torch.nn.Conv2d):
        return output.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
    if isinstance(module, torch.nn.ConvTranspose2d):
        return inputs[0].numel() * module.out_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
    return 0


def inference_pass(model, x: torch.Tensor):
    """The inference being timed, as a callable: the proposal r(z | x), one draw per example and its exact
    log-density, without gradients."""
    def run():
        with torch.no_grad():
            r = model.proposal(x)
            r.log_prob(r.rsample())
    return run


def inference_macs(model, x: torch.Tensor) -> float:
    """Multiply-adds per image of inference (the proposal, one draw, its log-density), counted from the
    shapes: every Linear and convolution layer that runs (forward passes only: SA-VAE's backward passes
    are not counted), plus an error GP's predictive by its shapes (``macs_per_image``)."""
    total = [0]
    layers = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    hooks = [m.register_forward_hook(lambda m, i, o: total.__setitem__(0, total[0] + _layer_macs(m, i, o)))
             for m in model.modules() if isinstance(m, layers)]
    try:
        inference_pass(model, x)()
    finally:
        for hook in hooks:
            hook.remove()
    gp = getattr(model, "gp", None)
    extra = gp.macs_per_image(model.error_input_dim) if hasattr(gp, "macs_per_image") else 0
    return total[0] / len(x) + extra


def bench(models: list[str], config: TrainConfig, repeats: int = 50) -> dict:
    """Benchmark ``models`` (names of :data:`gpvae.models.MODELS`) with the options of ``config``.

    Returns ``{"device", "batch_size", "dataset", "repeats", "reference", "results": [{"model",
    "infer_ms", "train_step_ms", "peak_mem_mb", "infer_ratio_to_vae", "train_ratio_to_vae"}, ...]}``
    with the ratios relative to ``vae`` (benchmarked as well when not listed; its row is ``reference``).
    """
    device = resolve_device(config.device)
    data = datasets.load(config.dataset, config.data_dir, config.download)
    generator = torch.Generator().manual_seed(config.seed)
    x_train = data.training_batch(data.train[:config.batch_size], generator).to(device)
    x_test = data.test[:config.batch_size].to(device)
    names = list(dict.fromkeys(["vae", *models]))
    built = {}
    for name in names:
        reference = {"freeze": "none"} if name == "vae" else {}  # the VAE reference trains all its parameters
        model = new_model(dataclasses.replace(config, model=name, **reference), data).to(device)
        frozen = copy.deepcopy(model).eval()  # inference on fixed parameters, as at test time (caches hold)
        built[name] = (model, model.optimizers(config.lr), frozen)

    def infer(name):
        inference_pass(built[name][2], x_test)()

    def train_step(name):
        model, optimizers, _ = built[name]
        model.train()
        loss = model.loss(x_train)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()

    medians = interleaved_medians({name: {"infer": lambda name=name: infer(name),
                                          "train": lambda name=name: train_step(name)} for name in names},
                                  device, repeats, config.seed)
    rows = []
    for name in names:
        rows.append({"model": name, "infer_ms": medians[name]["infer"], "train_step_ms": medians[name]["train"],
                     "peak_mem_mb": peak_memory_mb(lambda: train_step(name), device),
                     "infer_macs_per_image": inference_macs(built[name][2], x_test)})
    vae = rows[0]
    for row in rows:
        row["infer_ratio_to_vae"] = row["infer_ms"] / vae["infer_ms"]
        row["train_ratio_to_vae"] = row["train_step_ms"] / vae["train_step_ms"]
        row["macs_ratio_to_vae"] = row["infer_macs_per_image"] / vae["infer_macs_per_image"]
    return {"dataset": config.dataset, "batch_size": config.batch_size, "repeats": repeats,
            "threads": torch.get_num_threads(), "load_average": load_average(), "options": config.to_dict(),
            **provenance(device),
            "reference": vae, "results": [r for r in rows if r["model"] in models]}


def ais_cost(run_dir: str | Path, settings, images: int, eval_k: int, repeats: int, device: str | None = None,
             seed: int = 0) -> dict:
    """Seconds per image of AIS from the prior (``settings``, an :class:`~gpvae.ais.AISSettings`) against
    the protocol's importance sampling with ``eval_k`` samples, on the first ``images`` test images of a
    run's model, timed interleaved in one process (:func:`interleaved_medians`), and their ratio."""
    from .evaluation import ais_log_likelihood, log_likelihood

    config, data, model, dev = load_run(run_dir, device=device)
    x = data.test[:images]
    tasks = {"ais": {"run": lambda: ais_log_likelihood(model, x, settings, config.batch_size, dev, seed)},
             "is": {"run": lambda: log_likelihood(model, x, eval_k, config.batch_size, dev)}}
    medians = interleaved_medians(tasks, dev, repeats, seed)
    per_image = {name: medians[name]["run"] / 1e3 / images for name in tasks}
    return {"run_dir": str(run_dir), "model": config.model, "images": images, "eval_k": eval_k,
            "settings": dataclasses.asdict(settings), "repeats": repeats, "ais_seconds_per_image": per_image["ais"],
            "is_seconds_per_image": per_image["is"], "ratio": per_image["ais"] / per_image["is"],
            "threads": torch.get_num_threads(), "load_average": load_average(), **provenance(dev)}


def format_table(report: dict) -> str:
    """The benchmark as a fixed-width text table with its protocol in the header."""
    head = (f"{report['dataset']}, batch {report['batch_size']}, {report['device']}, median of {report['repeats']} "
            f"interleaved repeats, commit {report['git_commit'][:12]}")
    lines = [head, f"{'model':<8}{'infer ms':>10}{'x VAE':>8}{'MMAC/img':>10}{'x VAE':>8}{'train step ms':>15}{'x VAE':>8}"
                   f"{'peak MB':>10}"]
    for r in report["results"]:
        macs, ratio = r.get("infer_macs_per_image", float("nan")) / 1e6, r.get("macs_ratio_to_vae", float("nan"))
        lines.append(f"{r['model']:<8}{r['infer_ms']:>10.3f}{r['infer_ratio_to_vae']:>8.2f}{macs:>10.3f}{ratio:>8.2f}"
                     f"{r['train_step_ms']:>15.3f}{r['train_ratio_to_vae']:>8.2f}{r['peak_mem_mb']:>10.1f}")
    return "\n".join(lines)

