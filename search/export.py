"""Export a trial as a self-contained JSON config, and retrain from one.

An export holds everything needed to rebuild and retrain the trial's network
without the storage: the data source and split, the network and training
configs, the seed, and the versions that produced it.
"""

from __future__ import annotations

import json
import math
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from threadpoolctl import threadpool_limits

from nnsearch.model import History, Network, evaluate

from .data import Dataset, DataSpec, load_data, resolve_path
from .errors import UsageError
from .objective import WORKER_ATTR, metric_value, train_trial
from .storage import redact
from .studyfile import StudySpec

FORMAT = "nnsearch.trial/1"
RESULT_ATTR = "epochs_run"  # written by a worker together with the trial's value


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("nnsearch", "numpy", "optuna", "scikit-learn"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


def written_by_worker(trial: FrozenTrial) -> bool:
    """A trial whose value a worker wrote carries the worker's result attributes."""
    return WORKER_ATTR in trial.user_attrs and RESULT_ATTR in trial.user_attrs \
        and "network" in trial.user_attrs


def pick_trial(study: optuna.Study, number: int | None) -> tuple[FrozenTrial, list[int]]:
    """Trial ``number``, or the best worker-written complete trial; and the skipped ones."""
    trials = study.get_trials(deepcopy=False)
    if number is not None:
        match = [t for t in trials if t.number == number]
        if not match:
            last = max((t.number for t in trials), default=-1)
            raise UsageError(f"study {study.study_name!r} has no trial {number} "
                             f"(trials are numbered 0..{last}).")
        trial = match[0]
        if trial.state != TrialState.COMPLETE or not written_by_worker(trial):
            raise UsageError(f"trial {number} of study {study.study_name!r} is "
                             f"{trial.state.name}, not a completed trial written by a worker; "
                             "nothing to export.")
        return trial, []
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    genuine = [t for t in complete if written_by_worker(t)]
    skipped = sorted(t.number for t in complete if not written_by_worker(t))
    if not genuine:
        raise UsageError(f"study {study.study_name!r} has no completed trial to export "
                         f"({len(trials)} trial(s), none complete"
                         + (f" but {len(skipped)} not written by a worker" if skipped else "")
                         + ").")
    assert all(t.value is not None for t in genuine)
    # Accuracy on a few hundred validation samples ties often: ties go to the lower
    # validation loss (a finer measure of the same fit), then to the earlier trial.
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0

    def rank(t: FrozenTrial) -> tuple[float, float, int]:
        loss = t.user_attrs.get("val_loss")
        assert t.value is not None
        return (sign * t.value, math.inf if loss is None else float(loss), t.number)

    return min(genuine, key=rank), skipped


def export_trial(study: optuna.Study, spec: StudySpec, trial: FrozenTrial,
                 storage_url: str) -> dict[str, Any]:
    assert trial.value is not None
    return build_export(spec, study.study_name, storage_url, trial.number, trial.value,
                        trial.params, trial.user_attrs)


def build_export(spec: StudySpec, study_name: str, storage_url: str, number: int, value: float,
                 params: dict[str, Any], user_attrs: dict[str, Any]) -> dict[str, Any]:
    """The ``nnsearch.trial/1`` document: enough to rebuild and retrain without storage."""
    attrs = dict(user_attrs)
    network = attrs.pop("network")
    training = attrs.pop("training")
    data = spec.data.to_dict()
    if spec.data.source.lower().endswith((".csv", ".npz")):
        data["source"] = str(resolve_path(spec.data.source, spec.base_dir))
    return {
        "format": FORMAT,
        "study": {"name": study_name, "direction": spec.direction,
                  "metric": spec.metric, "storage": redact(storage_url)},
        "trial": {"number": number, "value": value, "params": params, "user_attrs": attrs},
        "data": data,
        "network": network,
        "training": training,
        "seed": training["seed"],
        "versions": versions(),
    }


def read_export(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file not found: {path}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid JSON ({exc}).") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise UsageError(f"{path}: not an nnsearch trial export (format {found!r}, "
                         f"expected {FORMAT!r}).")
    for key in ("study", "trial", "data", "network", "training"):
        if not isinstance(config.get(key), dict):
            raise UsageError(f"{path}: the export lacks its {key!r} section.")
    return config


def retrain(config: dict[str, Any], where: str) -> tuple[Network, History, Dataset,
                                                         dict[str, float]]:
    """Rebuild and retrain an exported trial; metrics on validation and test."""
    raw = config["data"]
    try:
        spec = DataSpec(**raw)
    except TypeError as exc:
        raise UsageError(f"{where}: bad data section ({exc}).") from None
    data = load_data(spec)
    metric = config["study"].get("metric", "val_accuracy")
    try:
        net, history, loss_va, score_va, _ = train_trial(config["network"],
                                                         config["training"], data)
    except ValueError as exc:
        raise UsageError(f"{where}: {exc}") from None
    with threadpool_limits(1):  # as the trial did (see train_trial)
        loss_te, score_te = evaluate(net, data.X_test, data.y_test)
    if data.task == "classification":
        metrics = {"val_accuracy": score_va, "test_accuracy": score_te}
    else:
        metrics = {"val_rmse": metric_value("val_rmse", data, loss_va, score_va),
                   "test_rmse": metric_value("val_rmse", data, loss_te, score_te)}
    metrics.update({"val_loss": loss_va, "test_loss": loss_te})
    metrics[f"trial_{metric}"] = metric_value(metric, data, loss_va, score_va)
    return net, history, data, metrics


def learning_curve_png(history: History, path: Path, title: str) -> Path:
    """The article's plot: train vs validation loss per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    # A fixed layout: tight_layout would double the cost, and workers draw one per trial.
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.13, top=0.91)
    epochs = np.arange(1, len(history.train_loss) + 1)
    ax.plot(epochs, history.train_loss, label="train loss")
    ax.plot(epochs, history.val_loss, label="validation loss")
    if 0 <= history.best_epoch < len(epochs):
        ax.axvline(history.best_epoch + 1, color="grey", linestyle=":", label="best epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.savefig(path)
    plt.close(fig)
    return path
