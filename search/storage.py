"""Where studies live: SQLite by default, PostgreSQL to scale out, a journal file on one host.

``resolve_url`` picks the URL (``--storage``, else ``NNSEARCH_STORAGE``, else SQLite
beside the study file); ``open_storage`` builds the Optuna storage with the
settings parallel workers need; ``redact`` hides passwords in anything shown.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy.event
import sqlalchemy.exc
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from sqlalchemy.engine import make_url

from .errors import UsageError

logger = logging.getLogger(__name__)

ENV_STORAGE = "NNSEARCH_STORAGE"
SQLITE_TIMEOUT = 30  # seconds a writer waits for SQLite's lock (Optuna's default 5 s loses trials)
JOURNAL_PREFIX = "journal://"  # journal:///abs/path.log, or journal://relative/path.log
GRPC_PREFIX = "grpc://"  # a `nnsearch proxy` in front of the real storage
T = TypeVar("T")


def journal_path(url: str) -> Path:
    """The file behind a journal:// URL (journal:///tmp/s.log is /tmp/s.log)."""
    rest = url[len(JOURNAL_PREFIX):]
    if rest.startswith("//"):  # journal:////abs/path, as SQLite spells absolute paths
        rest = rest[1:]
    return Path(rest)


def heartbeat_settings() -> tuple[int, int]:
    """(interval, grace) in seconds; NNSEARCH_HEARTBEAT sets the interval, grace is 3x."""
    raw = os.environ.get("NNSEARCH_HEARTBEAT", "2")
    try:
        interval = int(raw)
    except ValueError:
        raise UsageError(f"NNSEARCH_HEARTBEAT must be a whole number of seconds >= 1, "
                         f"but got {raw!r}.") from None
    if interval < 1:
        raise UsageError(f"NNSEARCH_HEARTBEAT must be >= 1 second, but got {interval}.")
    return interval, 3 * interval


def default_url(study_file: Path) -> str:
    return f"sqlite:///{study_file.resolve().with_suffix('.db')}"


def resolve_url(explicit: str | None, study_file: Path | None) -> str:
    if explicit:
        return explicit
    if os.environ.get(ENV_STORAGE):
        return os.environ[ENV_STORAGE]
    if study_file is None:
        raise UsageError(f"no storage given: pass --storage URL (or set {ENV_STORAGE}), "
                         "or address the study by its file.")
    return default_url(study_file)


def redact(url: str) -> str:
    """The URL with any password replaced by ***."""
    if url.startswith((JOURNAL_PREFIX, GRPC_PREFIX)):
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy understands: show no more than the scheme
        if "@" not in url:
            return url  # nothing that could be a password
        return url.split("://", 1)[0] + "://***" if "://" in url else "***"


def kind(url: str) -> str:
    """'sqlite', 'postgresql', 'journal' or another SQLAlchemy backend name."""
    if url.startswith(JOURNAL_PREFIX):
        return "journal"
    if url.startswith(GRPC_PREFIX):
        return "grpc"
    try:
        return make_url(url).get_backend_name()
    except Exception:
        raise UsageError(f"not a storage URL: {redact(url)!r}; use sqlite:///PATH, "
                         "postgresql+psycopg://USER@HOST/DB or journal:///PATH.") from None


