"""Optuna's RDB storage from the inside: its session and models (``rdb_of``), for the
writes of a running trial in one transaction, the trials by state in one COUNT, and the
trials read with one query per table (``RDB.read_trials``). See the package's note."""

from __future__ import annotations

import contextlib
import datetime
import functools
import gc
import json
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, distribution_to_json, json_to_distribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert


@dataclass
class Param:
    """A parameter's write, as ``storage.set_trial_param`` takes it (already checked
    against the study's distribution of it: ``worker_storage.WorkerStorage.set_trial_param``)."""

    name: str
    internal: float
    distribution: BaseDistribution


@dataclass(frozen=True)
class Outline:
    """What ``RDB.read_outline`` reads of a finished trial besides its number, state,
    times, values, params and system attributes (an unfinished one is read whole)."""

    keys: frozenset[str]  # the user attributes read


@dataclass
class RDB:
    """An RDB storage's parts for the one-transaction writes (see the module's note)."""

    backend: optuna.storages.RDBStorage
    models: Any
    session: Callable[..., Any]  # a transaction: commits on exit, rolls back on error
    dialect: str

    @functools.cached_property
    def utc(self) -> bool:
        """Whether times are stored as naive UTC (Optuna 4.3+), not naive local time."""
        return hasattr(self.models.TrialModel, "_datetime_start_utc")

    def local(self, moment: datetime.datetime | None) -> datetime.datetime | None:
        """A stored time as Optuna's trial model reads it: naive local time."""
        if moment is None or not self.utc:
            return moment
        return moment.replace(tzinfo=datetime.UTC).astimezone().replace(tzinfo=None)

    def stored(self, moment: datetime.datetime) -> datetime.datetime:
        """A naive local time as it is stored (``local``'s inverse), to compare in SQL."""
        return moment.astimezone(datetime.UTC).replace(tzinfo=None) if self.utc else moment

    @functools.cached_property
    def statements(self) -> dict[str, Any]:
        """Each write as one statement built once, run with a row per item (executemany):
        SQLAlchemy compiles it once (a multi-row VALUES was compiled anew each time,
        ~1 ms)."""
        m = self.models
        insert = sqlite_insert if self.dialect == "sqlite" else postgresql_insert

        def upsert(model: Any, keys: list[str], stmt: Any = None) -> Any:
            stmt = insert(model) if stmt is None else stmt
            columns = [c.name for c in model.__table__.columns
                       if c.name not in keys and not c.primary_key]
            return stmt.on_conflict_do_update(index_elements=keys,
                                              set_={c: stmt.excluded[c] for c in columns})

        trials, attrs = m.TrialModel.__table__, m.TrialUserAttributeModel.__table__
        studies = m.StudyModel.__table__
        marked = sqlalchemy.exists().where(attrs.c.trial_id == trials.c.trial_id,
                                           attrs.c.key == sqlalchemy.bindparam("unless"))
        return {
            "count": sqlalchemy.select(trials.c.state, sqlalchemy.func.count()).where(
                trials.c.study_id == sqlalchemy.select(studies.c.study_id).where(
                    studies.c.study_name == sqlalchemy.bindparam("study_name"))
                .scalar_subquery(), ~marked,
            ).group_by(trials.c.state),
            "state": sqlalchemy.select(trials.c.state).where(
                trials.c.trial_id == sqlalchemy.bindparam("trial_id")),
            "param": upsert(m.TrialParamModel, ["trial_id", "param_name"]),
            "system": upsert(m.TrialSystemAttributeModel, ["trial_id", "key"]),
            "user": upsert(m.TrialUserAttributeModel, ["trial_id", "key"]),
            "report": upsert(m.TrialIntermediateValueModel, ["trial_id", "step"]),
            "value": upsert(m.TrialValueModel, ["trial_id", "objective"]),
            "beat": upsert(m.TrialHeartbeatModel, ["trial_id"], insert(
                m.TrialHeartbeatModel).values(trial_id=sqlalchemy.bindparam("trial_id"),
                                              heartbeat=sqlalchemy.func.now())),
            "finish": trials.update().where(
                trials.c.trial_id == sqlalchemy.bindparam("id"),
                trials.c.state == TrialState.RUNNING).values(
                state=sqlalchemy.bindparam("state"),
                datetime_complete=sqlalchemy.bindparam("complete")),
        }

    def count_by_state(self, study_name: str, unless: str) -> dict[TrialState, int]:
        """The study's trials by state, those with the user attribute ``unless`` left
        out, in one COUNT query (the trial and attribute tables). Under the trial lock
        this replaced a read of every changed trial (~4.6 ms of a small trial's ~7 ms
        there: with two workers the lock was held two thirds of the time)."""
        with self.session() as s:
            rows = s.connection().execute(self.statements["count"], {
                "study_name": study_name, "unless": unless}).all()
        return {state if isinstance(state, TrialState) else TrialState[state]: n
                for state, n in rows}

    def read_trials(self, study_id: int, after: int = -1, also: Iterable[int] = (),
                    states: Iterable[TrialState] | None = None,
                    ids: Iterable[int] | None = None) -> list[tuple[int, FrozenTrial]]:
        """The study's trials whose id is above ``after`` or in ``also`` (and whose state
        is one of ``states``, if given; and whose id is in ``ids``, if given), in id
        order, with their ids, as ``get_all_trials`` builds them: one query per table with no ORM
        objects, each distribution parsed once, and Python's cycle collector paused (it
        ran over the growing heap again and again: a third of the time). Optuna's loads
        every row as an object and parses each parameter's distribution twice: 10,000
        trials took 13 s, here ~1 s. The queries are not one snapshot: a child row of a
        trial created meanwhile is left out, and a trial read as unfinished gets no
        values (its next read has them)."""
        with _collector_paused():
            return self._read_trials(study_id, after, also, states, ids=ids)

    def read_outline(self, study_id: int, outline: Outline) -> list[tuple[int, FrozenTrial]]:
        """Every trial of the study with its id, in id order, as ``read_trials`` reads
        them, but the finished ones only in ``outline``: for a command that shows some of
        what they hold (``status``, ``trials``); never to be kept or handed to Optuna."""
        with _collector_paused():
            return self._read_trials(study_id, -1, (), None, outline)

    def _read_trials(self, study_id: int, after: int, also: Iterable[int],
                     states: Iterable[TrialState] | None, outline: Outline | None = None,
                     ids: Iterable[int] | None = None) -> list[tuple[int, FrozenTrial]]:
        m = self.models
        trials = m.TrialModel.__table__
        which = trials.c.study_id == study_id
        also = sorted(set(also))
        if after >= 0 or also:
            which = sqlalchemy.and_(which, sqlalchemy.or_(
                trials.c.trial_id > after, trials.c.trial_id.in_(also)))
        if states is not None:
            which = sqlalchemy.and_(which, trials.c.state.in_(list(states)))
        if ids is not None:
            which = sqlalchemy.and_(which, trials.c.trial_id.in_(sorted(set(ids))))
        ids = sqlalchemy.select(trials.c.trial_id).where(which).scalar_subquery()
        found: dict[int, dict[str, Any]] = {}
        distribution = functools.cache(json_to_distribution)
        local = self.local
        with self.session() as s:
            conn = s.connection()
            for tid, number, state, start, complete in conn.execute(sqlalchemy.select(
                    trials.c.trial_id, trials.c.number, trials.c.state,
                    trials.c.datetime_start, trials.c.datetime_complete).where(which)):
                found[tid] = {
                    "number": number, "state": state if isinstance(state, TrialState)
                    else TrialState[state], "value": None, "values": None,
                    "datetime_start": local(start), "datetime_complete": local(complete),
                    "params": {},
                    "distributions": {}, "user_attrs": {}, "system_attrs": {},
                    "intermediate_values": {}, "trial_id": tid}

            def rows(model: Any, *columns: Any, order: str | None = None,
                     where: Any = None) -> list[Any]:
                table = model.__table__
                query = sqlalchemy.select(table.c.trial_id, *(
                    table.c[c] if isinstance(c, str) else c for c in columns)) \
                    .where(table.c.trial_id.in_(ids))
                if where is not None:
                    query = query.where(where)
                if order:
                    query = query.order_by(table.c[order])
                return [r for r in conn.execute(query).all() if r[0] in found]

            values: dict[int, dict[int, float]] = {}
            for tid, objective, value, kind in rows(m.TrialValueModel, "objective", "value",
                                                    "value_type"):
                values.setdefault(tid, {})[objective] = \
                    m.TrialValueModel.stored_repr_to_value(value, kind)
            for tid, by_objective in values.items():
                if found[tid]["state"].is_finished():
                    found[tid]["values"] = [by_objective[i] for i in range(len(by_objective))]
            # (an outline reads these whole: the trials read as unfinished, by id, so that
            # one that ends meanwhile is read as the state it is shown in)
            unfinished = [] if outline is None else sorted(
                tid for tid, f in found.items() if not f["state"].is_finished())
            for tid, name, value, text in rows(
                    m.TrialParamModel, "param_name", "param_value", "distribution_json",
                    order="param_id"):
                dist = distribution(text)
                found[tid]["params"][name] = dist.to_external_repr(value)
                found[tid]["distributions"][name] = dist
            for model, key in ((m.TrialUserAttributeModel, "user_attrs"),
                               (m.TrialSystemAttributeModel, "system_attrs")):
                table = model.__table__
                if outline is None or key == "system_attrs":
                    attrs = rows(model, "key", "value_json")
                else:  # (the keys asked for; all of an unfinished trial's)
                    attrs = rows(model, "key", "value_json", where=sqlalchemy.or_(
                        table.c.key.in_(sorted(outline.keys)),
                        table.c.trial_id.in_(unfinished)))
                # one decode of them all: a call per value cost more than the decoding
                decoded = json.loads("[" + ",".join(text for _, _, text in attrs) + "]")
                for (tid, name, _), value in zip(attrs, decoded, strict=True):
                    found[tid][key][name] = value
            reported = m.TrialIntermediateValueModel.stored_repr_to_intermediate_value
            reports = m.TrialIntermediateValueModel.__table__
            for tid, step, value, kind in rows(
                    m.TrialIntermediateValueModel, "step", "intermediate_value",
                    "intermediate_value_type", where=None if outline is None else
                    reports.c.trial_id.in_(unfinished)):
                found[tid]["intermediate_values"][step] = reported(value, kind)
        return [(tid, FrozenTrial(**found[tid])) for tid in sorted(found)]

    def write(self, trial_id: int, *, params: list[Param] | None = None,
              system_attrs: dict[str, Any] | None = None,
              user_attrs: dict[str, Any] | None = None,
              reports: dict[int, float] | None = None, beat: bool = False,
              state: TrialState | None = None,
              values: Sequence[float] | None = None) -> None:
        """All of these writes on the running trial in one transaction, with its final
        ``state`` and ``values`` last if given (as ``storage.set_trial_state_values``
        writes them; UpdateFinishedTrialError if another process ended the trial first,
        and nothing is written). ``beat`` is the trial's first heartbeat. Each kind is
        one statement run once per row; each is an upsert, so a write retried after a
        commit whose answer was lost stores the same."""
        models, backend, st = self.models, self.backend, self.statements
        with self.session(ignore_integrity_error=False) as s:
            conn = s.connection()
            # The trial must still be running (on PostgreSQL locked for the state change,
            # as Optuna locks it; the finish below checks again, in its own statement).
            ask = st["state"].with_for_update() if state is not None else st["state"]
            found = conn.execute(ask, {"trial_id": trial_id}).scalar_one_or_none()
            if found is None:
                raise KeyError(f"no trial with trial_id {trial_id}")
            backend.check_trial_is_updatable(trial_id, TrialState[found]
                                             if isinstance(found, str) else found)
            rows: dict[str, list[dict[str, Any]]] = {"param": [
                {"trial_id": trial_id, "param_name": p.name, "param_value": p.internal,
                 "distribution_json": distribution_to_json(p.distribution)}
                for p in params or ()]}
            for kind, attrs in (("system", system_attrs), ("user", user_attrs)):
                rows[kind] = [{"trial_id": trial_id, "key": key, "value_json": json.dumps(v)}
                              for key, v in (attrs or {}).items()]
            rows["report"] = []
            for step, value in (reports or {}).items():
                stored, kind = models.TrialIntermediateValueModel \
                    .intermediate_value_to_stored_repr(value)
                rows["report"].append({"trial_id": trial_id, "step": step,
                                       "intermediate_value": stored,
                                       "intermediate_value_type": kind})
            rows["beat"] = [{"trial_id": trial_id}] if beat else []
            rows["value"] = []
            for objective, value in enumerate(values or () if state else ()):
                stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                rows["value"].append({"trial_id": trial_id, "objective": objective,
                                      "value": stored, "value_type": kind})
            for kind, items in rows.items():
                if items:
                    conn.execute(st[kind], items)
            if state is not None:  # as RDBStorage.set_trial_state_values, for a finish
                assert state.is_finished()
                # (stored as naive UTC, as Optuna's trial model stores its times)
                complete = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
                finished = conn.execute(st["finish"], {"id": trial_id, "state": state,
                                                       "complete": complete})
                if finished.rowcount != 1:  # ended meanwhile (the check above is no lock
                    raise UpdateFinishedTrialError(  # on SQLite): the rest rolls back
                        f"trial id {trial_id} was ended by another process")


