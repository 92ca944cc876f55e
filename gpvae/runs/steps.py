"""The Snakefile's steps around a job (``python -m gpvae.runs.steps``): put a run's parked checkpoint back
before its training, record a training's divergence, and mark a later job of a diverged run. Each step is a
fresh Python before or after a job, so this module loads no numerical stack: it starts in a tenth of a
second, where torch and GPyTorch take seconds of CPU per process."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ..io import atomic_write, read_json, write_json
from ..layout import CHECKPOINT, DIVERGED, METRICS


def unpark(parked: str | Path, folder: str | Path) -> bool:
    """Before a training job: copy the parked checkpoint ``parked`` into the run ``folder`` when the folder
    has none (a checkpoint there is live and never overwritten). Returns whether it did."""
    folder, parked = Path(folder), Path(parked)
    if parked.exists() and not (folder / CHECKPOINT).exists():
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / CHECKPOINT, lambda partial: shutil.copy(parked, partial))
        return True
    return False


def diverged(folder: str | Path, output: str | Path | None = None) -> bool:
    """Whether the run in ``folder`` diverged. After a failed training job (no ``output``): when the
    training wrote ``diverged.json``, make it the run's ``metrics.json`` (a divergence is a result). For a
    later job of a diverged run: write ``output`` saying so. Returns whether the run diverged."""
    folder = Path(folder)
    if output is None:
        if not (folder / DIVERGED).exists():
            return False
        write_json(folder / METRICS, read_json(folder / DIVERGED, "a training's divergence"))
        return True
    metrics = read_json(folder / METRICS, "run the grid's train job first")
    if "diverged" not in metrics:
        return False
    write_json(Path(output), {"diverged": metrics["diverged"], "run_dir": str(folder)})
    return True


def main(argv: list[str] | None = None) -> int:
    """``unpark PARKED RUN_DIR`` (exit 0); ``diverged RUN_DIR [OUTPUT]``: exit 0 when the run diverged (its
    divergence recorded, or OUTPUT written), else 1 (the failed job's error stands, or the job runs)."""
    parser = argparse.ArgumentParser(prog="python -m gpvae.runs.steps")
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("unpark", help="restore a run's parked checkpoint into its folder")
    one.add_argument("parked")
    one.add_argument("run_dir")
    one = commands.add_parser("diverged", help="after a failed training job, record its divergence (exit 0) or "
                                                "fail (exit 1); with OUTPUT, write it for a later job of a diverged run")
    one.add_argument("run_dir")
    one.add_argument("output", nargs="?")
    args = parser.parse_args(argv)
    if args.command == "unpark":
        if unpark(args.parked, args.run_dir):
            print(f"restored the parked checkpoint {args.parked} into {args.run_dir}")
        return 0
    return 0 if diverged(args.run_dir, args.output) else 1


if __name__ == "__main__":
    raise SystemExit(main())
