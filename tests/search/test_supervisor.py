"""The supervisor's restart and stop logic, with real (stand-in) worker processes."""

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from rich.console import Console

from nnsearch.search import record, supervisor
from nnsearch.search._optuna import cached_storage, rdb_of
from nnsearch.search.counting import Counts
from nnsearch.search.storage_url import StorageURL
from nnsearch.search.study import OpenStudy
from nnsearch.search.studyfile import parse_study
from nnsearch.search.worker_storage import WorkerStorage

SLEEPER = "import time; time.sleep(60)"
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"


def process(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


@pytest.fixture
def sup(monkeypatch):
    """A supervisor on an in-memory study whose workers are stand-in processes."""
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name="s", storage=storage)
    spec = parse_study({"study": {"name": "s"}}, "test")
    opened = OpenStudy(study, spec, storage, StorageURL.parse("sqlite:///:memory:"))
    s = supervisor.Supervisor(opened, [], workers=2, budget=10, console=Console(quiet=True))
    s.spawned = []

    def spawn(index, restarts=0):
        s.spawned.append((index, restarts))
        return process(SLEEPER)

    monkeypatch.setattr(s, "_spawn", spawn)
    yield s
    for slot in s.slots:
        slot.process.kill()
        slot.process.wait()


def running_trial(study, pid):
    trial = study.ask()
    trial.set_user_attr(record.WORKER, record.worker_id(pid))
    return trial.number


def die(slot, code):
    slot.process.kill()
    slot.process.wait()
    slot.process.returncode = code  # as if the worker had exited with this code


def test_a_crashed_worker_is_restarted_and_its_trial_failed_and_retried(sup):
    sup.start()
    assert sup.spawned == [(0, 0), (1, 0)]
    dead = sup.slots[0].process.pid
    mine, other = running_trial(sup.study, dead), running_trial(sup.study, 999_999)
    die(sup.slots[0], 1)
    sup._check_workers(Counts(complete=3))
    assert sup.spawned[-1] == (0, 1) and sup.slots[0].restarts == 1
    assert sup.slots[0].pids == [dead, sup.slots[0].process.pid]
    trials = sup.study.get_trials()
    assert trials[mine].state == TrialState.FAIL
    assert "exited with code 1" in trials[mine].user_attrs[record.FAIL_REASON]
    assert trials[other].state == TrialState.RUNNING  # another worker's trial is left alone
    retries = [t for t in trials if t.state == TrialState.WAITING]
    assert len(retries) == 1 and retries[0].system_attrs["failed_trial"] == mine
    assert retries[0].params == trials[mine].params
    assert retries[0].user_attrs == {}  # no inherited fail_reason or worker


def test_a_trial_someone_else_already_failed_is_not_retried_twice(sup):
    sup.start()
    dead = sup.slots[0].process.pid
    mine = running_trial(sup.study, dead)
    sup.study.tell(mine, state=TrialState.FAIL)  # a heartbeat sweeper got there first
    die(sup.slots[0], 1)
    sup._check_workers(Counts())
    assert not [t for t in sup.study.get_trials() if t.state == TrialState.WAITING]


