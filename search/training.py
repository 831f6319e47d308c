"""Training one configuration on a ``Dataset``: the part of a trial that knows no Optuna.

Workers (through the objective) and ``nnsearch train`` (through the export) both
train here, so that a retrained network reproduces its trial bit for bit. With
``[data] folds = k`` a trial is k trainings (``cross_validate``): its value is the
mean over the folds; ``train`` then refits one network on train + validation for
the folds' mean number of epochs (``refit``) and scores it on the test split.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from nnsearch.model import (
    Checkpoints,
    EarlyStopping,
    History,
    Network,
    StateError,
    TrainConfig,
    Trainer,
    evaluate,
    evaluate_outputs,
    fit,
)

from .data import Dataset


def metric_value(metric: str, data: Dataset, loss: float, score: float) -> float:
    """The study's metric from fit's (loss, accuracy-or-standardised-RMSE)."""
    if metric == "val_loss":
        return loss
    if metric == "val_rmse":
        return score * data.y_scale  # back to the target's own units
    return score


def train_trial(network: dict[str, Any], training: dict[str, Any], data: Dataset,
                on_epoch_end: Any = None, checkpoints: Checkpoints | None = None,
                resume: dict[str, Any] | None = None
                ) -> tuple[Network, History, float, float, float, np.ndarray]:
    """Build and train one network.

    Returns it, its history, the validation loss and score (accuracy, or RMSE in
    standardised units) of the weights it ends with, the training seconds, and its head
    outputs on the validation rows (what the loss and score judged; an ensemble is
    selected on them).
    BLAS runs on one thread, in a worker and in ``nnsearch train`` alike: a
    multi-threaded GEMM sums in another order, and the retrained network would
    not reproduce the trial bit for bit. ``checkpoints`` and ``resume``: ``fit``'s.
    """
    net = Network(**network)
    config = TrainConfig(**training)
    with threadpool_limits(1):
        start = time.perf_counter()
        history = fit(net, data.X_train, data.y_train, data.X_val, data.y_val, config,
                      on_epoch_end=on_epoch_end, checkpoints=checkpoints, resume=resume)
        seconds = time.perf_counter() - start
        outputs = net.forward(data.X_val)
        loss, score = evaluate_outputs(net, outputs, data.y_val)
    return net, history, loss, score, seconds, outputs


LATENCY_REPEATS = 31


def predict_latency_ms(net: Network, X: np.ndarray) -> float:
    """The median time, in ms, the network takes to predict one row (one BLAS thread,
    after a warm-up call), over ``LATENCY_REPEATS`` calls."""
    row = X[:1]
    times = []
    with threadpool_limits(1):
        net.predict(row)
        for _ in range(LATENCY_REPEATS):
            start = time.perf_counter()
            net.predict(row)
            times.append(time.perf_counter() - start)
    return round(float(np.median(times)) * 1000, 5)


def evaluate_test(net: Network, data: Dataset) -> tuple[float, float]:
    """(loss, score) on the held-out test split, with BLAS as the trial had it."""
    with threadpool_limits(1):
        return evaluate(net, data.X_test, data.y_test)


@dataclass
class Folds:
    """What ``cross_validate`` measured, fold by fold (fewer folds when it stopped early)."""

    values: list[float] = field(default_factory=list)  # the study's metric
    losses: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # accuracy or standardised RMSE
    epochs: list[int] = field(default_factory=list)  # epochs up to the weights kept
    epochs_run: list[int] = field(default_factory=list)  # epochs trained, fold by fold
    seconds: float = 0.0
    net: Network | None = None  # the first fold's network (resumed in a later fold: its shape)
    history: History | None = None  # the last fold trained (the one that stopped, if any)
    stopped: str | None = None  # why it ended before the last fold
    pruned: bool = False  # stopped by after_fold or on_epoch_end, not by divergence
    # with ``outputs``: each train + validation row's prediction by the fold that
    # validated on it (the out-of-fold predictions an ensemble is selected on)
    outputs: np.ndarray | None = None

    @property
    def value(self) -> float:
        return float(np.mean(self.values))

    @property
    def refit_epochs(self) -> int:
        """How long ``refit`` trains: the folds' mean epochs to their best weights."""
        return max(1, round(float(np.mean(self.epochs))))


