"""The files nnsearch keeps beside a file storage (``NAME.db``, or a journal), in one list,
and the one ``flock`` helper the locks among them share.

=======================  ==============================================  ==============
file                     what                                            who uses it
=======================  ==============================================  ==============
``NAME.db.nnsearch.lock``    the trial lock: count and create a trial    ``trial_lock``
``NAME.db.nnsearch.writes``  SQLite's write queue; a journal's write     ``storage``
                             lock
``NAME-cache/``              the prepared data (``$NNSEARCH_CACHE``)     ``cache``
``NAME-artifacts/``          trials' exports, curves, kept predictions   ``artifacts``
                             (``$NNSEARCH_ARTIFACTS``)
``NAME.db-wal``, ``-shm``    SQLite's own write-ahead log                SQLite
=======================  ==============================================  ==============

A storage without a file (PostgreSQL, a proxy) has no lock files; its cache and
artifacts go where ``cache.cache_dir`` and ``artifacts.artifact_dir`` say.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no flock (the callers say what they do instead)
    fcntl = None  # type: ignore[assignment]

HAS_FLOCK = fcntl is not None


def trial_lock_file(storage_file: Path) -> Path:
    return storage_file.with_name(storage_file.name + ".nnsearch.lock")


def write_lock_file(storage_file: Path) -> Path:
    return storage_file.with_name(storage_file.name + ".nnsearch.writes")


def cache_folder(storage_file: Path) -> Path:
    return storage_file.with_name(storage_file.stem + "-cache")


def artifact_folder(storage_file: Path) -> Path:
    return storage_file.with_name(storage_file.stem + "-artifacts")


def sqlite_wal(storage_file: Path) -> Path:
    return storage_file.with_name(storage_file.name + "-wal")


def flock(path: Path, wait: bool = True) -> int | None:
    """An exclusive ``flock`` on ``path`` (created if missing): the descriptor that holds
    it (closing it lets go; so does the OS when the process dies), or None when it was
    not free and ``wait`` is false. OSError when the file cannot be opened."""
    assert fcntl is not None, "flock needs a POSIX system"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd
