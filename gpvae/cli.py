"""Command line: ``python -m gpvae train|evaluate|bench ...``.

Options of ``train`` are generated from :class:`gpvae.config.TrainConfig`, so the CLI, papermill
parameters and the Python API share one set of names. Exit codes: 0 success, 2 usage or data error
(unknown option or choice, invalid value, missing or corrupt data, conflicting run folder),
3 training diverged (NaN/inf), 130 interrupted (the last checkpoint is kept; rerun with --resume).
"""
from __future__ import annotations

import argparse
import json
import sys

from .bench import bench, format_table, write_json
from .config import ConfigError, TrainConfig, option_specs
from .models import MODELS
from .data import DataError
from .training import TrainingDiverged, difficulty_run, evaluate_run, gaps_run, k_curve_run, train

EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 130
GAP_KEYS = ("log_px", "elbo_opt", "elbo_model", "approximation_gap", "amortization_gap")


def _typed(kind: type, minimum):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def _add_config_options(parser: argparse.ArgumentParser, skip: frozenset | set = frozenset()) -> None:
    for name, default, type_name, help_text, choices, minimum in option_specs():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        if type_name == "bool":
            parser.add_argument(flag, action="store_true", help=help_text)
            continue
        kind = int if "int" in type_name else float if "float" in type_name else str
        parser.add_argument(flag, type=_typed(kind, minimum), default=default, choices=choices,
                            metavar=None if choices else name.upper(),
                            help=f"{help_text} (default: {default})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gpvae", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a model and evaluate it on the test set")
    _add_config_options(train)
    evaluate = commands.add_parser("evaluate", help="re-evaluate a trained run's best model")
    evaluate.add_argument("run_dir", help="run folder written by train (--out)")
    evaluate.add_argument("--eval-k", type=_typed(int, 1), help="importance samples K (default: the run's)")
    evaluate.add_argument("--max-test", type=_typed(int, 1), help="evaluate only the first N test images")
    evaluate.add_argument("--data-dir", help="dataset folder (default: the run's)")
    evaluate.add_argument("--device", choices=("auto", "cpu", "cuda"), help="device (default: the run's)")
    evaluate.add_argument("--per-example", action="store_true",
                          help="also write per-example log-likelihoods, ELBOs and (GP-RF) posterior difficulty")
    evaluate.add_argument("--gaps", action="store_true",
                          help="gap decomposition (approximation and amortization gaps) on a test subset, to gaps.json")
    evaluate.add_argument("--gap-subset", type=_typed(int, 1), default=100,
                          help="test images in the gap decomposition (default: 100)")
    evaluate.add_argument("--difficulty", metavar="REFERENCE_RUN",
                          help="rank the run's posterior difficulty against the per-image amortization gap of "
                               "REFERENCE_RUN's encoder (its gaps.json), beside that run's own scores; to difficulty.json")
    evaluate.add_argument("--k-curve", type=_typed(int, 1), nargs="+", metavar="K",
                          help="log p̂(x) at each of these K on the first --max-test images, to k_curve.json")
    bench = commands.add_parser("bench", help="time inference and training steps of several models side by side")
    bench.add_argument("--models", type=_model_list, default="vae,gp", help="comma-separated models (default: vae,gp)")
    bench.add_argument("--repeats", type=_typed(int, 1), default=50, help="timed repeats per model (default: 50)")
    bench.add_argument("--json", help="also write the report as JSON to this path")
    _add_config_options(bench, skip={"model", "epochs", "out", "max_train", "max_test", "eval_k", "resume", "init_from"})
    return parser


def _model_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    return names


def _summary(metrics: dict) -> str:
    keys = ("model", "dataset", "test_ll", "test_elbo", "test_bpd", "eval_k", "n_test", "epochs_done",
            "train_seconds", "device")
    return json.dumps({k: metrics[k] for k in keys if k in metrics}, indent=1)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            options = {k: v for k, v in vars(args).items() if k != "command"}
            config = TrainConfig(**options)
            metrics = train(config)
            print(_summary(metrics))
            print(f"wrote {config.run_dir}/metrics.json")
        elif args.command == "evaluate" and args.gaps:
            result = gaps_run(args.run_dir, args.gap_subset, args.eval_k, args.data_dir, args.device)
            print(json.dumps({k: result[k]["mean"] for k in GAP_KEYS} | {"n": result["n"], "eval_k": result["eval_k"]},
                             indent=1))
        elif args.command == "evaluate" and args.difficulty:
            result = difficulty_run(args.run_dir, args.difficulty, args.data_dir, args.device)
            print("\n".join(f"Spearman ρ with the gap, {k}: {v:.3f}" for k, v in result["spearman_with_gap"].items()))
        elif args.command == "evaluate" and args.k_curve:
            if args.max_test is None:
                raise ConfigError("--k-curve needs --max-test (each K costs K decoder passes per image)")
            result = k_curve_run(args.run_dir, args.k_curve, args.max_test, args.data_dir, args.device)
            print("\n".join(f"K = {c['eval_k']:>6}: log p̂(x) = {c['test_ll']:.3f} nats" for c in result["curve"]))
        elif args.command == "evaluate":
            result = evaluate_run(args.run_dir, args.eval_k, args.max_test, args.data_dir, args.device,
                                  per_example=args.per_example)
            print(_summary(result))
        else:
            options = {k: v for k, v in vars(args).items() if k not in ("command", "models", "repeats", "json")}
            report = bench(args.models, TrainConfig(**options), args.repeats)
            print(format_table(report))
            if args.json:
                write_json(report, args.json)
    except (DataError, ConfigError) as err:
        print(f"gpvae: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingDiverged as err:
        print(f"gpvae: training diverged: {err}. The last good checkpoint is kept; "
              "lower --lr or change --seed and rerun.", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        print("gpvae: interrupted; the last completed epoch is checkpointed: rerun with --resume to continue.",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
