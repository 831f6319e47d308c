"""The one exception the CLI turns into a one-line error and exit code 2."""

from __future__ import annotations


class UsageError(Exception):
    """A problem with what the user gave us: a file, a value, a name, a URL."""

    exit_code = 2
