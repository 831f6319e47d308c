"""nnsearch: hyperparameter search for from-scratch NumPy networks, on Optuna.

``nnsearch.model`` is the network and its trainer (NumPy only, never Optuna);
``nnsearch.search`` is the Optuna side; ``python -m nnsearch`` is the command line.
This module stays light: importing it imports neither NumPy nor Optuna.
"""

import logging
import sys

__version__ = "0.2.0"

# Every logger of the package lives under "nnsearch"; the CLI gives it a handler.
logging.getLogger(__name__).addHandler(logging.NullHandler())


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
