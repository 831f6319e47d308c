"""Where studies live: SQLite by default, PostgreSQL to scale out, a journal file on one host.

``open_storage`` builds the Optuna storage of a ``StorageURL`` (``storage_url.py``) with
the settings parallel workers need; ``retry.with_retry`` rides out a database restart.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import optuna
import sqlalchemy.event
import sqlalchemy.exc
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from .errors import StorageUnreachable, UsageError
from .record import RETRY
from .retry import error_reason, is_transient
from .sidecars import HAS_FLOCK, flock, sqlite_wal, write_lock_file
from .storage_url import StorageURL

logger = logging.getLogger(__name__)

SQLITE_TIMEOUT = 30  # seconds a writer waits for SQLite's lock (Optuna's default 5 s loses trials)

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


def open_storage(url: StorageURL, heartbeat: bool = True,
                 must_exist: bool = False) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``, or UsageError if it cannot be reached.

    With ``must_exist``, a SQLite or journal file that is not there is an error
    rather than a new, empty storage.
    """
    if url.path is not None:
        if must_exist and not url.path.is_file():
            raise UsageError(f"no storage at {url.path}: create the study first "
                             "(nnsearch create STUDY_FILE).")
        if not url.path.parent.is_dir():
            raise UsageError(f"cannot open storage {url}: directory {url.path.parent} "
                             "does not exist.")
    if url.kind == "journal":
        assert url.path is not None
        lock = JournalFlock(url.path) if HAS_FLOCK else None
        # (Optuna only calls acquire() and release(); its base class is not public)
        return JournalStorage(JournalFileBackend(str(url.path),
                                                 lock_obj=lock))  # type: ignore[arg-type]
    if url.kind == "sqlite" and url.path is not None and not _writable(url.path) \
            and url.path.exists():
        if must_exist and not heartbeat:
            return _read_only_sqlite(url)
        if heartbeat:  # a worker would fail every write, and be restarted to fail again
            raise UsageError(f"storage {url} is read-only here; only status, export and "
                             "report can read it.")
    if url.kind == "grpc":
        return _grpc_proxy(url)
    engine_kwargs: dict[str, Any] = {}
    if url.kind == "sqlite":
        engine_kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT}
    else:
        engine_kwargs["pool_pre_ping"] = True  # survive a database restart
        if url.kind == "postgresql":
            engine_kwargs["connect_args"] = {"connect_timeout": 10}
    kwargs: dict[str, Any] = {}
    if must_exist and url.path is None and url.kind != "grpc":
        _must_hold_studies(url, engine_kwargs)
        kwargs["skip_table_creation"] = True  # a command that reads creates nothing
    if heartbeat:
        interval, grace = heartbeat_settings()
        kwargs |= {"heartbeat_interval": interval, "grace_period": grace,
                   "heartbeat_stale_trial_callback": RETRY}
    try:
        storage = _create_schema_once(lambda: _Storage(url.secret, engine_kwargs=engine_kwargs,
                                                       **kwargs))
        if url.kind == "sqlite":
            _use_wal(storage)
            if url.path is not None:
                queue_writes(storage.engine, write_lock_file(url.path))
        return storage
    except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
        if url.path is not None and _disk_full(url.path):
            raise UsageError(f"storage {url}: the disk holding {url.path.parent} is full "
                             f"({error_reason(exc)}); free some space and run again.") from None
        if url.path is not None and not _writable(url.path):
            raise UsageError(f"storage {url} is read-only here ({error_reason(exc)}); only "
                             "status, export and report can read it.") from None
        if url.kind != "sqlite" and is_transient(exc):
            raise StorageUnreachable(f"cannot reach storage {url}: {error_reason(exc)}") \
                from None
        raise UsageError(f"cannot reach storage {url}: {error_reason(exc)}") from None
    except ModuleNotFoundError as exc:
        raise UsageError(f"storage {url} needs the Python package {exc.name!r}.") from None
    except Exception as exc:  # e.g. ArgumentError for a malformed URL
        raise UsageError(f"cannot open storage {url}: {type(exc).__name__}: "
                         f"{error_reason(exc)}") from None


def _must_hold_studies(url: StorageURL, engine_kwargs: dict[str, Any]) -> None:
    """UsageError unless the database at ``url`` has Optuna's tables: a command that
    only reads must not create them (in any database it is pointed at)."""
    try:
        engine = sqlalchemy.create_engine(url.secret, **engine_kwargs)
        try:
            found = sqlalchemy.inspect(engine).has_table("studies")
        finally:
            engine.dispose()
    except sqlalchemy.exc.SQLAlchemyError as exc:  # as the storage's own opening says it
        if is_transient(exc):
            raise StorageUnreachable(f"cannot reach storage {url}: {error_reason(exc)}") \
                from None
        raise UsageError(f"cannot reach storage {url}: {error_reason(exc)}") from None
    if not found:
        raise UsageError(f"no storage at {url}: it holds no studies; create the study first "
                         "(nnsearch create STUDY_FILE).")


_RACING = ("already exists", "duplicate key", "UNIQUE constraint", "locked")  # two creators


class _Storage(RDBStorage):
    """An RDBStorage whose heartbeat survives a database restart.

    Optuna records heartbeats from a thread of its own: an error there killed the
    thread with a traceback on stderr, and the trial, still training, stopped
    beating and was failed by the other workers as stale. A beat that cannot be
    written is logged in one line; the next one, an interval later, tries again.
    """

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except Exception as exc:
            logger.warning("heartbeat of trial id %d not recorded (%s); trying again in %ds",
                           trial_id, error_reason(exc), self.get_heartbeat_interval() or 0)


