"""What a worker hands Optuna: the study's storage, with the worker's running trial kept
in the process and one read of the trials shared for a moment.

``WorkerStorage`` implements Optuna's ``BaseStorage`` (and its heartbeat) by delegating to
the storage it wraps, as Optuna's own cache wraps its RDB storage, and relies on the
contract ``BaseStorage`` documents: a running trial is modified from a single process.

- **The trial it runs** (created here, or taken from the queue) is answered from a copy
  in the process, and its writes (parameters, the sampler's attributes, the worker's
  name, reports, the result) are kept back: as training starts (``training_starts``)
  they go in one transaction with its first heartbeat, and the rest with its final
  state (``_optuna.RDB.write``); kept-back reports also every ``REPORT_WRITE_SECONDS``.
  Each was a commit, over a third of a small trial's time beyond training
  (``bench/tiny.py``). A new trial is created with its worker's ``claim``, so a worker of
  this host that dies before training is found at once (``record.holder``).
- **Shared reads**: a read of all trials (by SQL through ``trial_cache.TrialCache``, each
  finished trial once, where the RDB parts apply) within ``window`` seconds of the last is
  answered from it (Optuna reads them several times per trial; bounded while a trial
  samples: ``history.py``); ``expire()`` makes the next one go to the storage. A
  moment-old view may miss a trial another worker started or finished.
- **Stale checks** are queried at most once per ``stale_every`` seconds; within
  ``failing(reason)``, a trial failed here is given that reason first.

Without the RDB parts (another storage, or their names moved: ``_optuna.rdb_of``), every
write goes to the storage as it is made.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import threading
import time
from collections.abc import Callable, Container, Iterator, Sequence
from datetime import datetime
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from . import record
from ._optuna import RDB, Param, created_trial, stale_trial_ids
from .delegating import Delegating

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 1.0  # how long one read of the trials serves the reads after it
STALE_CHECK_SECONDS = 1.0  # Optuna asks before every trial; stale takes 3 heartbeats
REPORT_WRITE_SECONDS = 2.0  # kept-back reports of a running trial are written this often
_FRESH_BEAT_SECONDS = 1.0  # a heartbeat this recent (the first writes') is not written again


def training_starts(trial: optuna.Trial) -> None:
    """``trial`` starts training: what is kept back of it is written now (the dashboard
    and the other workers' samplers see its parameters from here on). Nothing to do
    where its storage is not a ``WorkerStorage``."""
    storage = trial.storage
    if isinstance(storage, WorkerStorage) and storage.runs(trial.number):
        storage.flush()
        storage.training = True


def training_ends(trial: optuna.Trial) -> None:
    """``trial`` has trained: what follows (its result, artifacts' names) waits for its
    state (while it trains, a pruner's records go at once, for the other workers')."""
    storage = trial.storage
    if isinstance(storage, WorkerStorage) and storage.runs(trial.number):
        storage.training = False


class WorkerStorage(Delegating):
    def __init__(self, base: optuna.storages.BaseStorage, rdb: RDB | None, *,
                 window: float = WINDOW_SECONDS, stale_every: float = STALE_CHECK_SECONDS,
                 reader: optuna.storages.BaseStorage | None = None) -> None:
        super().__init__(base)
        self.rdb = rdb
        # what reads all trials (trial_cache.TrialCache: by SQL, each finished one once);
        # the base's own read where there is none
        self.reader = reader or base
        self.window = window
        self.stale_every = stale_every
        # user attributes each trial it creates is created with (the worker's claim)
        self.claim: dict[str, Any] = {}
        self.transactions = 0  # the writes it made of its trials (for tests and benches)
        self.reads = self.shared = 0  # reads of all trials made, and answered from the last
        self.lost = False  # whether its last trial was ended by a sweeper before its state
        self.training = False  # between training_starts and training_ends
        self._lock = threading.Lock()  # Optuna's heartbeat thread writes through it too
        self.started: int | None = None  # the trial this process last started
        self._trial_id: int | None = None  # the trial it keeps (with the RDB parts)
        self._study_id = -1  # the study of the last trial it created
        self._copy: FrozenTrial | None = None
        # the trial it kept, as its last write left it (Optuna's tell reads it back)
        self._finished: tuple[int, FrozenTrial] | None = None
        self._flushed = False
        self._beats, self._beat_at, self._reports_at = 0, -float("inf"), 0.0
        self._clear()
        self._checked: dict[tuple[int, str], BaseDistribution] = {}  # params written once
        self._trials: dict[int, list[FrozenTrial]] = {}  # study id -> all its trials
        self.history: Callable[[list[FrozenTrial]], list[FrozenTrial]] | None = None  # history.py
        self._read_at: dict[int, float] = {}
        self._stale_at = -float("inf")
        self._fail_reason: str | None = None

    # ----- the trial it runs --------------------------------------------------------
    def runs(self, number: int) -> bool:
        """Whether trial ``number`` is the one this storage keeps."""
        copied = self._copy
        return copied is not None and copied.number == number

    def _holds(self, trial_id: int) -> bool:
        return self.rdb is not None and trial_id == self._trial_id

    def _clear(self) -> None:
        self._params: list[Param] = []
        self._system: dict[str, Any] = {}
        self._user: dict[str, Any] = {}
        self._reports: dict[int, float] = {}

    def _hold(self, trial_id: int, frozen: FrozenTrial) -> None:
        with self._lock:
            self._trial_id, self._copy = trial_id, copy.deepcopy(frozen)
            self._finished = None
            self._flushed = False
            self.lost = self.training = False
            self._beats, self._beat_at, self._reports_at = 0, -float("inf"), time.monotonic()
            self._clear()

    def _template(self) -> FrozenTrial | None:
        if not self.claim:
            return None
        # as Optuna makes a new trial (its start in local time), with the claim
        return FrozenTrial(number=-1, state=TrialState.RUNNING, value=None, values=None,
                           datetime_start=datetime.now(), datetime_complete=None, params={},
                           distributions={}, user_attrs=dict(self.claim), system_attrs={},
                           intermediate_values={}, trial_id=-1)

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        made = template_trial if template_trial is not None else self._template()
        trial_id = self.base.create_new_trial(study_id, made)
        if template_trial is not None:  # added or enqueued: the next read shows it
            self.expire()
            return trial_id
        self.started = trial_id
        if self.rdb is not None:  # a trial this process runs
            self._study_id = study_id
            self._hold(trial_id, created_trial(self.base, study_id, trial_id))
        return trial_id

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

    def flush(self) -> None:
        """Write what is kept back of the trial, in one transaction."""
        with self._lock:
            trial_id = self._trial_id
            if trial_id is None or self.rdb is None:
                return
            beat = not self._flushed and self.get_heartbeat_interval() is not None
            if self._params or self._system or self._user or self._reports or beat:
                self.rdb.write(trial_id, params=self._params, system_attrs=self._system,
                               user_attrs=self._user, reports=self._reports, beat=beat)
                self.transactions += 1
                self._clear()
            if beat:
                self._beat_at = time.monotonic()
            self._flushed = True
            self._reports_at = time.monotonic()

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            if self._holds(trial_id) and self._copy is not None:
                return copy.deepcopy(self._copy)
            if self._finished is not None and self._finished[0] == trial_id:
                return copy.deepcopy(self._finished[1])
        return self.base.get_trial(trial_id)

    def expire(self) -> None:
        """The next read of all trials goes to the storage."""
        self._read_at.clear()

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        now = time.monotonic()
        trials = self._trials.get(study_id)
        if trials is None or now - self._read_at.get(study_id, -float("inf")) > self.window:
            trials = self.reader.get_all_trials(study_id, deepcopy=False)
            self._trials[study_id], self._read_at[study_id] = trials, now
            self.reads += 1
        else:
            self.shared += 1
        trials = self.history(trials) if self.history else trials  # (while bounded)
        if states is not None:
            trials = [t for t in trials if t.state in states]
        return copy.deepcopy(trials) if deepcopy else list(trials)

    # ----- writes: kept back where it runs the trial -------------------------------------
    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        key = (self._study_id, param_name)
        previous = self._checked.get(key)
        if not self._holds(trial_id) or previous is None:
            # The first time this process writes a parameter, the storage's write checks
            # it against the study's (a clash is refused as it is suggested); later, here.
            # (The RDB storage's own: Optuna's cache writes only trials it has read, and
            # this process reads through trial_cache.py.)
            writer = self.rdb.backend if self.rdb is not None else self.base
            writer.set_trial_param(trial_id, param_name, param_value_internal, distribution)
            if self._holds(trial_id):
                self._checked[key] = distribution
                self.keep(shown=Param(param_name, param_value_internal, distribution))
            return
        optuna.distributions.check_distribution_compatibility(previous, distribution)
        self.keep(param=Param(param_name, param_value_internal, distribution))

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        if self._holds(trial_id) and not self.training:
            self.keep(system_attrs={key: value})
            return
        # Not this process's trial; or, while it trains, a pruner's own records
        # (successive halving's rungs), for the other workers' pruners to see: written at
        # once (and shown in the copy).
        self.base.set_trial_system_attr(trial_id, key, value)
        with self._lock:
            if self._holds(trial_id) and self._copy is not None:
                self._copy.system_attrs[key] = value

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        if self._holds(trial_id):
            self.keep(user_attrs={key: value})
        else:
            self.base.set_trial_user_attr(trial_id, key, value)

    def set_trial_intermediate_value(self, trial_id: int, step: int,
                                     intermediate_value: float) -> None:
        if not self._holds(trial_id):
            self.base.set_trial_intermediate_value(trial_id, step, intermediate_value)
            return
        self.keep(reports={step: intermediate_value})
        if self.training and time.monotonic() - self._reports_at >= REPORT_WRITE_SECONDS:
            try:  # (kept back until a write takes them: none is lost)
                self.flush()
            except Exception as exc:
                self._reports_at = time.monotonic()
                logger.warning("trial id %d: reports not recorded yet (%s)", trial_id, exc)

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        if not self._holds(trial_id) or not state.is_finished():
            if state == TrialState.FAIL and self._fail_reason is not None:
                with contextlib.suppress(UpdateFinishedTrialError, RuntimeError):
                    self.base.set_trial_user_attr(trial_id, record.FAIL_REASON,
                                                  self._fail_reason)
            taken = self.base.set_trial_state_values(trial_id, state, values)
            self.expire()  # (a trial failed or taken here: the next read shows it)
            if taken and state == TrialState.RUNNING:  # a waiting trial, now run here
                self.started = trial_id
                if self.rdb is not None:
                    self._hold(trial_id, self.base.get_trial(trial_id))
            return taken
        assert self.rdb is not None
        with self._lock:  # the trial ends here: the rest of its writes go with its state
            params, system, user, reports = self._params, self._system, self._user, \
                self._reports
            own = self._copy
            assert own is not None
            number = own.number
            self._trial_id, self._copy, self._finished = None, None, None
            self.training = False
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
        own.state, own.datetime_complete = state, datetime.now()
        own.values = list(values) if values is not None else None
        self._finished = (trial_id, own)
        return True

    @contextlib.contextmanager
    def failing(self, reason: str) -> Iterator[None]:
        """Within: a trial this storage fails is given ``reason`` first."""
        self._fail_reason = reason
        try:
            yield
        finally:
            self._fail_reason = None

    # ----- the heartbeat ----------------------------------------------------------------
    def record_heartbeat(self, trial_id: int) -> None:
        """Optuna's heartbeat thread, at the trial's start and every interval after: the
        first beat goes with the trial's first writes, and a beat still finding them kept
        back (a sampler slower than a heartbeat interval) writes them."""
        with self._lock:
            kept = self._holds(trial_id) and not self._flushed  # its first writes, still
            if kept:
                self._beats += 1
                if self._beats == 1:
                    return
            elif self._holds(trial_id) \
                    and time.monotonic() - self._beat_at < _FRESH_BEAT_SECONDS:
                return  # the first writes carried a beat a moment ago
        if not kept:
            self.base.record_heartbeat(trial_id)  # type: ignore[attr-defined]
            return
        try:
            self.flush()
        except Exception as exc:  # (an error here would end Optuna's heartbeat thread)
            logger.warning("trial id %d: its first writes not recorded by its heartbeat (%s); "
                           "trying again at the next", trial_id, exc)

    def stale_trials(self, study_id: int) -> list[int]:
        now = time.monotonic()
        if now - self._stale_at < self.stale_every:
            return []  # (the last query's were failed by the call that made it)
        self._stale_at = now
        return stale_trial_ids(self.base, study_id)

