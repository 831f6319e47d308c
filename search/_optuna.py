"""Every private Optuna name nnsearch uses, behind a function with a public fallback.

A private path is kept only where a bench measured that it saves at least 1% of a
trial, or where no public name exists. Five are in use:

- the logger Optuna reports a failed trial on, which lets ``quiet_failed_trials``
  drop expected failures wherever Optuna's records go; its fallback filters the
  handlers of the public ``optuna`` logger (Optuna's own output);
- ``write_record``: a trial's ~17 result attributes in one RDB transaction (RDBStorage's
  session, its trial and attribute models: one lookup of the trial and one multi-row
  upsert on SQLite and PostgreSQL) instead of one commit per key through
  ``trial.set_user_attr``. On a default-study digits trial of ~2 s that saves 0.1-0.5%
  (``bench/internals.py``), but a small table's trial trains for ~15 ms, and there the
  per-key commits were a fifth of its overhead (``bench/tiny.py``). Its fallback is
  the public write per key (other storages, or if the names move);
- ``defer_report``: a trial's reported value put where ``trial.should_prune`` looks
  (``Trial._cached_frozen_trial``, as ``trial.report`` does), its write left to the
  trial's next ``write_record`` transaction (the same RDB models): a small table's
  trial reports every few ms, and each report was a commit (~12% of its wall time,
  ``bench/tiny.py``). Its fallback is ``trial.report``;
- how a constraint is named among a trial's system attributes (``constraints:NAME``):
  no public API writes constraints into a trial made with ``create_trial`` (a prior)
  or strips them from a retried one. Its fallback is the name Optuna 5.0 uses;
- ``study_storage``: the storage object a study reads its trials through
  (``Study._storage``), on which a worker installs ``shared_reads.SharedReads``: Optuna
  read all trials ~7 times per trial, and on a small table's trial those reads were a
  third of its wall time (``bench/tiny.py``). Its fallback is no sharing.

A private COUNT query saved 0.01% (SQLite) and -0.03% (PostgreSQL) over
``study.get_trials``, which Optuna serves from its cache of finished trials, and is
not used; ``bench/internals.py`` keeps it, to measure again.
``private_names_in_use()`` checks each private name live, and
``tests/search/test_optuna_contract.py`` fails when one moves.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from functools import partial
from typing import Any

import optuna
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
    if (attrs or reports) and _write_in_one_transaction(trial, attrs, reports):
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
    if own is None or _rdb(trial) is None or step in own.intermediate_values \
            or len(trial.study.directions) > 1:
        return False
    own.intermediate_values[int(step)] = float(value)
    return True


def _rdb(trial: optuna.Trial) -> tuple[Any, Any, Any, str] | None:
    """(RDBStorage, its models, its session maker, dialect) for the one-transaction
    writes, or None where they do not apply or have moved."""
    try:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session
    except ImportError:
        return None
    storage = trial.storage
    backend = getattr(storage, "_backend", storage)  # Optuna wraps RDB in a cache
    if not isinstance(backend, optuna.storages.RDBStorage):
        return None
    session_maker = getattr(backend, "scoped_session", None)
    dialect = backend.engine.name
    if session_maker is None or dialect not in ("sqlite", "postgresql") or (
            dialect == "sqlite" and sqlite3.sqlite_version_info < (3, 24, 0)) \
            or not all(hasattr(models, name) for name in (
                "TrialModel", "TrialUserAttributeModel", "TrialIntermediateValueModel")):
        return None
    return backend, models, partial(_create_scoped_session, session_maker, True), dialect


def _write_in_one_transaction(trial: optuna.Trial, attrs: dict[str, Any],
                              reports: dict[int, float] | None = None) -> bool:
    """The private path; False (nothing written) where it does not apply or has moved."""
    reports = reports or {}
    rdb = _rdb(trial)
    if rdb is None:
        return False
    backend, models, session, dialect = rdb
    insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
    with session() as s:
        # One lookup of the trial (it must still be running) and one multi-row upsert each.
        found = models.TrialModel.find_or_raise_by_id(trial._trial_id, s)
        backend.check_trial_is_updatable(trial._trial_id, found.state)
        if attrs:
            stmt = insert(models.TrialUserAttributeModel).values(
                [{"trial_id": trial._trial_id, "key": key, "value_json": json.dumps(value)}
                 for key, value in attrs.items()])
            s.execute(stmt.on_conflict_do_update(
                index_elements=["trial_id", "key"],
                set_={"value_json": stmt.excluded.value_json}))
        if reports:
            rows = []
            for step, value in reports.items():
                stored, kind = models.TrialIntermediateValueModel \
                    .intermediate_value_to_stored_repr(value)
                rows.append({"trial_id": trial._trial_id, "step": step,
                             "intermediate_value": stored, "intermediate_value_type": kind})
            stmt = insert(models.TrialIntermediateValueModel).values(rows)
            s.execute(stmt.on_conflict_do_update(
                index_elements=["trial_id", "step"],
                set_={"intermediate_value": stmt.excluded.intermediate_value,
                      "intermediate_value_type": stmt.excluded.intermediate_value_type}))
    return True


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
            "constraint attribute names": _constraints_round_trip(),
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
        written = _write_in_one_transaction(trial, attrs, kept)
        stored = study.trials[0]
        return deferred and written and seen == [reports] and stored.user_attrs == attrs \
            and stored.intermediate_values == reports
    finally:
        storage.engine.dispose()


def _fail(trial: optuna.Trial) -> float:
    raise ValueError("a failing trial")
