"""Ensembles of the search's best trials (``[selection] ensemble = K``).

Picking the one trial with the best validation score picks, in part, the luckiest one.
As auto-sklearn and AutoGluon do, the export can instead be a weighted team of trials,
chosen by greedy forward selection with replacement (Caruana et al., 2004) on the
predictions each trial made on rows it did not train on:

- **kept**: a worker stores a completed trial's validation outputs (with folds, the
  out-of-fold predictions over train + validation; else the validation rows') as an
  ``.npy`` artifact of the trial, in the artifact store every worker and ``run`` reach
  (``artifacts.artifact_dir``), only while the trial ranks among the study's best
  ``CANDIDATES``; the one it pushes out loses its file. The storage holds only the
  artifact's id, so study reads stay as small as before.
- **selected** at the end of ``run`` (and by ``export --ensemble``): ``STEPS`` rounds, each
  adding the trial whose outputs improve the average most on the study's metric, at most
  ``K`` distinct trials; the round with the best score decides the weights. Where no
  ensemble beats the single best trial on those rows, the export is that trial.
- **exported** as ``nnsearch.ensemble/1``: each member's full trial export and its weight;
  ``train`` refits every member as a single export is refitted
  (``ensemble_train.train_members``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact
from optuna.trial import FrozenTrial, TrialState

from nnsearch.model import Network, evaluate_outputs

from . import record
from .data import Dataset
from .errors import UsageError
from .export import (
    check_export,
    export_trial,
    rank_key,
    rank_trials,
    versions,
)
from .front import feasible, signs
from .noise import beats, is_starting_point
from .storage_url import StorageURL
from .studyfile import StudySpec
from .training import metric_value

logger = logging.getLogger(__name__)

FORMAT = "nnsearch.ensemble/1"
PREDICTIONS = "predictions-{}.npy"  # a trial's kept validation outputs (an artifact)
CANDIDATES = 25  # trials whose outputs are kept: the study's best by value
STEPS = 40  # rounds of greedy selection (with replacement): weights are k / rounds
CHECK_PARTS = 5  # without folds, the validation rows' parts for cross_check
PUSHED_OUT = 4  # trials ranked just below the candidates whose kept outputs are removed
WEIGHT_SUM_TOLERANCE = 1e-6


def keep_predictions(trial: optuna.Trial, store: FileSystemArtifactStore,
                     outputs: np.ndarray, value: float, loss: float | None,
                     tables: list[dict[str, Any]] | None = None, start: bool = False) -> bool:
    """Store a completed trial's validation ``outputs`` if it ranks among the study's best
    ``CANDIDATES`` (ranked as the export ranks them: ``export.rank_trials``), and remove
    those of the trials it pushed just below them (``PUSHED_OUT`` of them: two workers
    finishing at once each see the other's trial still running); whether they were
    stored. A starting point's (``start``; the others by ``noise.is_starting_point`` on
    ``tables``, the study's ``[[enqueue]]``) are always kept, and never removed: the
    export may keep one (``noise.settle``), and an ensemble must beat it."""
    study = trial.study
    done = rank_trials(study, [t for t in study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE,))
        if feasible(t) and not record.is_prior(t) and t.number != trial.number])
    sign = signs(study.directions)[0]
    mine = rank_key(sign, value, loss, trial.number)
    above = sum(rank_key(sign, t.values[0], t.user_attrs.get(record.VAL_LOSS), t.number)
                < mine for t in done)
    if above >= CANDIDATES and not start:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / PREDICTIONS.format(trial.number)
        np.save(path, outputs.astype(np.float32, copy=False), allow_pickle=False)
        upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial,
                        mimetype="application/octet-stream")
    for out in done[CANDIDATES - 1:CANDIDATES - 1 + PUSHED_OUT] if above < CANDIDATES else []:
        if is_starting_point(out, tables or []):
            continue
        for meta in get_all_artifact_meta(out, storage=trial.storage):
            if meta.filename == PREDICTIONS.format(out.number):
                with contextlib.suppress(Exception):  # another worker removed it first
                    store.remove(meta.artifact_id)
    return True


def targets(data: Dataset) -> np.ndarray:
    """The labels of the rows a trial's kept outputs predict: with folds, every train +
    validation row (out of fold); else the validation rows."""
    if data.fold_ids is not None:
        return data.y_train[:len(data.fold_ids)]
    return data.y_val


def load_candidates(trials: list[FrozenTrial], storage: optuna.storages.BaseStorage,
                    store: FileSystemArtifactStore | None, rows: int
                    ) -> list[tuple[FrozenTrial, np.ndarray]]:
    """The kept outputs of ``trials`` (best first), for at most ``CANDIDATES`` of them;
    a trial without them (written before, pushed out, a damaged file) is passed over."""
    found: list[tuple[FrozenTrial, np.ndarray]] = []
    if store is None:
        return found
    for trial in trials:
        name = PREDICTIONS.format(trial.number)
        for meta in get_all_artifact_meta(trial, storage=storage):
            if meta.filename != name:
                continue
            try:
                with store.open_reader(meta.artifact_id) as f:
                    outputs = np.load(io.BytesIO(f.read()), allow_pickle=False)
            except Exception:
                continue
            if outputs.ndim == 2 and len(outputs) == rows and np.all(np.isfinite(outputs)):
                found.append((trial, outputs))
                break
        if len(found) == CANDIDATES:
            break
    return found


def _judge(metric: str) -> Any:
    """A key to minimise from evaluate's (loss, score): the study's metric first, then
    the loss (accuracy on a few hundred rows ties often)."""
    if metric == "val_accuracy":
        return lambda loss, score: (-score, loss)
    if metric == "val_loss":
        return lambda loss, score: (loss,)
    return lambda loss, score: (score, loss)


def greedy(outputs: list[np.ndarray], y: np.ndarray, net: Network, metric: str, size: int,
           steps: int = STEPS) -> tuple[np.ndarray, tuple[float, ...]]:
    """Caruana's forward selection with replacement: ``steps`` rounds, each adding the
    candidate whose outputs make the average best; once ``size`` distinct candidates
    are in, only they are added again. Returns the counts of the best round (ties: the
    earlier, smaller team) and its key."""
    key = _judge(metric)
    total = np.zeros(outputs[0].shape, np.float64)
    counts = np.zeros(len(outputs), np.intp)
    best: tuple[tuple[float, ...], np.ndarray] | None = None
    for step in range(1, steps + 1):
        allowed = np.flatnonzero(counts) if np.count_nonzero(counts) >= size \
            else range(len(outputs))
        scored = min((key(*evaluate_outputs(net, (total + outputs[i]) / step, y)), i)
                     for i in allowed)
        total += outputs[scored[1]]
        counts[scored[1]] += 1
        if best is None or scored[0] < best[0]:
            best = (scored[0], counts.copy())
    assert best is not None
    return best[1], best[0]


def cross_check(outputs: list[np.ndarray], y: np.ndarray, net: Network, metric: str,
                size: int, parts: list[np.ndarray], value: Any
                ) -> tuple[list[float], list[float]]:
    """The selection judged on rows it did not see: for each part of the rows, an
    ensemble selected on the other parts, and the single candidate best on them, both
    scored on that part by ``value(P, y)``; their values part by part (ensemble, single),
    which ``choose`` compares. The score the selection optimised flatters it; this one
    does not."""
    key = _judge(metric)
    ensemble, single = [], []
    for held in parts:
        seen = ~held
        counts, _ = greedy([o[seen] for o in outputs], y[seen], net, metric, size)
        weights = counts / counts.sum()
        ensemble.append(value(sum(w * o[held].astype(np.float64)
                                  for w, o in zip(weights, outputs, strict=True)), y[held]))
        best = min(range(len(outputs)), key=lambda i: key(*evaluate_outputs(
            net, outputs[i][seen], y[seen])))
        single.append(value(outputs[best][held].astype(np.float64), y[held]))
    return ensemble, single


@dataclass
class Choice:
    """What the selection found: the members (trial, weight), best weight first, and
    the scores on the kept outputs in the study's metric."""

    single: FrozenTrial  # the trial the export picks alone
    members: list[tuple[FrozenTrial, float]] = field(default_factory=list)
    score: float = math.nan  # the ensemble's (with folds, the mean of values)
    values: list[float] = field(default_factory=list)  # the ensemble's, fold by fold
    checked: tuple[float, float] = (math.nan, math.nan)  # cross_check's (ensemble, single)
    single_score: float = math.nan  # the single trial's, on the same rows
    candidates: int = 0
    rows: int = 0
    why_single: str = ""  # when there is no ensemble
    settled: str = ""  # why ``single`` is what it is (noise.settle), when it had to answer

    @property
    def is_ensemble(self) -> bool:
        return len(self.members) > 1


def choose(study: optuna.Study, storage: optuna.storages.BaseStorage, spec: StudySpec,
           data: Dataset, single: FrozenTrial, store: FileSystemArtifactStore | None,
           stood: bool = False) -> Choice:
    """Select an ensemble of the study's trials whose outputs were kept; the single
    ``single`` (the export's own pick) where none does better on those rows. ``stood``:
    ``single`` is a starting point the best trial did not beat beyond the folds' noise,
    and an ensemble must (``noise.beats``)."""
    choice = Choice(single)
    if spec.ensemble <= 1:
        choice.why_single = "selection.ensemble = 1"
        return choice
    if spec.constraints:  # a team costs the sum of its members: over what each one meets
        choice.why_single = ("the study has [constraints], which bound one network; an "
                             "ensemble costs the sum of its members'")
        return choice
    y = targets(data)
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if record.written_by_worker(t) and feasible(t)]
    ranked = rank_trials(study, done)
    if single in ranked:  # the export's pick first: it is what an ensemble must beat
        ranked.remove(single)
        ranked.insert(0, single)
    found = load_candidates(ranked, storage, store, len(y))
    choice.candidates, choice.rows = len(found), len(y)
    if len(found) < 2:
        choice.why_single = f"{len(found)} trial(s) with kept predictions"
        return choice
    alone = next((o for t, o in found if t.number == single.number), None)
    if alone is None:
        choice.why_single = f"trial {single.number}'s predictions were not kept"
        return choice
    config = found[0][0].user_attrs[record.NETWORK]  # the judge: its head and outputs
    net = Network([1, config["layer_sizes"][-1]], output=config["output"])
    outputs = [o for _, o in found]
    counts, _ = greedy(outputs, y, net, spec.metric, spec.ensemble)

    def values(P: np.ndarray) -> list[float]:
        """The study's metric of outputs ``P``, fold by fold as a trial's value is (one
        value on a validation split)."""
        parts = [data.fold_ids == i for i in range(data.n_folds)] or [slice(None)]
        return [metric_value(spec.metric, data, *evaluate_outputs(net, P[rows], y[rows]))
                for rows in parts]

    weights = counts / counts.sum()
    choice.values = values(sum(w * o.astype(np.float64) for w, o in zip(weights, outputs,
                                                                       strict=True)))
    choice.score = float(np.mean(choice.values))
    reference = values(alone.astype(np.float64))
    choice.single_score = float(np.mean(reference))
    sign = signs(study.directions)[0]
    if np.count_nonzero(counts) < 2 or not sign * choice.score < sign * choice.single_score:
        choice.why_single = (f"no ensemble of the best {len(found)} beat it on the kept "
                             f"predictions of {len(y):,} rows")
        return choice
    part = data.fold_ids if data.fold_ids is not None else np.arange(len(y)) % CHECK_PARTS
    parts = [part == i for i in range(int(part.max()) + 1)]
    checks = cross_check(outputs, y, net, spec.metric, spec.ensemble, parts,
                         lambda P, Y: metric_value(spec.metric, data,
                                                   *evaluate_outputs(net, P, Y)))
    choice.checked = (float(np.mean(checks[0])), float(np.mean(checks[1])))
    if not sign * choice.checked[0] < sign * choice.checked[1]:
        choice.why_single = (f"an ensemble beat it on the kept predictions of {len(y):,} "
                             "rows, but not on rows its selection did not see "
                             f"({choice.checked[0]:.4f} against {choice.checked[1]:.4f})")
        return choice
    if stood and not beats(checks[0], reference, sign):  # (parts: the folds, in order)
        choice.why_single = (f"on rows its selection did not see, the ensemble's lead "
                             f"({choice.checked[0]:.4f} against {choice.single_score:.4f}) is "
                             "within the folds' noise")
        return choice
    order = np.argsort(-counts, kind="stable")
    choice.members = [(found[i][0], float(weights[i])) for i in order if counts[i]]
    return choice


