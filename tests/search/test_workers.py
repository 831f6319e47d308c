"""Parallel workers on one study, with real processes, SQLite and PostgreSQL."""

import json
import subprocess
import sys

import pytest
from optuna.trial import TrialState

from tests.helpers import NNSEARCH, cli_env, run_cli, write_study
from tests.search.worker_runs import assert_finished_exactly, slow_study, trials


# ----- clean runs ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "journal"])
def test_four_workers_finish_exactly_the_budget(tmp_path, backend, request):
    study = write_study(tmp_path / "small.toml", trials=12, epochs=15)
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'small.db'}"
    elif backend == "journal":
        url = f"journal:///{tmp_path / 'small.log'}"
    else:
        url = request.getfixturevalue("pg_url")
    res = run_cli("run", str(study), "--workers", "4", "--storage", url, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "storage error" not in res.stderr and "Traceback" not in res.stderr
    assert_finished_exactly(trials(url, "small"), 12)
    # One progress bar for the whole study: counts, best so far, rate.
    bar = [line for line in res.stderr.splitlines() if "12/12" in line]
    assert bar and "best" in bar[-1] and "/min" in bar[-1]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "journal"])
def test_eight_workers_on_tiny_trials_create_no_trial_beyond_the_budget(tmp_path, backend,
                                                                         request):
    # Trials of a few milliseconds, many workers: the race for the last slots is at its
    # hardest, and no trial may be created beyond the budget (not even one ended as FAIL).
    study = write_study(tmp_path / "tiny.toml", name="tiny", trials=40, epochs=2)
    url = {"sqlite": f"sqlite:///{tmp_path / 'tiny.db'}",
           "journal": f"journal:///{tmp_path / 'tiny.log'}"}.get(backend) \
        or request.getfixturevalue("pg_url")
    res = run_cli("run", str(study), "--workers", "8", "--storage", url, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    ts = trials(url, "tiny")
    assert len(ts) == 40
    assert_finished_exactly(ts, 40)


def test_standalone_workers_share_one_budget(tmp_path):
    # trials of ~1 s: a worker cannot take all 9 before the others have started
    study = slow_study(tmp_path / "slow.toml", epochs=40)
    study.write_text(study.read_text() + "\n[budget]\ntrials = 9\n")
    assert run_cli("create", str(study), cwd=tmp_path).returncode == 0
    procs = [subprocess.Popen([*NNSEARCH, "worker", str(study)],
                              cwd=tmp_path, env=cli_env(), stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read() if p.stderr else ""
    ts = trials(f"sqlite:///{tmp_path / 'slow.db'}", "slow")
    assert_finished_exactly(ts, 9)
    # Each worker process took part (its host:pid is on its trials).
    assert len({t.user_attrs["nnsearch.worker"] for t in ts if t.state != TrialState.FAIL}) >= 2


def test_a_worker_maps_a_bundled_set_from_the_cache_without_scikit_learn(tmp_path):
    # Importing scikit-learn (to load iris or digits) was most of a worker's start-up;
    # `create` caches the processed arrays, and a worker maps them from there.
    study = write_study(tmp_path / "small.toml", trials=2, epochs=5)
    assert run_cli("create", str(study), cwd=tmp_path).returncode == 0
    entries = list((tmp_path / "small-cache").iterdir())
    assert len(entries) == 1
    assert json.loads((entries[0] / "meta.json").read_text())["source"].startswith(
        "builtin:iris:scikit-learn ")
    probe = ("import sys; from nnsearch.search.cli import main; "
             "code = main(['-q', 'worker', 'small.toml']); "
             "print(code, 'sklearn' in sys.modules)")
    res = subprocess.run([sys.executable, "-P", "-c", probe], cwd=tmp_path, env=cli_env(),
                         capture_output=True, text=True, timeout=300)
    assert res.stdout.split() == ["0", "False"], res.stdout + res.stderr
    assert len(trials(f"sqlite:///{tmp_path / 'small.db'}", "small")) == 2


def test_worker_needs_an_existing_study(tmp_path):
    study = write_study(tmp_path / "small.toml")
    res = run_cli("worker", str(study), cwd=tmp_path)
    assert res.returncode == 2 and "no storage at" in res.stderr


# ----- a killed worker ----------------------------------------------------------------------


def test_a_worker_starts_no_trial_that_its_typical_trial_says_cannot_finish():
    import time
    from types import SimpleNamespace

    from nnsearch.search.worker import Worker

    worker = Worker.__new__(Worker)  # the rule alone: no study behind it
    worker.objective = SimpleNamespace(deadline=time.monotonic() + 5.0)
    worker.trial_seconds = [9.0, 10.0]
    assert worker._no_time_for_a_trial() is None  # two trials say too little
    worker.trial_seconds = [9.0, 10.0, 30.0]
    why = worker._no_time_for_a_trial()
    assert why is not None and "a trial takes 10.0 s" in why and "last 3 completed" in why
    worker.objective.deadline = time.monotonic() + 11.0
    assert worker._no_time_for_a_trial() is None
    worker.objective.deadline = None  # no timeout
    assert worker._no_time_for_a_trial() is None
