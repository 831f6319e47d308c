"""The noise rule: a starting point stands unless the best trial beats it, fold by fold,
by more than one standard error (search/noise.py)."""

import tomllib

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from nnsearch.search import record
from nnsearch.search._optuna import FIXED_PARAMS
from nnsearch.search.errors import UsageError
from nnsearch.search.noise import beats, settle
from nnsearch.search.studyfile import parse_study

WRITTEN = {key: 1 for key in record.RESULT_KEYS}
STUDY = """
[study]
name = "s"
metric = "val_rmse"
[data]
source = "diabetes"
folds = 5
[space]
n_layers = {{ low = 1, high = 3 }}
learning_rate = {{ low = 1e-4, high = 1e-1, log = true }}
{selection}
[[enqueue]]
n_layers = 1
learning_rate = 0.001
"""
DISTRIBUTIONS = {"n_layers": IntDistribution(1, 3),
                 "learning_rate": FloatDistribution(1e-4, 1e-1, log=True)}


def spec(selection=""):
    return parse_study(tomllib.loads(STUDY.format(selection=selection)), "t")


def study_with(*trials, study=None, sampled=()):
    """trials: (n_layers, learning_rate, fold values), added to ``study`` (a new one);
    those with the ``[[enqueue]]`` table's params as queued with it (``enqueue_trial``
    keeps what it queued in a system attribute), unless their index is in ``sampled``."""
    study = study or optuna.create_study(direction="minimize")
    for i, (n_layers, lr, folds) in enumerate(trials):
        params = {"n_layers": n_layers, "learning_rate": lr}
        queued = params == {"n_layers": 1, "learning_rate": 0.001} and i not in sampled
        study.add_trial(create_trial(
            state=TrialState.COMPLETE, value=sum(folds) / len(folds),
            params=params, distributions=DISTRIBUTIONS,
            user_attrs={**WRITTEN, record.FOLD_VALUES: folds},
            system_attrs={FIXED_PARAMS: params} if queued else None))
    return study


@pytest.mark.parametrize(("values", "reference", "sign", "beaten"), [
    ([1.0, 1.0, 1.0], [2.0, 2.0, 2.0], 1, True),      # better on every fold, no spread
    ([1.0, 3.0, 1.0], [2.0, 2.0, 2.0], 1, False),     # mean lead 0.33, se 0.67
    ([1.9, 1.8, 1.95, 1.85], [2.0, 2.0, 2.0, 2.0], 1, True),
    ([0.9, 0.8], [0.8, 0.9], -1, False),              # same mean: no lead
    ([0.95, 0.96, 0.97], [0.9, 0.9, 0.9], -1, True),  # maximised
    ([0.85, 0.86, 0.87], [0.9, 0.9, 0.9], -1, False),  # worse
    ([1.0, float("nan")], [2.0, 2.0], 1, False),      # a fold that failed
    ([1.0, 1.0], [2.0, 2.0, 2.0], 1, False),          # not the same folds
])
def test_beats_by_more_than_one_standard_error(values, reference, sign, beaten):
    assert beats(values, reference, sign) is beaten


def test_the_starting_point_stands_within_the_noise():
    study = study_with((1, 0.001, [10.0, 20.0, 30.0, 40.0, 50.0]),  # the starting point
                       (2, 0.01, [5.0, 25.0, 20.0, 45.0, 45.0]),    # lead 2: within noise
                       (3, 0.05, [15.0, 20.0, 40.0, 40.0, 50.0]))
    best = study.best_trial
    assert best.number == 1
    pick, why = settle(study, spec(), best)
    assert pick.number == 0 and "starting point 0 kept" in why and "trial 1" in why
    # turned off, the best trial is the pick
    pick, why = settle(study, spec("[selection]\nnoise_rule = false"), best)
    assert pick.number == 1 and why == ""