def test_an_error_in_the_supervisor_stops_its_workers(sup, monkeypatch):
    monkeypatch.setattr(supervisor, "WORKER_STOP_SECONDS", 2.0)

    def broken():
        raise RuntimeError("a bug in the watch loop")

    monkeypatch.setattr(sup, "watch", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        sup.run()
    assert sup.slots and all(slot.process.poll() is not None for slot in sup.slots)


def test_workers_find_an_uninstalled_checkout_they_were_started_from(monkeypatch, tmp_path):
    import nnsearch

    home = Path(nnsearch.__file__).resolve().parent.parent
    url = StorageURL.parse("sqlite:///x.db")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.chdir(home)
    assert supervisor.worker_env(url)["PYTHONPATH"] == f"{home}{os.pathsep}/elsewhere"
    monkeypatch.chdir(tmp_path)  # a user's folder: never on the workers' path
    assert supervisor.worker_env(url)["PYTHONPATH"] == "/elsewhere"
    assert supervisor.worker_env(url)["NNSEARCH_STORAGE"] == "sqlite:///x.db"


@pytest.mark.parametrize(("code", "counts", "restarts_before"), [
    (0, Counts(complete=3), 0),  # a clean exit: its budget or timeout is spent
    (2, Counts(complete=3), 0),  # a bad input: restarting would not help
    (1, Counts(complete=10), 0),  # the study's budget is done
    (1, Counts(complete=3), supervisor.MAX_RESTARTS_PER_WORKER),  # restarted enough
])
def test_when_a_worker_is_not_restarted(sup, code, counts, restarts_before):
    sup.start()
    sup.slots[0].restarts = restarts_before
    held = running_trial(sup.study, sup.slots[0].process.pid)
    die(sup.slots[0], code)
    sup._check_workers(counts)
    sup._check_workers(counts)  # a second look fails nothing twice
    assert sup.spawned == [(0, 0), (1, 0)]
    assert sup.slots[0].restarts == restarts_before
    trials = sup.study.get_trials()
    # A worker that stays down leaves no trial running (a later run would wait on it):
    # failed, and retried for that run while the budget is not done.
    assert trials[held].state == (TrialState.RUNNING if code == 0 else TrialState.FAIL)
    retried = [t.system_attrs["failed_trial"] for t in trials if t.state == TrialState.WAITING]
    assert retried == ([held] if code != 0 and counts.finished < 10 else [])


def test_a_restarted_worker_gets_what_is_left_of_the_run_s_timeout(monkeypatch):
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name="s", storage=storage)
    opened = OpenStudy(study, parse_study({"study": {"name": "s"}}, "test"), storage,
                       StorageURL.parse("sqlite:///:memory:"))
    s = supervisor.Supervisor(opened, ["s.toml"], workers=1, budget=10,
                              console=Console(quiet=True), timeout=30)
    commands, real = [], subprocess.Popen

    def popen(cmd, **kwargs):
        commands.append(cmd)
        return real([sys.executable, "-c", SLEEPER])

    monkeypatch.setattr(supervisor.subprocess, "Popen", popen)
    try:
        s.start()
        timeout = float(commands[0][commands[0].index("--timeout") + 1])
        assert 29 < timeout <= 30
        s.deadline = time.monotonic() + 5  # 25 s later
        die(s.slots[0], 1)
        s._check_workers(Counts())
        timeout = float(commands[1][commands[1].index("--timeout") + 1])
        assert 4 < timeout <= 5, "not the whole timeout again"
        held = running_trial(study, s.slots[0].process.pid)
        s.deadline = time.monotonic() - 1  # the timeout has passed: no restart
        die(s.slots[0], 1)
        s._check_workers(Counts())
        assert len(commands) == 2 and not s.alive()
        assert study.get_trials()[held].state == TrialState.FAIL
    finally:
        for slot in s.slots:
            slot.process.kill()
            slot.process.wait()


def test_restarts_get_their_own_sampler_seed(sup):
    sup.start()
    for _ in range(supervisor.MAX_RESTARTS_PER_WORKER + 1):
        die(sup.slots[1], 1)
        sup._check_workers(Counts())
    offsets = {record.seed_offset(i, r) for i, r in sup.spawned}
    assert len(offsets) == len(sup.spawned) == 2 + supervisor.MAX_RESTARTS_PER_WORKER


