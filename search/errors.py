"""The one exception the CLI turns into a one-line error and exit code 2."""

from __future__ import annotations

from pathlib import Path


class Stopped(KeyboardInterrupt):
    """A worker was told to stop (SIGTERM/SIGINT); raised between epochs.

    A KeyboardInterrupt, so that Optuna ends the running trial as FAIL and then
    lets it through rather than swallowing it.
    """


STORAGE_UNREACHABLE = 3  # exit code: the storage stayed away through every retry


class UsageError(Exception):
    """A problem with what the user gave us: a file, a value, a name, a URL."""

    exit_code = 2


class StorageUnreachable(UsageError):
    """A database server that does not answer (down, restarting): exit 3, and the
    supervisor restarts such a worker after a backoff."""

    exit_code = STORAGE_UNREACHABLE



def require_file(path: str | Path, what: str) -> None:
    """UsageError unless ``path`` is a regular file: ``what`` ("data file", "study
    file") missing, a folder, or a stream or device."""
    p = Path(path)
    if p.is_file():
        return
    if str(path) == "-" or (p.exists() and not p.is_dir()):
        raise UsageError(f"{what} {path} is not a regular file: nnsearch reads files, not "
                         "standard input, pipes or devices.")
    if p.is_dir():
        raise UsageError(f"{what} {path} is a folder; give a file.")
    raise UsageError(f"{what} not found: {path}")