def _create_schema_once(make: Callable[[], RDBStorage], attempts: int = 6) -> RDBStorage:
    """``make()``, again after a short random wait if another process was creating the
    same tables at the same moment (PostgreSQL then refuses the second with a duplicate
    key on its catalogue; SQLite may find the file locked)."""
    for attempt in range(1, attempts + 1):
        try:
            return make()
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError,
                sqlalchemy.exc.OperationalError) as exc:
            if attempt == attempts or not any(words in str(exc) for words in _RACING):
                raise
            time.sleep(random.uniform(0.1, 0.5) * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def _disk_full(path: Path, margin: int = 16 << 20) -> bool:
    try:
        return shutil.disk_usage(path.parent).free < margin
    except OSError:
        return False


def _read_only_sqlite(url: StorageURL) -> RDBStorage:
    """A SQLite study in a folder this process may not write, for status, export and
    report: opened read-only; as an immutable file only when it has no write-ahead log
    to read (SQLite cannot create its lock files here, and immutable ignores the log)."""
    assert url.path is not None
    base = f"sqlite:///file:{quote(str(url.path.resolve()))}?mode=ro&uri=true"
    wal = sqlite_wal(url.path)
    try:
        return RDBStorage(base)
    except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
        if wal.exists() and wal.stat().st_size:
            raise UsageError(f"cannot read storage {url} read-only: its write-ahead log holds "
                             f"trials not yet in the file ({error_reason(exc)}); read it "
                             "where it can be written, or after its last run ended.") from None
    try:
        return RDBStorage(base + "&immutable=1")
    except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
        raise UsageError(f"cannot read storage {url} read-only: {error_reason(exc)}") \
            from None


GRPC_READY_SECONDS = 10.0  # how long a command waits for a storage proxy to answer


def _grpc_proxy(url: StorageURL) -> optuna.storages.BaseStorage:
    try:
        from optuna.storages import GrpcStorageProxy

        assert url.host is not None and url.port is not None
        proxy = GrpcStorageProxy(host=url.host, port=url.port)
        proxy.wait_server_ready(timeout=GRPC_READY_SECONDS)
    except ImportError:
        raise UsageError("grpc:// storages need grpcio: pip install 'nnsearch[grpc]'.") from None
    except Exception as exc:  # (a proxy that does not answer: exit 3, as a database's)
        raise StorageUnreachable(f"cannot reach the storage proxy {url}: "
                                 f"{error_reason(exc) or type(exc).__name__}") from None
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


_WRITING = "nnsearch.write_lock"  # a connection's info key: the lock's descriptor
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class JournalFlock:
    """A journal file's write lock as an ``flock`` on ``PATH.nnsearch.writes``, for
    ``JournalFileBackend(lock_obj=...)``: the OS drops it when its holder dies. Optuna's
    own lock is a file that a killed worker leaves behind, and the others then waited
    out its 30 s grace before breaking it (one kill -9 in five, in a stranger's test).
    nnsearch's commands all take this lock; another program appending to the journal
    with Optuna's lock does not meet it (each append is still one write to the end)."""

    def __init__(self, journal: Path) -> None:
        self.path = write_lock_file(journal)
        self._thread = threading.Lock()  # one holder per process; the flock across them
        self._fd: int | None = None

    def acquire(self) -> bool:
        self._thread.acquire()
        try:
            fd = flock(self.path)
        except BaseException:
            self._thread.release()
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        try:
            if fd is not None:
                os.close(fd)  # (closing drops the flock)
        finally:
            self._thread.release()


def queue_writes(engine: sqlalchemy.engine.Engine, lock: Path) -> None:
    """Writers to this SQLite file wait their turn on an ``flock`` (``lock``) rather than
    in SQLite's busy handler, which sleeps 1, 2, 5, 10 ms... between tries: with two
    workers, 7% of their time went in those sleeps (strace), while the writer they
    waited for held the database for a fraction of a ms. A connection takes the lock
    before its first write (Python's sqlite3 begins a transaction there) and lets go
    of it as it goes back to the pool, after its commit or rollback; the OS releases it
    with a process that dies. Writers that do not take it (another program) still meet
    SQLite's own lock; where the lock file cannot be opened (another user's folder),
    the write goes on without it.

    The wait has no time limit: a writer stopped in the middle of a transaction (a
    suspended process) holds every other writer until it goes on or dies, where
    SQLite's own lock would have failed their writes after ``SQLITE_TIMEOUT``. A thread
    must not write through two connections to one file at once (it would wait for
    itself); nnsearch's threads each write through their own session, one at a time."""
    if not HAS_FLOCK:
        return

    def before_execute(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        info = conn.connection.info  # kept by the pooled connection across checkouts
        if _WRITING in info or not statement.lstrip()[:7].upper().startswith(_WRITES):
            return
        try:
            info[_WRITING] = flock(lock)
        except OSError:
            return  # SQLite's own lock alone

    def release(dbapi_connection: Any, record: Any, *_: Any) -> None:
        fd = record.info.pop(_WRITING, None) if record is not None else None
        if fd is not None:
            os.close(fd)

    sqlalchemy.event.listen(engine, "before_cursor_execute", before_execute)
    for name in ("checkin", "invalidate", "close"):  # the transaction is over
        sqlalchemy.event.listen(engine, name, release)


def dispose(storage: optuna.storages.BaseStorage) -> None:
    """Close the storage's connections (RDB only)."""
    if isinstance(storage, RDBStorage):
        storage.engine.dispose()