def ensemble_export(study: optuna.Study, spec: StudySpec, url: StorageURL,
                    choice: Choice) -> dict[str, Any]:
    """The ``nnsearch.ensemble/1`` document: each member's trial export and its weight."""
    exports = [export_trial(study, spec, t, url) for t, _ in choice.members]
    return {
        "format": FORMAT,
        "study": exports[0]["study"],
        "members": [{"weight": w, "export": e}
                    for (_, w), e in zip(choice.members, exports, strict=True)],
        # as a trial export's: the ensemble's metric on its kept predictions (selected on
        # them: a little optimistic), with folds their mean and spread; the single best's
        "estimate": {"metric": spec.metric, "mean": choice.score, "folds": len(choice.values)
                     if len(choice.values) > 1 else None,
                     "sd": float(np.std(choice.values, ddof=1)) if len(choice.values) > 1
                     else None, "single": choice.single_score,
                     "single_trial": choice.single.number, "rows": choice.rows,
                     "cross_checked": {"ensemble": choice.checked[0],
                                       "single": choice.checked[1]},
                     "candidates": choice.candidates},
        # what predicting costs, summed over the members (one network each; train's
        # seeds multiply it): parameters, and single-row latency where it was measured
        "costs": {key: sum(float(t.user_attrs[key]) for t, _ in choice.members)
                  for key in ("n_params", "latency_ms")
                  if all(key in t.user_attrs for t, _ in choice.members)},
        "versions": versions(),
    }


