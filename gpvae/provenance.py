"""Where a number came from: code commit, library versions, device."""
from __future__ import annotations

import hashlib
import platform
import subprocess
from pathlib import Path

import gpytorch
import torch

from .layout import REPOSITORY
from .options import ConfigError


# What a run executes: the package, its install files, and the chapter every run of record executes.
# The workflow (Snakefile and grids) decides what a record measures, so it counts as code too.
CODE_PATHS = ("gpvae", "workflow", "pyproject.toml", "requirements.lock", "book/training.ipynb")


def git_commit() -> str:
    """The commit of the gpvae checkout, with ``+dirty`` when the code (:data:`CODE_PATHS`) differs
    from it — results and the other chapters do not count — or ``unknown``."""
    repo = REPOSITORY
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def require_clean_commit(results_dir: str | Path) -> None:
    """Refuse to write records into this checkout's own ``results/`` from code that no commit holds
    (:func:`git_commit` dirty or unknown); records written elsewhere (a user's folder, a test's) pass."""
    target = Path(results_dir)
    target = (target if target.is_absolute() else REPOSITORY / target).resolve()
    if not target.is_relative_to(REPOSITORY / "results"):
        return
    commit = git_commit()
    if commit == "unknown" or commit.endswith("+dirty"):
        raise ConfigError(f"records of record ({target}) are written only from a clean tree of a commit, and the "
                          f"code here is {commit}: commit it and run the grid from a clean worktree "
                          "(git worktree add ../gpvae-runs HEAD)")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def provenance(device: torch.device) -> dict:
    return {"git_commit": git_commit(), "torch_version": torch.__version__,
            "gpytorch_version": gpytorch.__version__, "device": device_name(device)}


def parameter_digest(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state (names and values, in a fixed order): two modules with the same
    digest compute the same function."""
    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = 'cuda' but torch sees no GPU; use --device cpu or auto")
    return torch.device(name)
