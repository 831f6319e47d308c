"""The sweeps: trials no live worker runs any more are failed, with the reason, and
retried. A stale heartbeat (Optuna's sweep), a worker of this host that is gone, or no
worker at all. Workers sweep when every slot is taken; ``run``'s supervisor sweeps as
it watches."""

from __future__ import annotations

import contextlib
import time

from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from . import record
from .study import OpenStudy
from .trial_lock import TrialLock, locked


def fail_trials(opened: OpenStudy, trials: list[FrozenTrial], reason: str,
                retry: record.Retry | None) -> None:
    """Fail these RUNNING trials with ``reason``, and retry each one this process failed."""
    storage = opened.storage
    study_id = storage.get_study_id_from_name(opened.study.study_name)
    for t in trials:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            storage.set_trial_user_attr(trial_id, record.FAIL_REASON, reason)
            failed = storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except (UpdateFinishedTrialError, RuntimeError):
            continue  # its worker, or another sweeper, ended it after all
        if failed and retry is not None:  # only the process that failed it retries it
            retry(opened.study, storage.get_trial(trial_id))


UNCLAIMED_GRACE = 60.0  # seconds a RUNNING trial may go without a worker recording itself


def fail_orphans(opened: OpenStudy, retry: record.Retry, seen: dict[int, float]) -> int:
    """Fail and retry the RUNNING trials that no live worker owns: a worker of this host
    that is gone (killed, a power cut; the one that created the trial, until training
    starts), or none recorded as running it for ``UNCLAIMED_GRACE`` seconds of this
    process's clock (its worker, elsewhere, died before training, or before recording
    itself). ``seen`` keeps when each unclaimed trial was first seen, across calls.
    Heartbeats catch the rest on SQLite and PostgreSQL. Returns how many it failed."""
    now = time.monotonic()
    orphans: dict[str, list[FrozenTrial]] = {}
    unclaimed = set()
    for t in opened.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        held = record.holder(t)
        if held is not None and record.owner_gone(*held):
            started = "" if record.WORKER in t.user_attrs else " before the trial trained"
            orphans.setdefault(f"its worker {held[0]} is gone{started}", []).append(t)
        elif record.WORKER not in t.user_attrs:  # its worker elsewhere, or none recorded
            unclaimed.add(t.number)
            if now - seen.setdefault(t.number, now) > UNCLAIMED_GRACE:
                orphans.setdefault("no worker took it up (its worker died first)", []).append(t)
    for number in set(seen) - unclaimed:
        del seen[number]
    for reason, trials in orphans.items():
        fail_trials(opened, trials, reason, retry)
    return sum(map(len, orphans.values()))


STALE_REASON = "its heartbeat stopped (its worker hung, or lost the storage, or died elsewhere)"


def fail_stale(opened: OpenStudy) -> None:
    """Optuna's sweep of stale heartbeats (``fail_stale_trials``, which retries what it
    fails), each trial it fails given its ``fail_reason`` first where the study is a
    worker's (a sweep from elsewhere records none): every failed trial says why."""
    storage = opened.worker_storage
    with storage.failing(STALE_REASON) if storage is not None else contextlib.nullcontext():
        fail_stale_trials(opened.study)


def sweep(opened: OpenStudy, retry: record.Retry, seen: dict[int, float],
          lock: TrialLock | None, wait: bool = True) -> bool:
    """Fail (and retry) the trials no live worker owns: a stale heartbeat, a worker of
    this host that is gone, or none at all. Under the trial lock, so that no count falls
    between a trial's failure and its retry (it would see neither, and free a slot);
    without ``wait``, only if the lock is free. Whether it swept."""
    with locked(lock, wait) as held:
        if held:
            fail_stale(opened)
            fail_orphans(opened, retry, seen)
        return held
