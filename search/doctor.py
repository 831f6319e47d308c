"""``nnsearch doctor``: will this storage carry N workers (and the dashboard)?"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from optuna.storages import RDBStorage
from sqlalchemy import text

from .errors import UsageError
from .storage import dispose, open_storage
from .storage_url import StorageURL

CONNECTIONS_PER_WORKER = 2  # each RDBStorage holds two (measured with Optuna 5)
DASHBOARD_CONNECTIONS = 2
SQLITE_MANY_WORKERS = 8
NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "afs",
                       "glusterfs", "ceph", "lustre", "fuse.s3fs"}


@dataclass
class Check:
    status: str  # "ok", "warn" or "fail"
    name: str
    detail: str


def filesystem_of(path: Path) -> str:
    """The type of the file system holding ``path`` (from /proc/mounts), or ''."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    best, fstype = "", ""
    target = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1]
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):  # the deepest mount point holding the path
            best, fstype = mount, parts[2]
    return fstype


def diagnose(url: StorageURL, workers: int) -> list[Check]:
    checks: list[Check] = []
    backend = url.kind
    try:
        storage = open_storage(url, heartbeat=False)
    except UsageError as exc:
        return [Check("fail", "reachable", str(exc))]
    checks.append(Check("ok", "reachable", f"{url} ({backend})"))
    try:
        db = storage if isinstance(storage, RDBStorage) else None
        if db is not None:
            current, head = db.get_current_version(), db.get_head_version()
            if current == head:
                checks.append(Check("ok", "schema", f"version {current} (current)"))
            else:
                checks.append(Check("fail", "schema", f"version {current}, this Optuna needs "
                                    f"{head}: run `optuna storage upgrade --storage URL`"))
        if backend == "postgresql" and db is not None:
            checks.append(_postgres_connections(db, workers))
        elif backend == "sqlite":
            checks += _sqlite_checks(url, workers)
        elif backend == "journal":
            assert url.path is not None
            path = url.path
            checks.append(Check("warn" if workers > 1 else "ok", "heartbeat",
                                "the journal file has no heartbeat: a killed worker's trial "
                                "is retried only by a run or worker on its own host; fine "
                                "for one host, prefer SQLite or PostgreSQL for long studies"))
            fs = filesystem_of(path.parent)
            if fs in NETWORK_FILESYSTEMS:
                checks.append(Check("warn", "file system", f"{path} is on {fs}: file locks "
                                    "are unreliable there"))
    finally:
        dispose(storage)
    return checks


def _postgres_connections(db: RDBStorage, workers: int) -> Check:
    with db.engine.connect() as conn:
        max_conn = int(conn.execute(text("SHOW max_connections")).scalar_one())
        reserved = int(conn.execute(text("SHOW superuser_reserved_connections")).scalar_one())
        in_use = int(conn.execute(text("SELECT count(*) FROM pg_stat_activity "
                                       "WHERE backend_type = 'client backend'")).scalar_one())
    need = CONNECTIONS_PER_WORKER * workers + DASHBOARD_CONNECTIONS
    free = max_conn - reserved - in_use
    detail = (f"{workers} worker(s) x {CONNECTIONS_PER_WORKER} + dashboard "
              f"{DASHBOARD_CONNECTIONS} = {need} connections; max_connections={max_conn}, "
              f"{reserved} reserved, {in_use} in use, {free} free")
    if need > free:
        return Check("fail", "connections", detail + ": raise max_connections (or put "
                     "`nnsearch proxy` in front)")
    if need > 0.8 * free:
        return Check("warn", "connections", detail + ": little headroom")
    return Check("ok", "connections", detail)


def _sqlite_checks(url: StorageURL, workers: int) -> list[Check]:
    checks = []
    if workers > SQLITE_MANY_WORKERS:
        checks.append(Check("warn", "workers", f"{workers} workers on SQLite: every write "
                            "takes one file lock; beyond ~8 workers use PostgreSQL"))
    else:
        checks.append(Check("ok", "workers", f"{workers} worker(s) on SQLite (30 s lock "
                            "timeout, WAL)"))
    if url.path is not None:
        fs = filesystem_of(url.path.parent)
        if fs in NETWORK_FILESYSTEMS:
            checks.append(Check("warn", "file system", f"{url.path} is on {fs}: SQLite's "
                                "locks are unreliable on network file systems; use PostgreSQL "
                                "for workers on several machines"))
        else:
            checks.append(Check("ok", "file system", f"{fs or 'local'}"))
    return checks
