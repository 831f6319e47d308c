"""One worker: takes trials from a shared study until its global budget is spent.

The budget counts *finished* trials (complete + pruned) across all workers. A
worker starts a trial only while finished + running trials are below it; it
counts and creates the trial under the study's trial lock (``trial_lock.py``), so
two workers never both take the last slot. Where a storage has no such lock (the
gRPC proxy), a trial that finds itself beyond the budget once it has its number
ends at once as FAIL, marked as surplus, without training. A trial that fails (a
killed worker's, swept as stale) does not count, so its retry takes its place.

The timeout stops a worker starting trials; a trial still running ``grace``
seconds after it (``budget.grace``, by default a tenth of the timeout) is
stopped at its next epoch and ends pruned, so a run ends near its timeout. Nor does
a worker start a trial that its typical completed trial says could not finish before
that time limit: it would only be stopped there.

A worker asks Optuna for each trial (``study.ask``) under the lock, runs it with its
heartbeat (``beating``) and tells Optuna how it ended (``study.tell``):
Optuna's optimize would create the trial inside itself, where the lock cannot visibly
end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import statistics
import threading
import time
import warnings
from collections.abc import Iterator
from types import FrameType

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from . import record, stops
from .artifacts import artifact_store
from .counting import count_states, is_gated, trials_ahead
from .errors import Stopped, UsageError
from .objective import Objective
from .reproducible import LaggedSampler, LaggedStorage
from .retry import error_reason, is_transient, with_retry
from .study import OpenStudy, accepted_data
from .sweep import fail_stale, sweep
from .trial_lock import locked, trial_lock
from .worker_storage import WorkerStorage

logger = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 5
POLL_SECONDS = 0.5
TYPICAL_OF = 9  # a worker's typical trial: the median of its last this many completed
ENV_RUN = "NNSEARCH_RUN_PID"  # set by `run` for its workers: its pid, to watch
RUN_CHECK_SECONDS = 1.0  # how often a worker started by `run` checks that it is there


class _Done(Exception):
    """The study is done: its budget is spent, or a study-level stop (stops.py) holds."""


class Surplus(Exception):
    """This trial is beyond the study's budget: it ends as FAIL without training."""


@contextlib.contextmanager
def beating(storage: WorkerStorage) -> Iterator[None]:
    """The heartbeat of the trial this process last started (``storage.started``), while
    the block runs, as Optuna's optimize beats it: at once, then every interval, from a
    thread of its own (none where the storage has no heartbeat)."""
    interval, trial_id = storage.get_heartbeat_interval(), storage.started
    if interval is None or trial_id is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                storage.record_heartbeat(trial_id)
            except Exception as exc:  # (the storage is away: try again next time)
                logger.warning("heartbeat of trial id %d not recorded (%s)", trial_id, exc)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def catchable_signals() -> list[signal.Signals]:
    """SIGINT, SIGTERM and SIGHUP, but not SIGHUP under ``nohup`` (ignored: keep it so)."""
    hup = [] if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN else [signal.SIGHUP]
    return [signal.SIGINT, signal.SIGTERM, *hup]


class Worker:
    def __init__(self, opened: OpenStudy, budget: int | None,
                 timeout: float | None = None) -> None:
        self.opened = opened
        self.study = opened.study
        self.retry = record.RETRY
        self.signum = 0  # the signal that stopped it, if one did
        self.process_tag = record.process_tag()
        self.orphans_seen: dict[int, float] = {}  # for fail_orphans
        self.budget = budget
        spec = opened.spec
        # A trial budget or a study-level stop: the worker checks before each trial, and
        # counting and creating the trial under one lock keeps the check exact.
        self.gated = is_gated(budget, spec)
        self.lock = trial_lock(opened.url, opened.storage, opened.study.study_name) \
            if self.gated else None
        self.deadline = time.monotonic() + timeout if timeout else None
        self.stop = threading.Event()
        data = accepted_data(opened, notes=False)
        self.objective = Objective(spec, data, opened.url, artifact_store(opened.url),
                                   stop=self.stop)
        if self.deadline is not None:
            assert timeout is not None
            grace = spec.grace_after(timeout)
            self.objective.deadline = self.deadline + grace
            self.objective.time_limit = f"the time limit ({timeout:g} s + {grace:g} s grace)"
        self.trials_run = 0
        self.trial_seconds: list[float] = []  # its completed trials' durations, latest last
        # the trial it runs is kept in this process (its writes in two transactions),
        # one read of the trials serves a moment, and its trials are created with its
        # name on them (worker_storage.py)
        assert opened.worker_storage is not None, "a worker's study is opened for a worker"
        self.storage = opened.worker_storage
        self.storage.claim = {record.CREATOR: [self.objective.worker, self.process_tag]}
        self.lagged = self.storage if isinstance(self.storage, LaggedStorage) else None
        if self.lagged is not None:  # [sampler] reproducible (reproducible.py)
            if self.lock is None:
                raise UsageError("sampler.reproducible needs the trial lock, which this storage "
                                 "does not have (a gRPC proxy): use SQLite, a journal or "
                                 "PostgreSQL directly.")
            assert isinstance(self.study.sampler, LaggedSampler)
            self.study.sampler.lock, self.study.sampler.stop = self.lock, self.stop

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: end the running trial as FAIL (reason recorded) and exit.

        The handler only raises a flag; the trial notices it at its next epoch, a
        point where no storage write is under way.
        """
        def handler(signum: int, frame: FrameType | None) -> None:
            self.objective.stop_reason = signal.Signals(signum).name
            self.signum = signum
            self.stop.set()

        for signum in catchable_signals():
            signal.signal(signum, handler)

    def watch_run(self, run_pid: int) -> None:
        """Stop as a signal would once the ``run`` that started this worker is gone
        (killed, say by the OOM killer): its workers went on unwatched, without a
        timeout until the whole budget was spent."""
        def watch() -> None:
            while not self.stop.wait(RUN_CHECK_SECONDS):
                if os.getppid() != run_pid:
                    self.objective.stop_reason = f"the end of its run (pid {run_pid})"
                    self.stop.set()

        threading.Thread(target=watch, name="watch-run", daemon=True).start()

    def _take_trial(self) -> optuna.Trial | None:
        """The next trial, counted and created under the trial lock (held for exactly
        that, where there is one); None while every slot is taken (swept meanwhile).
        Raises _Done: the budget is spent, or a study-level stop holds."""
        if self.lagged is not None:
            self.lagged.drop_view()  # (the last trial's, if its end did not drop it)
        with locked(self.lock):
            if self.gated and not self._slot_free():
                return None
            fail_stale(self.opened)  # (as Optuna's optimize did before each trial)
            if self.lagged is not None:  # (reproducible: the queue by logical number)
                self.lagged.queue_in_order(self.study.study_name)
            try:
                with warnings.catch_warnings():  # ("heartbeats are for optimize": ours beats)
                    warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be")
                    return self.study.ask()
            finally:
                if self.lagged is not None:
                    self.lagged.next_taken = None

    def _run_trial(self, trial: optuna.Trial) -> bool:
        """Run ``trial``, with its heartbeat, and tell Optuna how it ended; whether it
        failed (a trial stopped by a signal, once told, raises Stopped on)."""
        values: float | tuple[float, ...] | None = None
        state: TrialState | None = None
        error: BaseException | None = None
        with beating(self.storage):
            try:
                values = self._guarded(trial)
            except optuna.TrialPruned:
                state = TrialState.PRUNED
            except (Exception, KeyboardInterrupt) as exc:  # (Stopped is a KeyboardInterrupt)
                state, error = TrialState.FAIL, exc
        if state is None:
            self.study.tell(trial, values)
        else:
            self.study.tell(trial, state=state)
        self.storage.remove_session()
        if error is not None:
            self._failed(trial, error)
        # (a sweeper that ended it first: its result was dropped)
        return state == TrialState.FAIL or self.storage.lost

    def _failed(self, trial: optuna.Trial, error: BaseException) -> None:
        """Say why ``trial`` failed (its reason is on the trial too); a signal's stop
        goes on up."""
        if isinstance(error, KeyboardInterrupt):
            raise error
        if isinstance(error, Surplus):
            return
        if is_transient(error):  # a database restart: one line, no traceback
            logger.warning("trial %d failed: %s", trial.number, error_reason(error))
        else:
            logger.warning("trial %d failed: %r", trial.number, error, exc_info=error)

    def _guarded(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        # Under a file lock the count was exact; without one, or under a PostgreSQL lock
        # (a server restart can end it unseen), two workers may have raced.
        exact = self.lock is not None and self.lock.exact
        # The sampler's read (outside the lock) sees every trial finished before this one.
        self.storage.expire()
        # (who came first, as the storage has it: the view was just expired)
        if not exact and self.budget is not None \
                and trials_ahead(self.study, trial.number) >= self.budget:
            trial.set_user_attr(record.SURPLUS, True)
            trial.set_user_attr(record.FAIL_REASON, f"surplus: the budget of "
                                f"{self.budget} trials was already taken by other workers")
            raise Surplus()
        trial.set_user_attr(record.WORKER, self.objective.worker)  # (kept back: no write)
        trial.set_user_attr(record.WORKER_PROCESS, self.process_tag)
        start = time.monotonic()
        try:
            result = self.objective(trial)
        except Stopped as exc:
            trial.set_user_attr(record.FAIL_REASON, f"worker stopped by {exc}")
            raise
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # the trial fails; say why where users look
            with contextlib.suppress(Exception):
                trial.set_user_attr(record.FAIL_REASON,
                                    f"{type(exc).__name__}: {exc}".splitlines()[0][:500])
            raise
        self.trial_seconds = [*self.trial_seconds[-(TYPICAL_OF - 1):], time.monotonic() - start]
        return result

    def _no_time_for_a_trial(self) -> str | None:
        """Why this worker should start no more trials: a trial as long as its typical
        completed one (the median of its last ``TYPICAL_OF``, once it has 3) would not
        finish before the time limit, and would only be stopped there."""
        limit = self.objective.deadline
        if limit is None or len(self.trial_seconds) < 3:
            return None
        typical = statistics.median(self.trial_seconds)
        left = limit - time.monotonic()
        if left >= typical:
            return None
        return (f"{max(0.0, left):.1f} s are left before the time limit, and a trial takes "
                f"{typical:.1f} s (the median of this worker's last "
                f"{len(self.trial_seconds)} completed)")

    def _slot_free(self) -> bool:
        """Under the trial lock: whether this worker may create a trial now, or raises
        _Done: the budget is spent, or a study-level stop holds."""
        spec = self.opened.spec
        if stops.active(spec):
            self.storage.expire()  # the stops read every trial, as the storage has it
        done = with_retry(lambda: stops.why_done(self.study, spec), "check the stops")
        if done is not None:  # it stays done, whatever a running trial does next
            reason = done
            with_retry(lambda: stops.mark_done(self.study, spec, reason), "record the stop")
        # (a COUNT query, or a read after expire: the counts are exact)
        counts = with_retry(lambda: count_states(self.opened), "count trials") \
            if self.budget is not None else None
        if counts is not None and counts.waiting:
            self.storage.expire()  # ask takes a waiting trial first: it must see them all
        budget = self.budget
        if done is None and counts is not None and budget is not None \
                and counts.finished >= budget:
            done = f"the budget of {budget} finished trials is spent"
        if done is not None:
            raise _Done(done)
        if counts is None or budget is None:
            return True
        # Under the lock the count is exact: a trial runs (a waiting one first, in order)
        # only while the finished and running ones leave it a slot. Without one, a waiting
        # trial (a retry) runs regardless, and a trial beyond the budget ends as surplus.
        free = counts.finished + counts.running < budget or (
            self.lock is None and counts.waiting > 0)
        lagged = self.lagged
        if free and lagged is not None and not counts.waiting:
            # reproducible: a new trial only once the trials it is to see have ended (a
            # waiting one, a retry, already could); the view is then ready at once
            free = with_retry(lambda: lagged.next_is_ready(self.study.study_name),
                              "read the trials")
        if not free:
            self.storage.expire()  # the sweep looks at the running trials as they are
            # one may free up if a trial fails: sweep before letting go of the lock
            with_retry(lambda: sweep(self.opened, self.retry, self.orphans_seen, None),
                       "sweep")  # (None: this worker holds the lock already)
        return free

    def run(self) -> int:
        """Run trials until the budget, the timeout or a stop; returns trials started."""
        failures = 0
        while not self.stop.is_set():
            if self.deadline is not None and time.monotonic() >= self.deadline:
                break
            if (why := self._no_time_for_a_trial()) is not None:
                logger.info("no more trials: %s", why)
                break
            try:
                trial = self._take_trial()
                if trial is None:  # every slot is taken (and swept)
                    self.stop.wait(POLL_SECONDS)
                    continue
                failed = self._run_trial(trial)
                self.trials_run += 1
                failures = failures + 1 if failed else 0
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    logger.error("%d trials in a row failed; this worker stops (see the "
                                 "trials' fail_reason)", failures)
                    return self.trials_run
            except Stopped:
                break
            except _Done as done:
                logger.info("no more trials: %s", done)
                break
            except (UpdateFinishedTrialError, ValueError) as exc:
                # The storage was away long enough for the sweeper to fail (and retry)
                # this trial; its result is dropped and the worker goes on. Optuna's tell
                # says so with a ValueError ("Cannot tell a FAIL trial.").
                if isinstance(exc, ValueError) and not str(exc).startswith("Cannot tell a "):
                    raise
                logger.warning("trial already ended by the sweeper (%s); going on", exc)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                # The storage went away mid-trial (Optuna may even fail while recording
                # that); the trial is left to the heartbeat sweeper, and the worker goes on.
                logger.warning("storage error during a trial (%s); going on", error_reason(exc))
                self.stop.wait(2.0)
        return self.trials_run
