"""The trial a worker created, kept in its process while it runs: its writes gathered
into two transactions, its reads answered from the process's own copy.

A worker is the only writer of the trial it runs (but for a sweeper failing it, when
its worker seems gone). Optuna writes a new trial one change at a time: the
sampler's relative parameters (a system attribute), each parameter as it is
suggested, the first heartbeat; nnsearch adds its worker's name, and, as the trial
ends, its result, its constraints, its artifacts. Each was a commit of its own, and
Optuna read the trial back twice (as the ``Trial`` is made, and as it is told). On
a small table's trial that was over a third of the time beyond training
(``bench/tiny.py``).

``OwnTrial`` is installed on the study's storage object (its methods shadowed on
the instance, as ``shared_reads`` does). For a trial this process creates, it
answers ``get_trial`` and the trial's attributes from its own copy, which has every
write made through it, and keeps those writes back: as training starts (the
objective calls ``training_starts``) they are written in one transaction with the
trial's first heartbeat, and the trial's final state is written in one transaction with whatever
came after (its result, constraints, artifacts' names, kept-back reports). Optuna's
heartbeat thread beats at the trial's start (that beat goes with the first writes)
and every interval after: a beat that still finds the first writes kept back (a
sampler slower than a heartbeat) writes them; later beats go to the storage. A trial
taken from the queue (enqueued, a retry) goes Optuna's usual way. Where the RDB
parts are not there (another storage, or their names moved: ``_optuna.rdb_of``),
nothing is installed and every write goes to the storage.

What keeping writes back costs: until training starts (the few ms of sampling, at
most a heartbeat interval) the trial shows without its parameters, worker and
heartbeat. It is created with its creator's claim (``claim``: ``record.CREATOR``, in
the creation's transaction), so a worker of this host that dies then is found at
once (``record.holder``); one elsewhere, once ``worker.UNCLAIMED_GRACE`` has passed.
A result and its state are one write: both are stored or neither.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from ._optuna import RDB, Param, on_created_trials, rdb_of, study_storage, write_record
from .shared_reads import shadow

logger = logging.getLogger(__name__)

_FRESH_BEAT_SECONDS = 1.0  # a heartbeat this recent (the first writes') is not written again

_ATTR = "nnsearch_own_trial"  # where an OwnTrial is found on the storage object it is on


def _installed(storage: optuna.storages.BaseStorage) -> OwnTrial | None:
    own = vars(storage).get(_ATTR)
    return own if isinstance(own, OwnTrial) else None


def own_trials(study: optuna.Study) -> OwnTrial | None:
    """``OwnTrial`` installed on the storage ``study`` reads and writes its trials
    through, or None where it does not apply."""
    storage = study_storage(study)
    rdb = rdb_of(storage) if storage is not None else None
    if storage is None or rdb is None:
        return None
    return _installed(storage) or OwnTrial(storage, rdb)


def write(trial: optuna.Trial, attrs: dict[str, Any],
          reports: dict[int, float] | None = None, now: bool = False) -> None:
    """Write ``attrs`` and the kept-back ``reports`` (emptied once taken) on the running
    ``trial``: with its other kept-back writes where an ``OwnTrial`` holds it (at once
    with ``now``), else at once in one transaction (``_optuna.write_record``)."""
    own = _installed(trial.storage)
    if own is None or not own.runs(trial):
        write_record(trial, attrs, reports)
        return
    own.keep(user_attrs=attrs, reports=reports or {})
    if reports:
        reports.clear()
    if now:
        own.flush()
    else:
        own.training = False  # the trial's result: what follows waits for its state


def training_starts(trial: optuna.Trial) -> None:
    """``trial`` starts training: what is kept back of it is written now (the dashboard
    and the other workers' samplers see its parameters from here on)."""
    own = _installed(trial.storage)
    if own is not None and own.runs(trial):
        own.flush()
        own.training = True


_SHADOWED = ("get_trial", "get_trial_system_attrs", "get_trial_user_attrs",
             "set_trial_param", "set_trial_system_attr", "set_trial_user_attr",
             "set_trial_intermediate_value", "record_heartbeat", "set_trial_state_values")


class OwnTrial:
    """Installed on a study's storage object; ``remove()`` puts its methods back."""

    def __init__(self, storage: optuna.storages.BaseStorage, rdb: RDB) -> None:
        self.storage = storage
        self.rdb = rdb
        self.transactions = 0  # the writes it made of its trials (for tests and benches)
        self.lost = False  # whether the last trial was ended by a sweeper before its state
        self.training = False  # between training_starts and the trial's result
        self._lock = threading.Lock()  # Optuna's heartbeat thread writes through it too
        self._trial_id: int | None = None
        self._study_id = -1
        self._copy: FrozenTrial | None = None
        self._flushed = False
        self._beats, self._beat_at = 0, -float("inf")
        self._heartbeats = storage.get_heartbeat_interval() is not None  # type: ignore[attr-defined]
        self._clear()
        self._distributions: dict[tuple[int, str], BaseDistribution] = {}
        # user attributes each trial it creates is created with (the worker's claim)
        self.claim: dict[str, Any] = {}
        undo_created = on_created_trials(storage, self._created, self._template)
        self._undo = [undo_created] if undo_created is not None else []
        self._base: dict[str, Callable[..., Any]] = {}  # the storage's own methods
        for name in _SHADOWED:
            self._base[name] = getattr(storage, name)
            self._undo.append(shadow(storage, name, getattr(self, name)))
        setattr(storage, _ATTR, self)

    def remove(self) -> None:
        for undo in reversed(self._undo):
            undo()
        vars(self.storage).pop(_ATTR, None)

    def holds(self, trial_id: int) -> bool:
        return trial_id == self._trial_id

    def runs(self, trial: optuna.Trial) -> bool:
        """Whether ``trial`` (of this storage object's study) is the one it keeps."""
        return self._copy is not None and trial.number == self._copy.number

    def _clear(self) -> None:
        self._params: list[Param] = []
        self._system: dict[str, Any] = {}
        self._user: dict[str, Any] = {}
        self._reports: dict[int, float] = {}

    def _template(self) -> FrozenTrial | None:
        if not self.claim:
            return None
        # as Optuna makes a new trial (its start in local time), with the claim
        return FrozenTrial(number=-1, state=TrialState.RUNNING, value=None, values=None,
                           datetime_start=datetime.now(), datetime_complete=None, params={},
                           distributions={}, user_attrs=dict(self.claim), system_attrs={},
                           intermediate_values={}, trial_id=-1)

    def _created(self, study_id: int, trial_id: int, frozen: FrozenTrial) -> None:
        if frozen.state != TrialState.RUNNING:  # enqueued (a retry): not run here yet
            return
        with self._lock:
            self._trial_id, self._study_id = trial_id, study_id
            self._copy = copy.deepcopy(frozen)
            self._flushed = False
            self.lost = self.training = False
            self._beats, self._beat_at = 0, -float("inf")  # the heartbeat thread's calls
            self._clear()

    # ----- reads: the trial's own copy ------------------------------------------------
    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            if self.holds(trial_id) and self._copy is not None:
                return copy.deepcopy(self._copy)
        return self._base["get_trial"](trial_id)

    def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
        return self.get_trial(trial_id).system_attrs

    def get_trial_user_attrs(self, trial_id: int) -> dict[str, Any]:
        return self.get_trial(trial_id).user_attrs

    # ----- writes: kept back ------------------------------------------------------------
    def keep(self, *, param: Param | None = None, system_attrs: dict[str, Any] | None = None,
             user_attrs: dict[str, Any] | None = None,
             reports: dict[int, float] | None = None, shown: Param | None = None) -> None:
        """Keep these writes on the trial this process runs, and show them in its copy
        (``shown``: a parameter already written)."""
        for value in [*(system_attrs or {}).values(), *(user_attrs or {}).values()]:
            json.dumps(value)  # a value Optuna would refuse is refused here, not at the end
        with self._lock:
            own = self._copy
            assert own is not None
            if param is not None:
                self._params.append(param)
            for p in (param, shown):
                if p is not None:
                    own.distributions[p.name] = p.distribution
                    own.params[p.name] = p.distribution.to_external_repr(p.internal)
            own.system_attrs.update(system_attrs or {})
            self._system.update(system_attrs or {})
            own.user_attrs.update(user_attrs or {})
            self._user.update(user_attrs or {})
            own.intermediate_values.update(reports or {})
            self._reports.update(reports or {})

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        key = (self._study_id, param_name)
        previous = self._distributions.get(key)
        if not self.holds(trial_id) or previous is None:
            # The first time this process writes a parameter, Optuna's write checks it
            # against the study's (a clash is refused as it is suggested); later, here.
            self._base["set_trial_param"](trial_id, param_name, param_value_internal,
                                          distribution)
            if self.holds(trial_id):
                self._distributions[key] = distribution
                self.keep(shown=Param(param_name, param_value_internal, distribution))
            return
        optuna.distributions.check_distribution_compatibility(previous, distribution)
        self.keep(param=Param(param_name, param_value_internal, distribution))

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        if self.holds(trial_id) and not self.training:
            self.keep(system_attrs={key: value})
            return
        # Not this process's trial; or, while it trains, a pruner's own records
        # (successive halving's rungs), for the other workers' pruners to see: written at
        # once (and shown in the copy).
        self._base["set_trial_system_attr"](trial_id, key, value)
        with self._lock:
            if self.holds(trial_id) and self._copy is not None:
                self._copy.system_attrs[key] = value

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        if self.holds(trial_id):
            self.keep(user_attrs={key: value})
        else:
            self._base["set_trial_user_attr"](trial_id, key, value)

    def set_trial_intermediate_value(self, trial_id: int, step: int,
                                     intermediate_value: float) -> None:
        if self.holds(trial_id):
            self.keep(reports={step: intermediate_value})
        else:
            self._base["set_trial_intermediate_value"](trial_id, step, intermediate_value)

    def record_heartbeat(self, trial_id: int) -> None:
        """Optuna's heartbeat thread, at the trial's start and every interval after: the
        first beat goes with the trial's first writes, and a beat still finding them kept
        back (a sampler slower than a heartbeat interval) writes them."""
        with self._lock:
            kept = self.holds(trial_id) and not self._flushed  # its first writes, still
            if kept:
                self._beats += 1
                if self._beats == 1:
                    return
            elif self.holds(trial_id) and time.monotonic() - self._beat_at < _FRESH_BEAT_SECONDS:
                return  # the first writes carried a beat a moment ago
        if not kept:
            self._base["record_heartbeat"](trial_id)
            return
        try:
            self.flush()
        except Exception as exc:  # (an error here would end Optuna's heartbeat thread)
            logger.warning("trial id %d: its first writes not recorded by its heartbeat (%s); "
                           "trying again at the next", trial_id, exc)

    def flush(self) -> None:
        """Write what is kept back of the trial, in one transaction."""
        with self._lock:
            trial_id = self._trial_id
            if trial_id is None:
                return
            beat = not self._flushed and self._heartbeats
            if self._params or self._system or self._user or self._reports or beat:
                self.rdb.write(trial_id, params=self._params, system_attrs=self._system,
                               user_attrs=self._user, reports=self._reports, beat=beat)
                self.transactions += 1
                self._clear()
            if beat:
                self._beat_at = time.monotonic()
            self._flushed = True

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        if not self.holds(trial_id) or not state.is_finished():
            return self._base["set_trial_state_values"](trial_id, state, values)
        with self._lock:  # the trial ends here: the rest of its writes go with its state
            params, system, user, reports = self._params, self._system, self._user, \
                self._reports
            assert self._copy is not None
            number = self._copy.number
            self._trial_id, self._copy = None, None
            self._clear()
        try:
            self.rdb.write(trial_id, params=params, system_attrs=system, user_attrs=user,
                           reports=reports, state=state, values=values)
        except UpdateFinishedTrialError as exc:
            # A sweeper failed it meanwhile (the storage was away, or the worker seemed
            # gone) and retries it: its result is dropped. (Raising here would leave
            # Optuna's optimize with a FAIL trial it cannot account for.)
            logger.warning("trial %d was ended by the sweeper before its result was "
                           "stored (%s); its result is dropped", number, exc)
            self.lost = True
            return False
        except Exception:
            # the state could not be written (the storage went away): the trial's record
            # at least, if the storage takes it; the sweeper ends the trial
            with contextlib.suppress(Exception):
                self.rdb.write(trial_id, params=params, system_attrs=system,
                               user_attrs=user, reports=reports)
            raise
        self.transactions += 1
        return True