def test_stop_ends_every_worker_and_fails_their_trials_without_retry(sup, monkeypatch):
    monkeypatch.setattr(supervisor, "WORKER_STOP_SECONDS", 1.0)
    sup.start()
    stubborn = process(STUBBORN)  # ignores SIGTERM: killed once the grace time is over
    sup.slots[1].process.kill()
    sup.slots[1].process = stubborn
    sup.slots[1].pids.append(stubborn.pid)
    now = running_trial(sup.study, stubborn.pid)
    old_pid = sup.slots[0].process.pid
    before = running_trial(sup.study, old_pid)
    die(sup.slots[0], 1)
    sup._check_workers(Counts())  # fails and retries `before`; slot 0 has a new pid now
    late = running_trial(sup.study, old_pid)  # takes the retry; held by a pid of the past
    time.sleep(0.5)  # let the stubborn one install its handler
    started = time.monotonic()
    sup.stop(15)
    assert time.monotonic() - started < 10
    assert all(slot.process.poll() is not None for slot in sup.slots)
    assert stubborn.returncode == -9
    trials = sup.study.get_trials()
    assert trials[now].state == TrialState.FAIL
    assert trials[now].user_attrs[record.FAIL_REASON] == "run stopped by SIGTERM"
    assert trials[late].state == TrialState.FAIL  # every pid the slot ever had counts
    assert trials[before].state == TrialState.FAIL  # failed (and retried) at the restart
    retries = [t.number for t in trials if "failed_trial" in t.system_attrs]
    assert retries == [late]  # the restart's retry; stop retries nothing
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_orphaned_trials_are_failed_and_retried(sup, monkeypatch):
    from nnsearch.search import sweep

    monkeypatch.setattr(sweep, "UNCLAIMED_GRACE", 0.05)
    gone = process("pass")
    gone.wait()  # a worker of this host that is gone (killed, a power cut)
    dead = running_trial(sup.study, gone.pid)
    elsewhere = sup.study.ask()  # a live worker on another machine
    elsewhere.set_user_attr(record.WORKER, "another-host:1")
    alive = subprocess.Popen([sys.executable, "-c", SLEEPER, "nnsearch", "worker"])
    while b"nnsearch" not in Path(f"/proc/{alive.pid}/cmdline").read_bytes():
        time.sleep(0.01)  # until it has exec'd
    mine = running_trial(sup.study, alive.pid)  # a live worker of this host
    silent = sup.study.ask().number  # its worker died before recording itself
    unstarted = sup.study.ask()  # created by a worker that died before training it
    unstarted.set_user_attr(record.CREATOR, [record.worker_id(gone.pid), ""])
    sampling = sup.study.ask()  # created by a live worker, still sampling
    sampling.set_user_attr(record.CREATOR, [record.worker_id(alive.pid),
                                            record.process_tag(alive.pid)])
    seen = {}
    assert sweep.fail_orphans(sup.opened, sup.retry_trial, seen) == 2  # the gone ones
    assert "is gone before the trial trained" in \
        sup.study.get_trials()[unstarted.number].user_attrs[record.FAIL_REASON]
    assert sup.study.get_trials()[sampling.number].state == TrialState.RUNNING
    sup.study.tell(sampling, 1.0)
    time.sleep(0.1)  # unclaimed for longer than the grace, by this process's clock
    assert sweep.fail_orphans(sup.opened, sup.retry_trial, seen) == 1
    trials = sup.study.get_trials()
    assert trials[dead].state == trials[silent].state == TrialState.FAIL
    assert "is gone" in trials[dead].user_attrs[record.FAIL_REASON]
    assert "no worker took it up" in trials[silent].user_attrs[record.FAIL_REASON]
    assert trials[elsewhere.number].state == trials[mine].state == TrialState.RUNNING
    retried = sorted(t.system_attrs["failed_trial"] for t in trials
                     if t.state == TrialState.WAITING)
    assert retried == sorted([dead, silent, unstarted.number])
    alive.kill()
    alive.wait()
    assert sweep.fail_orphans(sup.opened, sup.retry_trial, seen) == 1  # now it is gone too
    assert seen == {}  # no unclaimed trial left to remember


def test_a_reused_pid_is_not_its_old_worker(sup):
    live = process(SLEEPER)
    try:
        tag = record.process_tag(live.pid)
        assert tag and record.process_tag(live.pid) == tag
        owner = record.worker_id(live.pid)
        assert not record.owner_gone(owner, tag)
        other_start = tag.rpartition("|")[0] + "|1"  # same pid, another process's start time
        assert record.owner_gone(owner, other_start)
        assert not record.owner_gone(owner, "pid:[1]|1")  # another pid namespace: no verdict
        assert not record.owner_gone("another-host:1", None)
        assert not record.owner_gone(f"{owner.rpartition(':')[0]}:99999999999999999999", None)
    finally:
        live.kill()
        live.wait()


def test_a_worker_that_lost_the_storage_is_restarted_after_a_backoff(sup, monkeypatch):
    sup.start()
    die(sup.slots[0], 3)
    sup._check_workers(Counts())
    assert sup.spawned == [(0, 0), (1, 0)] and sup.slots[0].restart_at is not None
    assert sup.alive()
    sup.slots[0].restart_at = time.monotonic() - 1  # the backoff is over
    sup._check_workers(Counts())
    assert sup.spawned[-1] == (0, 1) and sup.slots[0].restart_at is None
    # The budget is done while a restart waits: it is dropped, and the watch can end.
    die(sup.slots[0], 3)
    sup._check_workers(Counts())
    assert sup.slots[0].restart_at is not None
    sup._check_workers(Counts(complete=10))
    assert sup.slots[0].restart_at is None
    sup.slots[1].process.kill()
    sup.slots[1].process.wait()
    assert not sup.alive()


