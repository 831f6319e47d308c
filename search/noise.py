"""Selection that expects noise: a starting point stands unless the search beats it
beyond the folds' noise.

A study tries its ``[[enqueue]]`` tables first: textbook configurations, such as
scikit-learn's MLP defaults. The search's best trial is the best of hundreds of noisy
cross-validation means, so on a small table part of its lead over them is luck (the
winner's curse), and it can lose to them on rows nothing saw. With folds, every trial
is scored on the same folds, so the best trial and a starting point can be compared
fold by fold: the export keeps the best starting point unless the best trial's mean
lead over it is more than one standard error of the fold-by-fold differences (the
"one-standard-error rule" of Breiman et al., with the starting point as the simpler
model). An ensemble that would replace a starting point that stood must clear the same
bar (``beats``). Without folds (one validation split, a large table) the best trial is
exported as before: there is nothing to pair; with ``[selection] recheck``, the
re-check's mean picks instead.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from . import record
from ._optuna import enqueued_params
from .front import feasible, signs

__all__ = ["beats", "is_starting_point", "settle", "starting_point"]


def _holds(params: dict[str, Any], table: dict[str, Any]) -> bool:
    for name, value in table.items():
        got = params.get(name)
        if isinstance(value, float) and isinstance(got, float):
            if not math.isclose(got, value, rel_tol=1e-9):
                return False
        elif got != value:
            return False
    return True


def is_starting_point(trial: FrozenTrial, tables: list[dict[str, Any]]) -> bool:
    """Whether ``trial`` was queued with exactly one of the study's ``[[enqueue]]`` tables
    (in Optuna's names: ``StudySpec.enqueued_params``), or retries such a trial: by what
    it was queued with, not by what it sampled (a table that leaves parameters to the
    sampler would match many sampled trials)."""
    fixed = enqueued_params(trial)
    return fixed is not None and any(fixed.keys() == t.keys() and _holds(fixed, t)
                                     for t in tables)


def starting_point(trials: list[FrozenTrial], spec: Any, sign: float
                   ) -> FrozenTrial | None:
    """The best completed, worker-written, feasible trial queued with one of the study's
    ``[[enqueue]]`` tables (``is_starting_point``: its parameters are not read), with its
    fold values; None if there is none."""
    tables = spec.enqueued_params()
    if not tables:
        return None
    found = [t for t in trials if t.state == TrialState.COMPLETE and t.values
             and record.written_by_worker(t) and feasible(t)
             and record.FOLD_VALUES in t.user_attrs and is_starting_point(t, tables)]
    return min(found, key=lambda t: (sign * t.values[0], t.number), default=None)


def beats(values: list[float], reference: list[float], sign: float) -> bool:
    """Whether ``values`` (fold by fold) beat ``reference`` on the same folds by more
    than one standard error of their differences (``sign``: 1 minimise, -1 maximise)."""
    if len(values) != len(reference) or not values:
        return False
    d = sign * (np.asarray(values, np.float64) - np.asarray(reference, np.float64))
    if not np.all(np.isfinite(d)):
        return False
    if len(d) < 2:
        return bool(d[0] < 0)
    return bool(-d.mean() > d.std(ddof=1) / math.sqrt(len(d)))


def settle(study: Any, spec: Any, best: FrozenTrial,
           complete: list[FrozenTrial] | None = None) -> tuple[FrozenTrial, str]:
    """The export's pick: ``best``, or the best starting point where ``best`` does not
    beat it beyond the noise; and a line saying which and why ("" when ``best`` has no
    starting point to answer to). ``complete``: the study's completed trials, if read."""
    if not spec.noise_rule or spec.recheck or len(study.directions) > 1 \
            or record.FOLD_VALUES not in best.user_attrs:  # (a re-check decides instead)
        return best, ""
    sign = signs(study.directions)[0]
    if complete is None:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    start = starting_point(complete, spec, sign)
    if start is None or start.number == best.number:
        return best, ""
    lead = sign * (start.values[0] - best.values[0])
    if beats(best.user_attrs[record.FOLD_VALUES], start.user_attrs[record.FOLD_VALUES], sign):
        return best, (f"trial {best.number} beats starting point {start.number} by "
                      f"{lead:.4g}, beyond the folds' noise")
    return start, (f"starting point {start.number} kept: trial {best.number}'s lead of "
                   f"{lead:.4g} is within one standard error of the folds' differences "
                   "([selection] noise_rule)")
