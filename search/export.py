"""Export a trial as a self-contained JSON config, and retrain from one.

An export holds everything needed to rebuild and retrain the trial's network
without the storage: the data source and split, the network and training
configs, the seed, and the versions that produced it.
"""

from __future__ import annotations

import json
import logging
import math
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from nnsearch.model import History, Network

from . import record
from .data import Dataset, DataSpec, load_data
from .enqueue import from_optuna_names
from .errors import UsageError
from .front import feasible, pareto_front, signs, violations
from .readers import resolve_path
from .storage_url import StorageURL
from .studyfile import StudySpec
from .training import cross_validate, evaluate_test, metric_value, refit, train_trial

logger = logging.getLogger(__name__)

FORMAT = "nnsearch.trial/1"
RECHECK_ATTR = "nnsearch.recheck"  # trial number -> its value and the re-check's values


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("nnsearch", "numpy", "optuna", "scikit-learn"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


def pick_trial(study: optuna.Study, number: int | None,
               bounds: dict[str, float] | None = None,
               complete: list[FrozenTrial] | None = None) -> tuple[FrozenTrial, list[int]]:
    """Trial ``number``, or the best worker-written complete feasible trial (on a
    multi-objective study, the front's best on its first metric; among ``complete``, if
    given: the completed trials it may be among); and the skipped ones. An infeasible
    trial ([constraints] ``bounds``) is never picked."""
    if number is None:  # (the completed trials alone, where that is all it needs)
        return pick_best(study, complete if complete is not None else study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE,)))
    trials = study.get_trials(deepcopy=False)
    match = [t for t in trials if t.number == number]
    if not match:
        last = max((t.number for t in trials), default=-1)
        raise UsageError(f"study {study.study_name!r} has no trial {number} "
                         f"(trials are numbered 0..{last}).")
    trial = match[0]
    if record.is_prior(trial):
        raise UsageError(f"trial {number} of study {study.study_name!r} is a prior, "
                         f"{trial.user_attrs[record.PRIOR]} (run --from-study): export it "
                         "from its own study, where it was trained.")
    if not feasible(trial):  # (one over max_params never trained: it is PRUNED)
        raise UsageError(f"trial {number} of study {study.study_name!r} is infeasible "
                         f"({violations(trial, bounds or {})}); nothing to export.")
    if trial.state != TrialState.COMPLETE or not record.written_by_worker(trial):
        raise UsageError(f"trial {number} of study {study.study_name!r} is "
                         f"{trial.state.name}, not a completed trial written by a worker; "
                         "nothing to export.")
    return trial, []


def pick_best(study: optuna.Study, complete: list[FrozenTrial]) -> tuple[FrozenTrial, list[int]]:
    """``pick_trial``'s best among the ``complete`` trials, and the skipped ones."""
    genuine = [t for t in complete if record.written_by_worker(t)]
    skipped = sorted(t.number for t in complete
                     if not record.written_by_worker(t) and not record.is_prior(t))
    fit = [t for t in genuine if feasible(t)]
    if not fit:
        why = (f"none complete but {len(skipped)} not written by a worker" if skipped and
               not genuine else f"{len(genuine)} complete, all infeasible" if genuine
               else "none complete")
        trials = study.get_trials(deepcopy=False)
        priors = sum(1 for t in trials if record.is_prior(t))
        raise UsageError(f"study {study.study_name!r} has no completed trial to export "
                         f"({len(trials) - priors} trial(s) of its own, {why}"
                         + (f"; and {priors} prior(s) from another study, which are never "
                            "exported" if priors else "") + ").")
    if len(study.directions) > 1:
        return pareto_front(fit, study.directions)[0], skipped
    ranked = rank_trials(study, fit)
    rechecked = study.user_attrs.get(RECHECK_ATTR) or {}
    if rechecked and str(ranked[0].number) in rechecked:
        # The re-check retrained the top trials with more seeds: pick by the mean.
        sign = signs(study.directions)[0]
        means = {t.number: sign * mean if math.isfinite(mean := recheck_mean(
            rechecked[str(t.number)])) else math.inf  # a seed that diverged ranks last
            for t in ranked if str(t.number) in rechecked}
        return min((t for t in ranked if t.number in means),
                   key=lambda t: (means[t.number], ranked.index(t))), skipped
    if rechecked:
        logger.info("trial %d came after the last re-check; picked by its own value "
                    "(nnsearch run re-checks again)", ranked[0].number)
    return ranked[0], skipped


def recheck_mean(values: list[float | None]) -> float:
    """The mean of a re-check's values; NaN when a seed diverged (None)."""
    finite = [v for v in values if v is not None]
    return math.nan if len(finite) < len(values) else float(np.mean(finite))


