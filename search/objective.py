"""The objective: sample a network and its training, train it, report, prune.

The data is loaded once per process (``Objective`` holds it); each trial's seed is
derived from the study seed and the trial number (``record.trial_seed``; a retry's, from
the number of the trial it retries, which it resumes: ``checkpoint.py``), so a
trial's result does not depend on which worker ran it. The test split is never
touched here.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from functools import partial
from typing import Any

import numpy as np
import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from nnsearch.model import MAX_PARAMS, History, Network, param_count

from . import record
from .artifacts import upload_trial_artifacts
from .checkpoint import (
    TrialCheckpoints,
    checkpoint_path,
    mean_curve,
    resume_or_start,
    running_trial,
)
from .data import Dataset
from .ensemble import keep_predictions
from .errors import Stopped
from .export import build_export
from .front import dominates, feasible, signs
from .history import TrialHistory, bounded
from .noise import is_starting_point
from .reproducible import end_view, hold_view, logical_number
from .retry import is_transient, with_retry
from .space import build_configs, sample
from .storage_url import StorageURL
from .studyfile import StudySpec
from .training import Folds, cross_validate, metric_value, predict_latency_ms, train_trial
from .worker_storage import training_ends, training_starts

logger = logging.getLogger(__name__)

# [artifacts] curves = "budget": a worker's PNGs take at most this share of its training;
# the first's cost (matplotlib's load, the drawing) is guessed, then each costs the last's
CURVE_SHARE = 0.1
FIRST_CURVE_SECONDS = 0.45

def record_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Each of ``attrs`` as a user attribute of ``trial`` (kept back: no write each)."""
    for key, value in attrs.items():
        trial.set_user_attr(key, value)

