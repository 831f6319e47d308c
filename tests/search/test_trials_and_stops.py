"""Trial tables, export formats, `nnsearch enqueue`, and the study-level stops."""

import csv
import io
import json
import re

import pytest
import yaml
from optuna.trial import TrialState

from tests.helpers import run_cli, run_small_study, write_study
from tests.search.test_workers import trials


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """A small iris study of 8 trials by 2 workers (some pruned)."""
    tmp = tmp_path_factory.mktemp("tables")
    study, _ = run_small_study(tmp, trials=8)
    return tmp, study


def test_trials_as_csv_read_back_with_the_csv_module(ran):
    tmp, study = ran
    res = run_cli("trials", str(study), "--format", "csv", cwd=tmp)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    ts = trials(f"sqlite:///{tmp / 'small.db'}", "small")
    assert [int(r["number"]) for r in rows] == [t.number for t in ts]
    for row, t in zip(rows, ts, strict=True):
        assert row["state"] == t.state.name.lower()
        assert float(row["param.learning_rate"]) == t.params["learning_rate"]
        assert (row["param.width_l1"] == "") == ("width_l1" not in t.params)
        assert int(row["epochs_run"]) == t.user_attrs["epochs_run"]
        if t.state == TrialState.COMPLETE:
            assert float(row["value"]) == t.value and row["reason"] == ""
        else:
            assert row["reason"] == t.user_attrs["pruned_reason"]


def test_trials_as_json_filtered_and_sorted_best_first(ran):
    tmp, study = ran
    res = run_cli("trials", str(study), "--format", "json", "--state", "complete",
                  "--sort", "value", "--limit", "3", cwd=tmp)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    complete = [t for t in trials(f"sqlite:///{tmp / 'small.db'}", "small")
                if t.state == TrialState.COMPLETE]
    best_first = sorted(complete, key=lambda t: (-t.value, t.number))[:3]  # val_accuracy: max
    assert [r["number"] for r in rows] == [t.number for t in best_first]
    assert all(r["state"] == "complete" for r in rows)


def test_trials_table_and_a_bad_state(ran):
    tmp, study = ran
    res = run_cli("trials", str(study), cwd=tmp)
    n = len(trials(f"sqlite:///{tmp / 'small.db'}", "small"))
    assert res.returncode == 0 and f"{n} trial(s)" in res.stdout
    header = next(line for line in res.stdout.splitlines() if "learning_rate" in line)
    assert "width_l0" in header and "epochs_run" in header  # one line, not folded
    res = run_cli("trials", str(study), "--state", "finished", cwd=tmp)
    assert res.returncode == 2 and "unknown state 'finished'" in res.stderr
    assert len(res.stderr.strip().splitlines()) <= 2 and "Traceback" not in res.stderr


def test_export_as_params_and_yaml(ran):
    tmp, study = ran
    full = json.loads(run_cli("export", str(study), cwd=tmp).stdout)
    params = json.loads(run_cli("export", str(study), "--format", "params", cwd=tmp).stdout)
    assert params == full["trial"]["params"]
    res = run_cli("export", str(study), "--format", "yaml", cwd=tmp)
    assert res.returncode == 0 and yaml.safe_load(res.stdout) == full


def test_enqueue_an_export_and_a_table(ran):
    tmp, study = ran
    url = f"sqlite:///{tmp / 'small.db'}"
    exported = tmp / "small-best.json"
    before = len(trials(url, "small"))
    res = run_cli("enqueue", str(study), str(exported), cwd=tmp)
    assert res.returncode == 0, res.stderr
    assert f"enqueued trial {before}" in res.stdout
    # the budget is spent: say how a worker would take it
    assert "already has its" in res.stderr and "run it with --trials" in res.stderr
    table = tmp / "table.json"
    table.write_text(json.dumps({"n_layers": 2, "width": [9, 30], "activation": "tanh"}))
    res = run_cli("enqueue", str(study), str(table), cwd=tmp)
    assert res.returncode == 0 and f"enqueued trial {before + 1}" in res.stdout
    for bad, message in (({"n_layers": 5}, "n_layers: 5 is outside the space's range [1, 2]"),
                         ({"width_l1": 9}, "the widths must be width_l0 to width_l0"),
                         ([1, 2], "expected a JSON object of parameters")):
        table.write_text(json.dumps(bad))
        res = run_cli("enqueue", str(study), str(table), cwd=tmp)
        assert res.returncode == 2 and message in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
    assert len(trials(url, "small")) == before + 2  # the refused ones stored nothing
    res = run_cli("run", str(study), "--workers", "2", "--trials", "10", cwd=tmp)
    assert res.returncode == 0, res.stderr
    ts = {t.number: t for t in trials(url, "small")}
    best = json.loads(exported.read_text())["trial"]
    assert ts[before].params == best["params"] and ts[before].state != TrialState.WAITING
    assert (ts[before + 1].params["width_l0"], ts[before + 1].params["width_l1"]) == (9, 30)


def test_a_target_stops_every_worker(tmp_path):
    study = write_study(tmp_path / "t.toml", name="t", trials=200, epochs=20)
    study.write_text(study.read_text().replace("[budget]", "[budget]\ntarget = 0.5"))
    res = run_cli("run", str(study), "--workers", "2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "stopped: trial" in res.stdout and "reached the target val_accuracy 0.5" in res.stdout
    # the progress bar ends saying why, with no ETA for trials that will not run
    bar = [line for line in res.stderr.splitlines() if "best " in line and "/min" in line]
    assert bar and "stopped: trial" in bar[-1] and " eta " not in bar[-1], res.stderr
    ts = trials(f"sqlite:///{tmp_path / 't.db'}", "t")
    first = min((t for t in ts if t.state == TrialState.COMPLETE and t.value >= 0.5),
                key=lambda t: t.datetime_complete)
    # No trial starts once a trial reached the target (one may have been taking its slot
    # on the other worker at that very moment).
    assert sum(t.datetime_start is not None and t.datetime_start > first.datetime_complete
               for t in ts) <= 1
    assert len(ts) < 20


def test_stall_stops_after_that_many_trials_without_a_new_best(tmp_path):
    # On iris the best validation accuracy is soon reached and then only tied.
    study = write_study(tmp_path / "s.toml", name="s", trials=200, epochs=5)
    study.write_text(study.read_text().replace("[budget]", "[budget]\nstall = 4"))
    res = run_cli("run", str(study), "--workers", "2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "without improving on it (stall = 4)" in res.stdout
    ts = trials(f"sqlite:///{tmp_path / 's.db'}", "s")
    assert len(ts) < 200
    # The best when it stopped (a trial still running then may have beaten it since).
    number = int(re.search(r"since the best, trial (\d+),", res.stdout).group(1))
    best = next(t for t in ts if t.number == number)
    assert best.value == max(t.value for t in ts if t.state == TrialState.COMPLETE
                             and t.datetime_complete <= best.datetime_complete)
    finished = [t for t in ts if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    after = sorted(t.datetime_complete for t in finished
                   if t.datetime_complete > best.datetime_complete)
    assert len(after) >= 4
    # No trial starts once the 4th finished without improving (one may have been taking
    # its slot on the other worker at that very moment).
    assert sum(t.datetime_start is not None and t.datetime_start > after[3] for t in ts) <= 1