def rank_trials(study: optuna.Study, trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Best first on the first objective. Accuracy on a few hundred validation samples
    ties often: ties go to the lower validation loss (a finer measure of the same fit),
    then to the earlier trial."""
    sign = signs(study.directions)[0]
    return sorted(trials, key=lambda t: rank_key(sign, t.values[0],
                                                 t.user_attrs.get(record.VAL_LOSS), t.number))


def rank_key(sign: float, value: float, loss: float | None, number: int
             ) -> tuple[float, float, int]:
    """``rank_trials``' order (smaller first) for a trial's value, loss and number."""
    return (sign * value, math.inf if loss is None else float(loss), number)


def export_trial(study: optuna.Study, spec: StudySpec, trial: FrozenTrial,
                 url: StorageURL) -> dict[str, Any]:
    from .study import PREP_ATTR

    export = build_export(spec, study.study_name, url, trial.number, trial.values[0],
                          trial.params, trial.user_attrs, study.user_attrs.get(PREP_ATTR))
    if spec.multi:
        export["trial"]["values"] = dict(zip(spec.objectives, trial.values, strict=True))
    return export


def build_export(spec: StudySpec, study_name: str, url: StorageURL, number: int, value: float,
                 params: dict[str, Any], user_attrs: dict[str, Any],
                 preprocessing: dict[str, Any] | None) -> dict[str, Any]:
    """The ``nnsearch.trial/1`` document: enough to rebuild and retrain without storage,
    and the fitted preprocessing (None for a study created before 0.3)."""
    attrs = dict(user_attrs)
    network = attrs.pop(record.NETWORK)
    training = attrs.pop(record.TRAINING)
    data = spec.data.to_dict()
    if spec.data.source.lower().endswith((".csv", ".npz")):
        data["source"] = str(resolve_path(spec.data.source, spec.base_dir))
    return {
        "format": FORMAT,
        "study": {"name": study_name, "direction": spec.direction,
                  "metric": spec.metric, "storage": url.redacted},
        "trial": {"number": number, "value": value, "params": params, "user_attrs": attrs},
        "data": data,
        "network": network,
        "training": training,
        "seed": training["seed"],
        **({"estimate": estimate(spec.metric, attrs)} if record.FOLD_VALUES in attrs else {}),
        **({"preprocessing": preprocessing} if preprocessing is not None else {}),
        "versions": versions(),
    }


def estimate(metric: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """The cross-validation estimate of the study's metric: the folds' mean and spread."""
    values = [float(v) for v in attrs[record.FOLD_VALUES]]
    return {"metric": metric, "mean": float(np.mean(values)), "folds": len(values),
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None}


MAX_CONFIG_BYTES = 50_000_000  # an export is a few kB; a bigger file is something else


def load_json(path: str | Path) -> Any:
    """A config file's JSON, or UsageError: missing, a folder, too big, not JSON."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give a JSON file.")
    if not path.is_file():
        raise UsageError(f"config file not found: {path}")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise UsageError(f"{path}: {path.stat().st_size:,} bytes is too big for a config.")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid JSON ({exc}).") from None
    except RecursionError:
        raise UsageError(f"{path}: not a config (nested too deeply).") from None


def read_config(path: str | Path) -> dict[str, Any]:
    """A JSON file to enqueue, as a table in the space's names: an export (``nnsearch
    export``: its trial's parameters), ``export --format params`` (Optuna's names:
    ``width_l0``, ``width_l1``...) or an ``[[enqueue]]`` table written as JSON."""
    config = load_json(path)
    if isinstance(config, dict) and config.get("format") == FORMAT:
        params = config.get("trial", {}).get("params") if isinstance(config.get("trial"),
                                                                      dict) else None
        if not isinstance(params, dict):
            raise UsageError(f"{path}: the export lacks its trial's params.")
        config = params
    if not isinstance(config, dict):
        raise UsageError(f"{path}: expected a JSON object of parameters (or an export), but "
                         f"got {type(config).__name__}.")
    return from_optuna_names(config, str(path))


def read_export(path: str | Path) -> dict[str, Any]:
    return check_export(load_json(path), str(path))


def check_export(config: Any, where: str) -> dict[str, Any]:
    """``config`` if it is a trial export with every section, else UsageError."""
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise UsageError(f"{where}: not an nnsearch trial export (format {found!r}, "
                         f"expected {FORMAT!r}).")
    for key in ("study", "trial", "data", "network", "training"):
        if not isinstance(config.get(key), dict):
            raise UsageError(f"{where}: the export lacks its {key!r} section.")
    return config


def retrain(config: dict[str, Any], where: str, data: Dataset | None = None,
            test: bool = True, on_epoch_end: Any = None
            ) -> tuple[Network, History, Dataset, dict[str, float]]:
    """Rebuild and retrain an exported trial (on ``data`` if given, already loaded from
    the export's data section); metrics on validation and test (unless not ``test``).
    ``on_epoch_end`` is fit's callback (e.g. one that raises ``Stopped`` on a signal).

    With folds, validation means the folds' mean, and the network returned is refitted
    on train + validation (with ``test``; else the first fold's)."""
    raw = config["data"]
    try:
        spec = DataSpec(**raw)
    except TypeError as exc:
        raise UsageError(f"{where}: bad data section ({exc}).") from None
    # the inputs the trial trained on (an export of a study whose one-hot inputs were
    # standardised records so), whoever loaded the data
    data = (data if data is not None else load_data(spec)).scaled_as(
        config.get("preprocessing"))
    known = config["trial"].get("user_attrs", {}).get(record.DATA_FINGERPRINT)
    if known is not None and known != data.fingerprint:
        raise UsageError(f"{where}: the data {spec.source} changed since trial "
                         f"{config['trial'].get('number')} ran on it (fingerprint "
                         f"{data.fingerprint}, was {known}); retrain on the same data.")
    sizes = config["network"].get("layer_sizes")
    if isinstance(sizes, list) and len(sizes) >= 2 and (sizes[0], sizes[-1]) != (
            data.n_features, data.n_outputs):
        raise UsageError(f"{where}: network.layer_sizes {sizes} runs from {sizes[0]} inputs to "
                         f"{sizes[-1]} outputs, but the data has {data.n_features} features "
                         f"and {data.n_outputs} output(s).")
    metric = config["study"].get("metric", "val_accuracy")
    network, training = config["network"], config["training"]
    try:
        if data.n_folds:
            # The trial's value is its cross-validation mean (reproduced here); the network
            # kept is refitted on train + validation for the folds' mean epochs.
            # (side by side, as the trial was, where it says so)
            together = bool(config["trial"].get("user_attrs", {}).get(record.FOLDS_TOGETHER))
            folds = cross_validate(network, training, data, metric,
                                   on_epoch_end=on_epoch_end, together=together)
        else:
            net, history, loss_va, score_va, *_ = train_trial(network, training, data,
                                                             on_epoch_end)
            trial_value = metric_value(metric, data, loss_va, score_va)
    except (ValueError, TypeError) as exc:  # TypeError: a missing or unknown key
        raise UsageError(f"{where}: bad network or training section: {exc}") from None
    if data.n_folds:
        assert folds.net is not None and folds.history is not None
        net, history = folds.net, folds.history
        if folds.stopped is not None:
            if test:
                raise UsageError(f"{where}: the cross-validation {folds.stopped}, which trial "
                                 f"{config['trial'].get('number')} did not (another NumPy "
                                 "or BLAS build?).")
            loss_va = score_va = trial_value = math.nan  # a re-check seed that failed
        else:
            loss_va, score_va = float(np.mean(folds.losses)), float(np.mean(folds.scores))
            trial_value = folds.value
        if test:
            try:
                net, history = refit(network, training, data, folds.refit_epochs)
            except ValueError as exc:
                raise UsageError(f"{where}: {exc}.") from None
    loss_te, score_te = evaluate_test(net, data) if test else (math.nan, math.nan)
    if data.task == "classification":
        metrics = {"val_accuracy": score_va, "test_accuracy": score_te}
    else:
        metrics = {"val_rmse": metric_value("val_rmse", data, loss_va, score_va),
                   "test_rmse": metric_value("val_rmse", data, loss_te, score_te)}
    metrics.update({"val_loss": loss_va, "test_loss": loss_te})
    if data.n_folds:
        metrics["folds"] = data.n_folds
        metrics["refit_epochs"] = history.epochs_run if test else math.nan
        # the cross-validation estimate's spread: the sd of the folds' scores
        scale = data.y_scale if data.task == "regression" else 1.0
        if len(folds.scores) > 1:
            metrics["val_sd"] = float(np.std(folds.scores, ddof=1)) * scale
    metrics[f"trial_{metric}"] = trial_value
    return net, history, data, metrics


def refit_all(config: dict[str, Any], data: Dataset, epochs: int) -> tuple[Network, int]:
    """The network ``train`` keeps: refitted on every labelled row (train, validation and
    test) for ``epochs`` epochs, with no early stopping, as the folds' refit is; and how
    many rows it learned from. The test figure ``train`` prints is the network refitted
    without the test rows: with a few hundred rows, a fifth more rows to learn from is
    worth more than a model file that the test figure scores exactly."""
    from dataclasses import replace

    X = np.concatenate([data.X_train, data.X_val, data.X_test])
    y = np.concatenate([data.y_train, data.y_val, data.y_test])
    rows = replace(data, X_train=X, y_train=y, X_val=data.X_val[:0], y_val=data.y_val[:0],
                   X_test=data.X_test[:0], y_test=data.y_test[:0], fold_ids=None)
    try:
        net, _ = refit(config["network"], config["training"], rows, epochs, "every row")
    except ValueError as exc:
        raise UsageError(f"{exc}.") from None
    copies = 4 * int(config["data"].get("shift") or 0) + 1  # shifted images follow each row
    return net, len(data.X_train) // copies + len(data.X_val) + len(data.X_test)


def check_reproduction(config: dict[str, Any], metrics: dict[str, float]) -> str | None:
    """None if the retrained network scores exactly what its trial recorded, else why not."""
    metric = config["study"].get("metric", "val_accuracy")
    number = config["trial"].get("number")
    expected = config["trial"].get("value")
    got = metrics[f"trial_{metric}"]
    if expected is None:
        return None  # nothing recorded to compare with
    if got == expected:
        logger.info("reproduced trial %s's %s=%s exactly", number, metric, expected)
        return None
    return (f"not reproduced: trial {number} had {metric}={expected}, the retrained network "
            f"has {got} (another NumPy, scikit-learn or BLAS build, or an edited export?)")
