"""gpvae: Gaussian-process random-function inference for VAEs, with its baselines and one evaluation protocol."""
import warnings

# torchvision/gpytorch import torch.jit.script at import time; the deprecation is theirs, not ours.
warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

from .config import TrainConfig
from .data import DATASETS, DataError, load
from .evaluation import evaluate
from .models import MODELS, LatentVariableModel, build_model
from .training import evaluate_run, train

__version__ = "0.1.0"
__all__ = ["TrainConfig", "DATASETS", "DataError", "load", "evaluate", "MODELS", "LatentVariableModel",
           "build_model", "train", "evaluate_run"]

