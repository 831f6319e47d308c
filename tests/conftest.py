"""Fixtures shared by every test folder."""

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path

import pytest

from tests.helpers import PG_DSN, postgres_reachable

# The suite runs in several processes (pytest-xdist). A test that restarts the server
# holds this lock exclusively; every other test that uses the server holds it shared.
_PG_LOCK = Path(tempfile.gettempdir()) / "nnsearch-tests-postgresql.lock"


@contextlib.contextmanager
def _server(mode: int):
    with _PG_LOCK.open("a") as fh:
        fcntl.flock(fh, mode)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database for one test, dropped afterwards.

    Unreachable server: the test fails in CI (CI=true) and is skipped elsewhere.
    """
    with _server(fcntl.LOCK_SH):
        yield from _database()


@pytest.fixture
def pg_url_restartable():
    """``pg_url`` for a test that restarts the server: no other test uses it meanwhile."""
    with _server(fcntl.LOCK_EX):
        yield from _database()


def _database():
    import uuid

    import psycopg

    problem = postgres_reachable()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is unreachable in CI: {problem}")
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 is unreachable: {problem}")
    name = f"nnsearch_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    for _ in range(2):  # the server may be restarting (the restart test)
        try:
            with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            break
        except Exception:
            import time

            time.sleep(3)