_PAUSES = {"count": 0, "was_on": False}  # reads that paused the cycle collector, and its state
_PAUSES_LOCK = threading.Lock()


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off within, and back as it was once the last of several
    threads' pauses ends."""
    with _PAUSES_LOCK:
        if _PAUSES["count"] == 0:
            _PAUSES["was_on"] = gc.isenabled()
            gc.disable()
        _PAUSES["count"] += 1
    try:
        yield
    finally:
        with _PAUSES_LOCK:
            _PAUSES["count"] -= 1
            if _PAUSES["count"] == 0 and _PAUSES["was_on"]:
                gc.enable()


_RDBS: weakref.WeakKeyDictionary[optuna.storages.RDBStorage, RDB] = \
    weakref.WeakKeyDictionary()  # one per storage: its statements are built once


def rdb_of(storage: optuna.storages.BaseStorage) -> RDB | None:
    """The RDB parts of ``storage`` (an RDB storage, or Optuna's cache in front of one),
    or None where the one-transaction writes do not apply or their names have moved."""
    backend = getattr(storage, "_backend", storage)
    if not isinstance(backend, optuna.storages.RDBStorage):
        return None
    if backend in _RDBS:
        return _RDBS[backend]
    try:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session
    except ImportError:
        return None
    session_maker = getattr(backend, "scoped_session", None)
    dialect = backend.engine.name
    if session_maker is None or dialect not in ("sqlite", "postgresql") or (
            dialect == "sqlite" and sqlite3.sqlite_version_info < (3, 24, 0)) \
            or not all(hasattr(models, name) for name in (
                "StudyModel", "TrialModel", "TrialUserAttributeModel", "TrialSystemAttributeModel",
                "TrialIntermediateValueModel", "TrialHeartbeatModel", "TrialParamModel",
                "TrialValueModel")) or not hasattr(backend, "check_trial_is_updatable"):
        return None

    def session(ignore_integrity_error: bool = True) -> Any:
        return _create_scoped_session(session_maker, ignore_integrity_error)

    rdb = _RDBS[backend] = RDB(backend, models, session, dialect)
    return rdb

