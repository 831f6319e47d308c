"""How many trials a study has, by state, as a worker's budget counts them: priors (trials
copied from another study) left out, waiting trials holding their place."""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from . import record, stops
from ._optuna import rdb_of
from .study import OpenStudy, StudySpec


@dataclass
class Counts:
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0

    @property
    def finished(self) -> int:
        return self.complete + self.pruned

    def add(self, state: TrialState, n: int = 1) -> None:
        name = _STATE_FIELDS[state]
        setattr(self, name, getattr(self, name) + n)


_STATE_FIELDS = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned",
                 TrialState.FAIL: "failed", TrialState.RUNNING: "running",
                 TrialState.WAITING: "waiting"}


def count_states(opened: OpenStudy) -> Counts:
    """This study's own trials by state, priors left out: one COUNT query on an RDB
    storage (under the trial lock: ``_optuna.RDB.count_by_state``), else a read of the
    trials (Optuna's cache reads only the trials that changed; a worker's view is
    expired first)."""
    rdb = rdb_of(opened.storage)
    counted = rdb.count_by_state(opened.study.study_name, record.PRIOR) \
        if rdb is not None else None
    if counted is None:
        if opened.worker_storage is not None:
            opened.worker_storage.expire()
        return count_trials(opened.study.get_trials(deepcopy=False))
    counts = Counts()
    for state, n in counted.items():
        counts.add(state, n)
    return counts


def count_trials(trials: list[FrozenTrial]) -> Counts:
    """``count_states`` of trials already read."""
    counts = Counts()
    for t in trials:
        if not record.is_prior(t):  # another study's: no budget counts it
            counts.add(t.state)
    return counts


def trials_ahead(study: optuna.Study, number: int) -> int:
    """Finished, running or waiting trials numbered below ``number``: who came first.

    A waiting trial (the retry of a failed one) holds its place: it will run, and when
    it does it counts only those below it, so a trial created after it that did not
    count it would overshoot the budget by one."""
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    return sum(1 for t in study.get_trials(deepcopy=False, states=states)
               if t.number < number and not record.is_prior(t))


def is_gated(budget: int | None, spec: StudySpec) -> bool:
    """Whether workers check before each trial (and so take the trial lock): a trial
    budget, or a study-level stop."""
    return budget is not None or stops.active(spec)