class Objective:
    """Trains one trial. With an artifact store, a trial that completes as the study's
    new best also gets its exported config attached (shown by the dashboard), and its
    learning-curve PNG as ``[artifacts] curves`` says: for every new best, for none, or
    (``budget``) while this worker's PNGs take at most ``CURVE_SHARE`` of its training
    time (a PNG ~50 ms, matplotlib's load ~0.4 s: a fifth of a small table's study).
    """

    def __init__(self, spec: StudySpec, data: Dataset, url: StorageURL,
                 store: FileSystemArtifactStore | None = None,
                 stop: threading.Event | None = None) -> None:
        self.stop = stop or threading.Event()
        self.stop_reason = "a signal"
        # time.monotonic() past which a running trial is stopped (the study's time
        # limit: its timeout plus grace); it ends pruned, and why is recorded
        self.deadline: float | None = None
        self.time_limit = "the study's time limit"
        self._timed_out = False
        self.spec = spec
        self.data = data
        self.preprocessing = data.preprocessing()  # for every trial's export artifact
        self.url = url
        self.store = store
        self.worker = record.worker_id()
        self.first_prunable = spec.first_prunable_step()
        # the pruner's warm-up counts this study's own completed trials, not priors
        # (run --from-study): Optuna's counts every completed trial it holds
        self.startup = spec.startup_trials()
        self.starts = spec.enqueued_params()  # the [[enqueue]] tables
        self.is_start = False  # this trial is a starting point
        self.history = None if spec.multi else TrialHistory(spec.directions[0])  # history.py
        self.last_epoch: float = math.inf  # this trial's, once sampled
        self.trained_seconds = 0.0  # this worker's training so far (its trials' seconds)
        self.curve_seconds = 0.0  # and its learning-curve PNGs'
        self.curve_cost = FIRST_CURVE_SECONDS  # what the next PNG is expected to take

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        self._timed_out = False
        return self._run(trial)

    def _run(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        spec, data = self.spec, self.data
        frozen = running_trial(trial)
        self.is_start = is_starting_point(frozen, self.starts)  # its predictions stay
        first = record.first_try(frozen)  # a retry trains as its first try
        with bounded(trial.storage, self.history):  # the sampler's view: a bounded history
            logical = logical_number(trial, frozen)  # reproducible: after trials < n - LAG
            values = sample(spec.space, trial)
        seed = record.trial_seed(spec.seed, first if logical is None else logical)
        network, training = build_configs(values, data.n_features, data.n_outputs, data.task,
                                          seed)
        self._check_size(trial, network)
        with_retry(partial(training_starts, trial), "record the trial")
        # After the last epoch pruning saves nothing.
        self.last_epoch = int(training["epochs"]) - 1
        # checkpoints ([artifacts] checkpoint_every; none without an artifact store)
        saves = None if self.store is None or not spec.checkpoint_every else TrialCheckpoints(
            checkpoint_path(self.url, trial.study.study_name, first),
            {"study": trial.study.study_name, "trial": first, "network": network,
             "data_fingerprint": data.fingerprint, "training": training},
            spec.checkpoint_every, retry=first != trial.number)
        try:
            if data.n_folds:
                return self._cross_validate(trial, network, training, seed, saves)
            return self._train(trial, network, training, seed, saves)
        except Exception as exc:
            saves = None if is_transient(exc) else saves  # (kept: its retry resumes)
            raise
        finally:
            if saves is not None:
                saves.remove()  # (a killed worker's stays, for the retry)

    def _resumed(self, trial: optuna.Trial, saves: TrialCheckpoints | None, train: Any,
                 replay: Any) -> Any:
        """``train(resume, wrap)`` from a retry's checkpoint (``resume_or_start``)."""
        def resumed(where: dict[str, Any]) -> None:
            with_retry(partial(record_attrs, trial, {record.RESUMED: where}), "record the trial")

        return resume_or_start(saves, trial.number, self.data.n_folds, train, resumed, replay)

    def _train(self, trial: optuna.Trial, network: dict[str, Any], training: dict[str, Any],
               seed: int, saves: TrialCheckpoints | None) -> float | tuple[float, ...]:
        spec, data = self.spec, self.data
        report = self._epoch_reporter(trial)

        def train(resume: dict[str, Any] | None, wrap: Any) -> Any:
            return train_trial(network, training, data, wrap(report), saves, resume)

        net, history, val_loss, val_score, seconds, outputs = self._resumed(
            trial, saves, train,
            lambda state: self._report_history(trial, state["trainer"]["history"]))
        value = metric_value(spec.metric, data, val_loss, val_score)
        self.trained_seconds += seconds
        attrs = record.result_attrs(history, net, seed, seconds)
        attrs[record.VAL_LOSS] = val_loss if math.isfinite(val_loss) else None
        if data.task == "classification":  # whatever the study optimises, show accuracy too
            attrs[record.VAL_ACCURACY] = val_score
        attrs |= self._config_attrs(network, training)
        reason = None
        if history.diverged:
            reason = f"diverged at epoch {history.epochs_run - 1}: the loss became non-finite"
        elif history.stopped_by_callback:
            reason = f"{self._stopped_by()} at epoch {history.epochs_run - 1}"
        elif not math.isfinite(value):
            reason = "non-finite validation metric"
        if reason is not None:
            attrs[record.PRUNED_REASON] = reason
        return self._finish(trial, value, attrs, history, reason, net,
                            outputs if reason is None and self.keeps else None)

    def _check_size(self, trial: optuna.Trial, network: dict[str, Any]) -> None:
        """[constraints] max_params, known before training: recorded as the trial's
        constraint; a network beyond it (or, without one, beyond the most a network
        holds) is not trained: it ends pruned, infeasible."""
        bound = self.spec.max_params
        n = param_count(network["layer_sizes"])
        if bound is not None:
            with_retry(partial(trial.set_constraint, "max_params", n - bound),
                       "record the constraint")
        if n > (bound if bound is not None else MAX_PARAMS):
            reason = f"infeasible: {n:,} parameters > " + (
                f"constraints.max_params {bound:,}" if bound is not None
                else f"the most a network holds ({MAX_PARAMS:,})") + "; not trained"
            with_retry(partial(record_attrs, trial, {"n_params": n,
                                                     record.PRUNED_REASON: reason}),
                       "record the trial")
            raise optuna.TrialPruned(reason)

    def _epoch_reporter(self, trial: optuna.Trial) -> Any:
        """The fit callback that reports every ``report_every`` epochs and asks the pruner."""

        def report(epoch: int, metrics: dict[str, Any]) -> bool:
            if self._must_stop():
                return True
            value = self._reported(epoch, metrics["val_loss"], metrics["val_metric"])
            if value is None:
                return False
            trial.report(value, epoch)  # (a worker's storage keeps it back: no write)
            # Asking the pruner reads every trial: not before it can act, nor at the
            # last epoch, when pruning would save nothing.
            return self.first_prunable <= epoch < self.last_epoch and self._prunes(trial)

        return report

    def _prunes(self, trial: optuna.Trial) -> bool:
        """The pruner's answer, once the study has its startup trials of its own, priors
        aside (once it has, it always will); a reproducible study's trial asks its own
        view, waited for here if sampling did not (a queued trial: ``hold_view``)."""
        hold_view(trial, lambda: running_trial(trial))
        if self.startup:
            own = sum(1 for t in trial.study.get_trials(deepcopy=False,
                                                        states=(TrialState.COMPLETE,))
                      if not record.is_prior(t))
            if own < self.startup:
                return False
            self.startup = self.startup if self.spec.reproducible else 0
        return trial.should_prune()

    def _must_stop(self) -> bool:
        """Asked every epoch: a signal raises Stopped; past the deadline, true (the trial
        stops there and ends pruned)."""
        if self.stop.is_set():
            raise Stopped(self.stop_reason)
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self._timed_out = True
        return self._timed_out

    def _stopped_by(self) -> str:
        """Who stopped a trial that its epoch callback stopped: the pruner or the clock."""
        return f"stopped by {self.time_limit}" if self._timed_out \
            else f"pruned by {self.spec.pruner}"

    def _config_attrs(self, network: dict[str, Any], training: dict[str, Any]
                      ) -> dict[str, Any]:
        """What the export rebuilds the trial from."""
        return {record.NETWORK: network, record.DATA_FINGERPRINT: self.data.fingerprint,
                record.TRAINING: training}

    def _finish(self, trial: optuna.Trial, value: float, attrs: dict[str, Any],
                history: History, reason: str | None, net: Network,
                outputs: np.ndarray | None = None) -> float | tuple[float, ...]:
        spec = self.spec
        if reason is None and spec.needs_latency():
            # one training row: with folds there is no validation split
            attrs["latency_ms"] = predict_latency_ms(net, self.data.X_train)
        # (written with the trial's state where the worker keeps its trial:
        # worker_storage.py)
        training_ends(trial)
        end_view(trial)  # (reproducible: sampling and pruning saw trials 0..n-LAG-1 only)
        with_retry(partial(record_attrs, trial, attrs), "record the trial")
        if reason is not None:
            logger.debug("trial %d %s", trial.number, reason)
            raise optuna.TrialPruned(reason)
        fits = True
        if spec.max_latency_ms is not None:
            excess = attrs["latency_ms"] - spec.max_latency_ms
            fits = excess <= 0
            with_retry(partial(trial.set_constraint, "max_latency_ms", excess),
                       "record the constraint")
        values = (value, *(float(attrs[name]) for name in spec.extra_metrics))
        with bounded(trial.storage, self.history):  # (it holds the best: history.py)
            if self.store is not None and fits and self._new_best(trial, values):
                self._attach_artifacts(trial, value, attrs, history)
            if self.store is not None and fits and outputs is not None:
                self._keep_predictions(trial, outputs, value, attrs.get(record.VAL_LOSS))
        return values if spec.multi else value

    @property
    def keeps(self) -> bool:
        """Whether completed trials' validation outputs are kept for the ensemble."""
        return self.store is not None and self.spec.ensemble > 1 and not self.spec.multi

    def _keep_predictions(self, trial: optuna.Trial, outputs: np.ndarray, value: float,
                          loss: float | None) -> None:
        """``ensemble.keep_predictions``: what goes wrong there (a full folder, the
        storage away) costs the ensemble a candidate, never the trial its result."""
        assert self.store is not None
        try:
            with_retry(partial(keep_predictions, trial, self.store, outputs, value, loss,
                               self.starts, self.is_start),
                       "keep the trial's predictions")
        except UpdateFinishedTrialError:
            logger.warning("trial %d was ended by the sweeper while its predictions were "
                           "kept; its result is dropped", trial.number)
        except Exception as exc:
            logger.warning("trial %d: could not keep its predictions: %s", trial.number, exc)

    @staticmethod
    def _new_best(trial: optuna.Trial, values: tuple[float, ...]) -> bool:
        """Better than every feasible trial of this study completed so far (priors from
        another study aside), or on a multi-objective study dominated by none: the trials
        whose curve and config are worth drawing and storing as they finish (a few dozen
        ms each, more than a small table's whole training); ``nnsearch export --trial N``
        and ``report`` give any other's."""
        study = trial.study
        sign = signs(study.directions)
        own = [t.values for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
               if feasible(t) and not record.is_prior(t)]
        return not any(dominates(v, values, sign) or (len(values) == 1 and v == list(values))
                       for v in own)

    def _reported(self, epoch: int, loss: float, metric: float) -> float | None:
        """What the trial reports at ``epoch`` (every ``report_every`` epochs), or None."""
        if self.spec.multi or (epoch + 1) % self.spec.report_every:
            return None  # (Optuna takes no reports from a multi-objective trial)
        value = metric_value(self.spec.metric, self.data, loss, metric)
        return value if math.isfinite(value) else None  # (fit reports divergence)

    def _report_history(self, trial: optuna.Trial, *histories: dict[str, Any]) -> None:
        """A resumed trial's reports of the epochs its checkpoint saved, as it made them
        (of the folds' mean curve, ``mean_curve``)."""
        for epoch, (loss, metric) in enumerate(mean_curve(histories)):
            if (value := self._reported(epoch, loss, metric)) is not None:
                trial.report(value, epoch)

    def _cross_validate(self, trial: optuna.Trial, network: dict[str, Any],
                        training: dict[str, Any], seed: int,
                        saves: TrialCheckpoints | None = None) -> float | tuple[float, ...]:
        """k trainings, one per fold, side by side (``cross_validate(together=True)``):
        the pruner judges the folds' mean curve epoch by epoch, as it judges a trial on
        one validation split. Wilcoxon (which pairs folds across trials) gets each
        fold's own value at step = fold, the folds trained in turn, and no epochs."""
        spec, data = self.spec, self.data
        wilcoxon = spec.pruner == "wilcoxon"
        epoch_report = self._epoch_reporter(trial)

        def on_epoch(epoch: int, metrics: dict[str, Any]) -> bool:
            return self._must_stop() if wilcoxon else epoch_report(epoch, metrics)

        def after_fold(i: int, folds: Folds) -> bool:
            if spec.multi:
                return False  # (Optuna takes no reports from a multi-objective trial)
            trial.report(folds.values[-1], i)
            return i >= self.first_prunable and self._prunes(trial)

        def report_done(resume: dict[str, Any]) -> None:  # the reports it saved
            if wilcoxon and not spec.multi:
                for i, value in enumerate(resume["done"]["values"]):
                    trial.report(value, i)
            elif not wilcoxon:
                self._report_history(trial, *(f["history"] for f in resume["folds"]))

        def train(resume: dict[str, Any] | None, wrap: Any) -> Folds:
            return cross_validate(network, training, data, spec.metric, after_fold,
                                  wrap(on_epoch), outputs=self.keeps, together=not wilcoxon,
                                  checkpoints=saves, resume=resume)

        folds = self._resumed(trial, saves, train, report_done)
        assert folds.net is not None and folds.history is not None
        value = folds.value if folds.values else math.nan
        self.trained_seconds += folds.seconds
        attrs = record.result_attrs(folds.history, folds.net, seed, folds.seconds)
        loss = float(np.mean(folds.losses)) if folds.losses else math.nan
        attrs[record.VAL_LOSS] = loss if math.isfinite(loss) else None
        attrs["diverged"] = folds.stopped is not None and folds.stopped.startswith("diverged")
        if data.task == "classification" and folds.scores:
            attrs[record.VAL_ACCURACY] = float(np.mean(folds.scores))
        attrs[record.FOLD_VALUES] = folds.values
        attrs[record.FOLD_EPOCHS] = folds.epochs
        attrs[record.FOLDS_TOGETHER] = not wilcoxon
        attrs |= self._config_attrs(network, training)
        reason = None
        if folds.stopped is not None:
            reason = f"{self._stopped_by()} {folds.stopped}" if folds.pruned \
                else folds.stopped
            attrs[record.PRUNED_REASON] = reason
        return self._finish(trial, value, attrs, folds.history, reason, folds.net,
                            folds.outputs if reason is None else None)

    def draws_curve(self) -> bool:
        """Whether the next new best gets its learning-curve PNG ([artifacts] curves)."""
        if self.spec.curves != "budget":
            return self.spec.curves == "every best"
        return self.curve_seconds + self.curve_cost <= CURVE_SHARE * self.trained_seconds

    def _attach_artifacts(self, trial: optuna.Trial, value: float, attrs: dict[str, Any],
                          history: History) -> None:
        try:
            export = build_export(self.spec, trial.study.study_name, self.url, trial.number,
                                  value, trial.params, attrs, self.preprocessing)
            assert self.store is not None
            drawn = self.draws_curve()
            start = time.perf_counter()
            upload_trial_artifacts(trial, self.store, export, history if drawn else None)
            if drawn:
                self.curve_cost = time.perf_counter() - start
                self.curve_seconds += self.curve_cost
        except OSError as exc:  # a full or unwritable artifact folder must not fail the trial
            logger.warning("trial %d: could not store its artifacts: %s", trial.number, exc)
        except UpdateFinishedTrialError:  # the sweeper ended it (the storage was away)
            logger.warning("trial %d was ended by the sweeper while its artifacts were "
                           "stored; its result is dropped", trial.number)