def test_a_database_restart_while_the_progress_bar_reads_does_not_end_the_watch(sup,
                                                                               monkeypatch):
    # Stop 19's CI: `run` exited 3 when the server restarted under the progress bar's read
    # of the best value, which was neither retried nor caught. The watch reads the trials
    # once per poll, retried; an outage that outlasts the retries is caught.
    import sqlalchemy.exc

    monkeypatch.setattr(supervisor, "POLL_SECONDS", 0.01)
    monkeypatch.setattr("nnsearch.search.retry.time.sleep", lambda s: None)
    reads, polls = [], []
    real = sup.study.get_trials

    def get_trials(*args, **kwargs):
        reads.append(1)
        if 2 <= len(reads) <= 10:  # 9 failures in a row: more than one read's 8 attempts
            raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception(
                "consuming input failed: server closed the connection unexpectedly"))
        return real(*args, **kwargs)

    monkeypatch.setattr(sup.study, "get_trials", get_trials)
    monkeypatch.setattr(sup, "alive", lambda: polls.append(1) or len(polls) < 4)
    counts = sup.watch()
    assert isinstance(counts, Counts) and len(polls) == 4 and len(reads) > 10


def test_a_note_left_to_the_run_is_written_by_a_later_one_and_an_old_study_s_kept(tmp_path):
    from nnsearch.search.study import NOTE_ATTR, create, needs_note, save_note, target_from_args
    from tests.helpers import write_study

    path = write_study(tmp_path / "small.toml")
    t = target_from_args(str(path), None, None)
    with create(t, note=False) as (opened, created):  # as run creates it
        assert created and needs_note(opened)
        save_note(opened)  # the run's thread (or a later run's, if it was stopped)
        assert not needs_note(opened)
        assert opened.study.user_attrs[NOTE_ATTR] is True
        opened.study.set_user_attr(NOTE_ATTR, None)  # a study from before the note was tracked
        assert not needs_note(opened), "its note (maybe edited by a user) is left alone"


def test_a_worker_that_does_not_stop_at_the_time_limit_is_stopped(sup, monkeypatch,
                                                                   caplog):
    # A stopped (SIGSTOP) or hung worker held `run` past its timeout for good.
    import signal

    monkeypatch.setattr(supervisor, "WORKER_STOP_SECONDS", 0.5)
    monkeypatch.setattr(supervisor, "POLL_SECONDS", 0.05)
    monkeypatch.setattr(sup, "install_signal_handlers", lambda: None)  # (not main thread)
    sup.timeout = 0.2  # + a grace of 0.02 s + 0.5 s to stop: overdue after ~0.7 s
    started = time.monotonic()
    run = __import__("threading").Thread(target=sup.run)
    run.start()
    while len(sup.slots) < 2 and time.monotonic() - started < 10:
        time.sleep(0.01)
    held = running_trial(sup.study, sup.slots[0].process.pid)
    os.kill(sup.slots[0].process.pid, signal.SIGSTOP)
    run.join(timeout=30)
    assert not run.is_alive() and time.monotonic() - started < 10
    assert all(slot.process.poll() is not None for slot in sup.slots)
    # (failed by the sweep or by the stop: the stand-in is no nnsearch process)
    assert sup.study.get_trials()[held].state == TrialState.FAIL
    assert "after the time limit (stopped or hung): stopping them" in caplog.text


def test_a_trial_failed_for_its_stale_heartbeat_says_why(tmp_path):
    # Optuna's sweep of stale heartbeats failed a hung worker's trial with no reason.
    from nnsearch.search import sweep

    url = f"sqlite:///{tmp_path / 'h.db'}"
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=1,
                                         heartbeat_stale_trial_callback=record.RETRY)
    optuna.create_study(study_name="h", storage=storage)
    ours = WorkerStorage(cached_storage(storage), rdb_of(storage), window=0.0)
    study = optuna.load_study(study_name="h", storage=ours)  # as open_study opens it
    opened = OpenStudy(study, parse_study({"study": {"name": "h"}}, "test"), storage,
                       StorageURL.parse(url), ours)
    hung = study.ask()
    storage.record_heartbeat(hung._trial_id)
    fresh = study.ask()
    time.sleep(2.2)
    storage.record_heartbeat(fresh._trial_id)  # this one still beats
    assert sweep.sweep(opened, record.RETRY, {}, None)
    trials = study.get_trials()
    assert trials[hung.number].state == TrialState.FAIL
    assert trials[hung.number].user_attrs[record.FAIL_REASON] == sweep.STALE_REASON
    assert trials[fresh.number].state == TrialState.RUNNING
    assert record.FAIL_REASON not in trials[fresh.number].user_attrs
    assert [t.system_attrs["failed_trial"] for t in trials
            if t.state == TrialState.WAITING] == [hung.number]  # retried, as before
    storage.engine.dispose()
