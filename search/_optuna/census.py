"""What ``status`` shows of a study, asked of the RDB's tables without reading every trial
(issue #27: at 10,000 trials a read of them all, even in outline, was most of its time).

- ``tally``: what it counts over all the trials, in SQL: the retried ones (Optuna's retry
  callback names the first try in a system attribute), the failures (and which ended
  last), the first start, those finished since a moment, and the completed trials that
  no worker wrote (shown as skipped).
- ``shortlist``: the trials whose contents it shows or weighs, read whole: the ``top``
  best completed by the first objective (and every one tied with the last of them: the
  export breaks ties by validation loss), the same of those holding a system attribute
  (``FIXED_PARAMS``: the starting points), the unfinished ones, and some by number.

The best worker-written trial is among the shortlist unless none of the top ones is
one (then the caller reads them all): every trial left out has a worse value; the same
holds of the starting points.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from .rdb import RDB

RETRIED_FROM = "failed_trial"  # where Optuna's retry callback names the trial retried


@dataclass
class Tally:
    """What ``status`` counts over all of a study's trials."""

    retried: int = 0
    failed: int = 0  # failed trials, a race's surplus left out
    last_failed: int | None = None  # the number of the failure that ended last
    first_start: datetime.datetime | None = None  # naive local time
    finished_since: int = 0  # completed or pruned at or after the moment asked
    skipped: list[int] = field(default_factory=list)  # completed, not written by a worker


def tally(rdb: RDB, study_id: int, since: datetime.datetime, result_keys: Iterable[str],
          surplus: str, prior: str) -> Tally:
    """``Tally`` by SQL: ``since`` a naive local time; a trial is worker-written when it
    holds every user attribute in ``result_keys``, ``surplus`` marks a race's failure that
    never ran, and ``prior`` a trial copied from another study."""
    m = rdb.models
    trials = m.TrialModel.__table__
    user, system = m.TrialUserAttributeModel.__table__, m.TrialSystemAttributeModel.__table__
    keys = sorted(set(result_keys))

    def holds(table: Any, key: str) -> Any:
        return sqlalchemy.exists().where(table.c.trial_id == trials.c.trial_id,
                                         table.c.key == key)

    ours = trials.c.study_id == study_id
    done = trials.c.state.in_([TrialState.COMPLETE, TrialState.PRUNED])
    written = sqlalchemy.select(sqlalchemy.func.count()).where(
        user.c.trial_id == trials.c.trial_id, user.c.key.in_(keys)).scalar_subquery()
    with rdb.session() as s:
        conn = s.connection()
        retried, first, finished = conn.execute(sqlalchemy.select(
            sqlalchemy.func.count().filter(holds(system, RETRIED_FROM)),
            sqlalchemy.func.min(trials.c.datetime_start),
            sqlalchemy.func.count().filter(sqlalchemy.and_(
                done, trials.c.datetime_complete >= rdb.stored(since))),
        ).where(ours)).one()
        failures = conn.execute(sqlalchemy.select(
            trials.c.number, trials.c.datetime_complete).where(
            ours, trials.c.state == TrialState.FAIL, ~holds(user, surplus))
            .order_by(trials.c.trial_id)).all()
        skipped = conn.execute(sqlalchemy.select(trials.c.number).where(
            ours, trials.c.state == TrialState.COMPLETE, written < len(keys),
            ~holds(user, prior)).order_by(trials.c.number)).scalars().all()
    last = max(failures, key=lambda f: f[1] or datetime.datetime.min, default=None)
    return Tally(retried, len(failures), None if last is None else last[0],
                 rdb.local(first), finished, list(skipped))


@dataclass
class Shortlist:
    """``shortlist``'s trials, and the ids of its best completed ones and of the best
    completed holding the mark (each with every trial tied with its last), and whether
    some completed ones holding the mark were left out."""

    trials: list[tuple[int, FrozenTrial]]
    best: set[int]
    marked: set[int]
    cut: bool


def shortlist(rdb: RDB, study_id: int, sign: float, top: int, marked: str | None = None,
              numbers: Iterable[int] = ()) -> Shortlist:
    """The trials named in the module's note, read whole, in id order, with their ids
    (``sign``: 1 when the first objective is minimised, -1 maximised)."""
    m = rdb.models
    trials, values = m.TrialModel.__table__, m.TrialValueModel.__table__
    system = m.TrialSystemAttributeModel.__table__
    kind = m.TrialValueModel.TrialValueType
    # Optuna's order of values (find_min_value_trial_id): -inf, finite, +inf
    rank = sqlalchemy.case((values.c.value_type == kind.INF_NEG, -sign),
                           (values.c.value_type == kind.INF_POS, sign), else_=0)
    ours = trials.c.study_id == study_id
    complete = sqlalchemy.select(trials.c.trial_id, rank.label("rank"), values.c.value) \
        .join(values, values.c.trial_id == trials.c.trial_id) \
        .where(ours, trials.c.state == TrialState.COMPLETE, values.c.objective == 0)
    order = values.c.value if sign > 0 else values.c.value.desc()
    with rdb.session() as s:
        conn = s.connection()

        def best(query: Any) -> tuple[set[int], bool]:  # (and whether some were left out)
            found = conn.execute(query.order_by(rank, order, trials.c.number)
                                 .limit(top + 1)).all()
            ids = {tid for tid, _, _ in found[:top]}
            if len(found) <= top:
                return ids, False
            _, last_rank, last_value = found[top - 1]  # (and every trial tied with it)
            ids.update(conn.execute(query.where(
                rank == last_rank, values.c.value.is_(None) if last_value is None
                else values.c.value == last_value)).scalars().all())
            return ids, True

        chosen, _ = best(complete)
        held, cut = best(complete.where(sqlalchemy.exists().where(
            system.c.trial_id == trials.c.trial_id, system.c.key == marked))) \
            if marked is not None else (set(), False)
        others = conn.execute(sqlalchemy.select(trials.c.trial_id).where(ours, sqlalchemy.or_(
            trials.c.state.in_([TrialState.RUNNING, TrialState.WAITING]),
            trials.c.number.in_(sorted(set(numbers)))))).scalars().all()
    return Shortlist(rdb.read_trials(study_id, ids=chosen | held | set(others)), chosen,
                     held, cut)
