"""Storage URLs: parsed once into a StorageURL (kind, file, redacted form, driver)."""

import os
from pathlib import Path

import pytest

from nnsearch.search.errors import UsageError
from nnsearch.search.retry import is_transient
from nnsearch.search.storage_url import StorageURL


def test_journal_paths():
    assert StorageURL.parse("journal:///tmp/s.log").path == Path("/tmp/s.log")
    assert StorageURL.parse("journal:////tmp/s.log").path == Path("/tmp/s.log")
    assert StorageURL.parse("journal://runs/s.log").path == Path("runs/s.log")


@pytest.mark.parametrize(("url", "kind", "path"), [
    ("sqlite:///x.db", "sqlite", Path("x.db")),
    ("sqlite:////tmp/x.db", "sqlite", Path("/tmp/x.db")),
    ("sqlite:///:memory:", "sqlite", None), ("postgresql://u@h/db", "postgresql", None),
    ("postgresql+psycopg://u@h/db", "postgresql", None),
    ("journal:///x.log", "journal", Path("/x.log")),
    ("grpc://h:13000", "grpc", None),
])
def test_kinds_and_files(url, kind, path):
    parsed = StorageURL.parse(url)
    assert (parsed.kind, parsed.path) == (kind, path)


def test_grpc_host_and_port():
    url = StorageURL.parse("grpc://proxy.example:13000")
    assert (url.host, url.port) == ("proxy.example", 13000)
    with pytest.raises(UsageError, match="grpc://HOST:PORT"):
        StorageURL.parse("grpc://nowhere")


@pytest.mark.parametrize("text", [
    "postgresql+psycopg://u:hunter2@h:5432/db",
    "postgresql://u@h:5432/db?password=hunter2",
    "weird://u:hunter2@%%%",
])
def test_passwords_are_redacted_wherever_the_url_is_shown(text):
    try:
        url = StorageURL.parse(text)
    except UsageError as exc:  # not a URL at all: the error hides the password too
        assert "hunter2" not in str(exc)
        return
    assert "hunter2" not in str(url) and "hunter2" not in repr(url)
    assert "hunter2" not in url.redacted and "hunter2" in url.secret


def test_postgres_uses_psycopg3():
    assert StorageURL.parse("postgresql://u:p@h/db").secret.startswith(
        "postgresql+psycopg://u:p@h/db")
    assert StorageURL.parse("sqlite:///x.db").secret == "sqlite:///x.db"


def test_storage_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("NNSEARCH_STORAGE", raising=False)
    study = tmp_path / "s.toml"
    assert StorageURL.resolve(None, study).secret == f"sqlite:///{tmp_path / 's.db'}"
    monkeypatch.setenv("NNSEARCH_STORAGE", "journal:///x.log")
    assert StorageURL.resolve(None, study).secret == "journal:///x.log"
    assert StorageURL.resolve("sqlite:///y.db", study).secret == "sqlite:///y.db"
    monkeypatch.delenv("NNSEARCH_STORAGE")
    with pytest.raises(UsageError, match="no storage given"):
        StorageURL.resolve(None, None)


def test_transient_storage_errors_are_found_through_wrappers():
    import sqlalchemy.exc
    from optuna.exceptions import StorageInternalError

    from nnsearch.search.retry import error_reason, is_transient, with_retry

    down = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the conn"))

    def wrapped():  # Optuna wraps a failed commit; then fails again while handling it
        try:
            try:
                raise StorageInternalError("An exception is raised during the commit.") \
                    from down
            except StorageInternalError:
                raise UnboundLocalError("cannot access local variable 'updated_state'")  # noqa: B904
        except UnboundLocalError as exc:
            return exc

    assert is_transient(down) and is_transient(wrapped())
    assert error_reason(wrapped()) == "server closed the conn"
    assert not is_transient(ValueError("a bug")) and not is_transient(
        StorageInternalError("exceeding max length"))
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise wrapped()
        return "ok"

    assert with_retry(flaky, "test", first_wait=0.01) == "ok" and len(calls) == 3
    with pytest.raises(ValueError):
        with_retry(lambda: (_ for _ in ()).throw(ValueError("a bug")), "test")


def test_passwords_survive_parsing_in_every_form():
    from urllib.parse import unquote

    from sqlalchemy.engine import make_url

    for text, password in [("postgresql://u:p@ss@h:5432/db", "p@ss"),
                           ("postgresql://u:p@ss@h?application_name=a@b", "p@ss"),
                           ("postgresql://u:hunter2@[::1]:5432/db", "hunter2"),
                           ("postgresql://u:p%40ss@h/db", "p@ss")]:
        url = StorageURL.parse(text)
        assert make_url(url.secret).password == password, text
        assert password not in url.redacted and unquote(password) not in url.redacted
    query = StorageURL.parse("postgresql://u@h/db?password=hunter2")
    assert make_url(query.secret).query["password"] == "hunter2"
    assert query.redacted == "postgresql://u@h/db?password=***"


