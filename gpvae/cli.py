"""Command line: ``python -m gpvae train|evaluate|bdmc|bench|bench-ais ...``.

Options of ``train`` are generated from :class:`gpvae.config.TrainConfig`, so the CLI, papermill
parameters and the Python API share one set of names. Exit codes: 0 success, 2 usage or data error
(unknown option or choice, invalid value, missing or corrupt data, conflicting run folder),
3 training diverged or a result is not finite (nothing non-finite is written), 130 interrupted (the last checkpoint is kept; rerun with --resume).
"""
from __future__ import annotations

import argparse
import json
import re
import sys

from .ais import ADAPT
from .bench import ais_cost, bench, format_table
from .config import ConfigError, TrainConfig, option_specs
from .gp.options import ERROR_IMAGES
from .models import MODELS
from .data import DATASETS, DataError
from .evaluation import AISSettings, settings_grid
from .gp.options import PRESETS
from .protocol import AIS_SUBSET, GAP_SUBSET
from .io import check_writable, write_json
from .layout import DIVERGED, METRICS, PER_EXAMPLE
from .external import EXTERNAL
from .measurements import (CONTROL_VALID_IMAGES, TrainingDiverged, ais_run, bdmc_run, difficulty_run, evaluate_run,
                           gaps_run, gprf_run, k_curve_run, proposal_control_run)
from .run_folder import make_external_run
from .training import train

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