def test_a_clear_lead_is_kept():
    study = study_with((1, 0.001, [10.0, 20.0, 30.0, 40.0, 50.0]),
                       (2, 0.01, [8.0, 17.0, 28.0, 37.0, 46.0]))  # 2-4 better on every fold
    pick, why = settle(study, spec(), study.best_trial)
    assert pick.number == 1 and "beyond the folds' noise" in why


def test_without_a_starting_point_or_folds_the_best_is_the_pick():
    study = study_with((2, 0.01, [5.0, 25.0, 20.0, 45.0, 45.0]),
                       (3, 0.05, [15.0, 20.0, 40.0, 40.0, 50.0]))  # none holds [[enqueue]]
    assert settle(study, spec(), study.best_trial) == (study.best_trial, "")
    # a trial that sampled the table's params, but was not queued with it, is not one
    study = study_with((1, 0.001, [10.0, 20.0, 30.0, 40.0, 50.0]),
                       (2, 0.01, [5.0, 25.0, 20.0, 45.0, 45.0]), sampled=(0,))
    assert settle(study, spec(), study.best_trial) == (study.best_trial, "")
    plain = optuna.create_study()  # one validation split: no fold values to pair
    plain.add_trial(create_trial(state=TrialState.COMPLETE, value=1.0, user_attrs=WRITTEN))
    assert settle(plain, spec(), plain.best_trial) == (plain.best_trial, "")


def test_noise_rule_must_be_a_bool():
    with pytest.raises(UsageError, match=r"selection\.noise_rule must be bool"):
        spec("[selection]\nnoise_rule = 1")


def test_a_recheck_picks_instead():
    study = study_with((1, 0.001, [10.0, 20.0, 30.0, 40.0, 50.0]),
                       (2, 0.01, [5.0, 25.0, 20.0, 45.0, 45.0]))
    assert settle(study, spec("[selection]\nrecheck = 2"), study.best_trial)[0].number == 1


def test_status_names_the_starting_point_the_export_keeps(tmp_path):
    """`status` shows the best trial by value and, beside it, what the export keeps."""
    import json

    from tests.helpers import run_cli

    study_file = tmp_path / "s.toml"
    study_file.write_text(STUDY.format(selection=""))
    assert run_cli("create", str(study_file), cwd=tmp_path).returncode == 0
    study = study_with((1, 0.001, [10.0, 20.0, 30.0, 40.0, 50.0]),
                       (2, 0.01, [5.0, 25.0, 20.0, 45.0, 45.0]),  # lead 2: within noise
                       study=optuna.load_study(study_name="s",
                                               storage=f"sqlite:///{tmp_path / 's.db'}"))
    start, best = (t.number for t in study.get_trials(states=(TrialState.COMPLETE,)))
    res = run_cli("status", str(study_file), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)
    assert status["best"]["number"] == best and status["export_pick"]["number"] == start
    assert f"starting point {start} kept" in status["export_pick"]["why"]
    res = run_cli("status", str(study_file), cwd=tmp_path)
    assert f"best trial {best}" in res.stdout and f"starting point {start} kept" in res.stdout


