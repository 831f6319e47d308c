"""The ``nnsearch`` command's entry point, kept apart from the package (whose import
must stay light, and which imports nothing of the command line)."""

import sys


def main() -> int:
    """The ``nnsearch`` command. A Ctrl-C while it is still loading (its imports take
    a few tenths of a second) ends it as one later does: a line and exit 130, no
    traceback."""
    try:
        from nnsearch.search.cli import main as command_line

        return command_line()
    except KeyboardInterrupt:
        name = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
        print(f"nnsearch{' ' + name if name else ''}: interrupted", file=sys.stderr)
        return 130
