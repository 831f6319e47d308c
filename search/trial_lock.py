"""The lock under which a worker counts a study's trials and creates its next one.

With a trial budget, two workers that count at once could both see the last free
slot and both create a trial. Holding this lock from the count until the new trial
exists makes the count exact, so no trial beyond the budget is ever created.

- SQLite and journal files: ``fcntl.flock`` on a file beside the storage
  (``NAME.nnsearch.lock``); the OS releases it if its worker dies.
- PostgreSQL: a session advisory lock keyed by the study's name, on a connection of
  its own; the server releases it if that connection drops.
- Anything else (the gRPC proxy, or no ``fcntl``): no lock. The worker then falls
  back to ending a trial that finds itself beyond the budget as FAIL, marked surplus.

The sweeps that fail a trial and enqueue its retry take the same lock: between the
failure and the retry a count would see neither, and the slot would be taken twice.

A PostgreSQL lock is lost with its session when the server restarts, and the worker
that held it cannot tell in time, nor can the one that takes it next: two counts may
overlap. So a PostgreSQL lock is not ``exact``: its workers also check, once their
trial exists, that it is within the budget (the surplus check), which costs a read
of the trials per trial. A file lock cannot be lost while its process lives.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import text

from .sidecars import HAS_FLOCK, flock, trial_lock_file
from .storage_url import StorageURL


class FileLock:
    """An exclusive ``flock`` on ``path``, held between ``acquire`` and ``release``."""

    exact = True  # counts under it are exact: it cannot be lost while its process lives

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, wait: bool = True) -> bool:
        """Take the lock (without ``wait``: only if it is free); whether it was taken."""
        fd = flock(self.path, wait)
        if fd is None:
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor releases the flock


class PostgresLock:
    """``pg_advisory_lock`` on a connection taken from ``engine`` for as long as it is held."""

    exact = False  # a server restart ends its session, and the lock, unseen (see above)

    def __init__(self, engine: Any, study_name: str) -> None:
        self.engine = engine
        digest = hashlib.sha256(f"nnsearch.trials:{study_name}".encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)
        self._conn: Any = None

    def acquire(self, wait: bool = True) -> bool:
        """Take the lock (without ``wait``: only if it is free); whether it was taken."""
        conn = self.engine.connect()
        try:
            if wait:
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": self.key})
            elif not conn.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                  {"key": self.key}).scalar():
                conn.rollback()
                conn.close()
                return False
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return True

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
            conn.rollback()
            conn.close()
        except Exception:  # the connection is gone, and the lock with its session
            conn.invalidate()


TrialLock = FileLock | PostgresLock


@contextlib.contextmanager
def locked(lock: TrialLock | None, wait: bool = True) -> Iterator[bool]:
    """Hold ``lock`` for the block (no lock, no wait); yields whether it is held, which
    without ``wait`` is only if it was free."""
    if lock is None:
        yield True
        return
    if not lock.acquire(wait):
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def trial_lock(url: StorageURL, storage: Any, study_name: str) -> TrialLock | None:
    """The lock for this study's storage, or None where there is none (see above)."""
    if url.kind in ("sqlite", "journal") and url.path is not None and HAS_FLOCK:
        return FileLock(trial_lock_file(url.path))
    if url.kind == "postgresql" and hasattr(storage, "engine"):
        return PostgresLock(storage.engine, study_name)
    return None
