"""Storage URLs: kinds, journal paths, password redaction, driver choice."""

from pathlib import Path

import pytest

from nnsearch.search.errors import UsageError
from nnsearch.search.storage import journal_path, kind, normalise, redact, resolve_url


def test_journal_paths():
    assert journal_path("journal:///tmp/s.log") == Path("/tmp/s.log")
    assert journal_path("journal:////tmp/s.log") == Path("/tmp/s.log")
    assert journal_path("journal://runs/s.log") == Path("runs/s.log")


@pytest.mark.parametrize(("url", "expected"), [
    ("sqlite:///x.db", "sqlite"), ("postgresql://u@h/db", "postgresql"),
    ("postgresql+psycopg://u@h/db", "postgresql"), ("journal:///x.log", "journal"),
    ("grpc://h:13000", "grpc"),
])
def test_kinds(url, expected):
    assert kind(url) == expected


def test_passwords_are_redacted():
    assert redact("postgresql+psycopg://u:hunter2@h:5432/db") == \
        "postgresql+psycopg://u:***@h:5432/db"
    assert "hunter2" not in redact("weird://u:hunter2@%%%")
    assert redact("garbage") == "garbage"


def test_postgres_uses_psycopg3():
    assert normalise("postgresql://u:p@h/db").startswith("postgresql+psycopg://u:p@h/db")
    assert normalise("sqlite:///x.db") == "sqlite:///x.db"


def test_storage_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("NNSEARCH_STORAGE", raising=False)
    study = tmp_path / "s.toml"
    assert resolve_url(None, study) == f"sqlite:///{tmp_path / 's.db'}"
    monkeypatch.setenv("NNSEARCH_STORAGE", "journal:///x.log")
    assert resolve_url(None, study) == "journal:///x.log"
    assert resolve_url("sqlite:///y.db", study) == "sqlite:///y.db"
    monkeypatch.delenv("NNSEARCH_STORAGE")
    with pytest.raises(UsageError, match="no storage given"):
        resolve_url(None, None)
