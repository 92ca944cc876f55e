"""gpvae: Gaussian-process random-function inference for VAEs, with its baselines and one evaluation protocol.

The numerical stack (torch, GPyTorch) loads with the first name that needs it, so that readers of records
(:mod:`gpvae.report`, :mod:`gpvae.verdicts`, :mod:`gpvae.runs.records`) import without it."""
import importlib
import warnings

# torchvision/gpytorch import torch.jit.script at import time; the deprecation is theirs, not ours.
warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

__version__ = "0.1.0"
# Each public name and the module that defines it.
_EXPORTS = {"TrainConfig": "config", "DATASETS": "data", "DataError": "data", "load": "data", "evaluate": "evaluation",
            "MODELS": "models", "LatentVariableModel": "models", "build_model": "models", "train": "training",
            "evaluate_run": "measurements"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gpvae' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