def test_only_a_schema_race_is_retried():
    import sqlalchemy.exc

    from nnsearch.search import storage

    attempts = []

    def racing():
        attempts.append(1)
        if len(attempts) < 3:
            raise sqlalchemy.exc.OperationalError("CREATE TABLE", {},
                                                  Exception("table trials already exists"))
        return "storage"

    assert storage._create_schema_once(racing) == "storage" and len(attempts) == 3

    def denied():
        raise sqlalchemy.exc.ProgrammingError("CREATE TABLE", {}, Exception("permission denied"))

    with pytest.raises(sqlalchemy.exc.ProgrammingError):
        storage._create_schema_once(denied)
    full = sqlalchemy.exc.OperationalError("INSERT", {}, Exception("database or disk is full"))
    assert not is_transient(full)  # no wait cures a full disk


def test_a_heartbeat_that_cannot_be_written_is_one_log_line(tmp_path, monkeypatch, caplog):
    # Optuna's heartbeat thread died with a traceback when the database restarted.
    import optuna
    import sqlalchemy.exc

    from nnsearch.search.storage import open_storage

    storage = open_storage(StorageURL.parse(f"sqlite:///{tmp_path / 'h.db'}"))

    def lost(self, trial_id):
        raise sqlalchemy.exc.OperationalError("UPDATE", {}, Exception("server closed"))

    monkeypatch.setattr(optuna.storages.RDBStorage, "record_heartbeat", lost)
    storage.record_heartbeat(1)  # does not raise
    assert "heartbeat of trial id" in caplog.text and "server closed" in caplog.text


def test_a_journal_writer_killed_holding_the_lock_holds_up_no_one(tmp_path):
    # Optuna's journal lock is a file a killed writer leaves behind: the other workers
    # waited out a 30 s grace. nnsearch's is an flock, which the OS drops with its holder.
    import subprocess
    import sys
    import time

    import optuna

    from nnsearch.search.storage import open_storage

    url = StorageURL.parse(f"journal:///{tmp_path / 'j.log'}")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time\n"
        "from nnsearch.search.storage import StorageURL, open_storage\n"
        f"storage = open_storage(StorageURL.parse({str(url)!r}))\n"
        "storage._backend._lock.acquire()  # the lock its appends take\n"
        "print('held', flush=True)\n"
        "time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        holder.kill()  # kill -9 while it holds the lock
        holder.wait()
        started = time.monotonic()
        study = optuna.create_study(study_name="j", storage=open_storage(url))
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
        assert time.monotonic() - started < 10, "waited for a dead writer"
        assert len(optuna.load_study(study_name="j", storage=open_storage(url)).trials) == 3
    finally:
        holder.kill()
        holder.wait()


def test_commands_that_read_create_no_tables_in_a_database(pg_url, tmp_path):
    # `status` pointed at any PostgreSQL database created Optuna's 13 tables there.
    import sqlalchemy

    from tests.helpers import run_cli

    for command in (["status", "--study", "s"], ["trials", "--study", "s"]):
        res = run_cli(*command, "--storage", pg_url, cwd=tmp_path)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "it holds no studies; create the study first" in res.stderr
    engine = sqlalchemy.create_engine(pg_url)
    try:
        assert sqlalchemy.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_a_read_only_sqlite_file_is_refused_by_a_command_that_writes(tmp_path):
    # A file its worker could not write (chattr +i, a read-only mount) had every worker
    # fail and restart, and the run end as if its timeout had.
    from tests.helpers import run_cli, write_study
    from tests.search.test_read_only import chattr

    study = write_study(tmp_path / "s.toml", trials=2, epochs=2)
    assert run_cli("create", str(study), cwd=tmp_path).returncode == 0
    db = tmp_path / "s.db"  # beside the study file, named as it is
    if not chattr("+i", db):
        if os.environ.get("CI") == "true":
            pytest.fail("chattr +i is needed to make a file read-only for root")
        pytest.skip("chattr +i is not available here")
    try:
        res = run_cli("run", str(study), "--workers", "2", cwd=tmp_path, timeout=60)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "is read-only here; only status, export and report can read it" in res.stderr
        assert run_cli("status", str(study), cwd=tmp_path).returncode == 0
    finally:
        chattr("-i", db)


def test_a_storage_proxy_that_does_not_answer_is_unreachable_exit_3(monkeypatch):
    pytest.importorskip("grpc")
    from nnsearch.search import storage
    from nnsearch.search.errors import StorageUnreachable

    monkeypatch.setattr(storage, "GRPC_READY_SECONDS", 0.5)
    with pytest.raises(StorageUnreachable, match="cannot reach the storage proxy") as caught:
        storage.open_storage(StorageURL.parse("grpc://127.0.0.1:1"))
    assert caught.value.exit_code == 3  # as a database that does not answer (it was 2)
