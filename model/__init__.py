"""A from-scratch NumPy multilayer perceptron and its trainer (never imports Optuna)."""

from ._domains import Domain
from ._ensemble import Ensemble
from ._functions import ACTIVATIONS, DERIVATIVES, HEADS, OUTPUT_ALIASES
from ._init import EXPECTED_VARIANCE, INITIALIZERS
from ._io import load, read_header, save
from ._network import LAYER_WIDTH, MAX_PARAMS, MAX_WIDTH, NETWORK_DOMAINS, Network, param_count
from ._optimizers import OPTIMIZERS
from ._schedules import SCHEDULES
from ._train import (
    CLIP_TYPES,
    TRAIN_CONDITIONS,
    TRAIN_DOMAINS,
    Checkpoints,
    EarlyStopping,
    History,
    StateError,
    TrainConfig,
    Trainer,
    evaluate,
    evaluate_outputs,
    fit,
)

__all__ = [
    "ACTIVATIONS",
    "CLIP_TYPES",
    "DERIVATIVES",
    "EXPECTED_VARIANCE",
    "HEADS",
    "INITIALIZERS",
    "LAYER_WIDTH",
    "MAX_PARAMS",
    "MAX_WIDTH",
    "NETWORK_DOMAINS",
    "OPTIMIZERS",
    "OUTPUT_ALIASES",
    "SCHEDULES",
    "TRAIN_CONDITIONS",
    "TRAIN_DOMAINS",
    "Checkpoints",
    "Domain",
    "EarlyStopping",
    "Ensemble",
    "History",
    "Network",
    "StateError",
    "TrainConfig",
    "Trainer",
    "evaluate",
    "evaluate_outputs",
    "fit",
    "load",
    "param_count",
    "read_header",
    "save",
]
