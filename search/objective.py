"""The objective: sample a network and its training, train it, report, prune.

The data is loaded once per process (``Objective`` holds it); each trial's seed is
derived from the study seed and the trial number, so a trial's result does not
depend on which worker ran it. The test split is never touched here.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from typing import Any

import numpy as np
import optuna
from optuna.artifacts import FileSystemArtifactStore
from threadpoolctl import threadpool_limits

from nnsearch.model import History, Network, TrainConfig, evaluate, fit

from .data import Dataset
from .errors import Stopped
from .space import build_configs, sample
from .storage import set_user_attrs
from .studyfile import StudySpec

logger = logging.getLogger(__name__)

WORKER_ATTR = "nnsearch.worker"  # written by a worker with the trial's result


def trial_seed(study_seed: int, trial_number: int) -> int:
    """A 31-bit seed that depends only on the study seed and the trial number."""
    return int(np.random.SeedSequence([study_seed, trial_number]).generate_state(1)[0] >> 1)


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


def history_attrs(history: History, net: Network, seed: int, seconds: float) -> dict[str, Any]:
    """The diagnostics a trial records as user attrs (JSON-friendly, finite)."""
    def finite(x: float) -> float | None:
        return float(x) if math.isfinite(x) else None

    last_norms = history.grad_norms[-1] if history.grad_norms else []
    return {
        "seed": seed,
        "n_params": net.n_params,
        "epochs_run": history.epochs_run,
        "best_epoch": history.best_epoch,
        "train_seconds": round(seconds, 4),
        "final_train_loss": finite(history.train_loss[-1]) if history.train_loss else None,
        "final_val_loss": finite(history.val_loss[-1]) if history.val_loss else None,
        "max_grad_norm": finite(history.max_grad_norm),
        "grad_norms": [finite(x) for x in last_norms],
        "clip_rate": float(np.mean(history.clip_fraction)) if history.clip_fraction else 0.0,
        "diverged": history.diverged,
        "stopped_early": history.stopped_early,
    }


def first_prunable_step(pruner: optuna.pruners.BasePruner) -> float:
    """The first step at which ``pruner`` may prune (inf: never)."""
    if isinstance(pruner, optuna.pruners.NopPruner):
        return math.inf
    if isinstance(pruner, optuna.pruners.PercentilePruner | optuna.pruners.MedianPruner):
        return int(getattr(pruner, "_n_warmup_steps", 0))
    if isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner | optuna.pruners.HyperbandPruner):
        resource = getattr(pruner, "_min_resource", None)
        return resource - 1 if isinstance(resource, int) else 0  # steps count from 0
    return 0


class Objective:
    """Trains one trial. With an artifact store, a completed trial also gets its
    learning-curve PNG and its exported config attached (shown by the dashboard).
    """

    def __init__(self, spec: StudySpec, data: Dataset, storage_url: str = "",
                 store: FileSystemArtifactStore | None = None,
                 stop: threading.Event | None = None) -> None:
        self.stop = stop or threading.Event()
        self.stop_reason = "a signal"
        self.spec = spec
        self.data = data
        self.storage_url = storage_url
        self.store = store
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, trial: optuna.Trial) -> float:
        spec, data = self.spec, self.data
        values = sample(spec.space, trial)
        seed = trial_seed(spec.seed, trial.number)
        network, training = build_configs(values, data.n_features, data.n_outputs, data.task,
                                          seed)
        every = spec.report_every
        first_prunable = first_prunable_step(trial.study.pruner)

        def report(epoch: int, metrics: dict[str, Any]) -> bool:
            if self.stop.is_set():
                raise Stopped(self.stop_reason)
            if (epoch + 1) % every:
                return False
            value = metric_value(spec.metric, data, metrics["val_loss"], metrics["val_metric"])
            if not math.isfinite(value):
                return False  # divergence is reported by fit itself
            trial.report(value, epoch)
            # Asking the pruner reads every trial; before it can act, do not ask.
            return epoch >= first_prunable and trial.should_prune()

        net, history, val_loss, val_score, seconds = train_trial(network, training, data,
                                                                 report)
        value = metric_value(spec.metric, data, val_loss, val_score)
        attrs = history_attrs(history, net, seed, seconds)
        attrs["val_loss"] = val_loss if math.isfinite(val_loss) else None
        if data.task == "classification":  # whatever the study optimises, show accuracy too
            attrs["val_accuracy"] = val_score
        attrs["network"] = network
        attrs["training"] = training
        reason = None
        if history.diverged:
            reason = f"diverged at epoch {history.epochs_run - 1}: the loss became non-finite"
        elif history.stopped_by_callback:
            reason = f"pruned by {spec.pruner} at epoch {history.epochs_run - 1}"
        elif not math.isfinite(value):
            reason = "non-finite validation metric"
        if reason is not None:
            attrs["pruned_reason"] = reason
        set_user_attrs(trial, attrs)  # one write, not one per attribute
        if reason is not None:
            logger.debug("trial %d %s", trial.number, reason)
            raise optuna.TrialPruned(reason)
        if self.store is not None:
            self._attach_artifacts(trial, value, attrs, history)
        return value

    def _attach_artifacts(self, trial: optuna.Trial, value: float, attrs: dict[str, Any],
                          history: History) -> None:
        from .artifacts import upload_trial_artifacts
        from .export import build_export

        try:
            export = build_export(self.spec, trial.study.study_name, self.storage_url,
                                  trial.number, value, trial.params, attrs)
            assert self.store is not None
            upload_trial_artifacts(trial, self.store, history, export)
        except OSError as exc:  # a full or unwritable artifact folder must not fail the trial
            logger.warning("trial %d: could not store its artifacts: %s", trial.number, exc)
