"""Every private Optuna name nnsearch uses, behind a function with a public fallback.

A private path is kept only where a bench measured that it saves at least 1% of a
trial, or where no public name exists. Nine are in use:

- the logger Optuna reports a failed trial on, which lets ``quiet_failed_trials``
  drop expected failures wherever Optuna's records go; its fallback filters the
  handlers of the public ``optuna`` logger (Optuna's own output);
- ``RDB.write`` (``rdb_of``): many writes on a running trial in one RDB transaction
  (RDBStorage's session and its trial, parameter, value, attribute, intermediate-value
  and heartbeat models: one lookup of the trial, then one prepared upsert per kind, run
  once per row, on SQLite and PostgreSQL, and the final state as
  ``set_trial_state_values`` writes it, only on a trial still running; a parameter is
  kept back once Optuna's own write of it has checked it against the study's).
  ``write_record`` writes a trial's ~17 result attributes so, instead of one commit per
  key through
  ``trial.set_user_attr``. On a default-study digits trial of ~2 s that saves 0.1-0.5%
  (``bench/internals.py``), but a small table's trial trains for ~15 ms, and there the
  per-key commits were a fifth of its overhead (``bench/tiny.py``). ``own_trial.py``
  writes a whole trial in two (from 13 commits: 40 -> 28 ms per small trial). The
  fallback is Optuna's public write per change (other storages, or if the names move);
- ``throttle_stale_checks``: Optuna's query for stale heartbeats, asked before every
  trial (``_get_stale_trial_ids``, ~0.7 ms: 2.5% of a small trial), made at most once
  a second. Its fallback is a query per trial;
- ``count_by_state``: the trials by state in one COUNT query, under the trial lock
  (a read of the changed trials took 4.6 ms there: with two workers on a small table
  the lock was held two thirds of the time). Its fallback counts a read;
- ``note_saver``: optuna-dashboard's ``save_note`` loaded from its module alone, not
  through the package's ``__init__`` (its web app, scikit-learn and SciPy: ~1.1 s of
  CPU in ``create`` and beside ``run``'s first trials). Its fallback is the import;
- ``on_created_trials``: the trial as ``RDBStorage._create_new_trial`` made it, for the
  trial ``own_trial.OwnTrial`` keeps (Optuna read it back at once, ~2 ms). Its
  fallback is no ``OwnTrial``;
- ``defer_report``: a trial's reported value put where ``trial.should_prune`` looks
  (``Trial._cached_frozen_trial``, as ``trial.report`` does), its write left to the
  trial's next one-transaction write (the same RDB models): a small table's
  trial reports every few ms, and each report was a commit (~12% of its wall time,
  ``bench/tiny.py``). Its fallback is ``trial.report``;
- how a constraint is named among a trial's system attributes (``constraints:NAME``):
  no public API writes constraints into a trial made with ``create_trial`` (a prior)
  or strips them from a retried one. Its fallback is the name Optuna 5.0 uses;
- ``study_storage``: the storage object a study reads its trials through
  (``Study._storage``), on which a worker installs ``shared_reads.SharedReads``: Optuna
  read all trials ~7 times per trial, and on a small table's trial those reads were a
  third of its wall time (``bench/tiny.py``). Its fallback is no sharing.

``private_names_in_use()`` checks each private name live, and
``tests/search/test_optuna_contract.py`` fails when one moves.
"""

from __future__ import annotations

import datetime
import functools
import importlib.util
import json
import logging
import sqlite3
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

# Where Optuna logs "Trial N failed ..." with the traceback (optuna/study/_optimize.py).
_FAILED_TRIAL_LOGGER = "optuna.study._optimize"


class _Drop(logging.Filter):
    def __init__(self, expected: Callable[[str], bool]) -> None:
        super().__init__()
        self.expected = expected

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.expected(record.getMessage())


def quiet_failed_trials(expected: Callable[[str], bool]) -> None:
    """Drop Optuna's "Trial N failed" warnings (with traceback) whose message is
    ``expected``: a failure nnsearch caused on purpose and records on the trial."""
    drop = _Drop(expected)
    logging.getLogger(_FAILED_TRIAL_LOGGER).addFilter(drop)
    for handler in logging.getLogger("optuna").handlers:  # the fallback, if the name moves
        handler.addFilter(drop)