@pytest.mark.parametrize("shortlist", [50, 1])
def test_status_and_trials_read_less_and_show_what_a_full_read_shows(tmp_path, shortlist,
                                                                     monkeypatch):
    """`status` asks the storage for what it shows (``study_status(census=True)``): the
    counts, the best trial, the pick, the noise rule's line and the fleet are those a
    read of every trial gives, also where the best few are not ones the export could
    pick (a shortlist of 1: a trial with a value set by hand, not a worker's, is the
    best); and `trials`' rows read in outline (``SHOWN_ATTRS``)."""
    from nnsearch.search import status
    from nnsearch.search.export import pick_trial
    from nnsearch.search.status import study_status
    from nnsearch.search.study import open_study, target_from_args
    from nnsearch.search.trials_table import SHOWN_ATTRS, trial_rows
    from tests.helpers import run_cli

    study_file = tmp_path / "s.toml"
    study_file.write_text(STUDY.format(selection=""))
    assert run_cli("create", str(study_file), cwd=tmp_path).returncode == 0
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
    n = len(study.trials)  # (create queued the starting point: a waiting trial)
    study_with((1, 0.001, [10.0, 20.0, 30.0, 40.0, 50.0]),
               (2, 0.01, [5.0, 25.0, 20.0, 45.0, 45.0]),
               (3, 0.05, [15.0, 20.0, 40.0, 40.0, 50.0]), study=study)
    params = {"n_layers": 2, "learning_rate": 0.02}
    study.add_trial(create_trial(value=1.0, params=params, distributions=DISTRIBUTIONS))
    study.add_trial(create_trial(state=TrialState.FAIL, params=params,
                                 distributions=DISTRIBUTIONS,
                                 user_attrs={record.FAIL_REASON: "worker gone"}))
    study.add_trial(create_trial(state=TrialState.PRUNED, params=params,
                                 distributions=DISTRIBUTIONS, user_attrs={
                                     **WRITTEN, record.PRUNED_REASON: "median",
                                     record.RESUMED: {"at": "fold 1", "epochs_saved": 3}},
                                 system_attrs={"failed_trial": n + 4},
                                 intermediate_values={1: 30.0}))
    study.add_trial(create_trial(state=TrialState.RUNNING, params=params,
                                 distributions=DISTRIBUTIONS,
                                 user_attrs={record.WORKER: "h:12", "big": "x" * 100},
                                 intermediate_values={1: 20.0, 2: 19.0}))
    target = target_from_args(str(study_file), None, None)
    with open_study(target) as opened:
        whole = study_status(opened)
        rows = {sort: trial_rows(opened.study, sort=sort) for sort in ("number", "value")}
    monkeypatch.setattr(status, "SHORTLIST", shortlist)
    with open_study(target) as opened:
        asked = study_status(opened, census=True)
        study_id = opened.storage.get_study_id_from_name("s")
        assert opened.reader is not None  # (the trials were read whole only to fall back)
        assert opened.reader.reads(study_id) == (shortlist == 1)
    with open_study(target) as opened:  # export's pick, as the command makes it
        complete, counted = status.read_census(opened, complete=True)
        assert (complete is None) == (shortlist == 1)
        if complete is not None:
            best, _ = pick_trial(opened.study, None, None, complete)
            assert counted.skipped == whole.skipped == [n + 3]
            assert settle(opened.study, opened.spec, best, complete)[0].number == whole.pick
    with open_study(target) as opened:
        assert opened.reader is not None
        read = opened.reader.outline(study_id, SHOWN_ATTRS)
        assert read is not None
        for sort, full in rows.items():
            assert trial_rows(opened.study, sort=sort, trials=[t for _, t in read]) == full
        assert trial_rows(opened.study, [TrialState.PRUNED], trials=[t for _, t in read]) \
            == trial_rows(opened.study, [TrialState.PRUNED])
    assert whole.best is not None and asked.best is not None
    assert (asked.best.number, asked.best.params, asked.best.user_attrs) == \
        (whole.best.number, whole.best.params, whole.best.user_attrs) == \
        (n + 1, {"n_layers": 2, "learning_rate": 0.01}, asked.best.user_attrs)
    assert asked.best.user_attrs[record.NETWORK] == 1  # (whole: not an outline's None)
    assert (asked.counts, asked.skipped, asked.pick, asked.settled) == \
        (whole.counts, whole.skipped, whole.pick, whole.settled)
    assert asked.pick == n and f"starting point {n} kept" in asked.settled
    def timeless(fleet):  # (the pace and running times move with the clock)
        seen = fleet.as_json()
        for key in ("trials_per_minute", "over_minutes"):
            seen.pop(key)
        for w in seen["workers"]:
            w.pop("running_s")
        return seen

    seen = timeless(asked.fleet)
    assert seen == timeless(whole.fleet)
    assert seen["retried"] == 1 and seen["failed"] == 1 and seen["last_failure"] == \
        f"trial {n + 4}: worker gone" and [(w["worker"], w["trial"], w["step"])
                                           for w in seen["workers"]] == [("h:12", n + 6, 2)]
