"""How a study's trials are read (issue #27): by the reading commands (``status``,
``export``, ``trials``, ...), the dashboard and ``run``'s supervisor, as the storage they
hand Optuna, and by each worker (``worker_storage.WorkerStorage.reader``). Each finished
trial is read once and kept, and every later read asks only for the trials that changed.

Optuna's own cache (``_optuna.cached_storage``) does the same, but it reads through its
ORM, which builds an object per row and parses each parameter's distribution twice: at
10,000 trials a first read took 12-13 s. Here the RDB's tables are read with one query
each (``_optuna.RDB.read_trials``), ~9x faster, and the trials it builds are the same.

A finished trial cannot change (Optuna refuses writes to one), so it is kept; the
unfinished ones and those with an id above the last finished one are read again each
time, as Optuna's cache does. A first read of finished states alone (``export``'s
completed trials) asks for those alone, and is not kept. Where the RDB parts do not
apply (a journal file, or their names moved), Optuna's own cache answers. Thread-safe:
the dashboard serves requests from several threads.

With ``curves`` (the dashboard's), a study of more than ``CURVES_FROM`` trials is read
with the reports (learning curves) of the ``curves`` best and the ``curves`` latest
trials only, and of the running ones: optuna-dashboard draws one line per trial, and
with 10,000 trials' lines its study page did not open within two minutes in Chromium.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Collection, Container
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from ._optuna import Outline, cached_storage, rdb_of
from .delegating import Delegating


@dataclass
class _Known:
    trials: dict[int, FrozenTrial] = field(default_factory=dict)  # by trial id
    last_id: int = -1  # the highest id of a finished trial read
    reads: int = 0  # reads made of the storage (for tests)


CURVES_FROM = 1_000  # trials from which a ``curves`` cache keeps only some learning curves


class TrialCache(Delegating):
    def __init__(self, storage: optuna.storages.BaseStorage, curves: int | None = None) -> None:
        self.rdb = rdb_of(storage)
        super().__init__(storage if self.rdb is not None else cached_storage(storage))
        self.curves = curves
        self._known: dict[int, _Known] = {}
        self._bare: dict[int, FrozenTrial] = {}  # finished trials without their reports
        self._lock = threading.Lock()

    def reads(self, study_id: int) -> int:
        """How many reads of the storage answered ``get_all_trials`` for the study."""
        known = self._known.get(study_id)
        return known.reads if known else 0

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        if self.rdb is None:
            return self.base.get_all_trials(study_id, deepcopy=deepcopy, states=states)
        chosen = None if states is None else [s for s in TrialState if s in states]
        if study_id not in self._known and chosen is not None and self.curves is None \
                and all(s.is_finished() for s in chosen):
            # (a reading command's first read, of finished trials only: those alone, by SQL;
            # at 10,000 trials, the completed ones were a fifth)
            return [t for _, t in self.rdb.read_trials(study_id, states=chosen)]
        with self._lock:
            known = self._known.setdefault(study_id, _Known())
            unfinished = [tid for tid, t in known.trials.items() if not t.state.is_finished()]
            for trial_id, trial in self.rdb.read_trials(study_id, after=known.last_id,
                                                        also=unfinished):
                known.trials[trial_id] = trial
                if trial.state.is_finished():  # (as Optuna's cache: ids above the last
                    known.last_id = max(known.last_id, trial_id)  # finished one, again)
            known.reads += 1
            ids = sorted(known.trials)
            if self.curves is not None and len(ids) > CURVES_FROM:
                trials = self._thinned(study_id, ids, known.trials)
            else:
                trials = [known.trials[tid] for tid in ids]
        if states is not None:
            trials = [t for t in trials if t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def outline(self, study_id: int, keys: Collection[str]
                ) -> list[tuple[int, FrozenTrial]] | None:
        """Every trial with its id, the finished ones without their reports and with only
        the user attributes ``keys``; not kept (``_optuna.RDB.read_outline``). None where
        the study's trials are kept already (a read of them all is answered from memory)
        or without the RDB parts: then read them all."""
        with self._lock:
            if study_id in self._known or self.rdb is None:
                return None
        return self.rdb.read_outline(study_id, Outline(frozenset(keys)))

    def delete_study(self, study_id: int) -> None:
        with self._lock:  # (SQLite may give its ids to the next study and its trials)
            known = self._known.pop(study_id, None)
            for trial_id in known.trials if known else ():
                self._bare.pop(trial_id, None)
        self.base.delete_study(study_id)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            for known in self._known.values():
                trial = known.trials.get(trial_id)
                if trial is not None and trial.state.is_finished():
                    return copy.deepcopy(trial)
        return self.base.get_trial(trial_id)

    def _thinned(self, study_id: int, ids: list[int], by_id: dict[int, FrozenTrial]
                 ) -> list[FrozenTrial]:
        """The trials, those outside the best and the latest ``curves`` (and not running)
        without their reports."""
        assert self.curves is not None
        sign = -1.0 if self.base.get_study_directions(study_id)[0] == \
            optuna.study.StudyDirection.MAXIMIZE else 1.0
        done = [tid for tid in ids if by_id[tid].state == TrialState.COMPLETE
                and by_id[tid].values]
        keep = set(ids[-self.curves:]) | set(sorted(
            done, key=lambda tid: sign * by_id[tid].values[0])[:self.curves])
        out = []
        for tid in ids:
            trial = by_id[tid]
            if tid in keep or not trial.intermediate_values or not trial.state.is_finished():
                out.append(trial)
                continue
            bare = self._bare.get(tid)
            if bare is None:
                bare = self._bare[tid] = FrozenTrial(
                    number=trial.number, state=trial.state, value=None, values=trial.values,
                    datetime_start=trial.datetime_start,
                    datetime_complete=trial.datetime_complete, params=trial.params,
                    distributions=trial.distributions, user_attrs=trial.user_attrs,
                    system_attrs=trial.system_attrs, intermediate_values={}, trial_id=tid)
            out.append(bare)
        return out
