"""Workers that fail: killed, stopped, signalled, a power cut, a database restart."""

import os
import shutil
import signal
import subprocess
import time

import optuna
import pytest
from optuna.trial import TrialState

from tests.helpers import run_cli, worker_pids, write_study
from tests.search.worker_runs import (
    assert_finished_exactly,
    count,
    failed_and_none_running,
    run_to_its_end,
    running_with_worker,
    slow_run,
    slow_study,
    start_run,
    trials,
    wait_for,
    worker_pid,
)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_killed_worker_trial_fails_and_is_retried(tmp_path, backend, request):
    study = slow_study(tmp_path / "slow.toml")
    url = f"sqlite:///{tmp_path / 'slow.db'}" if backend == "sqlite" \
        else request.getfixturevalue("pg_url")
    with run_to_its_end(tmp_path, str(study), "--workers", "2", "--trials", "5", "--storage",
                        url):
        victim = wait_for(lambda: running_with_worker(url, "slow"), what="a running trial")
        os.kill(worker_pid(victim), signal.SIGKILL)
    ts = trials(url, "slow")
    killed = next(t for t in ts if t.number == victim.number)
    assert killed.state == TrialState.FAIL
    retries = [t for t in ts if t.system_attrs.get("failed_trial") == victim.number]
    assert retries and retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retries[0].params == victim.params
    assert_finished_exactly([t for t in ts if t.number != victim.number], 5)


# ----- the time limit ------------------------------------------------------------------------
def test_the_time_limit_stops_trials_still_running(tmp_path):
    # 3000 epochs without early stopping run far past the limit; the timeout (3 s) plus the
    # study file's grace (1 s) stops them, and they end pruned, with the reason.
    study = slow_study(tmp_path / "slow.toml", epochs=3000)
    study.write_text(study.read_text() + "\n[budget]\ngrace = 1\n")
    start = time.monotonic()
    res = run_cli("run", str(study), "--workers", "2", "--timeout", "3", cwd=tmp_path)
    wall = time.monotonic() - start
    assert res.returncode == 1, res.stderr  # nothing completed: nothing to export
    assert "no completed trial to export" in res.stderr and "Traceback" not in res.stderr
    ts = trials(f"sqlite:///{tmp_path / 'slow.db'}", "slow")
    assert 1 <= len(ts) <= 2  # no trial starts after the timeout: one per worker at most
    for t in ts:
        assert t.state == TrialState.PRUNED, t.user_attrs
        assert t.user_attrs["pruned_reason"].startswith(
            "stopped by the time limit (3 s + 1 s grace) at epoch "), t.user_attrs
        assert (t.datetime_complete - t.datetime_start).total_seconds() < 30
    assert wall < 60  # start-up included; a whole trial alone runs longer


