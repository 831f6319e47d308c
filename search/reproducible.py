"""``[sampler] reproducible = true``: the same trials whatever the worker count and timing.

Parallel optimisation differs from run to run because what the sampler and the pruner
decide depends on which results they have seen, and that depends on the clock. Here,
trial *n* (its **logical number**, below) is sampled, and judged by the pruner, from
the results of trials ``0 .. n - LAG - 1`` only, each as it finally ended, and with a
sampler seeded from the study seed and *n*; a worker waits when one of those trials
has not finished. ``LAG`` does not depend on the worker count, so 1, 2 or 8 workers
give the same trials, values, pruning decisions and best trial. Training was already
bit for bit (each trial's seed comes from the study seed and its number).

- **Logical numbers.** A trial's Optuna number counts the retries of killed workers'
  trials too; its logical number does not: a fresh trial's is its number minus the
  retries created before it, a retry's is its first try's. A killed and resumed run
  gives the same table, by logical number, as one never interrupted.
- **The view.** While a worker runs trial *n*, its storage (``LaggedStorage``) answers
  reads of all trials with the fixed list of trials ``0 .. n - LAG - 1`` as they ended
  (a completed or pruned retry in place of its failed first tries), numbered by their
  logical numbers: what TPE, the pruner and the pruner's warm-up read.
- **Waiting.** A worker creates a new trial only once the trials its view holds have
  ended (``next_is_ready``, checked with the count under the trial lock; until then it
  sweeps and waits, as when every slot is taken), and takes a waiting trial first, the
  one with the lowest logical number (``queue_in_order``: a retry before the trials
  queued after its first try), so the trial every other one may wait for always runs,
  and a dead worker's trial is always swept and retried. A trial waits for its view
  where it first needs it (its first sampled parameter, or its first question to the
  pruner): a new trial's is ready; a queued one may wait there. Readiness is read
  under the lock, where a sweep fails and retries a trial in one step: a trial failed
  but not yet retried is never taken for one that ended. A trial lock is required
  (not through the gRPC proxy).
- **Sampling.** ``LaggedSampler`` makes the study's sampler anew for each trial, seeded
  by its logical number, and samples its joint parameters from the view when the
  trial's first parameter is sampled (not for a parameter queued with it). Samplers and
  pruners that keep state of their own across trials are refused
  (``sections.REPRODUCIBLE_SAMPLERS``, ``REPRODUCIBLE_PRUNERS``).
- **After training** the view is dropped (``end_view``): what follows (artifacts,
  kept predictions, Optuna's tell) reads the study as it is.

With a timeout the study is refused: which trials exist would depend on the clock.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Container, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from . import record
from .errors import Stopped
from .trial_lock import TrialLock, locked
from .worker_storage import WorkerStorage

LAG = 8  # trial n sees trials 0 .. n - LAG - 1: up to ~8 workers rarely wait
POLL_SECONDS = 0.2
_DONE = (TrialState.COMPLETE, TrialState.PRUNED)


def logical_numbers(trials: Sequence[FrozenTrial]) -> dict[int, int]:
    """Each trial's logical number, by its Optuna number (see the module's note)."""
    out: dict[int, int] = {}
    retries = 0
    for t in sorted(trials, key=lambda t: t.number):
        if record.SURPLUS in t.user_attrs:  # (a race's FAIL that never ran: no number)
            retries += 1
            continue
        first = record.first_try(t)
        if first != t.number:
            retries += 1
            out[t.number] = out.get(first, first)
        else:
            out[t.number] = t.number - retries
    return out


def final_trials(trials: Sequence[FrozenTrial], before: int,
                 logical: dict[int, int] | None = None) -> list[FrozenTrial] | None:
    """Trials ``0 .. before - 1`` by logical number, each as it ended and numbered by its
    logical number; None while one of them may still change: running or waiting (a
    trial that failed with a retry to come has one waiting: a sweep fails and retries a
    trial in one step under the trial lock, and the caller reads under it).
    ``logical``: ``logical_numbers(trials)``, where the caller has them."""
    logical = logical_numbers(trials) if logical is None else logical
    by: dict[int, list[FrozenTrial]] = {}
    for t in trials:
        if t.number in logical and logical[t.number] < before:
            by.setdefault(logical[t.number], []).append(t)
    out = []
    for n in range(max(before, 0)):
        tries = by.get(n)
        if not tries:
            return None  # (not created yet: a worker's view runs ahead)
        done = [t for t in tries if t.state in _DONE]
        if not done and any(t.state in (TrialState.RUNNING, TrialState.WAITING)
                            for t in tries):
            return None
        last = copy.deepcopy(done[0] if done else max(tries, key=lambda t: t.number))
        last.number = n
        out.append(last)
    return out


class LaggedStorage(WorkerStorage):
    """A worker's storage for a reproducible study: while the view of a trial is held
    (``hold_view``), reads of all trials answer with that view."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.view: list[FrozenTrial] | None = None
        self.logical: int | None = None  # the running trial's logical number
        self.next_taken: int | None = None  # the only waiting trial (id) it may take

    def logical_of(self, study_id: int, number: int) -> int:
        """The logical number of trial ``number`` (the trials before it are all created:
        it does not wait)."""
        return logical_numbers(self.reader.get_all_trials(study_id, deepcopy=False))[number]

    def hold_view(self, study_id: int, number: int, lock: TrialLock | None,
                  stop: threading.Event) -> int:
        """Wait until trials ``0 .. n - LAG - 1`` have ended (n: the logical number of
        trial ``number``), hold them as the view, and return n. (A new trial was created
        once they had; a queued one, or a retry, may wait here, on its own view.)"""
        while True:
            with locked(lock):  # a sweep fails and retries a trial under it
                self.expire()
                trials = self.reader.get_all_trials(study_id, deepcopy=False)
                logical = logical_numbers(trials)
                n = logical[number]
                view = final_trials(trials, n - LAG, logical)
            if view is not None:
                self.view, self.logical = view, n
                return n
            if stop.wait(POLL_SECONDS):
                raise Stopped("a signal")

    def next_is_ready(self, study_name: str) -> bool:
        """Under the trial lock: whether the next new trial's view is final (all trials
        before its logical number minus LAG have ended), so that it need not wait."""
        self.expire()
        study_id = self.get_study_id_from_name(study_name)
        trials = self.reader.get_all_trials(study_id, deepcopy=False)
        logical = logical_numbers(trials)
        n = len(set(logical.values()))  # the next logical number
        return final_trials(trials, n - LAG, logical) is not None

    def queue_in_order(self, study_name: str) -> None:
        """Under the trial lock, before Optuna takes a waiting trial (the lowest id): let
        it take only the waiting one with the lowest logical number. A retry of a dead
        worker's trial is queued behind the trials queued before it; taken after them,
        it could be the trial all of their views wait for, while they hold every worker.
        The trial with the lowest logical number never waits on another."""
        study_id = self.get_study_id_from_name(study_name)
        trials = self.reader.get_all_trials(study_id, deepcopy=False)
        logical = logical_numbers(trials)
        waiting = [t for t in trials if t.state == TrialState.WAITING and t.number in logical]
        first = min(waiting, key=lambda t: (logical[t.number], t.number), default=None)
        self.next_taken = None if first is None else \
            self.get_trial_id_from_study_id_trial_number(study_id, first.number)

    def drop_view(self) -> None:
        self.view, self.logical = None, None

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        if template_trial is None:
            self.drop_view()
        return super().create_new_trial(study_id, template_trial)

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        if state == TrialState.RUNNING and self.next_taken not in (None, trial_id):
            return False  # (not its to take: Optuna tries the next one; queue_in_order)
        if state == TrialState.RUNNING or (state.is_finished() and trial_id == self.started):
            self.drop_view()  # (a trial taken from the queue, or its own trial's end)
        return super().set_trial_state_values(trial_id, state, values)

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        if self.view is None:
            return super().get_best_trial(study_id)
        # Optuna's own rule, on the view (the Wilcoxon pruner asks for the best trial)
        return optuna.storages.BaseStorage.get_best_trial(self, study_id)

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        view = self.view
        if view is None:
            return super().get_all_trials(study_id, deepcopy, states)
        view = self.history(view) if self.history else view  # (bounded: history.py)
        trials = [t for t in view if states is None or t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials


class LaggedSampler(BaseSampler):
    """The study's sampler, made again for each trial with a seed from the study seed and
    the trial's logical number, sampling from the view (``LaggedStorage``). Optuna's
    joint sampling at the trial's creation is deferred to its first parameter."""

    def __init__(self, make: Any, study_seed: int, storage: LaggedStorage) -> None:
        self.make = make  # seed -> a new sampler of the study's kind
        self.study_seed = study_seed
        self.storage = storage
        self.lock: TrialLock | None = None
        self.stop = threading.Event()
        self._for: int | None = None  # the trial (Optuna number) it samples for
        self._logical = -1  # its logical number
        self._inner: BaseSampler | None = None  # None: its view is not held yet
        self._relative: dict[str, Any] = {}

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        return {}  # (deferred: see sample_independent)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def begin(self, study: optuna.Study, trial: FrozenTrial) -> int:
        """Trial ``trial``'s logical number, at its start; its view is waited for only
        where it is first needed (``_start``: the first parameter sampled, the first
        question to the pruner), so a trial queued with all of its parameters and never
        judged by a pruner never waits."""
        if self._for != trial.number:
            study_id = self.storage.get_study_id_from_name(study.study_name)
            self._for, self._inner, self._relative = trial.number, None, {}
            self._logical = self.storage.logical_of(study_id, trial.number)
        return self._logical

    def hold(self, study: optuna.Study, number: int, frozen: Callable[[], FrozenTrial]
             ) -> None:
        """Wait for trial ``number``'s view, if it is not held yet (``frozen``: the trial
        as stored, read only then)."""
        if self._inner is None or self._for != number:
            self._start(study, frozen())

    def _start(self, study: optuna.Study, trial: FrozenTrial) -> BaseSampler:
        """Wait for the view, and sample the joint parameters from it (once)."""
        study_id = self.storage.get_study_id_from_name(study.study_name)
        n = self.storage.hold_view(study_id, trial.number, self.lock, self.stop)
        inner = self.make(record.sampler_seed(self.study_seed, n))
        inner.before_trial(study, trial)
        # (a retry, or a trial asking the pruner, has its parameters: nothing to sample)
        self._relative = {} if trial.distributions else inner.sample_relative(
            study, trial, inner.infer_relative_search_space(study, trial))
        self._for, self._inner, self._logical = trial.number, inner, n
        return inner

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        inner = self._inner if self._for == trial.number else None
        if inner is None:
            inner = self._start(study, trial)
        if param_name in self._relative:
            return self._relative[param_name]
        return inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        if self._inner is not None and self._for == trial.number:
            self._inner.after_trial(study, trial, state, values)
        self._for, self._inner, self._relative = None, None, {}


def logical_number(trial: optuna.Trial, frozen: FrozenTrial) -> int | None:
    """In a reproducible study, ``trial``'s logical number, which names its seed
    (``frozen``: it as stored); else None."""
    sampler = trial.study.sampler
    if not isinstance(sampler, LaggedSampler):
        return None
    return sampler.begin(trial.study, frozen)


def hold_view(trial: optuna.Trial, frozen: Callable[[], FrozenTrial]) -> None:
    """In a reproducible study, before the pruner is asked: wait for ``trial``'s view if
    no parameter sampled has yet (a trial queued with all of its parameters); ``frozen``
    reads the trial as stored, where it must wait."""
    sampler = trial.study.sampler
    if isinstance(sampler, LaggedSampler):
        sampler.hold(trial.study, trial.number, frozen)


def end_view(trial: optuna.Trial) -> None:
    """``trial`` has trained: its sampling and pruning are over, and what follows reads
    the study as it is (a worker's storage drops the view)."""
    if isinstance(trial.storage, LaggedStorage):
        trial.storage.drop_view()