class _OneLine(logging.Filter):
    def __init__(self, short: Callable[[BaseException], bool]) -> None:
        super().__init__()
        self.short = short

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and self.short(exc):
            lines = record.getMessage().splitlines()
            record.msg, record.args = (lines[0] if lines else "") + " ...", ()
            record.exc_info, record.exc_text = None, None
        return True


def one_line_failures(short: Callable[[BaseException], bool]) -> None:
    """Optuna's "Trial N failed" warning in one line, without its traceback, when its
    exception is ``short`` (a storage that went away: the trial is failed and retried,
    and the traceback says nothing the line does not)."""
    one_line = _OneLine(short)
    logging.getLogger(_FAILED_TRIAL_LOGGER).addFilter(one_line)
    for handler in logging.getLogger("optuna").handlers:  # the fallback, if the name moves
        handler.addFilter(one_line)


def write_record(trial: optuna.Trial, attrs: dict[str, Any],
                 reports: dict[int, float] | None = None) -> None:
    """Write all of ``attrs`` on the running ``trial``, and the intermediate values
    ``defer_report`` kept back (``reports``, emptied once written): in one transaction
    on an RDB storage (see the module's note), else one public write per key."""
    reports = {} if reports is None else reports
    rdb = rdb_of(trial.storage)
    if (attrs or reports) and rdb is not None:
        rdb.write(trial._trial_id, user_attrs=attrs, reports=reports)
        reports.clear()
        return
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    assert not reports, "defer_report keeps values back only where they can be written"


def defer_report(trial: optuna.Trial, value: float, step: int) -> bool:
    """``trial.report(value, step)`` as the pruner sees it (in the trial's own copy,
    where ``trial.should_prune`` looks), its storage write left to ``write_record``;
    False (nothing done: report it) where that private path does not apply."""
    own = getattr(trial, "_cached_frozen_trial", None)
    if own is None or rdb_of(trial.storage) is None or step in own.intermediate_values \
            or len(trial.study.directions) > 1:
        return False
    own.intermediate_values[int(step)] = float(value)
    return True


@dataclass
class Param:
    """A parameter's write, as ``storage.set_trial_param`` takes it (already checked
    against the study's distribution of it: ``own_trial.OwnTrial.set_trial_param``)."""

    name: str
    internal: float
    distribution: BaseDistribution


