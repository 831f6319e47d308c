"""A from-scratch NumPy multilayer perceptron and its trainer (never imports Optuna)."""

from ._functions import ACTIVATIONS, DERIVATIVES, HEADS, OUTPUT_ALIASES
from ._init import EXPECTED_VARIANCE, INITIALIZERS
from ._io import load, read_header, save
from ._network import Network
from ._optimizers import OPTIMIZERS
from ._schedules import SCHEDULES
from ._train import CLIP_TYPES, History, TrainConfig, evaluate, fit

__all__ = [
    "ACTIVATIONS",
    "CLIP_TYPES",
    "DERIVATIVES",
    "EXPECTED_VARIANCE",
    "HEADS",
    "INITIALIZERS",
    "OPTIMIZERS",
    "OUTPUT_ALIASES",
    "SCHEDULES",
    "History",
    "Network",
    "TrainConfig",
    "evaluate",
    "fit",
    "load",
    "read_header",
    "save",
]
