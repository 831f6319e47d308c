"""A storage URL, parsed once into a ``StorageURL`` that knows its kind, its file (SQLite,
journal) and its redacted form (a password is never printed); everything else takes
that value."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from sqlalchemy.engine import make_url

from .errors import UsageError

ENV_STORAGE = "NNSEARCH_STORAGE"
JOURNAL_PREFIX = "journal://"  # journal:///abs/path.log, or journal://relative/path.log
GRPC_PREFIX = "grpc://"  # a `nnsearch proxy` in front of the real storage


@dataclass(frozen=True)
class StorageURL:
    """A parsed storage URL. ``str()`` is the redacted form; ``secret`` connects."""

    kind: str  # "sqlite", "postgresql", "journal", "grpc", or another SQLAlchemy backend
    secret: str = field(repr=False)  # the URL to connect with (psycopg 3 for PostgreSQL)
    redacted: str  # safe to show: no password
    path: Path | None = None  # the SQLite or journal file (None: in memory, or a server)
    host: str | None = None  # grpc://HOST:PORT
    port: int | None = None

    def __str__(self) -> str:
        return self.redacted

    @classmethod
    def parse(cls, text: str) -> StorageURL:
        if text.startswith(JOURNAL_PREFIX):
            rest = text[len(JOURNAL_PREFIX):]
            if rest.startswith("//"):  # journal:////abs/path, as SQLite spells absolute paths
                rest = rest[1:]
            if not rest:
                raise UsageError("a journal URL is journal:///PATH, but got no path.")
            return cls("journal", text, text, path=Path(rest))
        if text.startswith(GRPC_PREFIX):
            host, _, port = text[len(GRPC_PREFIX):].rstrip("/").rpartition(":")
            if not host or not port.isdigit():
                raise UsageError(f"a proxy URL is grpc://HOST:PORT, but got {_redact(text)!r}.")
            return cls("grpc", text, text, host=host, port=int(port))
        text = _encode_at_signs(text)
        try:
            parsed = make_url(text)
            backend = parsed.get_backend_name()
        except Exception:
            raise UsageError(f"not a storage URL: {_redact(text)!r}; use sqlite:///PATH, "
                             "postgresql+psycopg://USER@HOST/DB or journal:///PATH.") from None
        shown = _redact(text)  # before the driver is rewritten: as the user wrote it
        if backend == "postgresql" and parsed.drivername != "postgresql+psycopg":
            parsed = parsed.set(drivername="postgresql+psycopg")
            text = parsed.render_as_string(hide_password=False)
        path = None
        if backend == "sqlite" and parsed.database and parsed.database != ":memory:":
            path = Path(parsed.database)
        return cls(backend, text, shown, path=path)

    @classmethod
    def resolve(cls, explicit: str | None, study_file: Path | None) -> StorageURL:
        """``--storage``, else $NNSEARCH_STORAGE, else SQLite beside the study file."""
        if explicit:
            return cls.parse(explicit)
        if os.environ.get(ENV_STORAGE):
            return cls.parse(os.environ[ENV_STORAGE])
        if study_file is None:
            raise UsageError(f"no storage given: pass --storage URL (or set {ENV_STORAGE}), "
                             "or address the study by its file.")
        return cls.parse(f"sqlite:///{study_file.resolve().with_suffix('.db')}")


def _encode_at_signs(url: str) -> str:
    """``user:p@ss@host``: the last ``@`` ends the user info, so the password is ``p@ss``.
    Percent-encode it, or SQLAlchemy takes ``ss@host`` for the host and shows part of
    the password."""
    scheme, sep, rest = url.partition("://")
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, path = rest[:end], rest[end:]
    if not sep or netloc.count("@") < 2:
        return url
    userinfo, _, host = netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    return f"{scheme}://{user}{colon}{quote(password, safe='')}@{host}{path}"


def _redact(url: str) -> str:
    """The URL with any password (in the user info or as a query parameter) as ***."""
    if url.startswith((JOURNAL_PREFIX, GRPC_PREFIX)):
        return url
    try:
        parsed = make_url(url)
        hidden = {k: "***" for k in parsed.query if k.lower() == "password"}
        if parsed.password is None and not hidden:
            return url  # nothing to hide: show it as written
        shown = parsed.update_query_dict(hidden).render_as_string(hide_password=True)
        return shown.replace("%2A%2A%2A", "***")
    except Exception:  # not a URL SQLAlchemy understands: show no more than the scheme
        if "@" not in url and "password" not in url.lower():
            return url  # nothing that could be a password
        return url.split("://", 1)[0] + "://***" if "://" in url else "***"