# ----- Ctrl-C -------------------------------------------------------------------------------
def test_ctrl_c_fails_running_trials_and_run_resumes(tmp_path):
    with slow_run(tmp_path, 6) as (study, url, proc):
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "run the same command again to resume" in err
    stopped = failed_and_none_running(url)
    assert stopped and all("stopped by SIGINT" in t.user_attrs.get("fail_reason", "")
                           for t in stopped)  # what the user pressed, not what was forwarded
    res = run_cli("run", str(study), "--workers", "2", "--trials", "6", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    ts = trials(url, "slow")
    assert count(ts, TrialState.COMPLETE, TrialState.PRUNED) == 6
    assert count(ts, TrialState.RUNNING) == 0


@pytest.mark.parametrize(("signum", "close_pipes"), [(signal.SIGHUP, False),
                                                     (signal.SIGTERM, True)])
def test_a_signal_stops_the_run_and_leaves_no_orphan(tmp_path, signum, close_pipes):
    # SIGHUP: the terminal closed. SIGTERM with closed pipes: `| head`, a dead ssh or tee.
    with slow_run(tmp_path, 6) as (study, url, proc):
        assert len(worker_pids(str(study))) == 2
        if close_pipes:
            proc.stdout.close()
            proc.stderr.close()
        proc.send_signal(signum)
        proc.wait(timeout=120)
    assert proc.returncode == 128 + signum
    wait_for(lambda: not worker_pids(str(study)), timeout=30, what="the workers to exit")
    stopped = failed_and_none_running(url)
    assert stopped and all("stopped by" in t.user_attrs["fail_reason"] for t in stopped)


def test_workers_stop_once_their_run_is_killed(tmp_path):
    # A run killed outright (the OOM killer) left its workers to go on, unwatched, until
    # their whole budget was spent. Trials of 3,000 epochs: on a loaded machine the one
    # caught running could end before its worker noticed, leaving no trial to check.
    with slow_run(tmp_path, 50, epochs=3000) as (study, url, proc):
        assert len(worker_pids(str(study))) == 2
        proc.kill()
        proc.wait(timeout=30)
        wait_for(lambda: not worker_pids(str(study)), timeout=30, what="the workers to exit")
    stopped = failed_and_none_running(url)
    assert stopped and all(t.user_attrs["fail_reason"].startswith(
        "worker stopped by the end of its run (pid ") for t in stopped)


def test_a_power_cut_on_the_journal_then_a_rerun_finishes(tmp_path):
    # The supervisor and its workers die at once: no one fails their RUNNING trials,
    # and the journal file has no heartbeat. The re-run finds them orphaned.
    study = slow_study(tmp_path / "slow.toml", epochs=60)
    url = f"journal:///{tmp_path / 'slow.log'}"
    proc = start_run(tmp_path, str(study), "--workers", "2", "--trials", "4", "--storage", url)
    try:
        wait_for(lambda: running_with_worker(url, "slow", 0.3), what="a running trial")
        for pid in [proc.pid, *worker_pids(str(study))]:
            os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    wait_for(lambda: not worker_pids(str(study)), timeout=30, what="the workers to die")
    assert count(trials(url, "slow"), TrialState.RUNNING) >= 1
    res = run_cli("run", str(study), "--workers", "2", "--trials", "4", "--storage", url,
                  cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    ts = trials(url, "slow")
    assert count(ts, TrialState.COMPLETE, TrialState.PRUNED) == 4
    assert count(ts, TrialState.RUNNING, TrialState.WAITING) == 0
    assert any("is gone" in t.user_attrs.get("fail_reason", "") for t in ts)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_three_runs_started_at_once_on_a_fresh_storage(tmp_path, backend, request):
    # They race to create the schema and the study; all three must take part.
    study = write_study(tmp_path / "small.toml", trials=9, epochs=10)
    url = f"sqlite:///{tmp_path / 'small.db'}" if backend == "sqlite" \
        else request.getfixturevalue("pg_url")
    procs = [start_run(tmp_path, str(study), "--storage", url) for _ in range(3)]
    results = [(p.communicate(timeout=300)[1], p.returncode) for p in procs]
    for err, code in results:
        assert code == 0, err
        assert "Traceback" not in err
    assert_finished_exactly(trials(url, "small"), 9)


# ----- a database restart -------------------------------------------------------------------
def _restart_command() -> list[str] | None:
    tool = shutil.which("pg_ctlcluster")
    clusters = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if tool is None or not clusters or os.geteuid() != 0:
        return None
    return [tool, "--skip-systemctl-redirect", clusters[-1], "main", "restart"]


def test_postgres_restarted_mid_run_five_times(tmp_path, pg_url_restartable):
    # Once hung 2 runs in 4: a worker died between its trial's row and its first heartbeat,
    # and no one failed that trial. Each round restarts the server at another moment.
    pg_url = pg_url_restartable
    command = _restart_command()
    if command is None:
        pytest.skip("cannot restart PostgreSQL here: it needs root and pg_ctlcluster")
    for round_ in range(5):
        name = f"slow{round_}"
        # trials of ~1 s (several under the suite's load): a run outlasts the restart
        study = slow_study(tmp_path / f"{name}.toml", epochs=60)
        study.write_text(study.read_text().replace('name = "slow"', f'name = "{name}"'))
        proc = start_run(tmp_path, str(study), "--workers", "4", "--trials", "6",
                         "--storage", pg_url)
        try:
            wait_for(lambda name=name, proc=proc: proc.poll() is not None
                     or count(trials(pg_url, name), TrialState.RUNNING) >= 1,
                     what="a running trial")
            assert proc.poll() is None, (round_, "the run ended before a trial was seen running",
                                         proc.communicate()[1][-2000:])
            time.sleep(0.6 * round_)  # from the first trial's start to the middle of the run
            subprocess.run(command, check=True, timeout=120, capture_output=True)
            _out, err = proc.communicate(timeout=400)
        finally:
            proc.kill()
        assert proc.returncode == 0, (round_, err)
        assert "Traceback" not in err, (round_, err)
        ts = trials(pg_url, name)
        assert count(ts, TrialState.COMPLETE, TrialState.PRUNED) == 6, round_
        assert count(ts, TrialState.RUNNING, TrialState.WAITING) == 0, round_


def test_doctor(tmp_path, pg_url):
    res = run_cli("doctor", "--storage", pg_url, "--workers", "4", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "max_connections=" in res.stdout and "reachable" in res.stdout
    res = run_cli("doctor", "--storage", pg_url, "--workers", "100000", cwd=tmp_path)
    assert res.returncode == 1 and "FAIL" in res.stdout
    study = write_study(tmp_path / "small.toml")
    res = run_cli("doctor", str(study), "--workers", "50", cwd=tmp_path)
    assert res.returncode == 0 and "use PostgreSQL" in res.stdout
    secret = pg_url.replace("postgres@", "postgres:hunter2@")
    res = run_cli("doctor", "--storage", secret, cwd=tmp_path)
    assert "hunter2" not in res.stdout + res.stderr


def test_a_failed_trial_says_why_once_a_storage_error_in_one_line(tmp_path, monkeypatch,
                                                                    caplog):
    # The worker tells Optuna how each trial ended, and says why one failed: a bug with
    # its traceback, a storage that went away in one line, a surplus trial not at all.
    import sqlalchemy

    from nnsearch.search.objective import Objective
    from nnsearch.search.study import open_study, target_from_args
    from nnsearch.search.worker import Surplus, Worker

    errors = [RuntimeError("a real bug"), Surplus(), sqlalchemy.exc.OperationalError(
        "SELECT 1", {}, Exception("server closed the connection unexpectedly\n\tmore"))]

    def objective(self, trial):
        if trial.number < len(errors):
            raise errors[trial.number]
        return 0.5

    path = write_study(tmp_path / "small.toml", trials=1)
    assert run_cli("create", str(path), cwd=tmp_path).returncode == 0
    monkeypatch.setattr(Objective, "__call__", objective)
    with caplog.at_level("WARNING"), open_study(target_from_args(str(path), None, None),
                                                heartbeat=True, sampler_offset=0) as opened:
        assert Worker(opened, 1, None).run() == 4  # failed trials take no slot
    bug, storage = [r for r in caplog.records if r.getMessage().startswith("trial ")]
    assert bug.getMessage() == "trial 0 failed: RuntimeError('a real bug')"
    assert bug.exc_info is not None
    assert storage.getMessage().startswith("trial 2 failed: ")
    assert "server closed the connection unexpectedly" in storage.getMessage()
    assert storage.exc_info is None and "\n" not in storage.getMessage()
    trials = optuna.load_study(study_name="small",
                               storage=f"sqlite:///{tmp_path / 'small.db'}").trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 3 + [TrialState.COMPLETE]
    assert trials[0].user_attrs["fail_reason"] == "RuntimeError: a real bug"
