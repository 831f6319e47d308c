"""Riding out a storage that is away for a moment (a database restart, a dropped
connection): which errors are such, their one-line reason, and ``with_retry``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy.exc

logger = logging.getLogger(__name__)

T = TypeVar("T")


def error_reason(exc: BaseException) -> str:
    """The first line of a database error: the driver's own message, without SQLAlchemy's
    or Optuna's wrapping (statement, parameters, a link to its docs)."""
    cause = _transient_cause(exc) or exc
    return (str(getattr(cause, "orig", None) or cause).strip().splitlines() or [""])[0]


_TRANSIENT = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
              sqlalchemy.exc.DisconnectionError)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a storage that is away for now (a restart, a dropped
    connection): Optuna wraps such errors (StorageInternalError), and may raise another
    error while handling one, so the whole chain of causes is searched."""
    return _transient_cause(exc) is not None


_LASTING = ("disk is full", "readonly database")  # operational errors no wait will cure


def _transient_cause(exc: BaseException) -> BaseException | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, _TRANSIENT):
            return None if any(words in str(current) for words in _LASTING) else current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def with_retry(fn: Callable[[], T], what: str, attempts: int = 8, first_wait: float = 0.5) -> T:
    """Call ``fn``, retrying with backoff while the database is unreachable (a restart)."""
    wait = first_wait
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            logger.warning("%s: storage error (%s); retrying in %.1fs", what, error_reason(exc),
                           wait)
            time.sleep(wait)
            wait = min(wait * 2, 8.0)
    raise AssertionError("unreachable")  # pragma: no cover
