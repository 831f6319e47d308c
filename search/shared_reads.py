"""One read of a study's trials, shared by the reads that follow it within a moment.

In a worker, Optuna reads all of the study's trials several times per trial: the
sampler (twice with TPE's constant liar), the pruner at every check, the waiting
trials before each new one, the new-best check. On an RDB storage each read is a
round of seven queries even when nothing changed (Optuna caches finished trials,
not the question), and on a small table's trial these reads were over half of
the time beyond training (``bench/tiny.py``).

``SharedReads`` answers a read from the last one for ``window`` seconds. The view
it gives is a moment old at most, and never older than ``expire()``, which the
worker calls as each of its trials starts (the sampler's read then sees every trial
finished before it, its own last one included) and where a read must be exact (the
stops, a count by read, a waiting trial to take, a sweep).
A trial this process has just created may be missing from it: Optuna's readers
during a trial (the sampler, the pruner) leave the running trial out anyway.
What a moment-old view can cost: the pruner or the sampler does not yet see a
trial another worker started or finished in that moment.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Container
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ._optuna import study_storage

WINDOW_SECONDS = 1.0


def shadow(obj: Any, name: str, fn: Callable[..., Any]) -> Callable[[], None]:
    """Set ``obj.name = fn`` on the instance; returns the undo (puts back what was there:
    another shadow, or the class's method)."""
    before = obj.__dict__.get(name)
    setattr(obj, name, fn)

    def undo() -> None:
        if before is None:
            obj.__dict__.pop(name, None)
        else:
            setattr(obj, name, before)

    return undo


class NoSharing:
    """Where the study's storage object is not known: every read goes to the storage."""

    reads = shared = 0

    def expire(self) -> None:
        pass

    def remove(self) -> None:
        pass


def share_reads(study: optuna.Study, window: float = WINDOW_SECONDS) -> SharedReads | NoSharing:
    """``SharedReads`` on the storage ``study`` reads its trials through."""
    storage = study_storage(study)
    return NoSharing() if storage is None else SharedReads(storage, window)


class SharedReads:
    """Installed on a study's storage object (its own methods, shadowed on the
    instance); ``remove()`` puts them back."""

    def __init__(self, storage: optuna.storages.BaseStorage,
                 window: float = WINDOW_SECONDS) -> None:
        self.storage = storage
        self.window = window
        self.reads = 0  # reads that went to the storage
        self.shared = 0  # reads answered from the last one
        self._trials: dict[int, list[FrozenTrial]] = {}  # study id -> all its trials
        self._read_at: dict[int, float] = {}
        self._read = storage.get_all_trials
        self._undo = [shadow(storage, "get_all_trials", self.get_all_trials)]

    def remove(self) -> None:
        for undo in reversed(self._undo):
            undo()

    def expire(self) -> None:
        """The next read goes to the storage."""
        self._read_at.clear()

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        now = time.monotonic()
        trials = self._trials.get(study_id)
        if trials is None or now - self._read_at.get(study_id, -float("inf")) > self.window:
            trials = self._read(study_id, deepcopy=False)
            self._trials[study_id], self._read_at[study_id] = trials, now
            self.reads += 1
        else:
            self.shared += 1
        if states is not None:
            trials = [t for t in trials if t.state in states]
        return copy.deepcopy(trials) if deepcopy else list(trials)
