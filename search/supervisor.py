"""``nnsearch run``: create the study once, start N workers, watch them, sweep.

The supervisor does no training. It starts worker processes (each with BLAS
limited to one thread), restarts one that dies while budget remains, fails the
trials of dead workers itself and retries them (``record.Retry``), sweeps
heartbeat-stale trials (``fail_stale_trials``, so a killed trial is retried even
when no other worker is asking for trials), and draws one progress bar for the
whole study. On Ctrl-C or SIGTERM, or an error of its own, it stops the workers,
which end their running trials as FAIL with the reason recorded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType

from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import nnsearch

from . import record
from .counting import Counts, count_states, count_trials, is_gated
from .errors import STORAGE_UNREACHABLE, UsageError
from .front import feasible, signs
from .retry import error_reason, is_transient, with_retry
from .stops import why_done
from .storage import heartbeat_settings
from .storage_url import ENV_STORAGE, StorageURL
from .study import OpenStudy
from .sweep import fail_trials, sweep
from .trial_lock import locked, trial_lock
from .worker import ENV_RUN, catchable_signals

logger = logging.getLogger(__name__)

MAX_RESTARTS_PER_WORKER = 3
ASIDE_SECONDS = 60.0  # how long the end of a run waits for the work it set aside
POLL_SECONDS = 1.0  # how often the progress bar and the sweeper look at the storage
WORKER_STOP_SECONDS = 20  # how long a stopping worker may take to record its trial


@dataclass
class Slot:
    index: int
    process: subprocess.Popen[bytes]
    restarts: int = 0
    pids: list[int] = field(default_factory=list)
    restart_at: float | None = None  # a restart waiting out its backoff (monotonic time)
    settled: bool = False  # down for good, and its trials failed


def worker_env(url: StorageURL) -> dict[str, str]:
    env = dict(os.environ)
    env[ENV_STORAGE] = url.secret  # not on the command line, where ps would show a password
    env[ENV_RUN] = str(os.getpid())  # the workers stop once this process is gone
    # Workers start with -P, so the folder run from is not on their path. When that folder
    # is where this nnsearch comes from (a checkout run as `python -m nnsearch`, not
    # installed), the workers need it to find the same package.
    home = Path(nnsearch.__file__).resolve().parent.parent
    if home == Path.cwd().resolve():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(home),
                                                          env.get("PYTHONPATH")]))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return env


class Supervisor:
    def __init__(self, opened: OpenStudy, worker_args: list[str], workers: int,
                 budget: int | None, console: Console, timeout: float | None = None) -> None:
        self.opened = opened
        self.study = opened.study
        self.worker_args = worker_args  # all but the timeout, which is the run's
        self.timeout = timeout
        self.deadline: float | None = None  # the run's timeout on the monotonic clock
        self.n_workers = workers
        self.budget = budget
        self.console = console
        self.slots: list[Slot] = []
        self.started = time.monotonic()
        self.finished_at_start = 0
        self.last_sweep = 0.0
        self.interrupted = threading.Event()
        self.wake = threading.Event()  # a signal, or a worker's exit: the watch looks now
        self.log_flags: list[str] = []  # -q / -v, passed on to the workers
        self.retry_trial = record.RETRY
        self.orphans_seen: dict[int, float] = {}  # for fail_orphans
        self.signum = 0
        # Work kept off the workers' start (the new study's dashboard note): run in a
        # thread of this process once a trial has started, and waited for at the end.
        self.after_first_trial: Callable[[], None] | None = None
        self._aside: threading.Thread | None = None
        # The workers' trial lock, held while failing and retrying trials (see sweep).
        self.lock = trial_lock(opened.url, opened.storage, opened.study.study_name) \
            if is_gated(budget, opened.spec) else None

    def _spawn(self, index: int, restarts: int = 0) -> subprocess.Popen[bytes]:
        # Every worker process gets its own sampler seed, a restarted one too.
        offset = record.seed_offset(index, restarts)
        left = []  # the run's timeout; a restart, what is left of it
        if self.timeout is not None and self.deadline is not None:
            left = ["--timeout", str(self.timeout) if not restarts else
                    f"{max(self.deadline - time.monotonic(), 0.001):.3f}"]
        cmd = [sys.executable, "-P", "-m", "nnsearch", *self.log_flags, "worker",
               *self.worker_args, *left,
               "--sampler-seed-offset", str(offset)]
        process = subprocess.Popen(cmd, env=worker_env(self.opened.url),
                                   start_new_session=True, stdin=subprocess.DEVNULL)
        # The watch wakes as the worker exits, not at its next poll: a small study's
        # run ends up to POLL_SECONDS sooner.
        if hasattr(os, "waitid"):  # elsewhere, the watch polls
            threading.Thread(target=self._wake_on_exit, args=(process,), daemon=True,
                             name=f"wait-worker-{index}").start()
        return process

    def _wake_on_exit(self, process: subprocess.Popen[bytes]) -> None:
        # Waits without reaping (WNOWAIT): the pid stays the worker's until poll() reaps
        # it, so a signal the supervisor sends can never reach a reused pid.
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
            self.wake.set()

    def start(self) -> None:
        self.finished_at_start = with_retry(lambda: count_states(self.opened),
                                            "count trials").finished
        if self.timeout is not None:  # a restarted worker gets what is left of it
            self.deadline = time.monotonic() + self.timeout
        for i in range(self.n_workers):
            proc = self._spawn(i)
            self.slots.append(Slot(i, proc, pids=[proc.pid]))

    def _budget_done(self, counts: Counts) -> bool:
        return self.budget is not None and counts.finished >= self.budget

    def _sweep(self) -> None:
        """Fail (and retry) the trials no live worker owns, once per heartbeat interval:
        a stale heartbeat, a worker of this host that is gone, or no worker at all."""
        now = time.monotonic()
        if now - self.last_sweep >= heartbeat_settings()[0]:
            # Only if the lock is free: a worker may hold it through a database outage's
            # retries, and the watch (its progress bar, a Ctrl-C) must not wait on it;
            # the next interval tries again, and workers sweep when they find no slot.
            with_retry(lambda: sweep(self.opened, self.retry_trial, self.orphans_seen,
                                     self.lock, wait=False), "sweep")
            self.last_sweep = now

    def _check_workers(self, counts: Counts) -> None:
        for slot in self.slots:
            code = slot.process.poll()
            if code is None or code == 0:
                continue
            budget_done = self._budget_done(counts)
            if code == UsageError.exit_code or budget_done \
                    or slot.restarts >= MAX_RESTARTS_PER_WORKER or self._time_up():
                # A bad input (restarting would not help), the budget is done, it was
                # restarted enough, or the timeout has passed: it stays down, and no
                # restart is pending any more. Its trial is failed (and retried, for a
                # later run, while the budget is not done).
                slot.restart_at = None
                if not slot.settled:
                    slot.settled = True
                    self._fail_trials_of([slot.process.pid], f"worker exited with code {code} "
                                         "during the trial", retry=not budget_done)
                continue
            if code == STORAGE_UNREACHABLE and slot.restart_at is None:
                # It gave up on the storage: the others likely did too. Jittered backoff,
                # so that they do not all come back at the same moment.
                slot.restart_at = time.monotonic() + random.uniform(1, 2) * 2 ** slot.restarts
                logger.warning("worker %d lost the storage; restarting it in %.0fs", slot.index,
                               slot.restart_at - time.monotonic())
            if slot.restart_at is not None and time.monotonic() < slot.restart_at:
                continue
            logger.warning("worker %d (pid %d) exited with code %d; restarting it (%d/%d)",
                           slot.index, slot.process.pid, code, slot.restarts + 1,
                           MAX_RESTARTS_PER_WORKER)
            self._fail_trials_of([slot.process.pid], f"worker exited with code {code} during "
                                 "the trial", retry=True)
            slot.process = self._spawn(slot.index, slot.restarts + 1)
            slot.restarts += 1  # counted once the new worker is started
            slot.restart_at = None
            slot.pids.append(slot.process.pid)

    def overdue(self) -> bool:
        """Past the run's timeout, its grace and the time a stopping worker is given to
        record its trial: a worker still running then is stuck (stopped, hung)."""
        if self.deadline is None or self.timeout is None:
            return False
        late = self.opened.spec.grace_after(self.timeout) + WORKER_STOP_SECONDS
        return time.monotonic() > self.deadline + late and self.alive()

    def _time_up(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _fail_trials_of(self, pids: list[int], reason: str, retry: bool) -> None:
        """Fail the RUNNING trials that workers of ours (``pids``) held; retry them if asked."""
        owners = {record.worker_id(pid) for pid in pids}
        with locked(self.lock):
            running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            fail_trials(self.opened,
                        [t for t in running if (record.holder(t) or ("",))[0] in owners],
                        reason, self.retry_trial if retry else None)

    def alive(self) -> bool:
        return any(slot.process.poll() is None or slot.restart_at is not None
                   for slot in self.slots)

    def describe(self, counts: Counts, trials: list[FrozenTrial]) -> str:
        """The progress bar's line, from the trials the watch just read."""
        best = "-"
        sign = signs(self.study.directions)[0]
        firsts = [sign * t.values[0] for t in trials if t.state == TrialState.COMPLETE
                  and feasible(t) and not record.is_prior(t)]
        if firsts:  # on the first objective (a multi-objective study's quality metric)
            best = f"{sign * min(firsts):.4f}"
        minutes = (time.monotonic() - self.started) / 60
        rate = (counts.finished - self.finished_at_start) / minutes if minutes > 0 else 0.0
        eta = ""
        if self.budget is not None and rate > 0:
            left = max(self.budget - counts.finished, 0) / rate * 60
            eta = f" eta {int(left // 60)}:{int(left % 60):02d}"
        return (f"✓{counts.complete} ✂{counts.pruned} ✗{counts.failed} ▶{counts.running} "
                f"best {best} {rate:.0f}/min{eta}")

    def watch(self) -> Counts:
        """Supervise until every worker has exited; returns the final counts."""
        total = self.budget
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn()]
        # Every storage read here is retried, or caught: a database restart must not end
        # the watch (the workers wait it out).
        def read() -> tuple[Counts, str]:  # one read of the trials per poll
            trials = with_retry(lambda: self.study.get_trials(deepcopy=False), "read trials")
            counts = count_trials(trials)
            return counts, self.describe(counts, trials)

        counts, info = read()
        with Progress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task(self.study.study_name, total=total, info="",
                                     completed=counts.finished)
            while True:
                try:
                    counts, info = read()
                    self._start_aside(counts)
                    self._sweep()
                    self._check_workers(counts)
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    logger.warning("storage unreachable (%s); still watching", error_reason(exc))
                progress.update(task, completed=counts.finished, info=info)
                if not self.alive() or self.interrupted.is_set() or self.overdue():
                    break
                self.wake.wait(POLL_SECONDS)
                self.wake.clear()
            counts, info = read()
            progress.update(task, completed=counts.finished, info=self._final(info))
        return counts

    def _final(self, info: str) -> str:
        """The bar's last line: no ETA; why the study stopped, if a target or stall did."""
        info = info.split(" eta ")[0]
        try:
            why = with_retry(lambda: why_done(self.study, self.opened.spec), "check the stops")
        except Exception as exc:
            logger.debug("stops unread for the bar: %s", exc)
            why = None
        return f"{info} stopped: {why}" if why else info

    def run(self) -> Counts:
        """Start the workers, watch them to the budget or a signal; the final counts.

        Whatever ends the watch (a signal, an error of the supervisor's own), no worker
        is left running.
        """
        self.install_signal_handlers()
        counts = with_retry(lambda: count_states(self.opened), "count trials")
        if self._budget_done(counts):
            logger.info("the study already has its %d finished trials", self.budget)
            return counts
        try:
            self.start()
            self.watch()
        except BaseException:
            self.stop(signal.SIGTERM, "an error in the supervisor")
            raise
        if self.interrupted.is_set():  # the workers first; the set-aside work is dropped
            self.console.print(f"[yellow]stopping: {self.signal_name}; ending running trials "
                               "as FAIL[/]")
            self.stop(self.signum)
        elif self.overdue() and self.deadline is not None:
            late = sum(slot.process.poll() is None for slot in self.slots)
            logger.warning("%d worker(s) still running %.0f s after the time limit (stopped "
                           "or hung): stopping them", late, time.monotonic() - self.deadline)
            self.stop(signal.SIGTERM, "the time limit (its worker did not stop)")
        else:
            self._start_aside(None)  # if no trial was seen running: now
            if self._aside is not None:
                self._aside.join(timeout=ASIDE_SECONDS)
        return with_retry(lambda: count_states(self.opened), "count trials")

    def _start_aside(self, counts: Counts | None) -> None:
        """Start ``after_first_trial`` once a trial of this run is seen (or, with no
        counts, now)."""
        if self.after_first_trial is None or self._aside is not None or (
                counts is not None
                and counts.running + counts.finished <= self.finished_at_start):
            return

        def aside(work: Callable[[], None]) -> None:
            # (At a low CPU priority this thread, holding the GIL, was starved by the
            # workers and held up this process's signal handling: a Ctrl-C took seconds.)
            try:
                work()
            except Exception as exc:  # a nicety (the note): never the run's end
                logger.debug("after the first trial: %s", exc)

        self._aside = threading.Thread(target=aside, args=(self.after_first_trial,),
                                       name="after-first-trial", daemon=True)
        self._aside.start()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def install_signal_handlers(self) -> None:
        """Ctrl-C, SIGTERM or SIGHUP (a closed terminal): the watch loop ends at once and
        ``stop`` takes over; ``run`` exits 128 + the signal's number."""
        def handler(signum: int, frame: FrameType | None) -> None:
            self.signum = signum
            self.interrupted.set()
            self.wake.set()

        for signum in catchable_signals():
            signal.signal(signum, handler)

    def stop(self, signum: int, why: str = "") -> None:
        """Ask every worker to stop, wait for them, then fail what they left RUNNING.
        A Ctrl-C reaches them as SIGINT (their trials say so), anything else as SIGTERM
        (a SIGHUP could be ignored: run under nohup)."""
        forward = signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM
        for slot in self.slots:
            if slot.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, forward)
                    os.kill(slot.process.pid, signal.SIGCONT)  # a stopped one, to hear it
        deadline = time.monotonic() + WORKER_STOP_SECONDS
        for slot in self.slots:
            try:
                slot.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                slot.process.kill()
                slot.process.wait()
        reason = f"run stopped by {why or signal.Signals(signum).name}"
        pids = [pid for slot in self.slots for pid in slot.pids]
        with_retry(partial(self._fail_trials_of, pids, reason, retry=False), "fail trials")


def worker_args_for(study_file: Path | None, study_name: str, budget: int | None) -> list[str]:
    """A worker's arguments but the timeout (``Supervisor`` adds what is left of it)."""
    args = [str(study_file)] if study_file is not None else ["--study", study_name]
    if budget is not None:
        args += ["--trials", str(budget)]
    return args