@dataclass
class RDB:
    """An RDB storage's parts for the one-transaction writes (see the module's note)."""

    backend: optuna.storages.RDBStorage
    models: Any
    session: Callable[..., Any]  # a transaction: commits on exit, rolls back on error
    dialect: str

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
        marked = sqlalchemy.exists().where(attrs.c.trial_id == trials.c.trial_id,
                                           attrs.c.key == sqlalchemy.bindparam("unless"))
        return {
            "count": sqlalchemy.select(trials.c.state, sqlalchemy.func.count()).where(
                trials.c.study_id == sqlalchemy.bindparam("study_id"), ~marked,
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


_RDB_ATTR = "nnsearch_rdb"  # one RDB per storage, kept on it: its statements built once


def rdb_of(storage: optuna.storages.BaseStorage) -> RDB | None:
    """The RDB parts behind ``storage`` (Optuna wraps an RDB storage in a cache), or None
    where the one-transaction writes do not apply or their names have moved."""
    backend = getattr(storage, "_backend", storage)
    known = vars(backend).get(_RDB_ATTR)
    if isinstance(known, RDB):
        return known
    try:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session
    except ImportError:
        return None
    if not isinstance(backend, optuna.storages.RDBStorage):
        return None
    session_maker = getattr(backend, "scoped_session", None)
    dialect = backend.engine.name
    if session_maker is None or dialect not in ("sqlite", "postgresql") or (
            dialect == "sqlite" and sqlite3.sqlite_version_info < (3, 24, 0)) \
            or not all(hasattr(models, name) for name in (
                "TrialModel", "TrialUserAttributeModel", "TrialSystemAttributeModel",
                "TrialIntermediateValueModel", "TrialHeartbeatModel", "TrialParamModel",
                "TrialValueModel")) or not hasattr(backend, "check_trial_is_updatable"):
        return None

    def session(ignore_integrity_error: bool = True) -> Any:
        return _create_scoped_session(session_maker, ignore_integrity_error)

    rdb = RDB(backend, models, session, dialect)
    setattr(backend, _RDB_ATTR, rdb)
    return rdb


def on_created_trials(storage: optuna.storages.BaseStorage,
                      created: Callable[[int, int, FrozenTrial], None],
                      template: Callable[[], FrozenTrial | None] | None = None,
                      ) -> Callable[[], None] | None:
    """Call ``created`` with each trial this process creates through ``storage``: its
    study id, its trial id, and the trial as the RDB storage made it
    (``RDBStorage._create_new_trial``, which Optuna's cache calls). A new trial (not one
    enqueued) is made from ``template()`` where given: Optuna's own way of creating a
    trial with attributes, in the creation's transaction. Returns the undo, or None
    where that name has moved."""
    rdb = rdb_of(storage)
    make = getattr(rdb.backend, "_create_new_trial", None) if rdb is not None else None
    if rdb is None or make is None:
        return None
    backend = rdb.backend

    def create(study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        if template_trial is None and template is not None:
            template_trial = template()
        frozen = make(study_id, template_trial)
        created(study_id, frozen._trial_id, frozen)
        return frozen

    backend._create_new_trial = create  # type: ignore[method-assign]

    def undo() -> None:
        backend.__dict__.pop("_create_new_trial", None)

    return undo


def throttle_stale_checks(storage: optuna.storages.BaseStorage,
                          window: float) -> Callable[[], None] | None:
    """Optuna's optimize asks the storage for stale trials (a query) before every trial;
    answer the asks within ``window`` seconds of the last query with none (that query's
    were failed by the call that made it). A heartbeat goes stale only after a grace of
    several intervals (nnsearch: three), so this delays no sweep that matters. Returns
    the undo, or None where the name (``_get_stale_trial_ids``) has moved: every ask
    queries."""
    query = getattr(storage, "_get_stale_trial_ids", None)
    if query is None:
        return None
    last = [-float("inf")]

    def stale_trial_ids(study_id: int) -> list[int]:
        now = time.monotonic()
        if now - last[0] < window:
            return []
        last[0] = now
        return list(query(study_id))

    storage._get_stale_trial_ids = stale_trial_ids  # type: ignore[attr-defined]

    def undo() -> None:
        storage.__dict__.pop("_get_stale_trial_ids", None)

    return undo


def count_by_state(study: optuna.Study, unless: str) -> dict[TrialState, int] | None:
    """The study's trials by state, those with the user attribute ``unless`` left out,
    in one COUNT query (the trial and attribute tables); None where that does not
    apply or has moved (count a read of the trials). Under the trial lock this replaced
    a read of every changed trial (~4.6 ms of a small trial's ~7 ms there: with two
    workers the lock was held two thirds of the time)."""
    storage = study_storage(study)
    rdb = rdb_of(storage) if storage is not None else None
    study_id = getattr(study, "_study_id", None)
    if rdb is None or study_id is None:
        return None
    query = rdb.statements["count"]
    with rdb.session() as s:
        rows = s.connection().execute(query, {"study_id": study_id, "unless": unless}).all()
    return {state if isinstance(state, TrialState) else TrialState[state]: n
            for state, n in rows}


@functools.cache
def note_saver() -> Callable[[optuna.Study, str], None]:
    """optuna-dashboard's ``save_note``, loaded from its own module alone
    (``optuna_dashboard/_note.py``, which imports only Optuna): the package's
    ``__init__`` imports its whole web app, and with it scikit-learn and SciPy (through
    Optuna's importance module), ~1.1 s of CPU that ``run`` spent beside its first
    trials. Its fallback is the public import."""
    try:
        package = importlib.util.find_spec("optuna_dashboard")
        assert package is not None and package.submodule_search_locations
        path = Path(next(iter(package.submodule_search_locations))) / "_note.py"
        spec = importlib.util.spec_from_file_location("nnsearch_dashboard_note", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        save: Callable[[optuna.Study, str], None] = module.save_note
        return save
    except Exception:
        from optuna_dashboard import save_note

        return save_note


def _count_works() -> bool:
    storage = optuna.storages.RDBStorage("sqlite:///:memory:")
    try:
        study = optuna.create_study(storage=storage)
        for _ in range(3):
            study.ask()
        study.tell(0, 1.0)
        study.tell(1, state=TrialState.PRUNED)
        study.trials  # noqa: B018 (read: the cache knows them)
        study.add_trial(optuna.trial.create_trial(value=2.0, user_attrs={"skip": 1}))
        return count_by_state(study, "skip") == {
            TrialState.COMPLETE: 1, TrialState.PRUNED: 1, TrialState.RUNNING: 1}
    finally:
        storage.engine.dispose()


def _note_saver_works() -> bool:
    from optuna_dashboard import get_note

    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    body = "# a note\n" + "x" * 5000  # longer than one system attribute
    note_saver()(study, body)
    return note_saver.__wrapped__() is not None and get_note(study) == body \
        and "optuna_dashboard" not in getattr(note_saver(), "__module__", "")


def study_storage(study: optuna.Study) -> optuna.storages.BaseStorage | None:
    """The storage object a study reads its trials through (Optuna's cache in front of an
    RDB storage), where ``SharedReads`` goes; None if the name moved (no sharing)."""
    storage = getattr(study, "_storage", None)
    return storage if isinstance(storage, optuna.storages.BaseStorage) else None


def _study_storage_is_the_trials() -> bool:
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    storage = study_storage(study)
    return storage is not None and study.ask().storage is storage


def _constraints_prefix() -> str:
    """How Optuna names a trial's constraint in its system attributes ("constraints:NAME",
    written by ``trial.set_constraint``); the name it has used since 5.0 as a fallback."""
    try:
        from optuna.study._constrained_optimization import _CONSTRAINTS_KEY

        return f"{_CONSTRAINTS_KEY}:"
    except ImportError:
        return "constraints:"


def constraint_attrs(values: dict[str, float]) -> dict[str, float]:
    """System attributes that give a trial made with ``create_trial`` these constraint
    values, as ``trial.set_constraint`` would have recorded them (for priors: a sampler
    such as GP needs every trial to carry the same constraints)."""
    prefix = _constraints_prefix()
    return {f"{prefix}{name}": float(v) for name, v in values.items()}


def without_constraints(system_attrs: dict[str, Any]) -> dict[str, Any]:
    """``system_attrs`` less the constraint values (a retried trial records its own)."""
    prefix = _constraints_prefix()
    return {k: v for k, v in system_attrs.items() if not k.startswith(prefix)}


def _constraints_round_trip() -> bool:
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    trial = study.ask()
    trial.set_constraint("max_params", 3.0)
    study.tell(trial, 1.0)
    made = optuna.trial.create_trial(value=1.0, system_attrs=constraint_attrs({"a": 2.0}))
    return (made.constraints == {"a": 2.0}
            and without_constraints(study.trials[0].system_attrs) == {}
            and study.trials[0].constraints == {"max_params": 3.0})


FIXED_PARAMS = "fixed_params"  # where enqueue_trial keeps a queued trial's parameters


def enqueued_params(trial: FrozenTrial) -> dict[str, Any] | None:
    """The parameters ``study.enqueue_trial`` queued a trial with (Optuna keeps them in
    its system attributes under a private name; no public accessor), else None."""
    params = trial.system_attrs.get(FIXED_PARAMS)
    return params if isinstance(params, dict) else None


def _enqueued_params_round_trip() -> bool:
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    study.enqueue_trial({"x": 1.5})
    return enqueued_params(study.trials[0]) == {"x": 1.5}


def private_names_in_use() -> dict[str, bool]:
    """Each private name, and whether Optuna still uses it (a live check)."""
    seen: list[str] = []

    class _Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.name)

    handler = _Catch(logging.WARNING)
    root = logging.getLogger("optuna")
    root.addHandler(handler)
    try:
        study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
        study.optimize(_fail, n_trials=1, catch=(ValueError,))
    finally:
        root.removeHandler(handler)
    return {f"failed-trial logger {_FAILED_TRIAL_LOGGER!r}": _FAILED_TRIAL_LOGGER in seen,
            "one-transaction writes of attributes and reports (RDBStorage, "
            "Trial._cached_frozen_trial)": _one_transaction_works(),
            "a whole trial in one transaction (RDBStorage._create_new_trial, its "
            "parameter, value and heartbeat writes)": _whole_trial_works(),
            "constraint attribute names": _constraints_round_trip(),
            f"an enqueued trial's parameters ({FIXED_PARAMS!r})": _enqueued_params_round_trip(),
            "the stale-trial query (RDBStorage._get_stale_trial_ids)": _throttle_works(),
            "a COUNT of the trials by state (the trial and attribute tables)":
                _count_works(),
            "optuna-dashboard's note module alone (optuna_dashboard/_note.py)":
                _note_saver_works(),
            "the study's storage object (Study._storage)": _study_storage_is_the_trials()}


def _one_transaction_works() -> bool:
    seen: list[dict[int, float]] = []

    class _Look(optuna.pruners.BasePruner):
        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            seen.append(dict(trial.intermediate_values))
            return False

    storage = optuna.storages.RDBStorage("sqlite:///:memory:")
    try:
        study = optuna.create_study(storage=storage, pruner=_Look())
        trial = study.ask()
        trial.set_user_attr("a", 0)
        attrs = {"a": 1, "b": [0.5, None], "c": "x"}  # "a" is replaced, not doubled
        reports = {3: 0.5, 4: float("inf")}
        deferred = all(defer_report(trial, v, step) for step, v in reports.items())
        trial.should_prune()
        kept = dict(reports)
        write_record(trial, attrs, kept)
        written = not kept
        stored = study.trials[0]
        return deferred and written and seen == [reports] and stored.user_attrs == attrs \
            and stored.intermediate_values == reports
    finally:
        storage.engine.dispose()


def _whole_trial_works() -> bool:
    made: list[tuple[int, int, FrozenTrial]] = []
    storage = optuna.storages.RDBStorage("sqlite:///:memory:", heartbeat_interval=60)
    try:
        study = optuna.create_study(storage=storage)
        cache = study_storage(study)
        undo = on_created_trials(cache, lambda *a: made.append(a)) \
            if cache is not None else None
        rdb = rdb_of(storage)
        if undo is None or rdb is None:
            return False
        with warnings.catch_warnings():  # (heartbeats outside optimize: this check only)
            warnings.simplefilter("ignore")
            trial = study.ask()
            undo()
            study.ask()
        x = optuna.distributions.FloatDistribution(0.0, 2.0)
        y = optuna.distributions.IntDistribution(0, 3)
        rdb.write(made[0][1], params=[Param("x", 1.5, x), Param("y", 2, y)],
                  system_attrs={"s": [1]}, reports={2: 0.5}, beat=True)
        rdb.write(made[0][1], user_attrs={"u": "v"}, state=TrialState.COMPLETE, values=[0.25])
        with storage.engine.connect() as connection:
            beats = connection.execute(sqlalchemy.text(
                "SELECT count(*) FROM trial_heartbeats")).scalar_one()
        stored = study.trials[0]
        return len(made) == 1 and made[0][2].number == trial.number == 0 \
            and stored.state == TrialState.COMPLETE and stored.values == [0.25] \
            and stored.params == {"x": 1.5, "y": 2} and stored.distributions == {"x": x, "y": y} \
            and stored.system_attrs == {"s": [1]} and stored.user_attrs == {"u": "v"} \
            and stored.intermediate_values == {2: 0.5} and beats == 1 \
            and stored.datetime_complete is not None \
            and abs((stored.datetime_complete - datetime.datetime.now()).total_seconds()) < 60
    finally:
        storage.engine.dispose()


def _throttle_works() -> bool:
    """Within the window the query is not asked again; after the undo it is."""
    storage = optuna.storages.RDBStorage("sqlite:///:memory:", heartbeat_interval=1)
    try:
        study = optuna.create_study(storage=storage)
        cache = study_storage(study)
        undo = throttle_stale_checks(cache, 60.0) if cache is not None else None
        if cache is None or undo is None:
            return False
        trial_id = storage.create_new_trial(study._study_id)
        storage.record_heartbeat(trial_id)
        with storage.engine.begin() as connection:  # a heartbeat long gone
            connection.execute(sqlalchemy.text(
                "UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00'"))
        ask = getattr(cache, "_get_stale_trial_ids")  # noqa: B009 (the shadow, if any)
        asked = [ask(study._study_id), ask(study._study_id)]
        undo()
        return asked == [[trial_id], []] and \
            getattr(cache, "_get_stale_trial_ids")(study._study_id) == [trial_id]  # noqa: B009
    finally:
        storage.engine.dispose()


def _fail(trial: optuna.Trial) -> float:
    raise ValueError("a failing trial")
