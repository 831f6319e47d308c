"""The trial lock really excludes another process (file) or session (PostgreSQL)."""

import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
import sqlalchemy

from nnsearch.search import sweep
from nnsearch.search.storage import open_storage
from nnsearch.search.storage_url import StorageURL
from nnsearch.search.trial_lock import FileLock, PostgresLock, trial_lock

TRY_FLOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    print("held")
else:
    print("free")
"""


def _other_process_sees(path) -> str:
    return subprocess.run([sys.executable, "-c", TRY_FLOCK, str(path)], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_the_file_lock_excludes_another_process(tmp_path):
    url = StorageURL.parse(f"sqlite:///{tmp_path / 's.db'}")
    lock = trial_lock(url, None, "s")
    assert isinstance(lock, FileLock) and lock.path == tmp_path / "s.db.nnsearch.lock"
    assert _other_process_sees(lock.path) == "free"
    lock.acquire()
    assert _other_process_sees(lock.path) == "held"
    lock.release()
    lock.release()  # idempotent: the worker releases once the trial exists, and after
    assert _other_process_sees(lock.path) == "free"


def test_the_journal_has_a_file_lock_and_the_proxy_none(tmp_path):
    assert isinstance(trial_lock(StorageURL.parse(f"journal:///{tmp_path / 'j.log'}"), None,
                                 "s"), FileLock)
    assert trial_lock(StorageURL.parse("grpc://127.0.0.1:13000"), None, "s") is None


def test_the_postgres_lock_excludes_another_session(pg_url):
    storage = open_storage(StorageURL.parse(pg_url), heartbeat=False)
    lock = trial_lock(StorageURL.parse(pg_url), storage, "study-a")
    assert isinstance(lock, PostgresLock)
    other = sqlalchemy.create_engine(pg_url)
    try:
        def free() -> bool:
            with other.connect() as conn:
                got = conn.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"),
                                   {"k": lock.key}).scalar()
                if got:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"),
                                 {"k": lock.key})
                return bool(got)

        assert free()
        assert lock.acquire() is True
        assert not free()
        same = trial_lock(StorageURL.parse(pg_url), storage, "study-a")
        assert same.acquire(wait=False) is False and same._conn is None  # no wait, no hold
        assert trial_lock(StorageURL.parse(pg_url), storage, "study-b").key != lock.key
        lock.release()
        assert free()
        assert same.acquire(wait=False) is True and not free()
        same.release()
        assert free()
    finally:
        other.dispose()
        storage.engine.dispose()


def test_only_a_file_lock_makes_the_count_exact(tmp_path, pg_url):
    # A PostgreSQL lock dies unseen with its session at a server restart: its workers
    # keep the surplus check.
    storage = open_storage(StorageURL.parse(pg_url), heartbeat=False)
    try:
        assert trial_lock(StorageURL.parse(pg_url), storage, "s").exact is False
    finally:
        storage.engine.dispose()
    assert trial_lock(StorageURL.parse(f"sqlite:///{tmp_path / 's.db'}"), None, "s").exact


@pytest.fixture
def stubbed_sweep(tmp_path, monkeypatch):
    """(a lock on a SQLite study, a second lock on it for the sweep, the calls the sweep
    makes): the sweep's failing and retrying stubbed out."""
    url = StorageURL.parse(f"sqlite:///{tmp_path / 's.db'}")
    calls: list[str] = []
    monkeypatch.setattr(sweep, "fail_stale_trials", lambda study: calls.append("stale"))
    monkeypatch.setattr(sweep, "fail_orphans", lambda opened, retry, seen: calls.append("orphans"))
    return trial_lock(url, None, "s"), trial_lock(url, None, "s"), calls


def test_a_sweep_waits_for_the_trial_lock(stubbed_sweep):
    # Failing a trial and enqueueing its retry are two writes; a worker counting between
    # them would see neither and take the slot twice. So a sweep holds the trial lock.
    holder, sweeper_lock, calls = stubbed_sweep
    holder.acquire()
    opened = SimpleNamespace(study=None, worker_storage=None)
    thread = threading.Thread(target=sweep.sweep, args=(opened, None, {}, sweeper_lock))
    thread.start()
    time.sleep(0.3)
    assert calls == []  # still waiting for the lock
    holder.release()
    thread.join(timeout=10)
    assert calls == ["stale", "orphans"]
    assert _other_process_sees(holder.path) == "free"  # and it let go


def test_the_supervisors_sweep_does_not_wait_for_a_busy_lock(stubbed_sweep):
    # A worker may hold the lock through a database outage's retries: the supervisor's
    # watch (its progress bar, a Ctrl-C) must not wait on it; it sweeps next time.
    holder, sweeper_lock, calls = stubbed_sweep
    opened = SimpleNamespace(study=None, worker_storage=None)
    holder.acquire()
    started = time.monotonic()
    assert sweep.sweep(opened, None, {}, sweeper_lock, wait=False) is False
    assert calls == [] and time.monotonic() - started < 1.0
    holder.release()
    assert sweep.sweep(opened, None, {}, sweeper_lock, wait=False) is True
    assert calls == ["stale", "orphans"] and _other_process_sees(holder.path) == "free"
