"""The fleet of a running study in nnsearch status (search/fleet.py)."""

import json
import os
from datetime import datetime, timedelta

from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from nnsearch.search import record
from nnsearch.search.fleet import fleet_of
from tests.helpers import run_cli
from tests.search.worker_runs import slow_run, wait_for

NOW = datetime(2026, 12, 7, 12, 0, 0)
DIST = {"x": FloatDistribution(0.0, 1.0)}


def trial(number, state, minutes_ago, **attrs):
    t = create_trial(value=0.0, params={"x": 0.5}, distributions=DIST,
                     user_attrs=attrs.get("user_attrs", {}),
                     system_attrs=attrs.get("system_attrs", {}),
                     intermediate_values=attrs.get("reports", {}))
    t.number, t.state = number, state
    t.datetime_start = NOW - timedelta(minutes=minutes_ago + 1)
    t.datetime_complete = None if state == TrialState.RUNNING else \
        NOW - timedelta(minutes=minutes_ago)
    return t


def test_the_fleet_shows_each_running_trial_its_pace_retries_and_failures():
    trials = [
        trial(0, TrialState.COMPLETE, 9),  # outside the 5-minute window
        trial(1, TrialState.PRUNED, 4), trial(2, TrialState.COMPLETE, 2),
        trial(3, TrialState.FAIL, 3, user_attrs={record.FAIL_REASON: "worker gone"}),
        trial(4, TrialState.COMPLETE, 1, system_attrs={"failed_trial": 3}),  # its retry
        trial(5, TrialState.FAIL, 1, user_attrs={record.SURPLUS: True}),  # never ran
        trial(6, TrialState.RUNNING, 0, user_attrs={record.WORKER: "h:12"}, reports={5: 0.3,
                                                                                     10: 0.2}),
        trial(7, TrialState.RUNNING, 0),  # created, not yet claimed
    ]
    fleet = fleet_of(trials, {6: 2.5}, NOW)
    assert [(r.worker, r.trial, r.step, r.heartbeat_age_s) for r in fleet.running] == [
        ("?", 7, None, None), ("h:12", 6, 10, 2.5)]
    assert fleet.running[1].running_s == 60.0
    assert fleet.minutes == 5.0 and fleet.per_minute == 3 / 5  # trials 1, 2 and 4
    assert fleet.retried == 1 and fleet.failed == 1
    assert fleet.last_failure == "trial 3: worker gone"
    assert fleet_of(trials[:1], None, NOW).per_minute == 0.0  # none in the last 5 min
    young = fleet_of([trial(0, TrialState.COMPLETE, 0)], None, NOW)  # started a minute ago
    assert young.minutes == 1.0 and young.per_minute == 1.0


def test_status_shows_the_workers_of_a_running_study(tmp_path):
    with slow_run(tmp_path, trials=50) as (study, _url, _proc):  # (killed on the way out)
        def both_running():
            res = run_cli("status", str(study), "--json", cwd=tmp_path)
            assert res.returncode == 0, res.stderr
            fleet = json.loads(res.stdout)["fleet"]
            return fleet if len(fleet["workers"]) == 2 else None

        def table_shown():  # (a worker may be between two trials: asked again then)
            res = run_cli("status", str(study), cwd=tmp_path)
            assert res.returncode == 0, res.stderr
            return res.stdout if "running: " in res.stdout else None

        fleet = wait_for(both_running, what="two running workers in status")
        text = wait_for(table_shown, what="the running trials' table in status")
    pids = set()
    for w in fleet["workers"]:
        host, pid = w["worker"].rsplit(":", 1)
        assert host == os.uname().nodename and w["trial"] >= 0
        assert w["heartbeat_age_s"] is not None and 0 <= w["heartbeat_age_s"] < 30
        pids.add(int(pid))
    assert len(pids) == 2 and fleet["failed"] == 0
    assert "heartbeat" in text and "trials/min" in text and "retried" in text