def cross_validate(network: dict[str, Any], training: dict[str, Any], data: Dataset,
                   metric: str, after_fold: Callable[[int, Folds], bool] | None = None,
                   on_epoch_end: Any = None, outputs: bool = False,
                   together: bool = False, checkpoints: Checkpoints | None = None,
                   resume: dict[str, Any] | None = None) -> Folds:
    """Train the config on each of ``data``'s folds. With ``outputs``, the out-of-fold
    predictions are kept (``Folds.outputs``).

    ``together``: the folds train side by side, and the epoch the folds' networks keep
    is the one where the folds' mean validation loss is best (early stopping watches
    that mean); every fold's value is its score there. ``on_epoch_end(epoch, mean
    metrics)`` sees the mean curve (pruning), and a fold that diverges ends it all.
    One shared epoch is what ``refit`` trains for; a fold that picks its own best
    epoch on the rows it is scored on flatters a noisy configuration most (on a
    263-row table the search preferred such configurations, and lost to untuned ones
    on the test rows).

    Else (the Wilcoxon pruner, which compares folds one at a time), each fold in turn
    (each made when it is trained: a worker holds one fold's copy at a time), stopping
    early on its own. ``after_fold(i, so_far)`` is asked after every fold but the last;
    true stops (pruning). A fold that diverges or is stopped by ``on_epoch_end`` ends
    it too.

    ``checkpoints`` (``fit``'s) get the whole cross-validation's state now and then (the
    folds done, the fold under way); ``resume``, such a state, continues from it."""
    if together:
        return _cross_validate_together(network, training, data, metric, on_epoch_end,
                                        outputs, checkpoints, resume)
    out = Folds()
    k = data.n_folds
    assert data.fold_ids is not None
    first, fit_state = 0, None
    if resume is not None:  # the folds done, as they were, then the one under way
        try:
            first = int(resume["fold"])
            for name in ("values", "losses", "scores", "epochs", "epochs_run"):
                getattr(out, name).extend(resume["done"][name])
                if len(getattr(out, name)) != first:
                    raise ValueError(f"{first} folds done, but {name} for "
                                     f"{len(getattr(out, name))}")
            if not 0 <= first < k:
                raise ValueError(f"fold {first} of {k}")
            out.outputs = None if resume.get("outputs") is None else \
                np.array(resume["outputs"], np.float32)
            if out.outputs is not None and out.outputs.shape[0] != len(data.fold_ids):
                raise ValueError(f"outputs for {out.outputs.shape[0]} rows")
            fit_state = resume["fit"]
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"the cross-validation state does not fit: {exc!r}") from exc
        if first:
            out.net = Network(**network)  # (the first fold's shape: n_params, latency)
    for i in range(first, k):
        fold = data.fold(i)
        within = None if checkpoints is None else _FoldCheckpoints(checkpoints, out, i)
        net, history, loss, score, seconds, P = train_trial(
            network, training, fold, on_epoch_end, within,
            fit_state if resume is not None and i == first else None)
        if outputs and not (history.diverged or history.stopped_by_callback):
            if out.outputs is None:
                out.outputs = np.zeros((len(data.fold_ids), net.layer_sizes[-1]), np.float32)
            out.outputs[data.fold_ids == i] = P
        if out.net is None:
            out.net = net
        out.history = history
        out.seconds += seconds
        if history.diverged:
            out.stopped = f"diverged in fold {i} at epoch {history.epochs_run - 1}"
            return out
        if history.stopped_by_callback:
            out.stopped, out.pruned = f"in fold {i} at epoch {history.epochs_run - 1}", True
            return out
        out.values.append(metric_value(metric, fold, loss, score))
        out.losses.append(loss)
        out.scores.append(score)
        out.epochs.append(history.best_epoch + 1)
        out.epochs_run.append(history.epochs_run)
        if not math.isfinite(out.values[-1]):
            out.stopped = f"non-finite validation metric in fold {i}"
            return out
        if i < k - 1 and after_fold is not None and after_fold(i, out):
            out.stopped, out.pruned = f"after fold {i}", True
            return out
    return out


class _FoldCheckpoints:
    """A fold's ``fit`` checkpoints, saved inside the cross-validation's state: the
    folds done (their figures and out-of-fold outputs) and the fold under way."""

    def __init__(self, outer: Checkpoints, folds: Folds, fold: int) -> None:
        self.outer, self.folds, self.fold = outer, folds, fold

    def due(self) -> bool:
        return self.outer.due()

    def save(self, state: dict[str, Any]) -> None:
        f = self.folds
        self.outer.save({"fold": self.fold, "fit": state, "outputs": f.outputs,
                         "done": {"values": f.values, "losses": f.losses,
                                  "scores": f.scores, "epochs": f.epochs,
                                  "epochs_run": f.epochs_run}})


