"""The workers of a running study, as ``nnsearch status`` shows them (issue #27): what
users of many workers ask for and optuna-dashboard does not show.

- **Each worker** running a trial: its ``host:pid``, the trial, the last step it
  reported (an epoch of the folds' mean curve; a fold with the Wilcoxon pruner; reports
  reach the storage every few seconds), how long the trial has run, and its heartbeat's
  age (RDB storages: ``_optuna.heartbeat_ages``; a heartbeat older than a few
  intervals is a worker that is gone, whose trial a sweep fails and retries).
- **Trials per minute**: the trials finished in the last ``WINDOW_MINUTES`` (or since the
  study's first start, if later), per minute.
- **Retries and failures**: retried trials (a dead or stopped worker's trial, run again:
  a worker restart shows as one), failed trials, and the last failure's reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from . import record
from ._optuna import Tally

WINDOW_MINUTES = 5.0


@dataclass
class Running:
    worker: str  # host:pid, or "?" when no worker has claimed it
    trial: int
    step: int | None  # the last step it reported
    running_s: float
    heartbeat_age_s: float | None  # None: not known (no heartbeat yet, or another storage)


@dataclass
class Fleet:
    running: list[Running] = field(default_factory=list)
    per_minute: float = 0.0
    minutes: float = 0.0  # the window it is measured over
    retried: int = 0
    failed: int = 0
    last_failure: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"workers": [vars(r) for r in self.running],
                "trials_per_minute": round(self.per_minute, 2),
                "over_minutes": round(self.minutes, 2), "retried": self.retried,
                "failed": self.failed, "last_failure": self.last_failure}


def fleet_of(trials: list[FrozenTrial], ages: dict[int, float] | None,
             now: datetime | None = None, tally: Tally | None = None) -> Fleet:
    """The fleet as the trials show it; ``ages``: heartbeat ages by trial number;
    ``tally``: what is counted over all the trials, where ``trials`` are not all of them
    (``_optuna.census``: then they hold the unfinished ones and the last failure)."""
    now = now or datetime.now()
    since = now - timedelta(minutes=WINDOW_MINUTES)
    tally = tally or tally_of(trials, since)
    fleet = Fleet(retried=tally.retried, failed=tally.failed)
    for t in trials:
        if t.state == TrialState.RUNNING:
            held = record.holder(t)
            fleet.running.append(Running(
                held[0] if held else "?", t.number, t.last_step,
                round((now - t.datetime_start).total_seconds(), 1) if t.datetime_start
                else 0.0, None if ages is None or t.number not in ages
                else round(ages[t.number], 1)))
        if t.number == tally.last_failed:
            fleet.last_failure = f"trial {t.number}: " + str(
                t.user_attrs.get(record.FAIL_REASON) or "no reason recorded")
    if tally.first_start is not None:
        # (the window, or since the first start if later: every trial finished after it)
        minutes = min(WINDOW_MINUTES, (now - tally.first_start).total_seconds() / 60)
        fleet.per_minute = tally.finished_since / minutes if minutes > 0 else 0.0
        fleet.minutes = minutes
    fleet.running.sort(key=lambda r: (r.worker, r.trial))
    return fleet


def tally_of(trials: list[FrozenTrial], since: datetime) -> Tally:
    """``_optuna.census.tally``, counted over ``trials`` (all of a study's)."""
    failed = [t for t in trials if t.state == TrialState.FAIL
              and record.SURPLUS not in t.user_attrs]
    last = max(failed, key=lambda t: t.datetime_complete or datetime.min, default=None)
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    return Tally(
        retried=sum(1 for t in trials if record.first_try(t) != t.number),
        failed=len(failed), last_failed=None if last is None else last.number,
        first_start=min(starts, default=None),
        finished_since=sum(1 for t in trials if t.state in (TrialState.COMPLETE,
                                                             TrialState.PRUNED)
                           and t.datetime_complete is not None
                           and t.datetime_complete >= since),
        skipped=sorted(t.number for t in trials if t.state == TrialState.COMPLETE
                       and not record.written_by_worker(t) and not record.is_prior(t)))