def _file_stem(text: str) -> str:
    """A measurement file's name in a run folder, without ``.json``: letters, digits and underscores."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", text):
        raise argparse.ArgumentTypeError(f"expected letters, digits and underscores (a file name without .json), got {text!r}")
    if f"{text}.json" in (METRICS, PER_EXAMPLE, DIVERGED):
        raise argparse.ArgumentTypeError(f"{text}.json is the run folder's own record, not a measurement's file")
    return text


def _add_config_options(parser: argparse.ArgumentParser, skip: frozenset | set = frozenset()) -> None:
    groups = {}
    for title, name, default, type_name, help_text, choices, minimum in option_specs():
        if name in skip:
            continue
        if title not in groups:
            groups[title] = parser.add_argument_group(f"{title} options")
        group = groups[title]
        flag = "--" + name.replace("_", "-")
        if type_name == "bool":
            group.add_argument(flag, action="store_true", help=help_text)
            continue
        kind = int if "int" in type_name else float if "float" in type_name else str
        group.add_argument(flag, type=_typed(kind, minimum), default=default, choices=choices,
                            metavar=None if choices else name.upper(),
                            help=f"{help_text} (default: {default})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gpvae", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a model and evaluate it on the test set")
    _add_config_options(train)
    evaluate = commands.add_parser("evaluate", help="re-evaluate a trained run's best model, or measure your own VAE")
    evaluate.add_argument("run_dir", help="run folder written by train (--out), or with --external the folder to make")
    evaluate.add_argument("--external", metavar="FILE.py:FUNCTION",
                          help="your own VAE: FUNCTION returns gpvae.external.vae(encoder, decoder, likelihood, "
                               "latent_dim, image_shape) (optionally with its ImageData); RUN_DIR becomes an external "
                               "run folder that every measurement reads")
    evaluate.add_argument("--dataset", choices=DATASETS, default="mnist",
                          help="with --external: the data to measure on, unless FUNCTION returns its own")
    evaluate.add_argument("--download", action="store_true",
                          help="with --external: let torchvision download the dataset when it is missing")
    evaluate.add_argument("--gprf", action="store_true",
                          help="fit GP-RF's error regression (R4) post hoc to the run's VAE on --error-images training "
                               "images; log p̂(x) with q̄ beside the VAE's and the GP's variances, to gprf.json")
    evaluate.add_argument("--error-images", type=_typed(int, 1), default=None,
                          help=f"with --gprf: training images whose SVI errors are observed (default: {ERROR_IMAGES:,} "
                               "or every training image, whichever is fewer)")
    evaluate.add_argument("--error-inducing", type=_typed(int, 1), default=512,
                          help="with --gprf: inducing inputs of the error GP's predictive (default: 512)")
    evaluate.add_argument("--proposal-control", action="store_true",
                          help="the wider-proposal control of an importance-sampling gain: log p̂(x) with the encoder's "
                               "Gaussian, with its variance widened and mixed with the prior (each chosen on "
                               "--valid-images validation images), to proposal_control.json")
    evaluate.add_argument("--valid-images", type=_typed(int, 1), default=CONTROL_VALID_IMAGES,
                          help=f"with --proposal-control: validation images that choose the widening (default: "
                               f"{CONTROL_VALID_IMAGES})")
    evaluate.add_argument("--eval-k", type=_typed(int, 1), help="importance samples K (default: the run's)")
    evaluate.add_argument("--max-test", type=_typed(int, 1),
                          help="evaluate only N test images: the first N, or drawn with --subset-seed (default: "
                               "the run's own test images and draw)")
    evaluate.add_argument("--data-dir", help="dataset folder (default: the run's)")
    evaluate.add_argument("--device", choices=("auto", "cpu", "cuda"), help="device (default: the run's)")
    evaluate.add_argument("--per-example", action="store_true",
                          help="also write per-example log-likelihoods, ELBOs and (GP-RF) posterior difficulty")
    evaluate.add_argument("--gaps", action="store_true",
                          help="gap decomposition (approximation and amortization gaps) on a test subset, to gaps.json")
    evaluate.add_argument("--gap-subset", type=_typed(int, 1), default=GAP_SUBSET,
                          help=f"test images in the gap decomposition (default: {GAP_SUBSET})")
    evaluate.add_argument("--gaps-name", type=_file_stem, default="gaps", metavar="NAME",
                          help="the gap decomposition's file in a run folder, NAME.json: --gaps writes the run's, "
                               "--difficulty reads the reference run's (default: gaps)")
    evaluate.add_argument("--difficulty", metavar="REFERENCE_RUN",
                          help="rank the run's posterior difficulty against the per-image amortization gap of "
                               "REFERENCE_RUN's encoder (its --gaps-name file), beside that run's own scores; to "
                               "--difficulty-name")
    evaluate.add_argument("--difficulty-name", type=_file_stem, default="difficulty", metavar="NAME",
                          help="the file --difficulty writes in the run folder, NAME.json (default: difficulty)")
    evaluate.add_argument("--k-curve", type=_typed(int, 1), nargs="+", metavar="K",
                          help="log p̂(x) at each of these K on the --max-test images, to k_curve.json")
    evaluate.add_argument("--ais-steps", type=_typed(int, 1), metavar="T",
                          help="log p(x) by AIS from the prior with T temperatures on --ais-subset test images, "
                               "beside the IS estimate (K = --eval-k) on the same images, to ais.json")
    evaluate.add_argument("--ais-subset", type=_typed(int, 1), default=AIS_SUBSET,
                          help=f"test images of the AIS measurement (default: {AIS_SUBSET})")
    evaluate.add_argument("--ais-gap-subset", action="store_true",
                          help="also AIS on the images of the run's gaps.json (run --gaps first) and the "
                               "approximation gap by AIS there, AIS − ELBO(q*)")
    evaluate.add_argument("--subset-seed", type=_typed(int, 0),
                          help="draw the --max-test / --gap-subset / --ais-subset images at random with this seed "
                               "(default: the first images)")
    _add_ais_options(evaluate)
    bdmc = commands.add_parser("bdmc", help="BDMC certificate of a run's AIS: forward and reverse AIS on data "
                                            "simulated from its model, at several T, to bdmc.json")
    bdmc.add_argument("run_dir", help="run folder written by train (--out)")
    bdmc.add_argument("--ais-steps", type=_typed(int, 1), nargs="+", default=[250, 1000, 4000], metavar="T",
                      help="temperatures T to certify (default: 250 1000 4000)")
    bdmc.add_argument("--ais-leapfrog", type=_typed(int, 1), nargs="+", default=[AISSettings().leapfrog], metavar="L",
                      help="leapfrog steps per HMC transition: one L for every T, or one per T "
                           f"(default: {AISSettings().leapfrog})")
    bdmc.add_argument("--bdmc-images", type=_typed(int, 1), default=100,
                      help="images simulated from the model (default: 100)")
    bdmc.add_argument("--data-dir", help="dataset folder (default: the run's)")
    bdmc.add_argument("--device", choices=("auto", "cpu", "cuda"), help="device (default: the run's)")
    _add_ais_options(bdmc, leapfrog=False)
    bench = commands.add_parser("bench", help="time inference and training steps of several models side by side")
    bench.add_argument("--models", type=_model_list, default="vae,gp", help="comma-separated models (default: vae,gp)")
    bench.add_argument("--repeats", type=_typed(int, 1), default=50, help="timed repeats per model (default: 50)")
    bench.add_argument("--json", help="also write the report as JSON to this path")
    _add_config_options(bench, skip={"model", "epochs", "out", "max_train", "max_test", "subset_seed", "eval_k", "resume",
                                     "init_from"})
    bench_ais = commands.add_parser("bench-ais", help="seconds per image of AIS against the protocol's importance "
                                                      "sampling on a trained run, side by side in one process")
    bench_ais.add_argument("run_dir", help="run folder written by train (--out)")
    bench_ais.add_argument("--ais-steps", type=_typed(int, 1), default=AISSettings().steps, metavar="T",
                           help=f"AIS temperatures T (default: {AISSettings().steps})")
    bench_ais.add_argument("--images", type=_typed(int, 1), default=20, help="test images timed (default: 20)")
    bench_ais.add_argument("--eval-k", type=_typed(int, 1), default=1000, help="importance samples K (default: 1000)")
    bench_ais.add_argument("--repeats", type=_typed(int, 1), default=3, help="timed repeats of each (default: 3)")
    bench_ais.add_argument("--device", choices=("auto", "cpu", "cuda"), help="device (default: the run's)")
    bench_ais.add_argument("--json", help="also write the report as JSON to this path")
    _add_ais_options(bench_ais)
    return parser


def _add_ais_options(parser: argparse.ArgumentParser, leapfrog: bool = True) -> None:
    defaults = AISSettings()
    parser.add_argument("--ais-chains", type=_typed(int, 1), default=defaults.chains,
                        help=f"AIS chains per image (default: {defaults.chains})")
    parser.add_argument("--ais-adapt", choices=ADAPT, default=defaults.adapt,
                        help="step-size adaptation: shared by the batch's chains as they anneal (batch), per image "
                             "(image, several chains), or frozen from a pilot run of its own seed (pilot: unbiased, "
                             f"twice the passes) (default: {defaults.adapt})")
    if leapfrog:
        parser.add_argument("--ais-leapfrog", type=_typed(int, 1), default=defaults.leapfrog,
                            help=f"leapfrog steps per HMC transition (default: {defaults.leapfrog})")


def _ais_settings(args, steps: int) -> AISSettings:
    try:
        return AISSettings(steps=steps, chains=args.ais_chains, leapfrog=args.ais_leapfrog, adapt=args.ais_adapt)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _evaluate(args) -> None:
    """Every measurement the flags ask for, in turn; the plain re-evaluation when none is asked for."""
    if args.external:
        folder = make_external_run(args.run_dir, args.external, args.dataset, args.data_dir, args.device or "auto",
                                   eval_k=args.eval_k, download=args.download)
        print(f"wrote {folder / EXTERNAL}: {args.external} on {args.dataset}")
    measured = False
    if args.gprf:
        result = gprf_run(args.run_dir, args.error_images, args.error_inducing, args.eval_k, args.max_test,
                          args.data_dir, args.device, args.subset_seed)
        print(f"GP-RF (R4) fitted post hoc on {result['options']['error_images']} training images: log p̂(x) {result['test_ll']['gprf']:.3f} "
              f"nats against the VAE's {result['test_ll']['vae']:.3f} (K = {result['eval_k']}, {result['n_test']} test "
              f"images, the same draws): {result['gain']:+.3f}")
        measured = True
    if args.proposal_control:
        result = proposal_control_run(args.run_dir, args.valid_images, args.eval_k, args.max_test, args.subset_seed,
                                      args.data_dir, args.device)
        print(f"log p̂(x), K = {result['eval_k']} on {result['n_test']} test images: encoder's Gaussian "
              f"{result['test_ll']['own']:.3f}; variance × {result['chosen']['scale']:g} {result['gain']['widened']:+.3f}; "
              f"defensive mixture (prior weight {result['chosen']['prior_weight']:g}) {result['gain']['defensive']:+.3f} nats")
        measured = True
    if args.gaps:
        result = gaps_run(args.run_dir, args.gap_subset, args.eval_k, args.data_dir, args.device, args.subset_seed,
                          args.gaps_name)
        print(json.dumps({k: result[k]["mean"] for k in GAP_KEYS} | {"n": result["n"], "eval_k": result["eval_k"]},
                         indent=1))
        measured = True
    if args.difficulty:
        result = difficulty_run(args.run_dir, args.difficulty, args.data_dir, args.device, args.gaps_name,
                                args.difficulty_name)
        print("\n".join(f"Spearman ρ with the gap, {k}: {v:.3f}" for k, v in result["spearman_with_gap"].items()))
        measured = True
    if args.k_curve:
        if args.max_test is None:
            raise ConfigError("--k-curve needs --max-test (each K costs K decoder passes per image)")
        result = k_curve_run(args.run_dir, args.k_curve, args.max_test, args.data_dir, args.device, args.subset_seed)
        print("\n".join(f"K = {c['eval_k']:>6}: log p̂(x) = {c['test_ll']:.3f} nats" for c in result["curve"]))
        measured = True
    if args.ais_steps:
        result = ais_run(args.run_dir, _ais_settings(args, args.ais_steps), args.ais_subset, args.subset_seed,
                         args.eval_k, args.data_dir, args.device, gap_subset=args.ais_gap_subset)
        print(f"AIS (T = {args.ais_steps}): log p(x) = {result['mean']:.3f} nats on {result['n']} test images; "
              f"IS (K = {result['is']['eval_k']}) {result['is']['mean']:.3f}; estimator gap "
              f"{result['estimator_gap']:+.3f}; acceptance {result['acceptance']:.2f}; {result['seconds']:.0f} s")
        if args.ais_gap_subset:
            gaps = result["gap_subset"]
            print(f"On the {gaps['n']} images of gaps.json: AIS {gaps['mean']:.3f}, ELBO(q*) {gaps['elbo_opt']:.3f}, "
                  f"approximation gap by AIS {gaps['approximation_gap']['mean']:+.3f} nats"
                  + ("" if gaps["model_checked"] else " (gaps.json predates model digests: not checked to be this "
                                                      "model's; rerun --gaps to be sure)"))
        measured = True
    if not measured or args.per_example:
        result = evaluate_run(args.run_dir, args.eval_k, args.max_test, args.data_dir, args.device,
                              per_example=args.per_example, subset_seed=args.subset_seed)
        print(_summary(result))


def _check_preset(options: dict, argv: list[str]) -> None:
    """Refuse an option given on the command line at its default beside a preset that sets it otherwise:
    :class:`TrainConfig` cannot tell it from one left out, and would let the preset override it silently
    (an option given any other value wins over the preset)."""
    preset = PRESETS.get(options.get("gp_preset"), {})
    given = {token[2:].split("=")[0].replace("-", "_") for token in argv if token.startswith("--")}
    defaults = TrainConfig.__dataclass_fields__
    conflicts = sorted(name for name in given & set(preset)
                       if options[name] != preset[name] and options[name] == defaults[name].default)
    if conflicts:
        raise ConfigError(f"--gp-preset {options['gp_preset']} sets {', '.join(f'{k} = {preset[k]!r}' for k in conflicts)}; "
                          f"the command line also gives {', '.join(f'{k} = {options[k]!r}' for k in conflicts)}: drop one")


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
        if getattr(args, "json", None):
            check_writable(args.json, "--json")
        if args.command == "train":
            options = {k: v for k, v in vars(args).items() if k != "command"}
            _check_preset(options, argv if argv is not None else sys.argv[1:])
            config = TrainConfig(**options)
            metrics = train(config)
            print(_summary(metrics))
            print(f"wrote {config.run_dir}/metrics.json")
        elif args.command == "evaluate":
            _evaluate(args)
        elif args.command == "bdmc":
            try:
                settings = settings_grid(args.ais_steps, args.ais_leapfrog, chains=args.ais_chains, adapt=args.ais_adapt)
            except ValueError as error:
                parser.error(str(error))
            result = bdmc_run(args.run_dir, settings, args.bdmc_images, args.data_dir, args.device)
            print("\n".join(f"T = {s['settings']['steps']:>5}, L = {s['settings']['leapfrog']}: sandwich "
                             f"[{s['lower_mean']:.3f}, {s['upper_mean']:.3f}] nats, width {s['width']:.3f}, "
                             f"{s['seconds']:.0f} s" for s in result["sandwich"]))
        elif args.command == "bench-ais":
            report = ais_cost(args.run_dir, _ais_settings(args, args.ais_steps), args.images, args.eval_k, args.repeats,
                              args.device)
            print(f"AIS T = {args.ais_steps}: {report['ais_seconds_per_image']:.3f} s/image; IS K = {args.eval_k}: "
                  f"{report['is_seconds_per_image']:.4f} s/image; AIS / IS = {report['ratio']:.1f} "
                  f"({args.images} images, median of {args.repeats} interleaved repeats, {report['device']})")
            if args.json:
                write_json(args.json, report)
        else:
            options = {k: v for k, v in vars(args).items() if k not in ("command", "models", "repeats", "json")}
            report = bench(args.models, TrainConfig(**options), args.repeats)
            print(format_table(report))
            if args.json:
                write_json(args.json, report)
    except (DataError, ConfigError) as err:
        print(f"gpvae: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingDiverged as err:
        print(f"gpvae: diverged: {err}. Lower --lr or change --seed and rerun into a new --out.", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        print("gpvae: interrupted; the last completed epoch is checkpointed: rerun with --resume to continue.",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
