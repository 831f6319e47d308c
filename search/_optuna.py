"""Every private Optuna name nnsearch uses, behind a function with a public fallback.

A private path is kept only where ``bench/internals.py`` measured that it saves at
least 1% of a default-study trial. Two did not, and were replaced by the public API:
writing a trial's 17 result attributes in one private transaction saved 0.12%
(SQLite) and 0.52% (PostgreSQL) of a 1.97 s median trial over ``trial.set_user_attr``
per key; a private COUNT query saved 0.01% (SQLite) and -0.03% (PostgreSQL) over
``study.get_trials``, which Optuna serves from its cache of finished trials. The
bench keeps both private versions, to measure again.

What remains is one name: the logger Optuna reports a failed trial on, which lets
``quiet_failed_trials`` drop expected failures wherever Optuna's records go. Its
fallback filters the handlers of the public ``optuna`` logger (Optuna's own output).
``private_names_in_use()`` checks each private name live, and
``tests/search/test_optuna_contract.py`` fails when one moves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import optuna

# Where Optuna logs "Trial N failed ..." with the traceback (optuna/study/_optimize.py).
_FAILED_TRIAL_LOGGER = "optuna.study._optimize"


class _Drop(logging.Filter):
    def __init__(self, expected: Callable[[str], bool]) -> None:
        super().__init__()
        self.expected = expected

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.expected(record.getMessage())


def quiet_failed_trials(expected: Callable[[str], bool]) -> None:
    """Drop Optuna's "Trial N failed" warnings (with traceback) whose message is
    ``expected``: a failure nnsearch caused on purpose and records on the trial."""
    drop = _Drop(expected)
    logging.getLogger(_FAILED_TRIAL_LOGGER).addFilter(drop)
    for handler in logging.getLogger("optuna").handlers:  # the fallback, if the name moves
        handler.addFilter(drop)


class _OneLine(logging.Filter):
    def __init__(self, short: Callable[[BaseException], bool]) -> None:
        super().__init__()
        self.short = short

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and self.short(exc):
            lines = record.getMessage().splitlines()
            record.msg, record.args = (lines[0] if lines else "") + " ...", ()
            record.exc_info, record.exc_text = None, None
        return True


def one_line_failures(short: Callable[[BaseException], bool]) -> None:
    """Optuna's "Trial N failed" warning in one line, without its traceback, when its
    exception is ``short`` (a storage that went away: the trial is failed and retried,
    and the traceback says nothing the line does not)."""
    one_line = _OneLine(short)
    logging.getLogger(_FAILED_TRIAL_LOGGER).addFilter(one_line)
    for handler in logging.getLogger("optuna").handlers:  # the fallback, if the name moves
        handler.addFilter(one_line)


def private_names_in_use() -> dict[str, bool]:
    """Each private name, and whether Optuna still uses it (a live check)."""
    seen: list[str] = []

    class _Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.name)

    handler = _Catch(logging.WARNING)
    root = logging.getLogger("optuna")
    root.addHandler(handler)
    try:
        study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
        study.optimize(_fail, n_trials=1, catch=(ValueError,))
    finally:
        root.removeHandler(handler)
    return {f"failed-trial logger {_FAILED_TRIAL_LOGGER!r}": _FAILED_TRIAL_LOGGER in seen}


def _fail(trial: optuna.Trial) -> float:
    raise ValueError("a failing trial")
