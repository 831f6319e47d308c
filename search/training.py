"""Training one configuration on a ``Dataset``: the part of a trial that knows no Optuna.

Workers (through the objective) and ``nnsearch train`` (through the export) both
train here, so that a retrained network reproduces its trial bit for bit.
"""

from __future__ import annotations

import time
from typing import Any

from threadpoolctl import threadpool_limits

from nnsearch.model import History, Network, TrainConfig, evaluate, fit

from .data import Dataset


def metric_value(metric: str, data: Dataset, loss: float, score: float) -> float:
    """The study's metric from fit's (loss, accuracy-or-standardised-RMSE)."""
    if metric == "val_loss":
        return loss
    if metric == "val_rmse":
        return score * data.y_scale  # back to the target's own units
    return score


def train_trial(network: dict[str, Any], training: dict[str, Any], data: Dataset,
                on_epoch_end: Any = None) -> tuple[Network, History, float, float, float]:
    """Build and train one network.

    Returns it, its history, the validation loss and score (accuracy, or RMSE in
    standardised units) of the weights it ends with, and the training seconds.
    BLAS runs on one thread, in a worker and in ``nnsearch train`` alike: a
    multi-threaded GEMM sums in another order, and the retrained network would
    not reproduce the trial bit for bit.
    """
    net = Network(**network)
    config = TrainConfig(**training)
    with threadpool_limits(1):
        start = time.perf_counter()
        history = fit(net, data.X_train, data.y_train, data.X_val, data.y_val, config,
                      on_epoch_end=on_epoch_end)
        seconds = time.perf_counter() - start
        loss, score = evaluate(net, data.X_val, data.y_val)
    return net, history, loss, score, seconds


def evaluate_test(net: Network, data: Dataset) -> tuple[float, float]:
    """(loss, score) on the held-out test split, with BLAS as the trial had it."""
    with threadpool_limits(1):
        return evaluate(net, data.X_test, data.y_test)
