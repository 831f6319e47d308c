"""nnsearch: hyperparameter search for from-scratch NumPy networks, on Optuna.

``nnsearch.model`` is the network and its trainer (NumPy only, never Optuna);
``nnsearch.search`` is the Optuna side; ``python -m nnsearch`` is the command line.
This module stays light: importing it imports neither NumPy nor Optuna.
"""

import logging

__version__ = "0.2.0"

# Every logger of the package lives under "nnsearch"; the CLI gives it a handler.
logging.getLogger(__name__).addHandler(logging.NullHandler())
