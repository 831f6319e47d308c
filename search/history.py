"""The history a trial's sampler reads: bounded, so that a trial costs about the same at
trial 10,000 as at trial 500 (issue #27).

TPE (multivariate, grouped, with the constant liar) reads every finished trial several
times per trial: its groups of parameters, its split into good and bad trials, a
Parzen estimator over each. That costs time in proportion to the trials: alone, 20 ms
a trial at 150 trials, 85 ms at 1,000, 163 ms at 3,000 (the default space on iris).

The pruner reads the whole history: bounded, the median pruner's median came from the
best and the latest trials, and it pruned far more (86% of 3,000 trials against 65%,
one run each).

**The rule.** While a trial samples its parameters (``bounded``, entered by the
objective), a read of all trials answers with:

- every trial not finished (running or waiting: the constant liar's and the queue's);
- the ``RECENT`` most recently numbered finished trials, whatever their state;
- the ``BEST`` best completed, feasible trials among the older ones, ranked as the
  export ranks them (``export.rank_key``: value, then validation loss, then number):
  TPE's good trials (at most its 25 best) always stay in its view, and so do the
  trials a new best is judged against and the ensemble's candidates (``objective.py``
  reads those through the view too).

A study with at most ``BEST + RECENT`` finished trials is read whole: up to there,
nothing changes. A multi-objective study is read whole (its best is a front, not a
ranking). The view is worked out once per read of the trials
(``worker_storage.WorkerStorage`` shares one for a second), and it depends only on the
trials it is given: a reproducible study's view (``reproducible.py``) stays
reproducible.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from contextlib import contextmanager

import optuna
from optuna.trial import FrozenTrial, TrialState

from . import record
from .export import rank_key
from .front import feasible
from .worker_storage import WorkerStorage

_FINISHED = frozenset((TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
BEST = 100  # four times TPE's largest good group (25)
RECENT = 400


class TrialHistory:
    """A bounded view of a study's trials (see the module's note), kept for the last list
    of trials it was given. A finished trial never changes, and the older trials only
    grow: each is ranked once, into a pool of the ``best`` of them (``_pool``), so that
    a view costs a pass over the trials' states, not a ranking of them all."""

    def __init__(self, direction: str, best: int | None = None,
                 recent: int | None = None) -> None:
        self.sign = -1.0 if direction == "maximize" else 1.0
        self.best = BEST if best is None else best
        self.recent = RECENT if recent is None else recent
        self._of: list[FrozenTrial] | None = None
        self._view: list[FrozenTrial] = []
        self._ranked: set[int] = set()  # the older trials (numbers) already ranked
        self._pool: list[tuple[tuple[float, float, int], int]] = []  # the best, best first

    def __call__(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        if trials is self._of:
            return self._view
        self._of, self._view = trials, self.view(trials)
        return self._view

    def view(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        finished = [t for t in trials if t.state in _FINISHED]
        if len(finished) <= self.best + self.recent:
            return trials
        finished.sort(key=lambda t: t.number)  # (as storages give them: already sorted)
        older = finished[:-self.recent]
        for t in older:
            if t.number not in self._ranked:
                self._ranked.add(t.number)
                self._rank(t)
        kept = [*finished[-self.recent:], *(t for t in trials if t.state not in _FINISHED)]
        for _, number in self._pool:  # (each found by its number among the older)
            i = bisect.bisect_left(older, number, key=lambda t: t.number)
            if i < len(older) and older[i].number == number:
                kept.append(older[i])
        return sorted(kept, key=lambda t: t.number)

    def _rank(self, t: FrozenTrial) -> None:
        """Put an older trial in the pool if it is among the best (completed, feasible)."""
        if t.state != TrialState.COMPLETE or t.values is None or not feasible(t):
            return
        value = t.values[0]
        if not math.isfinite(value):
            return
        key = rank_key(self.sign, value, t.user_attrs.get(record.VAL_LOSS), t.number)
        if len(self._pool) < self.best:
            bisect.insort(self._pool, (key, t.number))
        elif key < self._pool[-1][0]:
            bisect.insort(self._pool, (key, t.number))
            self._pool.pop()


@contextmanager
def bounded(storage: optuna.storages.BaseStorage, history: TrialHistory | None) -> Iterator[None]:
    """Within: reads of all trials through ``storage`` answer with ``history``'s view,
    where the storage is a worker's (and ``history`` is not None: a multi-objective
    study's is)."""
    if history is None or not isinstance(storage, WorkerStorage) or storage.history:
        yield
        return
    storage.history = history
    try:
        yield
    finally:
        storage.history = None