def normalise(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever driver the URL names (or none)."""
    if kind(url) == "postgresql":
        parsed = make_url(url)
        if parsed.drivername != "postgresql+psycopg":
            return parsed.set(drivername="postgresql+psycopg").render_as_string(
                hide_password=False)
    return url


def open_storage(url: str, heartbeat: bool = True,
                 must_exist: bool = False) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``, or UsageError if it cannot be reached.

    With ``must_exist``, a SQLite or journal file that is not there is an error
    rather than a new, empty storage.
    """
    url = normalise(url)
    backend = kind(url)
    shown = redact(url)
    if backend == "journal":
        path = journal_path(url)
        if must_exist and not path.is_file():
            raise UsageError(f"no storage at {path}: create the study first.")
        if not path.parent.is_dir():
            raise UsageError(f"cannot open storage {shown}: directory {path.parent} "
                             "does not exist.")
        return JournalStorage(JournalFileBackend(str(path)))
    if backend == "grpc":
        return _grpc_proxy(url)
    engine_kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        database = make_url(url).database
        if database and database != ":memory:":
            if must_exist and not Path(database).is_file():
                raise UsageError(f"no storage at {database}: create the study first "
                                 "(nnsearch create STUDY_FILE).")
            parent = Path(database).parent
            if not parent.is_dir():
                raise UsageError(f"cannot open storage {shown}: directory {parent} "
                                 "does not exist.")
        engine_kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT}
    else:
        engine_kwargs["pool_pre_ping"] = True  # survive a database restart
        if backend == "postgresql":
            engine_kwargs["connect_args"] = {"connect_timeout": 10}
    kwargs: dict[str, Any] = {}
    if heartbeat:
        interval, grace = heartbeat_settings()
        kwargs = {"heartbeat_interval": interval, "grace_period": grace,
                  "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(
                      max_retry=3)}
    try:
        storage = RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
        if backend == "sqlite":
            _use_wal(storage)
        return storage
    except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
        raise UsageError(f"cannot reach storage {shown}: {error_reason(exc)}") from None
    except ModuleNotFoundError as exc:
        raise UsageError(f"storage {shown} needs the Python package {exc.name!r}.") from None
    except Exception as exc:  # e.g. ArgumentError for a malformed URL
        raise UsageError(f"cannot open storage {shown}: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}") from None


def error_reason(exc: BaseException) -> str:
    """The first line of a database error: the driver's own message, without SQLAlchemy's
    wrapping (statement, parameters, a link to its docs)."""
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]


def rdb(storage: optuna.storages.BaseStorage) -> RDBStorage | None:
    """The RDBStorage behind ``storage`` (Optuna wraps it in a cache), if any."""
    inner = getattr(storage, "_backend", storage)
    return inner if isinstance(inner, RDBStorage) else None


def _grpc_proxy(url: str) -> optuna.storages.BaseStorage:
    host, _, port = url[len(GRPC_PREFIX):].rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"a proxy URL is grpc://HOST:PORT, but got {url!r}.")
    try:
        from optuna.storages import GrpcStorageProxy

        proxy = GrpcStorageProxy(host=host, port=int(port))
        proxy.wait_server_ready(timeout=10)
    except ImportError:
        raise UsageError("grpc:// storages need grpcio: pip install 'nnsearch[grpc]'.") from None
    except Exception as exc:
        raise UsageError(f"cannot reach the storage proxy {url}: {exc}") from None
    return proxy


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    # Write-ahead logging: readers (the dashboard, status) never block the workers'
    # writes, and a commit appends to the log instead of rewriting pages. With WAL,
    # synchronous=NORMAL cannot corrupt the database; a power cut can at worst lose
    # the last commits, which leaves those trials RUNNING for the sweeper to retry.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _use_wal(storage: RDBStorage) -> None:
    sqlalchemy.event.listen(storage.engine, "connect", _sqlite_pragmas)
    storage.engine.dispose()  # connections opened while creating the tables lack them


def dispose(storage: optuna.storages.BaseStorage) -> None:
    """Close the storage's connections (RDB only)."""
    backend = rdb(storage)
    if backend is not None:
        backend.engine.dispose()


def set_user_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Write many user attributes at once: one transaction on an RDB, not one per key.

    Uses the RDB storage's own per-attribute writer inside one session; if a
    future Optuna moves those internals, falls back to one write per key.
    """
    backend = rdb(trial.storage)
    writer = getattr(backend, "_set_trial_attr_without_commit", None)
    if backend is not None and writer is not None:
        try:
            from optuna.storages._rdb import models
            from optuna.storages._rdb.storage import _create_scoped_session
        except ImportError:
            pass
        else:
            with _create_scoped_session(backend.scoped_session, True) as session:
                for key, value in attrs.items():
                    writer(session, models.TrialUserAttributeModel, trial._trial_id, key, value)
            trial._cached_frozen_trial.user_attrs.update(attrs)
            return
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


RETRYABLE = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
             sqlalchemy.exc.DisconnectionError)


def with_retry(fn: Callable[[], T], what: str, attempts: int = 8, first_wait: float = 0.5) -> T:
    """Call ``fn``, retrying with backoff while the database is unreachable (a restart)."""
    wait = first_wait
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except RETRYABLE as exc:
            if attempt == attempts:
                raise
            logger.warning("%s: storage error (%s); retrying in %.1fs", what, error_reason(exc),
                           wait)
            time.sleep(wait)
            wait = min(wait * 2, 8.0)
    raise AssertionError("unreachable")  # pragma: no cover