def is_ensemble(config: Any) -> bool:
    return isinstance(config, dict) and config.get("format") == FORMAT


def check_ensemble(config: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The members' exports of an ensemble export, or UsageError: no members or more than
    ``MAX_ENSEMBLE``, a damaged member, weights that are not > 0 summing to 1, a member
    of another study or data, an estimate that is not numbers."""
    from .studyfile import MAX_ENSEMBLE

    members = config.get("members")
    study = config.get("study")
    if not isinstance(members, list) or not members or not isinstance(study, dict):
        raise UsageError(f"{where}: the ensemble export lacks its 'study' or 'members'.")
    if len(members) > MAX_ENSEMBLE:
        raise UsageError(f"{where}: {len(members)} members; an ensemble holds at most "
                         f"{MAX_ENSEMBLE}.")
    weights: list[float] = []
    exports: list[dict[str, Any]] = []
    for i, member in enumerate(members):
        if not isinstance(member, dict) or not isinstance(member.get("export"), dict):
            raise UsageError(f"{where}: member {i} of the ensemble lacks its export.")
        w = _number(member.get("weight"))
        if w is None or w <= 0:
            raise UsageError(f"{where}: member {i}'s weight must be a number > 0, but got "
                             f"{str(member.get('weight'))[:40]!r}.")
        export = check_export(member["export"], f"{where}: member {i}")
        if export["study"].get("name") != study.get("name"):
            raise UsageError(f"{where}: member {i} (trial {export['trial'].get('number')}) "
                             f"is of study {export['study'].get('name')!r}, not of the "
                             f"ensemble's {study.get('name')!r}.")
        if exports and export["data"] != exports[0]["data"]:
            raise UsageError(f"{where}: member {i} was trained on other data than member 0.")
        weights.append(w)
        exports.append(export)
    if abs(sum(weights) - 1) > WEIGHT_SUM_TOLERANCE:
        raise UsageError(f"{where}: the members' weights sum to {sum(weights):g}, not 1.")
    estimate = config.get("estimate", {})
    if not isinstance(estimate, dict) or any(
            _number(estimate.get(k)) is None for k in ("mean", "sd") if
            estimate.get(k) is not None):
        raise UsageError(f"{where}: the ensemble's 'estimate' is not its figures.")
    return exports


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None (a bool, text, an integer too big)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def choose_for(opened: Any, single: FrozenTrial, stood: bool = False) -> Choice:
    """``choose`` for an open study (``study.OpenStudy``): its data (from the cache the
    workers filled; UsageError if it changed since), the kept outputs from its artifact
    store."""
    from .artifacts import artifact_store
    from .study import accepted_data

    spec = opened.spec
    if spec.ensemble <= 1 or spec.multi:
        return Choice(single, why_single="selection.ensemble = 1")
    data = accepted_data(opened, notes=False)  # the study's own: its fingerprint checked
    return choose(opened.study, opened.storage, spec, data, single,
                  artifact_store(opened.url, create=False), stood)


def export_for(opened: Any, choice: Choice) -> dict[str, Any]:
    """What ``choice`` exports: the ensemble's document, or its single trial's."""
    if choice.is_ensemble:
        return ensemble_export(opened.study, opened.spec, opened.url, choice)
    return export_trial(opened.study, opened.spec, choice.single, opened.url)


def describe(choice: Choice, metric: str) -> str:
    """One line: the ensemble's members and its score beside the single trial's."""
    members = ", ".join(f"{t.number} ×{w:.2f}" for t, w in choice.members)
    params = sum(int(t.user_attrs.get("n_params", 0)) for t, _ in choice.members)
    return (f"ensemble of {len(choice.members)} trials ({members}; {params:,} parameters in "
            f"all): {metric}={choice.score:.4f} on the kept predictions of {choice.rows:,} "
            f"rows; trial {choice.single.number} alone: {choice.single_score:.4f}")
