"""Fixtures shared by every test folder."""

import os

import pytest

from tests.helpers import PG_DSN, postgres_reachable


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database for one test, dropped afterwards.

    Unreachable server: the test fails in CI (CI=true) and is skipped elsewhere.
    """
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
