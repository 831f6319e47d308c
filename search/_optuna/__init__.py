"""Every private Optuna name nnsearch uses, behind a function with a public fallback.

A private name is used only where a bench measured that it saves at least 1% of a
trial, or where no public name exists. Each is checked live by
``tests/search/test_optuna_contract.py``, which fails when one moves, and which also
proves that no other module names one (string conventions included):

- ``RDB`` (``rdb_of``: RDBStorage's session and its trial, parameter, value,
  attribute, intermediate-value and heartbeat models): the many writes on a running
  trial in one transaction (``worker_storage.WorkerStorage`` writes a whole trial in
  two, from 13 commits: 40 -> 28 ms per small trial, ``bench/tiny.py``), and the trials
  by state in one COUNT query under the trial lock (a read of the changed trials took
  4.6 ms there); and the trials read with one query per table (``read_trials``, ~9x
  Optuna's read; ``read_outline``, ``trials``', leaves out what it does not show); and
  ``census``: what ``status`` shows, asked by SQL (counts over all trials, the best and
  the unfinished ones read whole; ``RETRIED_FROM``, the retry callback's attribute).
  The fallback is Optuna's public write per change, a count of a read, and its read;
- ``cached_storage``: Optuna's cache in front of an RDB storage (``get_storage``, which Optuna
  marks internal), which reads only the trials that changed; the fallback reads all;
- ``created_trial``: the trial just created, from that cache (Optuna's read back of it
  took ~2 ms); the fallback is ``get_trial``;
- ``HeartbeatBase`` and ``stale_trial_ids``: what a storage implements for Optuna to
  run heartbeats and sweep stale trials (``BaseHeartbeat``, not exported, and its
  ``_get_stale_trial_ids``); the fallback is no heartbeat; ``heartbeat_ages``: the
  running trials' heartbeat ages as ``status`` shows them (the RDB's heartbeat table);
  the fallback is none shown;
- ``note_saver``: optuna-dashboard's ``save_note`` loaded from its module alone, not
  through the package's ``__init__`` (its web app, scikit-learn and SciPy: ~1.1 s of
  CPU in ``create`` and beside ``run``'s first trials); the fallback is the import;
- how a constraint is named among a trial's system attributes (``constraints:NAME``):
  no public API writes constraints into a trial made with ``create_trial`` (a prior)
  or strips them from a retried one; the fallback is the name Optuna 5.0 uses;
- ``FIXED_PARAMS``: where ``enqueue_trial`` keeps a queued trial's parameters (no
  public accessor).
"""

from __future__ import annotations

import datetime
import functools
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from .census import Shortlist, Tally, shortlist, tally
from .rdb import RDB, Outline, Param, rdb_of

__all__ = ["FIXED_PARAMS", "RDB", "HeartbeatBase", "Outline", "Param", "Shortlist", "Tally",
           "cached_storage", "constraint_attrs", "created_trial", "enqueued_params",
           "heartbeat_ages", "note_saver", "rdb_of", "shortlist", "stale_trial_ids", "tally",
           "without_constraints"]


def cached_storage(storage: optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    """``storage`` as Optuna's studies read it: an RDB storage behind Optuna's cache,
    which reads only the trials that changed since its last read (``get_storage``, which
    Optuna marks internal); the fallback is the storage itself (every read reads all)."""
    try:
        from optuna.storages import get_storage

        return get_storage(storage)
    except ImportError:
        return storage


def created_trial(storage: optuna.storages.BaseStorage, study_id: int,
                  trial_id: int) -> FrozenTrial:
    """The trial ``storage.create_new_trial`` just made, as Optuna's cache keeps it (the
    cache's trial map: reading it back took ~2 ms of a small trial); the fallback is
    ``storage.get_trial``."""
    try:
        known = storage._trial_id_to_study_id_and_number.get(trial_id)  # type: ignore[attr-defined]
        if known is not None and known[0] == study_id:
            frozen = storage._studies[study_id].trials[known[1]]  # type: ignore[attr-defined]
            if isinstance(frozen, FrozenTrial) and frozen._trial_id == trial_id:
                return frozen
    except (AttributeError, KeyError, IndexError, TypeError):
        pass
    return storage.get_trial(trial_id)


try:  # what Optuna asks of a storage to run heartbeats (not exported)
    from optuna.storages._heartbeat import BaseHeartbeat as _BaseHeartbeat
except ImportError:  # pragma: no cover (the fallback: no heartbeats, no stale sweep)
    _BaseHeartbeat = object  # type: ignore[misc,assignment]


class HeartbeatBase(_BaseHeartbeat):
    """Optuna's ``BaseHeartbeat`` for a storage of ours: its private query for stale
    trials (``_get_stale_trial_ids``) asks the public-named ``stale_trials``."""

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return self.stale_trials(study_id)

    def stale_trials(self, study_id: int) -> list[int]:
        raise NotImplementedError


def stale_trial_ids(storage: optuna.storages.BaseStorage, study_id: int) -> list[int]:
    """The running trials of ``storage`` whose heartbeat is stale (``BaseHeartbeat``'s
    ``_get_stale_trial_ids``); none where the name moved."""
    query = getattr(storage, "_get_stale_trial_ids", None)
    return list(query(study_id)) if query is not None else []


def heartbeat_ages(storage: optuna.storages.BaseStorage, study_id: int
                   ) -> dict[int, float] | None:
    """Seconds since each running trial's last heartbeat, by trial number, by the
    database's clock (an RDB storage's heartbeat table: no public API reads it); None
    where there is none to read (another storage, or the names moved)."""
    rdb = rdb_of(storage)
    if rdb is None:
        return None
    m = rdb.models
    with rdb.session() as session:
        now = session.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar_one()
        rows = session.execute(
            sqlalchemy.select(m.TrialModel.number, m.TrialHeartbeatModel.heartbeat)
            .join(m.TrialHeartbeatModel, m.TrialHeartbeatModel.trial_id == m.TrialModel.trial_id)
            .where(m.TrialModel.study_id == study_id,
                   m.TrialModel.state == TrialState.RUNNING)).all()
    now = _naive(now)
    return {int(n): (now - _naive(beat)).total_seconds() for n, beat in rows}


def _naive(moment: Any) -> datetime.datetime:
    """A database timestamp as a naive datetime (SQLite gives text, PostgreSQL an aware
    datetime: Optuna compares them without their zone, as here)."""
    if isinstance(moment, str):
        moment = datetime.datetime.fromisoformat(moment)
    return moment.replace(tzinfo=None)


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


FIXED_PARAMS = "fixed_params"  # where enqueue_trial keeps a queued trial's parameters


def enqueued_params(trial: FrozenTrial) -> dict[str, Any] | None:
    """The parameters ``study.enqueue_trial`` queued a trial with (Optuna keeps them in
    its system attributes under a private name; no public accessor), else None."""
    params = trial.system_attrs.get(FIXED_PARAMS)
    return params if isinstance(params, dict) else None