def _cross_validate_together(network: dict[str, Any], training: dict[str, Any],
                             data: Dataset, metric: str, on_epoch_end: Any,
                             outputs: bool, checkpoints: Checkpoints | None = None,
                             resume: dict[str, Any] | None = None) -> Folds:
    out = Folds()
    k = data.n_folds
    assert data.fold_ids is not None
    config = TrainConfig(**training)
    folds = [data.fold(i) for i in range(k)]
    with threadpool_limits(1):
        start = time.perf_counter()
        runs = [Trainer(Network(**network), f.X_train, f.y_train, f.X_val, f.y_val, config)
                for f in folds]
        stopping = EarlyStopping(config)  # on the folds' mean validation loss
        if resume is not None:
            states = resume.get("folds") if isinstance(resume, dict) else None
            if not isinstance(states, list) or len(states) != k:
                raise StateError(f"the cross-validation state does not hold {k} folds")
            for run, state in zip(runs, states, strict=True):
                run.load_state(state)
            if len({run.history.epochs_run for run in runs}) != 1:
                raise StateError("the folds' states are at different epochs")
            stopping.load_state(resume.get("stopping") or {})
        diverged, epoch = None, -1
        for epoch in range(runs[0].history.epochs_run, config.epochs):
            each = [run.epoch() for run in runs]
            diverged = next((i for i, run in enumerate(runs) if run.history.diverged), None)
            if diverged is not None:
                out.stopped = f"diverged in fold {diverged} at epoch {epoch}"
                break
            loss = float(np.mean([m["val_loss"] for m in each]))
            if stopping.improved(loss, epoch) and config.patience is not None:
                for run in runs:
                    run.keep()
            if on_epoch_end is not None and on_epoch_end(epoch, {
                    "train_loss": float(np.mean([m["train_loss"] for m in each])),
                    "val_loss": loss,
                    "val_metric": float(np.mean([m["val_metric"] for m in each]))}):
                for run in runs:
                    run.history.stopped_by_callback = True
                out.stopped, out.pruned = f"at epoch {epoch}", True
                break
            if stopping.done:
                for run in runs:
                    run.history.stopped_early = True
                break
            if checkpoints is not None and epoch + 1 < config.epochs and checkpoints.due():
                checkpoints.save({"folds": [run.state() for run in runs],
                                  "stopping": stopping.state()})
        out.seconds = time.perf_counter() - start
        out.net, out.history = runs[0].net, runs[diverged or 0].history
        if out.stopped is not None:
            return out
        # the epoch every fold keeps: the folds' best mean, as fit keeps its best (else
        # the last, without patience)
        kept = stopping.best_epoch if config.patience is not None else epoch
        for i, (run, fold) in enumerate(zip(runs, folds, strict=True)):
            if kept != epoch:
                run.restore(kept)
            run.history.best_epoch = kept
            loss_i, score_i = run.history.val_loss[kept], run.history.val_metric[kept]
            out.values.append(metric_value(metric, fold, loss_i, score_i))
            out.losses.append(loss_i)
            out.scores.append(score_i)
            out.epochs.append(kept + 1)
            out.epochs_run.append(run.history.epochs_run)
            if outputs:
                if out.outputs is None:
                    out.outputs = np.zeros((len(data.fold_ids), run.net.layer_sizes[-1]),
                                           np.float32)
                out.outputs[data.fold_ids == i] = run.net.forward(fold.X_val)
        if not all(math.isfinite(v) for v in out.values):
            out.stopped = "non-finite validation metric"
    return out


def refit(network: dict[str, Any], training: dict[str, Any], data: Dataset,
          epochs: int, rows: str = "train + validation") -> tuple[Network, History]:
    """Train on all of ``data``'s train (+ validation, with folds) for ``epochs`` epochs,
    the learning-rate schedule as in the folds, with no early stopping; ``rows`` names
    what it trains on when it diverges."""
    net = Network(**network)
    config = TrainConfig(**{**training, "patience": None})
    with threadpool_limits(1):
        history = fit(net, data.X_train, data.y_train, None, None, config,
                      on_epoch_end=lambda epoch, _: epoch + 1 >= epochs)
    if history.diverged:
        raise ValueError(f"the refit on {rows} diverged at epoch "
                         f"{history.epochs_run - 1} (the folds did not)")
    return net, history
